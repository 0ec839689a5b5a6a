"""Joint-model variants scored beside the main model on the same study (issue 15, items 1, 3).

A *variant* is a named change of the joint model's training set-up (its fMRI denoiser, its
source prior, ...) merged over the set-up of the main model. Each variant is trained in its
own folder of an evaluation's output folder and scored on the same study with the same
procedure as the main model, reusing what the main evaluation already computed and cached
(the dataset, the ridge ceilings and their in-sample fMRI predictions); nothing of the main
model, its inverses or its scores changes.

===================================== ===================================================
``variants/<name>/fit/``              the variant's training run (resumed; a finished
                                      fit made under other settings is refused)
``variants/<name>/scored-model.json`` which model the cached scores below are of
``variants/<name>/recovery.npz``      its source recovery (temporal r map and scores)
===================================== ===================================================

Each variant adds the method ``"neurofuse[<name>]"``: one source-recovery row (its source
estimates against the ground truth) and its held-out MEG / EEG / fMRI prediction rows. Only
the joint model's own rows: the inverses with a variant's prediction as prior mean and the
inverses smoothed at a variant's width are not scored (each would invert every recording
again); the smoothed inverses stay at the main model's width.
"""

from __future__ import annotations

import json
import re

import numpy as np

from .._checks import _check_option
from .._logging import logger, verbose
from .recovery import NEUROFUSE, recovery_rows

#: Named variants: ``{name: {"train": {...}, "encoder": {...}}}`` merged over the main fit
#: config (:func:`variant_fit_config`). ``in-sample`` / ``cross-fitted``: the fMRI denoisers
#: (``TrainConfig.fmri_denoise``; the demo's main model trains on the recordings, ``none``);
#: ``mixture``: the adaptive source prior (``EncoderConfig(source_prior="mixture")``,
#: its default widths :data:`~neurofuse.systems.joint.encoder.MIXTURE_WIDTHS`) in place of
#: the fixed 15-mm one; ``epochs150``: the same early-stopping rule with room for 150 epochs
#: instead of 50 (whether the epoch cap, not the rule, ended a fit whose validation loss was
#: still falling); ``meg-only``: the ablation without the fMRI term (``alpha_fmri = 0``: the
#: fMRI subjects' data never reach the loss, their predictions still come from the shared
#: sources), what the joint model owes to fMRI.
JOINT_VARIANTS = {
    "in-sample": {"train": {"fmri_denoise": "in-sample"}},
    "cross-fitted": {"train": {"fmri_denoise": "cross-fitted"}},
    "mixture": {"encoder": {"source_prior": "mixture",
                            "source_widths": [0.0, 5.0, 10.0, 15.0, 20.0, 30.0],
                            "source_fwhm": None}},
    "epochs150": {"train": {"max_epochs": 150}},
    "meg-only": {"train": {"alpha_fmri": 0.0}},
}

_SECTIONS = ("train", "encoder")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def variant_method(name: str) -> str:
    """The method name of a variant's rows: ``"neurofuse[<name>]"``."""
    return f"{NEUROFUSE}[{name}]"


def resolve_variants(variants) -> dict:
    """Check the ``variants`` argument and give ``{name: override}``.

    Parameters
    ----------
    variants : None | str | sequence of str | dict
        Names of :data:`JOINT_VARIANTS`, or a dict ``{name: override}`` where ``override`` is
        ``{"train": {...}, "encoder": {...}}`` (TrainConfig fields, StimulusEncoder sizes) or
        None for the preset of that name. None: no variant.

    Returns
    -------
    variants : dict of str -> dict
        ``{name: {"train": {...}, "encoder": {...}}}`` in the order given.
    """
    if variants is None:
        return {}
    if isinstance(variants, str):
        variants = [variants]
    if not isinstance(variants, dict):
        if not hasattr(variants, "__iter__"):
            raise TypeError(f"'variants' must be names of JOINT_VARIANTS "
                            f"({', '.join(JOINT_VARIANTS)}), a dict {{name: override}} or "
                            f"None, got {type(variants).__name__}.")
        variants = {name: None for name in variants}
    out = {}
    for name, override in variants.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"'variants' names become folder and method names: letters, "
                             f"digits, '.', '_' and '-' only, got {name!r}.")
        if name == NEUROFUSE:
            raise ValueError(f"'variants' cannot be named {NEUROFUSE!r}: that is the main "
                             f"model's name in the results; give the variant another one.")
        if override is None:
            _check_option("variants", name, list(JOINT_VARIANTS),
                          extra="To train another variant, pass a dict {name: {'train': "
                                "{...}, 'encoder': {...}}}.")
            override = JOINT_VARIANTS[name]
        if not isinstance(override, dict):
            raise TypeError(f"'variants[{name!r}]' must be a dict with 'train' and/or "
                            f"'encoder' sections, got {type(override).__name__}.")
        unknown = sorted(set(override) - set(_SECTIONS))
        if unknown:
            raise ValueError(f"'variants[{name!r}]' has unknown section(s) {unknown}: "
                             f"expected 'train' and/or 'encoder'.")
        for section in _SECTIONS:
            if override.get(section) is not None and not isinstance(override[section], dict):
                raise TypeError(f"'variants[{name!r}][{section!r}]' must be a dict of "
                                f"{section} settings, e.g. {{'lr': 1e-4}}, got "
                                f"{type(override[section]).__name__} {override[section]!r}.")
        out[name] = {s: dict(override.get(s) or {}) for s in _SECTIONS if override.get(s)}
    return out


def variant_fit_config(fit_config, override) -> dict:
    """The training set-up of a variant: ``override`` merged over ``fit_config``.

    Parameters
    ----------
    fit_config : str | path-like | dict
        The main model's set-up (:func:`neurofuse.systems.joint.trainer.load_fit_config`).
    override : dict
        ``{"train": {...}, "encoder": {...}}``: fields replaced, section by section.

    Returns
    -------
    config : dict
        ``{"train": {...}, "encoder": {...}}``, complete and validated.
    """
    from ..systems.joint.trainer import load_fit_config

    train, encoder = load_fit_config(fit_config)
    config = {"train": {**train.to_dict(), **override.get("train", {})},
              "encoder": {**encoder, **override.get("encoder", {})}}
    train, encoder = load_fit_config(config)  # validates the merged set-up now
    return {"train": train.to_dict(), "encoder": encoder}


def _as_json(obj):
    return json.loads(json.dumps(obj, default=lambda o: np.asarray(o).tolist()))


def _check_finished_fit(vdir, name, config):
    """Refuse a finished fit in ``vdir/fit`` that was trained under other settings."""
    from .fit_reuse import _check_done_fit

    done = vdir / "fit" / "done.json"
    if done.is_file():
        _check_done_fit(done, _as_json(config), what=f"The variant {name!r} in '{vdir}'",
                        fix="reusing it would score another model under this name. Remove "
                            "that folder to train it again, or give the variant another name.")


@verbose
def evaluate_variants(ds, out, variants, *, fit_config=None, device=None, verbose=None):
    """Train and score joint-model variants on a study :func:`evaluate_study` evaluated.

    Parameters
    ----------
    ds : neurofuse.data.store.Dataset
        The study of the main evaluation.
    out : path-like
        The main evaluation's output folder (its ridge ceilings are reused, computed if
        missing); each variant lives in ``out/variants/<name>/``.
    variants : None | str | sequence of str | dict
        See :func:`resolve_variants`.
    fit_config : str | path-like | dict | None
        The main model's training set-up the overrides are merged over (default: the demo's,
        :data:`~neurofuse.evaluation.pipeline.DEMO_FIT`).
    device : str | None
        Training device.
    verbose : bool | str | None

    Returns
    -------
    source_recovery : list of dict
        One row per variant (method ``"neurofuse[<name>]"``; none without ground truth).
    prediction : list of dict
        The variants' held-out prediction rows (as the main model's).
    """
    from pathlib import Path

    from .._io import make_dir
    from .pipeline import (DEMO_FIT, _TRAINED_HERE, _claim_out, _fit_step, _load_npz,
                           _model_digest, _ridge_step, _save_npz, study_cnr)
    from .prediction import prediction_table, ridge_selection
    from .recovery import has_truth, source_recovery

    variants = resolve_variants(variants)
    if not variants:
        return [], []
    fit_config = DEMO_FIT if fit_config is None else fit_config
    configs = {name: variant_fit_config(fit_config, o) for name, o in variants.items()}
    out = Path(out).expanduser()
    _, ridge_maps, in_sample = _ridge_step(ds, out)
    truth = has_truth(ds)
    cnr = study_cnr(ds)
    rec_rows, pred_rows = [], []
    for name, config in configs.items():
        method = variant_method(name)
        vdir = make_dir(out / "variants" / name, what="variant folder")
        _check_finished_fit(vdir, name, config)
        _claim_out(vdir, source=_TRAINED_HERE)
        logger.info("Variant %s: %s", name, variants[name])
        model, _ = _fit_step(ds, vdir, fit_config=config, fmri_denoise=None,
                             in_sample=in_sample, device=device)
        model.cpu()
        _claim_out(vdir, source=_TRAINED_HERE, sha256=_model_digest(model))
        if truth:
            rec_f = vdir / "recovery.npz"
            if rec_f.is_file():
                logger.info("Variant %s: reusing %s", name, rec_f)
                arrays = _load_npz(rec_f)
            else:
                scores, _ = source_recovery(ds, model=model, methods=(), smooth_fwhm=None)
                sc = scores[NEUROFUSE]
                arrays = {"temporal_r_map": sc["temporal_r_map"],
                          "scores": np.array([sc["temporal_r"], sc["spatial_r"]])}
                _save_npz(rec_f, arrays, what="variant source recovery")
            rec_rows += recovery_rows(
                {method: {"temporal_r": float(arrays["scores"][0]),
                          "spatial_r": float(arrays["scores"][1])}},
                meg_cnr=cnr.get("meg", np.nan), fmri_cnr=cnr.get("fmri", np.nan))
        rows, _ = prediction_table(ds, model=model, select_by=ridge_selection(ridge_maps))
        pred_rows += [{**r, "method": method} for r in rows]
    return rec_rows, pred_rows


def seed_variants(seeds) -> dict:
    """Variants that differ from the main fit by their seed only: ``{"seed<N>": override}``.

    Parameters
    ----------
    seeds : sequence of int
        Seeds of the initialisation, piece order and dropout (``TrainConfig.seed``).
    """
    out = {}
    for seed in seeds:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"'seeds' must hold ints >= 0, got {seed!r} in {list(seeds)!r}.")
        out[f"seed{int(seed)}"] = {"train": {"seed": int(seed)}}
    return out


def kept_validation_loss(fit_dir) -> float:
    """The validation loss of the epoch a finished joint-model fit kept.

    The kept epoch is the one with the lowest validation loss (by more than the loop's
    ``min_delta``) in the last curriculum phase the fit reached (a new ``alpha_fmri``
    restarts the loop's memory, :meth:`~neurofuse.systems.joint.trainer.TrainConfig.alphas`),
    so fits of one set-up that differ only by seed compare on the same loss: choosing among
    them by it uses no test story and no ground truth.

    Parameters
    ----------
    fit_dir : path-like
        A fit folder with ``done.json`` and ``history.csv`` (a variant's ``fit/``, a scaling
        point's or condition's ``fit/``).
    """
    import csv
    from pathlib import Path

    from ..training.loop import replay_early_stopping

    fit_dir = Path(fit_dir).expanduser()
    done, hist = fit_dir / "done.json", fit_dir / "history.csv"
    if not done.is_file() or not hist.is_file():
        raise FileNotFoundError(f"'fit_dir' must be a finished joint-model fit (done.json and "
                                f"history.csv), got '{fit_dir}'. Let the fit finish first.")
    with open(hist, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in ("alpha_fmri", "val_total") if not rows or c not in rows[0]]
    if missing:
        raise ValueError(f"'fit_dir' must hold a history with validation losses, but "
                         f"'{hist}' has no {' or '.join(missing)} column (a fit without "
                         f"validation stories, or no epoch): there is no validation loss to "
                         f"compare.")
    # the loop's own rule on the recorded curve, without stopping: the last phase's best
    replay = replay_early_stopping([r["val_total"] for r in rows],
                                   config={"max_epochs": len(rows), "patience": None},
                                   phases=[r["alpha_fmri"] for r in rows])
    return replay["best"]


__all__ = ["JOINT_VARIANTS", "evaluate_variants", "kept_validation_loss", "resolve_variants",
           "seed_variants", "variant_fit_config", "variant_method"]
