"""The joint model's training fMRI targets: recorded, denoised, or chosen by validation loss.

:func:`fmri_targets` turns ``TrainConfig.fmri_denoise`` into the ``{subject: {story: array}}``
targets :class:`~neurofuse.systems.joint.task.JointTask` trains on
(:func:`neurofuse.baselines.ridge.denoise_fmri`: ``"in-sample"``, the paper's footnote 2, or
``"cross-fitted"``). ``"auto"`` chooses between them without ground truth:

The rule. Each candidate (none, in-sample, cross-fitted) trains a *pilot* from the same seed
and settings for the MEG-first epochs plus ``fmri_denoise_pilot_epochs`` epochs of the fMRI
phase (the MEG-first epochs, which do not use the fMRI targets, are trained once and shared); the candidate whose pilot reaches the lowest validation loss (the training loss on the
*recorded* fMRI and MEG of the validation stories, the quantity early stopping already uses) in
its fMRI phase wins. A ridge-based rule would be cheaper but cannot tell the candidates apart:
the denoisers are ridge models themselves, so a ridge fitted on their output scores about as
well as one fitted on the recordings. Cost: 5 + 3 x 5 epochs at the demo's set-up (about
2 minutes on 2 idle CPU cores, 20 minutes on busy ones). The choice and every pilot's score are
kept in ``out/fmri-denoise.json``; the pilots in ``out/fmri-denoise/``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from ..._io import atomic_path, write_json
from ..._logging import logger

CHOICE_FILE = "fmri-denoise.json"
_CANDIDATES = ("none", "in-sample", "cross-fitted")


def _save(path, targets):
    flat = {f"{sub}|{story}": arr for sub, stories in targets.items()
            for story, arr in stories.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, what="denoised fMRI") as tmp, open(tmp, "wb") as fid:
        np.savez(fid, **flat)


def _load(path):
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            sub, story = key.split("|")
            out.setdefault(sub, {})[story] = z[key]
    return out


def denoised_targets(dataset, method, *, n_folds="stories", cache_dir=None, known=None):
    """The training-story fMRI targets of one denoising ``method`` (``{}`` for ``"none"``).

    Parameters
    ----------
    dataset : Dataset
    method : "none" | "in-sample" | "cross-fitted"
    n_folds : int | "stories"
        Cross-fitting folds.
    cache_dir : path-like | None
        Keep them in ``cache_dir/<method>.npz`` and reuse them from there (a resumed run).
    known : dict | None
        Already computed targets per method (e.g. the evaluation's ridge ceilings').

    Returns
    -------
    targets : dict of str -> dict of str -> array, shape (n_sources, n_trs)
    """
    from ...baselines.ridge import denoise_fmri

    if method == "none":
        return {}
    if known and method in known:
        return known[method]
    path = None if cache_dir is None else Path(cache_dir) / f"{method}.npz"
    if path is not None and path.is_file():
        return _load(path)
    targets = denoise_fmri(dataset, method, n_folds=n_folds)
    if path is not None:
        _save(path, targets)
    return targets


def _can_cross_fit(dataset):
    train = set(dataset.splits.get("train", []))
    return all(sum(dataset.has(s, "fmri", st) for st in train) >= 3
               for s in dataset.subjects if "fmri" in dataset.modalities(s))


def _pilot_score(history):
    """Lowest validation loss of the fMRI phase (inf when there is none)."""
    vals = [r["val_total"] for r in history if r.get("alpha_fmri") and "val_total" in r]
    return min(vals) if vals else math.inf


def choose_fmri_denoise(dataset, out, cfg, *, encoder_kwargs=None, device=None, known=None):
    """Choose the denoising of the training fMRI by pilot trainings' validation loss.

    Parameters
    ----------
    dataset : Dataset
        With validation stories.
    out : path-like
        The training run's folder: pilots go to ``out/fmri-denoise/<method>/`` and the choice
        to ``out/fmri-denoise.json`` (reused when present).
    cfg : TrainConfig
        The run's settings (``fmri_denoise_pilot_epochs``, ``fmri_denoise_folds``).
    encoder_kwargs : dict | None
    device : str | None
    known : dict | None
        Already computed targets per method.

    Returns
    -------
    method : str
        ``"none"``, ``"in-sample"`` or ``"cross-fitted"``.
    targets : dict
        Its targets.
    """
    from ...training.loop import fit_task
    from .task import JointTask
    from .trainer import TrainConfig

    out = Path(out)
    cache = out / "fmri-denoise"
    choice_f = out / CHOICE_FILE
    if choice_f.is_file():
        method = json.loads(choice_f.read_text())["choice"]
        logger.info("fMRI denoising: %s (chosen before, %s)", method, choice_f)
        return method, denoised_targets(dataset, method, n_folds=cfg.fmri_denoise_folds,
                                        cache_dir=cache, known=known)
    if not dataset.splits.get("val"):
        raise ValueError("TrainConfig.fmri_denoise='auto' chooses the denoising by validation "
                         "loss, but the dataset has no validation stories (split 'val'). Add "
                         "some, or choose 'none', 'in-sample' or 'cross-fitted'.")
    candidates = list(_CANDIDATES)
    if not _can_cross_fit(dataset):
        logger.warning("fMRI denoising 'auto': not trying 'cross-fitted' (an fMRI subject has "
                       "fewer than 3 training stories).")
        candidates.remove("cross-fitted")
    pilot = {**cfg.to_dict(), "fmri_denoise": "none", "patience": 10**6,
             "max_epochs": cfg.meg_first_epochs + cfg.fmri_denoise_pilot_epochs}
    pcfg = TrainConfig.from_dict(pilot)
    base = cache / "meg-first"
    # The MEG-first epochs do not see the fMRI targets: train them once, and start every
    # pilot from their last checkpoint (an exact resume: the same as a straight run). Not
    # under a cosine schedule, whose period is max_epochs: each pilot then runs through.
    share = bool(cfg.meg_first_epochs) and cfg.scheduler != "cosine"
    if share:
        bcfg = TrainConfig.from_dict({**pilot, "max_epochs": cfg.meg_first_epochs})
        logger.info("fMRI denoising 'auto': the pilots' %d MEG-first epochs",
                    cfg.meg_first_epochs)
        fit_task(JointTask(dataset, bcfg, encoder_kwargs=encoder_kwargs), base,
                 config=bcfg.loop_config(), device=device,
                 resume=(base / "checkpoints" / "latest").is_file())
    scores = {}
    for method in candidates:
        targets = denoised_targets(dataset, method, n_folds=cfg.fmri_denoise_folds,
                                   cache_dir=cache, known=known)
        run = cache / method
        if share and not (run / "checkpoints" / "latest").is_file():
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(base / "checkpoints", run / "checkpoints.part")
            (run / "checkpoints.part").rename(run / "checkpoints")
        task = JointTask(dataset, pcfg, encoder_kwargs=encoder_kwargs,
                         denoised_fmri=targets or None)
        logger.info("fMRI denoising 'auto': pilot %r (%d epochs)", method, pcfg.max_epochs)
        history = fit_task(task, run, config=pcfg.loop_config(), device=device,
                           resume=(run / "checkpoints" / "latest").is_file())
        scores[method] = _pilot_score(history)
    method = min(scores, key=scores.get)
    write_json(choice_f, {"choice": method, "pilot_val_total": scores,
                          "pilot_epochs": pilot["max_epochs"],
                          "rule": "lowest validation loss in the fMRI phase of the pilots"})
    logger.info("fMRI denoising 'auto': %s (pilot validation losses %s)", method,
                {k: round(v, 4) for k, v in scores.items()})
    return method, denoised_targets(dataset, method, n_folds=cfg.fmri_denoise_folds,
                                    cache_dir=cache, known=known)


def fmri_targets(dataset, out, cfg, *, encoder_kwargs=None, device=None, known=None):
    """``(method, targets)``: the denoising ``cfg.fmri_denoise`` resolves to, and its targets.

    Parameters
    ----------
    dataset : Dataset
    out : path-like
        The training run's folder (cache of targets; pilots of ``"auto"``).
    cfg : TrainConfig
    encoder_kwargs : dict | None
    device : str | None
    known : dict | None
        Already computed targets per method (reused, not recomputed).

    Returns
    -------
    method : str
    targets : dict of str -> dict of str -> array, shape (n_sources, n_trs)
        Empty for ``"none"``.
    """
    if cfg.fmri_denoise == "auto":
        return choose_fmri_denoise(dataset, out, cfg, encoder_kwargs=encoder_kwargs,
                                   device=device, known=known)
    return cfg.fmri_denoise, denoised_targets(
        dataset, cfg.fmri_denoise, n_folds=cfg.fmri_denoise_folds,
        cache_dir=Path(out) / "fmri-denoise", known=known)


__all__ = ["choose_fmri_denoise", "denoised_targets", "fmri_targets"]
