"""Choosing the source layer's spatial prior without ground truth: by validation loss.

The joint model's smoothed source layer (``EncoderConfig.source_fwhm``) needs a width. The
width that recovers the sources best is unknown without ground truth, and the one that
matches a simulator's spatial scale is not evidence. :func:`select_source_fwhm` fits the
model once per candidate width on the training stories and keeps the width whose model
reaches the lowest validation loss (recorded MEG and fMRI of the validation stories, the
number early stopping watches). The learned alternative is the ``'mixture'`` prior
(:class:`~neurofuse.systems.joint.encoder.EncoderConfig`, ``source_prior``).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..._checks import _check_positive
from ..._io import write_json
from ..._logging import logger, verbose

__all__ = ["SELECTION_WIDTHS", "best_validation", "select_source_fwhm"]

#: Candidate widths of :func:`select_source_fwhm` (FWHM in mm; 0: no smoothing).
SELECTION_WIDTHS = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0)


def best_validation(history, *, fmri=True):
    """The row of ``history`` with the lowest ``val_total``.

    Parameters
    ----------
    history : list of dict
        Rows of a training history (:func:`~neurofuse.systems.joint.trainer.fit`).
    fmri : bool
        Only rows with the fMRI term on (``alpha_fmri > 0``): the MEG-first epochs' loss
        leaves the fMRI out, so it is not comparable.

    Returns
    -------
    row : dict | None
        None when no row qualifies (no validation stories, or no epoch with fMRI).
    """
    rows = [h for h in history if math.isfinite(h.get("val_total", math.nan))
            and (not fmri or h.get("alpha_fmri", 0) > 0)]
    return min(rows, key=lambda h: h["val_total"], default=None)


@verbose
def select_source_fwhm(dataset, widths=SELECTION_WIDTHS, fit_config="demo", *, out,
                       device=None, verbose=None):
    """Pick the source layer's smoothing width by validation loss (no ground truth).

    Fits the joint model once per width, each on the training stories with the same seed and
    settings, and returns the width whose best epoch has the lowest validation loss. Each
    fit lives in ``out/fwhm-<w>mm/`` and resumes where it stopped, so an interrupted
    selection continues, and a finished one is read back without training.

    Parameters
    ----------
    dataset : Dataset | path-like
        A dataset store with ``train`` and ``val`` stories (and fMRI subjects, whose
        validation fMRI is what tells widths apart: MEG alone barely does).
    widths : sequence of float
        Candidate FWHMs in mm (0: the unsmoothed layer).
    fit_config : str | path-like | dict
        The training set-up (:func:`~neurofuse.systems.joint.trainer.load_fit_config`); its
        encoder's ``source_fwhm`` is replaced by each width (a ``'mixture'`` prior is
        replaced by the fixed one). Denoised fMRI targets (``fmri_denoise``) are computed
        once, in ``out``, and shared by every width (``'auto'`` picks the denoising with
        pilots of the unsmoothed layer).
    out : path-like
        Work folder (kept). ``out/selection.json`` holds the table and the choice.
    device : str | None
        Training device (see :func:`~neurofuse.training.device.select_device`).
    verbose : bool | str | None

    Returns
    -------
    best : float
        The chosen width in mm (0: no smoothing). Ties go to the first width given.
    table : list of dict
        One row per width, in the order given: ``fwhm``, ``val_total`` (its best epoch's
        validation loss), ``epoch``, ``val_meg_r``, ``val_fmri_r`` and ``model`` (the
        folder of the fitted model).
    """
    from ...data.store import read_dataset
    from .trainer import fit, load_fit_config

    if not hasattr(dataset, "splits"):
        dataset = read_dataset(dataset)
    widths = [_check_positive("widths", w, allow_zero=True) for w in widths]
    if not widths or len(set(widths)) != len(widths):
        raise ValueError(f"'widths' must hold distinct FWHMs in mm, got {widths!r}.")
    if not dataset.splits.get("val"):
        raise ValueError("select_source_fwhm compares validation losses, and the dataset has "
                         "no validation stories (split 'val'). Add some to the store.")
    train, encoder = load_fit_config(fit_config)
    encoder = {k: v for k, v in encoder.items() if not k.startswith("source_")
               or k == "source_init_scale"}
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    denoised = None
    if train.fmri_denoise != "none":
        from .denoising import fmri_targets

        _, denoised = fmri_targets(dataset, out, train, encoder_kwargs=encoder, device=device)
    has_fmri = any("fmri" in dataset.modalities(s) for s in dataset.subjects)
    table = []
    for width in widths:
        run = out / f"fwhm-{width:g}mm"
        logger.info("select_source_fwhm: fitting with source_fwhm = %g mm in %s", width, run)
        history = fit(dataset, run, train_config=train,
                      encoder_kwargs={**encoder, "source_fwhm": width or None},
                      denoised_fmri=denoised or None, resume=True, device=device)
        row = best_validation(history, fmri=has_fmri)
        if row is None:
            raise ValueError(f"The fit with source_fwhm = {width:g} mm in '{run}' has no "
                             "validation loss with the fMRI term on: train for more epochs "
                             "than TrainConfig.meg_first_epochs.")
        table.append({"fwhm": width, "val_total": row["val_total"], "epoch": int(row["epoch"]),
                      "val_meg_r": row.get("val_meg_r"), "val_fmri_r": row.get("val_fmri_r"),
                      "model": str(run / "model")})
        write_json(out / "selection.json", {"table": table, "best": None, "done": False},
                   what="source width selection")
    best = min(table, key=lambda r: r["val_total"])["fwhm"]
    write_json(out / "selection.json", {"table": table, "best": best, "done": True},
               what="source width selection")
    logger.info("select_source_fwhm: %g mm (validation losses: %s)", best,
                ", ".join(f"{r['fwhm']:g} mm {r['val_total']:.4f}" for r in table))
    return best, table
