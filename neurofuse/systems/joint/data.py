"""Training pieces from a dataset store (paper §2.6): 40-s pieces, loss on the last 20 s.

A *piece* is a window of one story: ``piece_seconds`` of stimulus features, and for every
subject that heard the story its MEG and EEG (averaged over repeats) and fMRI over the window. The
loss is computed on the last ``loss_seconds`` only, so every prediction has seen at least
``piece_seconds - loss_seconds`` of past stimulus. Pieces start every ``loss_seconds`` so each
stretch of a story after its first ``piece_seconds - loss_seconds`` is scored exactly once
(as in the paper, the opening of each story only serves as context).

Pieces are read lazily from the memory-mapped store, so an epoch never loads the study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..._checks import _check_option, _check_positive
from ..._logging import logger
from ...data.repeatability import repeatability


@dataclass(frozen=True)
class Piece:
    """One training window.

    Attributes
    ----------
    story : str
    start : int
        First sample of the window (at ``sfreq``); a multiple of the TR in samples.
    n_times : int
        Window length in samples.
    loss_start : int
        First sample, relative to ``start``, that counts in the loss.
    """

    story: str
    start: int
    n_times: int
    loss_start: int


def make_pieces(dataset, stories, *, piece_seconds=40.0, loss_seconds=20.0):
    """All pieces of ``stories``.

    Parameters
    ----------
    dataset : neurofuse.data.store.Dataset
    stories : list of str
    piece_seconds, loss_seconds : float
        Both must be whole numbers of TRs when a subject has fMRI, of samples otherwise.

    Returns
    -------
    pieces : list of Piece
    """
    sfreq = dataset.sfreq
    # Pieces are whole TRs when some subject has fMRI (its targets are per TR); a MEG-only
    # store needs only whole samples.
    has_fmri = dataset.tr is not None and any(
        "fmri" in dataset.modalities(s) for s in dataset.subjects)
    tr, unit = (dataset.tr, "TRs") if has_fmri else (1.0 / sfreq, "samples")
    _check_positive("piece_seconds", piece_seconds)
    _check_positive("loss_seconds", loss_seconds)
    if loss_seconds > piece_seconds:
        raise ValueError(f"loss_seconds ({loss_seconds}) must not exceed piece_seconds "
                         f"({piece_seconds}).")
    for name, val in (("piece_seconds", piece_seconds), ("loss_seconds", loss_seconds)):
        n_tr = val / tr
        if abs(n_tr - round(n_tr)) > 1e-9:
            raise ValueError(f"'{name}' must be a whole number of {unit} ({tr:g} s), got "
                             f"{val:g} s.")
    n_piece = int(round(piece_seconds * sfreq))
    n_loss = int(round(loss_seconds * sfreq))
    n_tr = int(round(tr * sfreq))
    pieces = []
    for story in stories:
        n_times = (dataset.n_times(story) // n_tr) * n_tr  # whole TRs (or samples) only
        if n_times < n_piece:
            logger.warning("Story %s (%.2f s, %d whole %s of %g s) is shorter than one piece "
                           "(%g s); skipped.", story, dataset.n_times(story) / sfreq,
                           n_times // n_tr, unit, tr, piece_seconds)
            continue
        pieces.append(Piece(story, 0, n_piece, n_piece - n_loss))
        end = n_piece
        while end + n_loss <= n_times:
            end += n_loss
            pieces.append(Piece(story, end - n_piece, n_piece, n_piece - n_loss))
        if end < n_times:  # the tail that is shorter than a loss window
            pieces.append(Piece(story, n_times - n_piece, n_piece, n_piece - (n_times - end)))
    return pieces


def loss_weights(dataset, subject, modality, *, stories=None, mode="repeatability"):
    """Per-target loss weights for one subject and modality, summing to 1.

    Parameters
    ----------
    dataset : Dataset
    subject : str
    modality : 'meg' | 'eeg' | 'fmri'
    stories : list of str | None
        Repeated stories to compute the repeatability from. ``None``: the repeatability
        stored with the data (:meth:`Dataset.repeatability`) if there is one, otherwise the
        subject's repeated anchor and validation stories (never the test stories).
    mode : 'repeatability' | 'uniform'

    Returns
    -------
    w : array, shape (n_targets,)
        Repeatability (clipped at 0) normalised to sum 1; uniform when no target is repeatable.
    """
    _check_option("mode", mode, ["repeatability", "uniform"])
    stored = None
    if mode == "repeatability" and stories is None and hasattr(dataset, "repeatability"):
        stored = dataset.repeatability(subject, modality)
    if stored is not None:
        r = np.clip(np.asarray(stored, np.float64), 0.0, None)
        if not np.any(r > 0):
            logger.warning("The stored %s repeatability of %s is 0 everywhere; using uniform "
                           "loss weights.", modality, subject)
            return np.full(r.size, 1.0 / r.size)
        return r / r.sum()
    getter = _getter(dataset, modality)
    if stories is None:
        stories = [s for split in ("anchor", "val") for s in dataset.splits.get(split, [])
                   if dataset.has(subject, modality, s)]
    stories = [s for s in stories if getter(subject, s).shape[0] >= 2]
    n_targets = getter(subject, dataset.subject_stories(subject, modality)[0]).shape[1]
    if mode == "uniform" or not stories:
        if mode == "repeatability":
            logger.warning("No repeated anchor/validation story for %s %s: uniform loss weights.",
                           subject, modality)
        return np.full(n_targets, 1.0 / n_targets)
    r = np.mean([repeatability(getter(subject, s)) for s in stories], axis=0)
    if not np.any(r > 0):
        logger.warning("No %s target of %s is repeatable; using uniform loss weights.", modality,
                       subject)
        return np.full(n_targets, 1.0 / n_targets)
    return r / r.sum()


def _getter(dataset, modality):
    """``getter(subject, story)`` -> (n_repeats, n_targets, n_times) of a modality."""
    if modality == "meg":
        return dataset.meg
    if modality == "fmri":
        return dataset.fmri
    return lambda subject, story: dataset.data(subject, modality, story)


class PieceLoader:
    """Batches of pieces, shuffled per epoch with a seeded generator.

    Parameters
    ----------
    dataset : Dataset
    pieces : list of Piece
    batch_size : int
    shuffle : bool
    seed : int
        Shuffling seed; epoch ``e`` uses ``(seed, e)`` so resuming reproduces the order.
    rank, world_size : int
        For data-parallel training: each rank takes every ``world_size``-th piece of the
        global batch (the global batch is ``batch_size`` pieces). Every rank yields every
        batch, so all ranks make the same number of backward passes; see :meth:`epoch`.
    meg_subjects, fmri_subjects, eeg_subjects : list of str
        Whose targets to load.
    fmri_targets : dict | None
        ``{subject: {story: array (n_sources, n_trs)}}`` replacing the recorded fMRI of those
        stories as targets (paper footnote 2: training fMRI denoised by a ridge model's
        predictions). Stories not in it use the recorded data.
    """

    def __init__(self, dataset, pieces, *, batch_size=8, shuffle=True, seed=0, rank=0,
                 world_size=1, meg_subjects=(), fmri_subjects=(), fmri_targets=None,
                 eeg_subjects=()):
        if batch_size % world_size:
            raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of "
                             f"processes ({world_size}).")
        self.dataset, self.pieces = dataset, list(pieces)
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.meg_subjects, self.fmri_subjects = list(meg_subjects), list(fmri_subjects)
        self.eeg_subjects = list(eeg_subjects)
        self.fmri_targets = _check_fmri_targets(dataset, fmri_targets or {})
        self.samples_per_tr = int(round(dataset.tr * dataset.sfreq))
        # One scale per subject and modality so targets are O(1) numbers (r is scale-free).
        self.scales = {}
        for kind, subs in (("meg", self.meg_subjects), ("fmri", self.fmri_subjects),
                           ("eeg", self.eeg_subjects)):
            getter = _getter(dataset, kind)
            for sub in subs:
                first = getter(sub, dataset.subject_stories(sub, kind)[0])[0]
                self.scales[(kind, sub)] = 1.0 / max(float(np.std(first)), 1e-300)

    def __len__(self):
        return math.ceil(len(self.pieces) / self.batch_size)

    def epoch(self, epoch: int):
        """Yield the batches of one epoch (dicts, see :meth:`load`).

        Each batch also holds ``n_real``, the number of this rank's pieces in it, and
        ``weight = n_real * world_size / n_global``: a loss that is the mean over this rank's
        pieces, multiplied by ``weight`` and averaged over ranks (as DDP averages gradients),
        is the mean over the global batch, also when a short last batch does not split
        evenly. A rank left without a piece of a short last batch still yields it (DDP needs
        the same number of backward passes on every rank), with a stand-in piece,
        ``n_real = 0`` and ``weight = 0``.
        """
        order = np.arange(len(self.pieces))
        if self.shuffle:
            np.random.default_rng([self.seed, epoch]).shuffle(order)
        for b0 in range(0, len(order), self.batch_size):
            glob = order[b0:b0 + self.batch_size]
            idx = glob[self.rank::self.world_size]
            batch = self.load([self.pieces[i] for i in (idx if len(idx) else glob[:1])])
            batch["n_real"] = len(idx)
            batch["weight"] = len(idx) * self.world_size / len(glob)
            yield batch

    def _fmri(self, sub, piece, n):
        """fMRI target (n_sources, n_trs) of one piece: replacement or repeat-averaged data."""
        start, length = piece.start // n, piece.n_times // n
        override = self.fmri_targets.get(sub, {}).get(piece.story)
        if override is not None:
            return np.asarray(override[:, start:start + length], np.float64)
        return _mean_repeats(self.dataset.fmri(sub, piece.story), start, length)

    def load(self, pieces):
        """Read a list of pieces of equal length.

        Returns
        -------
        batch : dict
            ``features`` (B, T, d_stim) float32; ``loss_start`` (B,) int; ``meg``
            {subject: (array (B_s, T, n_ch), index (B_s,))}: the pieces that subject heard,
            averaged over repeats, with their positions in the batch; ``fmri`` likewise with
            arrays (B_s, T // samples_per_tr, n_src); ``eeg`` like ``meg`` (only when the
            loader has EEG subjects).
        """
        ds = self.dataset
        feats = np.stack([np.asarray(ds.features(p.story)[p.start:p.start + p.n_times])
                          for p in pieces]).astype(np.float32)
        batch = {"features": feats, "loss_start": np.array([p.loss_start for p in pieces]),
                 "meg": {}, "fmri": {}}
        for sub in self.meg_subjects:
            rows = [i for i, p in enumerate(pieces) if ds.has(sub, "meg", p.story)]
            if rows:
                arr = np.stack([_mean_repeats(ds.meg(sub, pieces[i].story), pieces[i].start,
                                              pieces[i].n_times).T for i in rows])
                batch["meg"][sub] = ((arr * self.scales[("meg", sub)]).astype(np.float32),
                                     np.array(rows))
        if self.eeg_subjects:
            batch["eeg"] = {}
        for sub in self.eeg_subjects:
            rows = [i for i, p in enumerate(pieces) if ds.has(sub, "eeg", p.story)]
            if rows:
                arr = np.stack([_mean_repeats(ds.data(sub, "eeg", pieces[i].story),
                                              pieces[i].start, pieces[i].n_times).T
                                for i in rows])
                batch["eeg"][sub] = ((arr * self.scales[("eeg", sub)]).astype(np.float32),
                                     np.array(rows))
        n = self.samples_per_tr
        for sub in self.fmri_subjects:
            rows = [i for i, p in enumerate(pieces) if ds.has(sub, "fmri", p.story)]
            if rows:
                arr = np.stack([self._fmri(sub, pieces[i], n).T for i in rows])
                batch["fmri"][sub] = ((arr * self.scales[("fmri", sub)]).astype(np.float32),
                                      np.array(rows))
        return batch


def _check_fmri_targets(dataset, targets):
    """Validate replacement fMRI targets against the dataset's shapes."""
    for sub, stories in targets.items():
        for story, arr in stories.items():
            if not dataset.has(sub, "fmri", story):
                raise ValueError(f"fmri_targets has {sub!r}/{story!r}, which the dataset has no "
                                 "fMRI for.")
            expected = dataset.fmri(sub, story).shape[1:]
            if np.shape(arr) != expected:
                raise ValueError(f"fmri_targets[{sub!r}][{story!r}] must have shape {expected} "
                                 f"(n_sources, n_trs) like the recorded fMRI, got {np.shape(arr)}.")
    return targets


def _mean_repeats(mm, start, length):
    """Mean over repeats of ``mm[:, :, start:start + length]`` -> (n_targets, length)."""
    return np.asarray(mm[:, :, start:start + length], np.float64).mean(0)
