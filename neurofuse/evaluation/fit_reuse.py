"""Whether a finished joint-model fit may be reused: it was trained as asked.

An evaluation folder's ``fit/done.json`` records the settings its joint model was trained
with; :func:`_check_done_fit` refuses to reuse it under other ones (the main fit, the
variants and the scaling benchmark's finished points share it), with one exception that is
not a plain comparison: ``train.min_epochs``, which only suppresses early stops before it
(:func:`_min_epochs_change`).
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
    """Refuse to reuse a finished fit (its ``done.json``) trained under other settings.

    Settings the folder does not record (it predates them) are not compared, but
    ``train.min_epochs`` (absent: 0; see :func:`_min_epochs_change`). ``what`` names the fit
    in the message (default: the joint model in the folder), ``fix`` says what to do."""
    prev = json.loads(done.read_text())
    want = json.loads(json.dumps(want))
    diff = [f"{section}.{k}" for section, values in want.items()
            for k in sorted(set(prev.get(section) or {}) | set(values or {}))
            if k in (prev.get(section) or {}) and (prev.get(section) or {}).get(k)
            != (values or {}).get(k) and (section, k) != ("train", "min_epochs")]
    detail = ""
    if "train" in want:
        change = _min_epochs_change(done, prev.get("train") or {}, want["train"])
        if change is not None:
            diff.append("train.min_epochs")
            detail = f"; train.min_epochs: {change}"
    if diff:
        what = what or f"The joint model in '{done.parent}'"
        fix = fix or ("reusing it would score another model than the one asked for. Remove "
                      "that folder (or the whole output folder) to train again, or pass "
                      "another output folder.")
        raise ValueError(f"{what} was trained under other settings "
                         f"(differing: {', '.join(diff)}){detail}; {fix}")


def _min_epochs_change(done, prev, want):
    """None if a finished fit trained with ``prev["min_epochs"]`` (absent: 0) is the one
    ``want["min_epochs"]`` would train, else what differs (for the message).

    It is when the two are equal, or the new one is larger and the fit ran past it or ran
    all its ``max_epochs`` (a larger minimum only suppresses stops before it; a smaller one
    may stop sooner, which the epoch count cannot tell)."""
    before, now = int(prev.get("min_epochs", 0)), int(want.get("min_epochs", 0))
    if before == now:
        return None
    history = done.parent / "history.csv"
    ran = None
    if history.is_file():
        with open(history, newline="") as f:
            ran = sum(1 for _ in csv.DictReader(f))
    max_epochs = want.get("max_epochs", prev.get("max_epochs"))
    if now > before and ran is not None and (
            ran >= now or (max_epochs is not None and ran >= int(max_epochs))):
        return None
    how_long = ("no history.csv tells how long it trained" if ran is None
                else f"ran {ran} epochs" if max_epochs is not None and ran >= int(max_epochs)
                else f"stopped after {ran} epochs")
    return f"{before} there ({how_long}), {now} now"
