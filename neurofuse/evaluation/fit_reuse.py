"""Whether a finished fit may be reused: it was trained as asked.

An evaluation folder records the settings each of its fits was trained with (System A:
``fit/done.json``; the other systems: see their pipelines), and :func:`_check_fit_record`
refuses to reuse one under other settings, naming each that differs with its value there and
now, and saying what to do. Settings the folder does not record (it predates them) are not
compared, nor those a pipeline names as ``free`` (they do not change the trained model, e.g.
the device). Settings that only decide when training stops are compared by what the run
did: the epochs, patience and minimum, replayed on the recorded history
(:func:`_stopping_change`; System A's with its curriculum, :func:`_joint_stopping`).
"""

from __future__ import annotations

import csv
import json


def _wanted_fit(fit_config, fmri_denoise):
    """``(TrainConfig, encoder kwargs)`` an evaluation trains its joint model with: the set-up
    ``fit_config`` with ``fmri_denoise`` (None: the set-up's own)."""
    from ..systems.joint.trainer import TrainConfig, load_fit_config

    train, encoder = load_fit_config(fit_config)
    if fmri_denoise is not None:
        train = TrainConfig.from_dict({**train.to_dict(), "fmri_denoise": fmri_denoise})
    return train, encoder


def _check_done_fit(done, want, *, what=None, fix=None):
    """Refuse to reuse a finished joint-model fit (its ``done.json``) trained under other
    settings.

    Settings the folder does not record (it predates them) are not compared, but
    ``train.min_epochs`` (absent: 0). The stopping settings are compared by replaying the
    fit's history (:func:`_joint_stopping`). ``what`` names the fit in the message (default:
    the joint model in the folder), ``fix`` says what to do; the message also names the
    presets that keep the ``demo`` preset's earlier set-ups, under which a fit made before a
    change of the preset may be reused."""
    from ..systems.joint.trainer import FIT_PRESETS

    _check_fit_record(json.loads(done.read_text()), want, folder=done.parent,
                      what=what or f"The joint model in '{done.parent}'", fix=fix,
                      presets=FIT_PRESETS, **_joint_stopping((want or {}).get("train") or {}))


def _joint_stopping(train):
    """The ``stopping`` and ``stop_change`` arguments of :func:`_check_fit_record` for a
    joint-model fit asked for with the ``train`` settings (a :class:`~neurofuse.systems.
    joint.trainer.TrainConfig` as a dict): ``patience``, ``min_epochs`` (absent: 0) and,
    unless the learning rate follows a cosine schedule over them, ``max_epochs``, compared
    by replaying the fit's history under the joint task's own curriculum (a new
    ``alpha_fmri`` phase restarts the rule's memory, which may end training only in the
    fMRI phase, or at any epoch of a fit without fMRI subjects)."""
    from ..systems.joint.task import JointTask
    from ..systems.joint.trainer import TrainConfig

    keys = tuple(k for k in ("max_epochs", "patience", "min_epochs")
                 if k != "max_epochs" or train.get("scheduler") != "cosine")

    # the curriculum of the asked settings (the ones it depends on, meg_first_epochs and
    # alpha_fmri, are compared as they are: a fit with others is refused anyway)
    def phase(epoch, want):
        return TrainConfig.from_dict(_with_defaults(TrainConfig, want)).alphas(epoch)[1]

    def may_stop(epoch, want, folder):
        cfg = TrainConfig.from_dict(_with_defaults(TrainConfig, want))
        if cfg.alphas(epoch)[1] == cfg.alpha_fmri:
            return True
        spec = folder / "model" / "model.json"  # a fit without fMRI subjects stops any time
        return spec.is_file() and not json.loads(spec.read_text()).get("fmri_subjects")

    return {"stopping": [("train", k) for k in keys],
            "stop_change": _stopping_change(JointTask.monitor, epochs="max_epochs", keys=keys,
                                            defaults={"min_epochs": 0}, phase=phase,
                                            may_stop=may_stop)}


def _check_fit_record(prev, want, *, folder, what, fix=None, free=(), stopping=(),
                      stop_change=None, presets=()):
    """Refuse to reuse a finished fit whose recorded settings ``prev`` differ from ``want``.

    Parameters
    ----------
    prev, want : dict of str to dict
        The recorded and the asked settings, by section (e.g. ``train``, ``model``). A
        setting ``prev`` does not record (the folder predates it) is not compared.
    folder : Path
        The fit's folder (its ``history.csv`` tells how long it trained).
    what : str
        The fit, for the message (e.g. "The transcoder in '...'").
    fix : str | None
        What to do instead (default: remove the folder or pass another output folder).
    free : sequence of (section, key)
        Settings that do not change the trained model (never compared).
    stopping : sequence of (section, key)
        Settings that only decide when training stops: compared by ``stop_change(folder,
        prev_section, want_section)`` (None: the same run, else what differs) instead.
    stop_change : callable | None
    presets : iterable of str
        The system's preset names (e.g. its ``FIT_PRESETS`` dict): when a setting of a
        section differs, the message names those that keep the ``demo`` preset's earlier
        set-ups (``demo-*``), under which a fit made before a change of the preset is
        reused.
    """
    prev = json.loads(json.dumps(prev))
    want = json.loads(json.dumps(want))
    skip = set(map(tuple, free)) | set(map(tuple, stopping))
    diff, details = [], []
    for section, values in want.items():
        before, now = prev.get(section) or {}, values or {}
        if not isinstance(before, dict) or not isinstance(now, dict):
            if section in prev and before != now:
                diff.append(section)
                details.append(f"{section}: {before!r} there, {now!r} now")
            continue
        for k in sorted(set(before) | set(now)):
            if k in before and before.get(k) != now.get(k) and (section, k) not in skip:
                diff.append(f"{section}.{k}")
                details.append(f"{section}.{k}: {before.get(k)!r} there, {now.get(k)!r} now")
    for section in sorted({s for s, _ in stopping}):
        if section in want:
            change = stop_change(folder, prev.get(section) or {}, want[section] or {})
            if change is not None:
                key, text = change
                diff.append(f"{section}.{key}")
                details.append(f"{section}.{key}: {text}")
    if diff:
        fix = fix or (f"reusing it would score another model than the one asked for. Remove "
                      f"'{folder}' (or the whole output folder) to train again, or pass "
                      "another output folder.")
        earlier = ", ".join(f"'{name}'" for name in presets if name.startswith("demo-"))
        if earlier and any("." in d for d in diff):  # a preset's setting differs
            fix += (f" A fit made with an earlier `demo` preset is reused under the preset "
                    f"that keeps its set-up ({earlier}).")
        raise ValueError(f"{what} was trained under other settings "
                         f"(differing: {', '.join(diff)}); {'; '.join(details)}; {fix}")


def _history_rows(folder):
    """A finished fit's ``history.csv`` rows (empty cells left out); None without one."""
    history = folder / "history.csv"
    if not history.is_file():
        return None
    with open(history, newline="") as f:
        return [{k: v for k, v in r.items() if v not in ("", None)}
                for r in csv.DictReader(f)]


def _stopping_change(monitor, *, epochs="epochs", keys=("epochs", "patience"), defaults=None,
                     phase=None, may_stop=None):
    """A ``stop_change`` for :func:`_check_fit_record`: the finished run is the one the new
    stopping settings would train when its recorded history, replayed under them
    (:func:`~neurofuse.training.loop.replay_early_stopping`), stops where the run stopped.

    ``monitor(row)`` is the task's monitored number of a ``history.csv`` row (its
    :meth:`~neurofuse.training.task.Task.monitor`), ``epochs`` the settings' name of the
    loop's ``max_epochs``, ``keys`` the stopping settings (the loop's ``patience``,
    ``min_epochs`` and ``max_epochs``, under the settings' names), ``defaults`` their values
    where a record leaves them out. ``phase(epoch, want)`` and ``may_stop(epoch, want,
    folder)`` give the task's :meth:`~neurofuse.training.task.Task.phase` and
    :meth:`~neurofuse.training.task.Task.may_stop` of an epoch (0-based) under the asked
    settings ``want`` (default: one phase, may stop at any epoch)."""
    def change(folder, prev, want):
        from ..training.loop import replay_early_stopping

        prev, want = {**(defaults or {}), **prev}, {**(defaults or {}), **want}
        differ = [k for k in keys if k in prev and prev.get(k) != want.get(k)]
        if not differ:
            return None
        replay, rows = None, _history_rows(folder) or []
        # the new rule (the epoch bound even where it is not compared: a cosine schedule)
        rule = {"max_epochs" if k == epochs else k: want.get(k, prev.get(k))
                for k in dict.fromkeys((*keys, epochs)) if k in want or k in prev}
        if rows:
            try:
                replay = replay_early_stopping(
                    [float(monitor(r)) for r in rows], config=rule,
                    phases=None if phase is None else [phase(e, want)
                                                       for e in range(len(rows))],
                    may_stop=None if may_stop is None else [
                        bool(may_stop(e, want, folder)) for e in range(len(rows))])
            except ValueError:  # the new rule would have trained on
                replay = None
        if replay is not None and replay["epochs"] == len(rows):
            return None
        how_long = ("no history.csv tells how long it trained" if not rows
                    else f"it trained {len(rows)} epochs, which the settings now would "
                         + ("not stop at" if replay is None
                            else f"stop at {replay['epochs']}"))
        return differ[0], "; ".join(
            [f"{prev.get(k)!r} there, {want.get(k)!r} now" if k == differ[0] else
             f"{k}: {prev.get(k)!r} there, {want.get(k)!r} now" for k in differ]
            ) + f" ({how_long})"
    return change


def _loop_rules(task_cls, section="train", *, epochs="epochs", monitor=None):
    """The ``free``, ``stopping`` and ``stop_change`` arguments of :func:`_check_fit_record`
    for a fit by the generic loop's task ``task_cls``: what its
    :attr:`~neurofuse.training.task.Task.resume_may_change` lets a resumed run change (the
    device: free; the epochs, patience and minimum: compared by replaying the history on
    the task's :meth:`~neurofuse.training.task.Task.monitor`, or ``monitor(row)`` where the
    settings choose what is monitored), in the ``section`` of the settings named ``epochs``
    for the loop's ``max_epochs``."""
    from functools import partial

    may = task_cls.resume_may_change
    if not isinstance(may, (tuple, list)):  # a property of the instance (JointTask)
        raise TypeError(f"{task_cls.__name__}.resume_may_change depends on the task's "
                        "settings: build the rules from them (as _joint_stopping does).")
    may = set(may)
    keys = tuple(k for k in (epochs, "patience", "min_epochs") if k in may)
    return {"free": [(section, "device")] if "device" in may else [],
            "stopping": [(section, k) for k in keys],
            "stop_change": _stopping_change(monitor or partial(task_cls.monitor, None),
                                            epochs=epochs, keys=keys)}


def _with_defaults(cls, values):
    """``values`` (a set-up's section: some fields of the dataclass ``cls``) completed with
    ``cls``'s defaults, as JSON (fields without a default, which come from the data, are left
    out): what to compare with a recorded section, so a preset that changes a setting back to
    its default is seen."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return json.loads(json.dumps({**out, **dict(values)}, default=list))
