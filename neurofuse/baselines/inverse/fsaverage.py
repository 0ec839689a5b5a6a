"""Source-space maps: subject ↔ fsaverage for estimates and for the fMRI prior's BOLD."""

from __future__ import annotations

import numpy as np

from ..._checks import _check_finite, _check_ndim
from ..._logging import logger
from ._common import _check_chunk_size, _make_out


def fsaverage_map(morph):
    """Subject → fsaverage map: the transpose of the fsaverage → subject morph, row-normalised.

    Each fsaverage source becomes the weighted average of the subject sources that the morph
    builds from it (weights ``M[i, j] / sum_i M[i, j]``).

    Parameters
    ----------
    morph : scipy.sparse matrix, shape (n_sources, n_sources_fsaverage)
        fsaverage → subject morph (``ds.morph(subject)``).

    Returns
    -------
    to_fsaverage : scipy.sparse.csr_array, shape (n_sources_fsaverage, n_sources)
        Rows sum to 1; an fsaverage source no subject source draws from gets a zero row (and a
        warning).
    """
    import scipy.sparse

    if not scipy.sparse.issparse(morph):
        raise TypeError("'morph' must be a scipy.sparse matrix (n_sources, n_sources_fsaverage), "
                        f"got {type(morph).__name__}.")
    mt = scipy.sparse.csr_array(morph, dtype=np.float64).T.tocsr()  # (n_fs, n_sources)
    _check_finite("morph", mt.data)
    sums = np.asarray(mt.sum(axis=1)).ravel()
    empty = sums <= 0
    if empty.any():
        logger.warning("%d of %d fsaverage sources receive nothing from the subject's sources; "
                       "their estimate is 0.", int(empty.sum()), len(sums))
    inv = np.where(empty, 0.0, 1.0 / np.where(empty, 1.0, sums))
    return scipy.sparse.csr_array(scipy.sparse.diags_array(inv) @ mt)


def estimate_to_fsaverage(estimate, morph, *, chunk_size=4096, out=None):
    """Move a subject-space source estimate to fsaverage with :func:`fsaverage_map`.

    Parameters
    ----------
    estimate : array, shape (n_sources, n_times)
        On the subject's sources (may be a memmap).
    morph : scipy.sparse matrix, shape (n_sources, n_sources_fsaverage)
        The subject's fsaverage → subject morph (``ds.morph(subject)``).
    chunk_size : int
        Time samples per chunk.
    out : array, shape (n_sources_fsaverage, n_times) | None
        Where to write; None allocates float32.

    Returns
    -------
    estimate_fsaverage : array, shape (n_sources_fsaverage, n_times)
    """
    estimate = estimate if hasattr(estimate, "shape") else np.asarray(estimate)
    estimate = _check_ndim("estimate", estimate, 2, "(n_sources, n_times)") \
        if estimate.ndim != 2 else estimate
    to_fs = fsaverage_map(morph)
    if to_fs.shape[1] != estimate.shape[0]:
        raise ValueError(
            f"Morph vs source-space mismatch: 'morph' has shape {tuple(morph.shape)} but "
            f"'estimate' has {estimate.shape[0]} sources (expected ({estimate.shape[0]}, "
            "n_sources_fsaverage)). Use the morph of the subject the estimate belongs to.")
    chunk_size = _check_chunk_size(chunk_size)
    n_times = estimate.shape[1]
    out = _make_out(out, to_fs.shape[0], n_times)
    for a in range(0, n_times, chunk_size):
        out[:, a:a + chunk_size] = to_fs @ np.asarray(estimate[:, a:a + chunk_size], np.float64)
    return out


def bold_to_subject(bolds, fmri_morphs, meg_morph) -> np.ndarray:
    """Average the BOLD of fMRI subjects on fsaverage and morph it to the MEG subject.

    ``bold_meg = M_meg @ mean_s(F_s @ bold_s)`` with ``F_s = fsaverage_map(M_s)``. The raw
    BOLD units are averaged (fine when subjects share units, as in the simulation; z-score
    real data per subject first); :func:`fmri_prior` normalises per TR afterwards. An fMRI
    subject that is also the MEG subject goes through fsaverage too (a slight smoothing).

    Parameters
    ----------
    bolds : list of array, shape (n_sources_s, n_trs)
        Source-level BOLD of each fMRI subject (e.g. ``ds.fmri(s, story, average=True)``).
    fmri_morphs : list of scipy.sparse matrix, shape (n_sources_s, n_sources_fsaverage)
        Their fsaverage → subject morphs (``ds.morph(s)``).
    meg_morph : scipy.sparse matrix, shape (n_sources_meg, n_sources_fsaverage)
        The MEG subject's fsaverage → subject morph.

    Returns
    -------
    bold : array, shape (n_sources_meg, n_trs), float64
    """
    if not isinstance(bolds, (list, tuple)) or not isinstance(fmri_morphs, (list, tuple)):
        raise TypeError("'bolds' and 'fmri_morphs' must be lists (one entry per fMRI subject).")
    if not bolds or len(bolds) != len(fmri_morphs):
        raise ValueError(f"'bolds' and 'fmri_morphs' must be non-empty and of equal length, "
                         f"got {len(bolds)} and {len(fmri_morphs)}.")
    n_fs = meg_morph.shape[1]
    acc, n_trs = None, None
    for s, (bold, morph) in enumerate(zip(bolds, fmri_morphs)):
        bold = _check_ndim(f"bolds[{s}]", np.asarray(bold, np.float64), 2, "(n_sources, n_trs)")
        _check_finite(f"bolds[{s}]", bold)
        if tuple(morph.shape) != (bold.shape[0], n_fs):
            raise ValueError(
                f"Morph vs source-space mismatch: fmri_morphs[{s}] has shape "
                f"{tuple(morph.shape)} but bolds[{s}] has {bold.shape[0]} sources and fsaverage "
                f"{n_fs} (expected ({bold.shape[0]}, {n_fs})). Pass each subject's own morph.")
        if n_trs is not None and bold.shape[1] != n_trs:
            raise ValueError(f"bolds[{s}] has {bold.shape[1]} volumes but bolds[0] has {n_trs}: "
                             "pass the BOLD of the same story for every subject.")
        n_trs = bold.shape[1]
        fs = fsaverage_map(morph) @ bold  # (n_fs, n_trs)
        acc = fs if acc is None else acc + fs
    import scipy.sparse

    return np.asarray(scipy.sparse.csr_array(meg_morph, dtype=np.float64) @ (acc / len(bolds)))
