"""Ridge encoding ceilings on a dataset store (paper §3): stacked ridge for MEG, delayed ridge
for fMRI.

:func:`fit_meg_ceiling` and :func:`fit_fmri_ceiling` return a :class:`RidgeCeiling` whose
``predict_story`` gives a story's predicted MEG ``(n_channels, n_times)`` or BOLD
``(n_sources, n_trs)`` (the latter also serves to denoise the training fMRI of the joint
model, paper §2.6 footnote 2). Story designs are streamed to the solver
(:func:`~neurofuse.baselines.ridge.solver.solve_stacked_ridge_cv`) chunk by chunk.

Memory. The paper's MEG ceiling (22 training stories of ~12 min at 50 Hz, ~790k samples;
word 768 + phoneme 44 + spectrogram 40 features x 31 delays = 26 412 columns) cannot hold its
design in memory (~84 GB in float32). Here memory depends on the widths ``p_k`` of the
feature spaces and the number of targets ``t``, never on the number of samples: about
``8 (n_folds + 4) (p_k^2 + p_k t)`` bytes per space, plus one chunk of ``_CHUNK`` delayed
rows. The raw word stream is still too wide for that (23 808 delayed columns: 4.5 GB of
float64 Gram per fold, ~30 GB in all, and ~1e14-flop eigendecompositions), so
:func:`fit_meg_ceiling` first projects every stream wider than ``n_components`` (default 64)
on its principal components fitted on the training stories -- a deviation from the paper,
which does not say how it handled the 768-d stream; ``n_components=None`` is exact.
Measured on 2 busy CPU cores (numpy backend): MEG, 306 sensors x 792k samples (22 stories),
widths (1984, 1364, 1240), 5 folds: 423 s, peak RSS 2.0 GiB; fMRI, 8196 sources x 1800 TRs,
852 x 4 columns, 5 folds: 87 s, peak RSS 3.2 GiB.
"""

from __future__ import annotations

import numpy as np

from ..._checks import _check_int, _check_option, _check_type
from ..._logging import logger, verbose
from ...stats import pca, pearson_r
from ...stimulus.delays import (
    _check_delays,
    _delayed_rows,
    _n_trs,
    delays_from_seconds,
    resample_to_tr,
)
from .estimators import BandedRidge, StackedRidge
from .solver import _CHUNK, DEFAULT_ALPHAS

MEG_DELAYS_S = tuple(round(0.02 * i, 2) for i in range(31))  # 0, 20, ..., 600 ms (paper §3)
FMRI_DELAYS_S = (2.0, 4.0, 6.0, 8.0)  # s (paper §3)


class _StoryDesign:
    """How one story's features become the per-space designs of a ceiling.

    ``spaces`` lists, per feature space, the streams (names) it concatenates; ``projections``
    maps a stream to ``(mean (F,), components (F, n_components))``; ``tr`` (if set) averages
    the features over TR windows before delaying.
    """

    def __init__(self, streams, spaces, delays, *, sfreq, tr=None, projections=None):
        self.streams = {k: tuple(v) for k, v in streams.items()}
        self.spaces = [list(s) for s in spaces]
        self.delays = _check_delays(delays)
        self.sfreq, self.tr = float(sfreq), None if tr is None else float(tr)
        self.projections = projections or {}

    def check(self, ds):
        if abs(ds.sfreq - self.sfreq) > 1e-9 * self.sfreq or (
                self.tr is not None and abs(ds.tr - self.tr) > 1e-9 * self.tr):
            raise ValueError(f"The ceiling was fitted at sfreq={self.sfreq:g} Hz"
                             f"{'' if self.tr is None else f', tr={self.tr:g} s'}; the dataset "
                             f"'{ds.path}' has sfreq={ds.sfreq:g} Hz, tr={ds.tr:g} s.")
        for name, span in self.streams.items():
            if tuple(ds.feature_streams.get(name, ())) != span:
                raise ValueError(f"The ceiling was fitted with feature stream {name!r} at "
                                 f"columns {span}; the dataset has {ds.feature_streams}.")

    def stream_matrix(self, ds, story, name):
        a, b = self.streams[name]
        f = np.asarray(ds.features(story)[:, a:b], dtype=np.float32)
        if self.tr is not None:
            f = resample_to_tr(f, ds.sfreq, ds.tr)
        if name in self.projections:
            mean, comps = self.projections[name]
            f = (f - mean) @ comps
        return f

    def matrices(self, ds, story):
        """Undelayed per-space matrices of a story, list of (n_rows, F_k)."""
        mats = []
        for names in self.spaces:
            parts = [self.stream_matrix(ds, story, n) for n in names]
            mats.append(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1))
        return mats

    def chunks(self, mats):
        n = mats[0].shape[0]
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            yield start, stop, [_delayed_rows(m, self.delays, start, stop) for m in mats]

    def widths(self):
        out = []
        for names in self.spaces:
            out.append(len(self.delays) * sum(
                self.projections[n][1].shape[1] if n in self.projections
                else self.streams[n][1] - self.streams[n][0] for n in names))
        return out


def _targets(ds, subject, modality, story) -> np.ndarray:
    """Repeat-averaged data of a story, (n_rows, n_targets) float32."""
    if modality in ("meg", "fmri"):
        data = ds.meg(subject, story, average=True) if modality == "meg" else \
            ds.fmri(subject, story, average=True)
    else:  # another sensor modality (EEG)
        data = ds.data(subject, modality, story, average=True)
    return np.ascontiguousarray(np.asarray(data, dtype=np.float32).T)


class _StorySource:
    def __init__(self, ds, subject, modality, stories, design):
        self.ds, self.subject, self.modality = ds, subject, modality
        self.keys, self.design = list(stories), design
        self._n = {}

    def n_rows(self, key):
        if key not in self._n:
            n = self.ds.n_times(key)
            if self.design.tr is not None:
                n = _n_trs(n, self.ds.sfreq, self.ds.tr)
            self._n[key] = n
        return self._n[key]

    def chunks(self, key, with_y=True):
        mats = self.design.matrices(self.ds, key)
        Y = _targets(self.ds, self.subject, self.modality, key) if with_y else None
        if Y is not None and Y.shape[0] != mats[0].shape[0]:
            raise ValueError(f"Story {key!r}: the {self.modality} of {self.subject!r} has "
                             f"{Y.shape[0]} samples but the features give {mats[0].shape[0]}; "
                             "the dataset is inconsistent.")
        for start, stop, Xs in self.design.chunks(mats):
            yield Xs, (Y[start:stop] if Y is not None else None)


class RidgeCeiling:
    """A fitted single-subject, single-modality ridge ceiling (paper §3).

    Returned by :func:`fit_meg_ceiling` and :func:`fit_fmri_ceiling`; not built directly.

    Attributes
    ----------
    modality : str
        ``"meg"``, ``"eeg"`` or ``"fmri"``.
    subject : str
    stories : list of str
        Stories the model was fitted on.
    model : StackedRidge | BandedRidge
        The fitted regression on the delayed designs.
    delays : array of int, shape (n_delays,)
        Delays in samples at ``sfreq`` (MEG) or in TRs (fMRI).
    """

    def __init__(self, *, modality, subject, stories, design, model):
        self.modality, self.subject, self.stories = modality, subject, list(stories)
        self._design, self.model = design, model
        self.delays = design.delays

    def __repr__(self):
        return (f"<RidgeCeiling {self.modality} | {self.subject}, {len(self.stories)} training "
                f"stories, {self.n_targets} targets, spaces {self.feature_spaces}>")

    @property
    def n_targets(self) -> int:
        return int(self.model.coefs_[0].shape[1])

    @property
    def feature_spaces(self) -> list:
        """Feature spaces as lists of stream names (MEG: one per stream; fMRI: all in one)."""
        return [list(s) for s in self._design.spaces]

    def design_matrices(self, ds, story) -> list:
        """Delayed per-space designs of a story, list of array (n_rows, p_k)."""
        self._design.check(ds)
        mats = self._design.matrices(ds, story)
        return [_delayed_rows(m, self._design.delays, 0, m.shape[0]) for m in mats]

    def predict_story(self, ds, story) -> np.ndarray:
        """Predict one story.

        Parameters
        ----------
        ds : Dataset
            A dataset with the same sampling, TR and feature streams as the training one.
        story : str

        Returns
        -------
        pred : array, shape (n_channels, n_times) for MEG or (n_sources, n_trs) for fMRI
        """
        self._design.check(ds)
        mats = self._design.matrices(ds, story)
        out = np.empty((mats[0].shape[0], self.n_targets))
        for start, stop, Xs in self._design.chunks(mats):
            out[start:stop] = self.model.predict(Xs)
        return out.T

    def evaluate_story(self, ds, story) -> np.ndarray:
        """Pearson r per target between prediction and repeat-averaged data of one story."""
        pred = self.predict_story(ds, story)
        return pearson_r(pred.T, _targets(ds, self.subject, self.modality, story), axis=0)

    def evaluate(self, ds, stories=None) -> np.ndarray:
        """Pearson r per target over the concatenation of held-out stories.

        Parameters
        ----------
        ds : Dataset
        stories : list of str | None
            Default: the subject's test stories.

        Returns
        -------
        r : array, shape (n_targets,)
        """
        if stories is None:
            stories = [s for s in ds.splits.get("test", [])
                       if ds.has(self.subject, self.modality, s)]
            if not stories:
                raise ValueError(f"Subject {self.subject!r} has no {self.modality} test "
                                 "stories; pass stories=[...].")
        Y = np.concatenate([_targets(ds, self.subject, self.modality, s) for s in stories])
        P = np.concatenate([self.predict_story(ds, s).T for s in stories])
        return pearson_r(P, Y, axis=0)


def _fit_stories(ds, subject, modality, stories):
    _check_option("subject", subject, ds.subjects)
    if modality not in ds.modalities(subject):
        raise ValueError(f"Subject {subject!r} has no {modality} data (it has "
                         f"{ds.modalities(subject)}); pick a {modality} subject.")
    if stories is None:
        splits = ds.splits
        stories = [s for split in ("train", "val") for s in splits.get(split, [])
                   if ds.has(subject, modality, s)]
    else:
        stories = list(_check_type("stories", stories, (list, tuple)))
        for s in stories:
            if not ds.has(subject, modality, s):
                raise ValueError(f"Subject {subject!r} has no {modality} data for story {s!r}.")
    if len(stories) < 2:
        raise ValueError(f"The {modality} ceiling of {subject!r} needs at least 2 training "
                         f"stories for cross-validation, got {stories}.")
    return stories


def _fit_projections(ds, stories, streams, n_components, tr=None):
    """PCA of each stream wider than ``n_components`` on the training stories."""
    if n_components is None:
        return {}
    n_components = _check_int("n_components", n_components, 1,
                              how_to_fix="Pass None to keep every stream at full width.")
    out = {}
    for name, (a, b) in streams.items():
        width = b - a
        if width <= n_components:
            continue
        blocks = (np.asarray(ds.features(story)[:, a:b], dtype=np.float64) for story in stories)
        if tr is not None:
            blocks = (resample_to_tr(f, ds.sfreq, tr) for f in blocks)
        res = pca(blocks, n_components)
        explained = res.explained_variance.sum() / max(res.total_variance, 1e-300)
        logger.info("Stream %r: %d -> %d principal components (%.1f%% of the variance).",
                    name, width, n_components, 100 * explained)
        out[name] = (res.mean.astype(np.float32), res.components.astype(np.float32))
    return out


@verbose
def fit_meg_ceiling(ds, subject, *, delays_s=MEG_DELAYS_S, stories=None,
                    streams=None, n_components=64, alphas=DEFAULT_ALPHAS, cv=None,
                    banded=False, n_iter=20, n_targets_batch=None, backend=None,
                    modality="meg", verbose=None) -> RidgeCeiling:
    """Fit the MEG ridge ceiling of one subject: stacked ridge per sensor (paper §3).

    Each feature stream is delayed by ``delays_s`` (0, 20, ..., 600 ms) and forms one feature
    space; a ridge per space (per-sensor alpha by cross-validation over stories) is stacked
    with per-sensor convex weights learned on held-out predictions (Lin et al., 2024).

    Parameters
    ----------
    ds : Dataset
        From :func:`neurofuse.data.read_dataset`.
    subject : str
        A subject with MEG.
    delays_s : array-like of float
        Delays in s; whole samples at ``ds.sfreq``.
    stories : list of str | None
        Training stories; default: the subject's train and val stories.
    streams : list of str | None
        Feature streams to use (one space each); default: all of ``ds.feature_streams``.
    n_components : int | None
        Streams wider than this are projected on their first principal components (fitted on
        the training stories) before delaying; ``None`` keeps every feature (memory grows as
        ``(n_features * n_delays)^2``).
    alphas : array, shape (n_alphas,)
    cv : None | int | "stories"
        Folds over stories (None: ``min(5, n_stories)``).
    banded : bool
        Use :class:`BandedRidge` (himalaya's banded ridge) instead of stacking: designs are
        held in memory and the solver needs ``8 n_val n_train`` bytes, so only for short
        recordings.
    n_iter : int
        Random band scalings tried when ``banded``.
    n_targets_batch : int | None
    backend : None | "numpy" | "torch" | "torch_cuda"
    modality : 'meg' | 'eeg'
        The sensor modality to fit (EEG is fitted exactly like MEG).
    verbose : bool | str | None

    Returns
    -------
    ceiling : RidgeCeiling
        ``ceiling.predict_story(ds, story)`` has shape (n_channels, n_times).
    """
    _check_option("modality", modality, ["meg", "eeg"])
    return _fit_ceiling(ds, subject, modality, delays_s=delays_s, stories=stories, streams=streams,
                        n_components=n_components, alphas=alphas, cv=cv, banded=banded,
                        n_iter=n_iter, n_targets_batch=n_targets_batch, backend=backend)


@verbose
def fit_fmri_ceiling(ds, subject, *, delays_s=FMRI_DELAYS_S, stories=None, streams=None,
                     n_components=None, alphas=DEFAULT_ALPHAS, cv=None, n_targets_batch=None,
                     backend=None, verbose=None) -> RidgeCeiling:
    """Fit the fMRI ridge ceiling of one subject: one delayed ridge per source (paper §3).

    The feature streams are averaged over each TR window, concatenated, delayed by
    ``delays_s`` (2, 4, 6, 8 s) and regressed on the repeat-averaged BOLD of every source with
    a per-source alpha chosen by cross-validation over stories. Its predictions of the
    training stories can denoise the training fMRI of the joint model (paper §2.6).

    Parameters
    ----------
    ds : Dataset
    subject : str
        A subject with fMRI.
    delays_s : array-like of float
        Delays in s; whole TRs.
    stories, streams, n_components, alphas, cv, n_targets_batch, backend, verbose
        As in :func:`fit_meg_ceiling` (here all streams form one space and no PCA is done by
        default).

    Returns
    -------
    ceiling : RidgeCeiling
        ``ceiling.predict_story(ds, story)`` has shape (n_sources, n_trs).
    """
    return _fit_ceiling(ds, subject, "fmri", delays_s=delays_s, stories=stories,
                        streams=streams, n_components=n_components, alphas=alphas, cv=cv,
                        banded=False, n_iter=None, n_targets_batch=n_targets_batch,
                        backend=backend)


def _make_design(ds, modality, stories, *, delays_s, streams, n_components):
    """The per-story design of a ceiling (streams, TR averaging, PCA on ``stories``' features)."""
    all_streams = dict(ds.feature_streams)
    if streams is None:
        streams = list(all_streams)
    else:
        streams = list(_check_type("streams", streams, (list, tuple)))
        for s in streams:
            _check_option("streams", s, list(all_streams))
    chosen = {s: all_streams[s] for s in streams}
    tr = ds.tr if modality == "fmri" else None
    delays = delays_from_seconds(delays_s, 1.0 / tr if tr else ds.sfreq)
    projections = _fit_projections(ds, stories, chosen, n_components, tr=tr)
    spaces = [[s] for s in streams] if modality != "fmri" else [streams]
    return _StoryDesign(chosen, spaces, delays, sfreq=ds.sfreq, tr=tr, projections=projections)


def _fit_ceiling(ds, subject, modality, *, delays_s, stories, streams, n_components, alphas,
                 cv, banded, n_iter, n_targets_batch, backend):
    stories = _fit_stories(ds, subject, modality, stories)
    design = _make_design(ds, modality, stories, delays_s=delays_s, streams=streams,
                          n_components=n_components)
    spaces = design.spaces
    delays = design.delays
    source = _StorySource(ds, subject, modality, stories, design)
    logger.info("%s ceiling of %s: %d stories, delays %s, design widths %s.", modality.upper(),
                subject, len(stories), delays.tolist(), design.widths())
    if banded:
        Xs = [[] for _ in spaces]
        Ys, groups = [], []
        for story in stories:
            for X_chunk, Y_chunk in source.chunks(story):
                for k, X in enumerate(X_chunk):
                    Xs[k].append(X)
                Ys.append(Y_chunk)
                groups.extend([story] * Y_chunk.shape[0])
        model = BandedRidge(alphas, n_iter=n_iter, cv=cv, n_targets_batch=n_targets_batch,
                            backend=backend).fit([np.concatenate(x) for x in Xs],
                                                 np.concatenate(Ys), np.asarray(groups))
    else:
        model = StackedRidge(alphas, cv=cv, n_targets_batch=n_targets_batch, backend=backend)
        model.fit_source(source, len(spaces))
    return RidgeCeiling(modality=modality, subject=subject, stories=stories, design=design,
                        model=model)


__all__ = [
    "FMRI_DELAYS_S",
    "MEG_DELAYS_S",
    "RidgeCeiling",
    "fit_fmri_ceiling",
    "fit_meg_ceiling",
]
