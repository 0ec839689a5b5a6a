"""Decoding with feature engineering + SVM (paper §III-C, Figs. 5-6, Table I).

The paper decodes the task classes from EEG, EEG + synthetic MEG and EEG + real MEG with "a
classic decoding pipeline combining feature engineering and support vector machines", scored
by 10 runs of 10-fold cross-validation (accuracy, precision, recall, F1; medians). It does not
give the features; ours (:func:`extract_features`), per modality and per channel:

* **log band power** in each band (:data:`~.signal_metrics.BANDS`, δ to γ): Welch's PSD
  (:func:`scipy.signal.welch`, Hann windows of ``welch_seconds`` (default 1 s, or the whole
  epoch if shorter), 50 % overlap, constant detrend), averaged over the frequency bins ``lo <= f
  < hi`` of the band (the last band also takes ``f == hi``; a band above Nyquist is cut at
  Nyquist), then ``log10`` — the induced, oscillatory part (e.g. beta suppression);
* **time-window means** of the signal: the epoch cut into consecutive windows of
  ``window_seconds`` (default 12 ms: 3 samples at 250 Hz, the time course boxcar-smoothed and
  resampled at ~83 Hz), or into ``n_windows`` windows of (nearly) equal length, the mean of
  each — the evoked-like, phase-locked part (e.g. a latency-jittered N170 or S1 response).
  The windows must be short: the early S1 components (N20, P35, N60) alternate in sign
  within 40 ms, and 100-ms windows (the earlier default of ten per epoch) average them away.

Each family of each modality (EEG power, EEG windows, MEG power, MEG windows) is one *block*
of columns. After standardisation every block is scaled by ``1 / sqrt(block size)``, so each
block weighs the same in the linear kernel (the sum of one linear kernel per block):
otherwise thousands of window means swamp a few hundred band powers, and 306 MEG channels
swamp 70 EEG channels. Blocks are weighted when the caller says which columns form them
(``groups``; :func:`compare_decoding` and the pipeline do).

Measured on the world's ``demo`` preset (one subject on the template head, 60 trials per
class, 1-s epochs, one run of 10-fold CV; ten 100-ms windows unweighted → 12-ms windows
unweighted → 12-ms windows, blocks weighted): somatomotor EEG 0.76 → 0.85 → 0.82, real MEG
0.64 → 0.72 → 0.73; faces EEG 0.46 → 0.49 → 0.54, MEG 0.78 → 0.73 → 0.80; motor imagery EEG
0.88 → 0.70 → 0.89. A plain ``Vectorizer() → StandardScaler() → LinearSVC()`` on the raw
epochs is not better (20 trials per class: somatomotor EEG 0.72, MEG 0.68; faces 0.48, 0.53;
motor imagery 0.48). On the ``tiny`` preset's 0.6-s epochs the somatomotor sets decode best
with 12-ms windows unweighted (EEG 0.70, MEG 0.75 vs 0.58, 0.55 weighted): so short an epoch
holds little of the beta rebound, and weighting gives its band powers the same say.

That is ``n_channels * (n_bands + n_windows)`` features per modality, concatenated across
modalities (EEG, then MEG). Each feature is computed from one trial alone (no statistics across
trials), so computing them once before the cross-validation leaks nothing; everything that
*learns* — the :class:`~sklearn.preprocessing.StandardScaler` (which also equalises the units
of EEG, gradiometers and magnetometers) and the :class:`~sklearn.svm.SVC` — sits in one
:class:`~sklearn.pipeline.Pipeline` that is cloned and fitted on the training trials of each
fold only (:func:`make_decoder`).

Cross-validation (:func:`cross_validate_svm`): for run ``k`` in ``0 .. n_runs - 1``,
``StratifiedKFold(n_splits, shuffle=True, random_state=seed + k)``; each trial is tested exactly
once per run. Precision, recall and F1 are macro averages over classes (a class never predicted
counts 0, ``zero_division=0``). :func:`compare_decoding` runs the three conditions of Fig. 5 on
the *same* folds, so their scores are paired.

What is reported (:meth:`DecodingScores.summary`): with a few dozen trials a test fold holds
4–6 trials, so a fold's accuracy moves in steps of 0.17–0.25 and the median over folds (the
paper's statistic, kept in :meth:`DecodingScores.median`) is coarse. The summary instead pools
each run's predictions — every trial is predicted once per run, by a model that never saw it —
into one accuracy and macro F1 per run and averages them over runs; beside them the chance
level (the largest class's share, 1/K for balanced classes) and the one-sided exact binomial
p-value of the median run's number of correct predictions against chance
(:func:`binomial_p_value`; Combrisson & Jerbi 2015, J Neurosci Methods 250:126). Trials of
independent subjects add up: :func:`binomial_p_value` of the summed counts is the pooled test.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ..._checks import _check_finite, _check_int, _check_option, _check_positive, _check_type
from ..._logging import logger, verbose
from .signal_metrics import BANDS

__all__ = [
    "CONDITIONS", "DecodingScores", "SCORES", "binomial_p_value", "block_weights",
    "compare_decoding",
    "cross_validate_svm", "extract_features", "make_decoder",
]

#: The scores of every fold, in the order of Fig. 5.
SCORES = ("accuracy", "precision", "recall", "f1")
#: The conditions of :func:`compare_decoding` (Fig. 5).
CONDITIONS = ("eeg", "eeg+synthetic_meg", "eeg+real_meg")


def _check_epochs(name, x):
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"'{name}' must have shape (n_epochs, n_channels, n_times) (3-D), got "
                         f"shape {x.shape}.")
    return np.asarray(_check_finite(name, x), dtype=np.float64)


def _band_bins(freqs, bands, sfreq, n_times):
    """Boolean masks of the Welch bins of each band (cut at Nyquist)."""
    nyq = sfreq / 2.0
    names = list(bands)
    masks = []
    for i, name in enumerate(names):
        lo, hi = bands[name]
        lo = 0.0 if lo is None else float(lo)
        hi = nyq if hi is None else min(float(hi), nyq)
        last = i == len(names) - 1 or hi >= nyq
        mask = (freqs >= lo) & ((freqs <= hi) if last else (freqs < hi))
        if not mask.any():
            raise ValueError(
                f"Band {name!r} ({lo:g}-{hi:g} Hz) holds no Welch frequency bin (resolution "
                f"{freqs[1] - freqs[0]:g} Hz, Nyquist {nyq:g} Hz, {n_times} samples per epoch): "
                "use longer epochs or a larger 'welch_seconds', or drop the band from 'bands'.")
        masks.append(mask)
    return masks


def extract_features(epochs, sfreq, *, bands=None, n_windows=None, window_seconds=0.012,
                     welch_seconds=1.0, return_groups=False):
    """Per-trial features of one modality: log band power and time-window means per channel.

    Parameters
    ----------
    epochs : array, shape (n_epochs, n_channels, n_times)
        One modality (EEG, real or synthetic MEG), any units.
    sfreq : float
        Sampling rate (Hz).
    bands : dict of str to tuple | None
        ``{name: (low, high)}`` in Hz; None: :data:`~.signal_metrics.BANDS`. ``{}``: no power
        features.
    n_windows : int | None
        Consecutive windows of the time-window means (0: none); None: as many as fit
        ``window_seconds`` (``round(n_times / (window_seconds * sfreq))``, at least 1).
    window_seconds : float
        Window length (s) when ``n_windows`` is None.
    welch_seconds : float
        Welch segment length (s), shortened to the epoch if longer.
    return_groups : bool
        Also return each column's family, ``"power"`` or ``"window"`` (for ``groups`` of
        :func:`make_decoder`).

    Returns
    -------
    features : array, shape (n_epochs, n_channels * (n_bands + n_windows))
        Columns: band powers channel-major (``[ch0_delta, ch0_theta, ..., ch1_delta, ...]``),
        then window means channel-major.
    groups : array of str, shape (n_features,)
        Only with ``return_groups``.
    """
    from scipy.signal import welch

    x = _check_epochs("epochs", epochs)
    sfreq = _check_positive("sfreq", sfreq)
    window_seconds = _check_positive("window_seconds", window_seconds)
    welch_seconds = _check_positive("welch_seconds", welch_seconds)
    bands = BANDS if bands is None else bands
    _check_type("bands", bands, dict, "a dict {name: (low, high)}")
    n_epochs, n_channels, n_times = x.shape
    if n_windows is None:
        n_windows = min(n_times, max(1, int(round(n_times / (window_seconds * sfreq)))))
    n_windows = _check_int("n_windows", n_windows, 0)
    if n_windows > n_times:
        raise ValueError(f"'n_windows' ({n_windows}) exceeds the samples per epoch ({n_times}).")
    if not bands and not n_windows:
        raise ValueError("No features: pass at least one band or n_windows >= 1.")
    parts = []
    if bands:
        nperseg = int(min(n_times, max(2, round(welch_seconds * sfreq))))
        freqs, psd = welch(x, fs=sfreq, nperseg=nperseg, axis=-1)  # (n, C, F)
        masks = _band_bins(freqs, bands, sfreq, n_times)
        power = np.stack([psd[..., m].mean(-1) for m in masks], axis=-1)  # (n, C, B)
        tiny = np.finfo(np.float64).tiny
        parts.append(np.log10(np.maximum(power, tiny)).reshape(n_epochs, -1))
    if n_windows:
        means = np.stack([w.mean(-1) for w in np.array_split(x, n_windows, axis=-1)],
                         axis=-1)  # (n, C, W)
        parts.append(means.reshape(n_epochs, -1))
    features = np.concatenate(parts, axis=1)
    if not return_groups:
        return features
    n_power = n_channels * len(bands) if bands else 0
    groups = np.array(["power"] * n_power + ["window"] * (features.shape[1] - n_power))
    return features, groups


@functools.lru_cache(maxsize=None)
def _linear_kernel_svc_class():
    """``SVC(kernel="linear")`` solved on the Gram matrix computed with BLAS (a class made on
    first use: scikit-learn is an optional dependency).

    libsvm evaluates a linear kernel one dot product at a time: with tens of thousands of
    features (12-ms windows of 306 MEG channels) a fit on 36 trials took ~1 s, and the paper's
    10 × 10 CV per condition, subject and task made decoding the slowest step of the demo.
    The same dual problem on ``X X^T`` (``SVC(kernel="precomputed")``) takes ~0.05 s; the
    model is the same up to rounding (checked against ``SVC(kernel="linear")`` in the tests).
    """
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.svm import SVC

    class LinearKernelSVC(ClassifierMixin, BaseEstimator):
        def __init__(self, C=1.0):
            self.C = C

        def fit(self, X, y):
            self.X_fit_ = np.asarray(X, dtype=np.float64)  # (n_train, n_features)
            self.svc_ = SVC(kernel="precomputed", C=self.C).fit(self.X_fit_ @ self.X_fit_.T, y)
            self.classes_ = self.svc_.classes_
            return self

        def decision_function(self, X):
            return self.svc_.decision_function(np.asarray(X, np.float64) @ self.X_fit_.T)

        def predict(self, X):
            return self.svc_.predict(np.asarray(X, np.float64) @ self.X_fit_.T)

    LinearKernelSVC.__module__ = __name__
    LinearKernelSVC.__qualname__ = "LinearKernelSVC"
    return LinearKernelSVC


def _weigh_blocks(z, weights):
    return z * weights  # (n_trials, n_features) * (n_features,)


def block_weights(groups):
    """Column weights that give each block of features the same weight in a linear kernel.

    Parameters
    ----------
    groups : array, shape (n_features,)
        A label per column (e.g. ``"eeg-power"``); columns with the same label form a block.

    Returns
    -------
    weights : array, shape (n_features,)
        ``1 / sqrt(size of the column's block)``: standardised columns scaled by these give
        every block a kernel contribution of the same size.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1 or not groups.size:
        raise ValueError(f"'groups' must be a non-empty 1-D array (a label per feature), got "
                         f"shape {groups.shape}; pass extract_features(..., return_groups=True)"
                         "'s labels.")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / np.sqrt(counts[inverse])


def make_decoder(*, kernel="linear", C=1.0, gamma="scale", groups=None):
    """The decoder fitted in each fold: ``Pipeline(StandardScaler(), [block weights], SVC)``.

    Parameters
    ----------
    kernel : 'linear' | 'rbf' | 'poly' | 'sigmoid'
        SVM kernel. Linear by default: trials are few and features many (thousands to tens
        of thousands), where a linear margin is the classic BCI choice. The linear SVM is
        solved on the Gram matrix (the same model as ``SVC(kernel="linear")``, ~20 times
        faster with many features).
    C : float
        SVM regularisation.
    gamma : 'scale' | 'auto' | float
        Kernel coefficient of the non-linear kernels.
    groups : array, shape (n_features,) | None
        A block label per feature column: standardised columns are scaled by
        :func:`block_weights` so every block weighs the same; None: no weighting.

    Returns
    -------
    decoder : sklearn.pipeline.Pipeline
        Unfitted.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from sklearn.svm import SVC

    _check_option("kernel", kernel, ["linear", "rbf", "poly", "sigmoid"])
    C = _check_positive("C", C)
    steps = [StandardScaler()]
    if groups is not None:
        steps.append(FunctionTransformer(_weigh_blocks,
                                         kw_args={"weights": block_weights(groups)}))
    if kernel == "linear":
        return make_pipeline(*steps, _linear_kernel_svc_class()(C=C))
    return make_pipeline(*steps, SVC(kernel=kernel, C=C, gamma=gamma))


def binomial_p_value(n_correct, n_trials, chance):
    """One-sided exact binomial p-value of decoding accuracy against chance.

    ``P(K >= n_correct)`` for ``K ~ Binomial(n_trials, chance)``: the probability that a
    decoder guessing at chance gets at least ``n_correct`` of ``n_trials`` right. Counts of
    independent sets of trials (e.g. several test subjects) may be summed first.

    Parameters
    ----------
    n_correct : int
        Correct predictions.
    n_trials : int
        Predicted trials (``n_correct <= n_trials``).
    chance : float
        Chance accuracy in (0, 1), e.g. 1 / n_classes.

    Returns
    -------
    p_value : float
    """
    from scipy.stats import binom

    n_trials = _check_int("n_trials", n_trials, 1)
    n_correct = _check_int("n_correct", n_correct, 0)
    if n_correct > n_trials:
        raise ValueError(f"'n_correct' ({n_correct}) must not exceed 'n_trials' ({n_trials}): "
                         "pass the number of correct predictions among the trials counted.")
    chance = float(chance)
    if not 0.0 < chance < 1.0:
        raise ValueError(f"'chance' must be a probability in (0, 1), got {chance!r}; e.g. "
                         "1 / n_classes for balanced classes.")
    return float(binom.sf(n_correct - 1, n_trials, chance))


@dataclass
class DecodingScores:
    """Scores of repeated stratified k-fold cross-validation.

    Attributes
    ----------
    accuracy, precision, recall, f1 : array, shape (n_runs, n_splits)
        Per run and fold (precision, recall, F1: macro averages over classes).
    folds : list of list of tuple of array
        ``folds[run][fold] == (train_indices, test_indices)`` as used.
    predictions : array, shape (n_runs, n_trials)
        Each trial's predicted class in each run (from the fold that tested it).
    y : array, shape (n_trials,)
        The true classes.
    """

    accuracy: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    folds: list = field(repr=False)
    predictions: np.ndarray = field(default=None, repr=False)
    y: np.ndarray = field(default=None, repr=False)

    def median(self):
        """Median over all runs and folds of each score (the paper's statistic).

        Returns
        -------
        medians : dict of str to float
            ``{"accuracy", "precision", "recall", "f1"}``.
        """
        return {s: float(np.median(getattr(self, s))) for s in SCORES}

    def _check_predictions(self):
        if self.predictions is None or self.y is None:
            raise ValueError("These DecodingScores hold no per-trial 'predictions' and 'y': the "
                             "pooled scores, chance and p-value need them. Use the scores "
                             "cross_validate_svm returns, or median() for the fold scores.")

    @property
    def chance(self):
        """Chance accuracy: the largest class's share of the trials (1/K when balanced)."""
        self._check_predictions()
        return float(np.unique(self.y, return_counts=True)[1].max() / len(self.y))

    def run_scores(self):
        """Accuracy and macro F1 of each run, over all its (once-tested) trials.

        Returns
        -------
        scores : dict of str to array, shape (n_runs,)
            ``{"accuracy", "f1", "n_correct"}``.
        """
        from sklearn.metrics import f1_score

        self._check_predictions()
        correct = (self.predictions == self.y[None]).sum(axis=1)  # (n_runs,)
        f1 = np.array([f1_score(self.y, p, average="macro", zero_division=0)
                       for p in self.predictions])
        return {"accuracy": correct / len(self.y), "f1": f1, "n_correct": correct}

    def summary(self):
        """The numbers to report: pooled accuracy and F1 (mean over runs) and significance.

        Returns
        -------
        summary : dict
            ``accuracy``, ``f1`` (means over runs of :meth:`run_scores`), ``accuracy_sd``
            (s.d. over runs: the CV's own spread, not a confidence interval), ``n_trials``,
            ``n_correct`` (the median run's count, rounded down), ``chance`` and
            ``p_value`` (:func:`binomial_p_value` of ``n_correct`` against ``chance``).
        """
        runs = self.run_scores()
        n_correct = int(np.floor(np.median(runs["n_correct"])))
        return {"accuracy": float(runs["accuracy"].mean()), "f1": float(runs["f1"].mean()),
                "accuracy_sd": float(runs["accuracy"].std()), "n_trials": int(len(self.y)),
                "n_correct": n_correct, "chance": self.chance,
                "p_value": binomial_p_value(n_correct, len(self.y), self.chance)}

    def to_dict(self):
        """JSON-ready: the summary, the medians and every fold's scores (no fold indices).

        Returns
        -------
        scores : dict
            ``{"summary": {...}, "median": {...}, "accuracy": [[...], ...], ...}`` (no
            ``"summary"`` without per-trial ``predictions``).
        """
        out = {} if self.predictions is None else {"summary": self.summary()}
        out["median"] = self.median()
        out.update({s: getattr(self, s).tolist() for s in SCORES})
        return out


@verbose
def cross_validate_svm(features, y, *, n_runs=10, n_splits=10, decoder=None, groups=None,
                       seed=0, verbose=None):
    """Repeated stratified k-fold cross-validation of a decoder (10 runs × 10 folds).

    Parameters
    ----------
    features : array, shape (n_trials, n_features)
        E.g. :func:`extract_features` of each modality, concatenated along axis 1.
    y : array, shape (n_trials,)
        Class labels.
    n_runs, n_splits : int
        Runs (each a new shuffle) and folds per run.
    decoder : sklearn estimator | None
        Cloned and fitted on the training trials of each fold; None:
        ``make_decoder(groups=groups)``.
    groups : array, shape (n_features,) | None
        Block label per feature (:func:`make_decoder`); only used when ``decoder`` is None.
    seed : int
        Run ``k`` shuffles with ``random_state=seed + k``.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    scores : DecodingScores
    """
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support
    from sklearn.model_selection import StratifiedKFold

    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"'features' must have shape (n_trials, n_features) (2-D), got shape "
                         f"{X.shape}.")
    _check_finite("features", X)
    y = np.asarray(y)
    if y.shape != (len(X),):
        raise ValueError(f"'y' must have shape (n_trials,) = ({len(X)},), got {y.shape}.")
    n_runs = _check_int("n_runs", n_runs)
    n_splits = _check_int("n_splits", n_splits, 2)
    seed = _check_int("seed", seed, 0)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"'y' must hold at least 2 classes, got {classes.tolist()}.")
    if counts.min() < n_splits:
        raise ValueError(
            f"The smallest class ({classes[counts.argmin()]!r}) has {counts.min()} trials, fewer "
            f"than n_splits={n_splits}: every test fold needs every class. Use fewer folds or "
            "more trials.")
    if groups is not None and len(groups) != X.shape[1]:
        raise ValueError(f"'groups' must have one label per feature ({X.shape[1]}), got "
                         f"{len(groups)}; pass the groups extract_features returned with these "
                         "features.")
    decoder = make_decoder(groups=groups) if decoder is None else decoder
    scores = {s: np.empty((n_runs, n_splits)) for s in SCORES}
    predictions = np.empty((n_runs, len(y)), dtype=y.dtype)
    folds = []
    for run in range(n_runs):
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed + run)
        run_folds = []
        for k, (train, test) in enumerate(cv.split(X, y)):
            model = clone(decoder).fit(X[train], y[train])
            pred = model.predict(X[test])
            predictions[run, test] = pred
            scores["accuracy"][run, k] = accuracy_score(y[test], pred)
            p, r, f, _ = precision_recall_fscore_support(y[test], pred, average="macro",
                                                         zero_division=0)
            scores["precision"][run, k], scores["recall"][run, k], scores["f1"][run, k] = p, r, f
            run_folds.append((train, test))
        folds.append(run_folds)
    result = DecodingScores(**scores, folds=folds, predictions=predictions, y=y)
    summ = result.summary()
    logger.info("Decoding (%d runs x %d folds, %d trials, %d features): accuracy %.3f (chance "
                "%.3f, binomial p = %.2g), F1 %.3f", n_runs, n_splits, len(X), X.shape[1],
                summ["accuracy"], summ["chance"], summ["p_value"], summ["f1"])
    return result


@verbose
def compare_decoding(eeg, y, sfreq, *, synthetic_meg=None, real_meg=None, n_runs=10,
                     n_splits=10, decoder=None, seed=0, bands=None, n_windows=None,
                     window_seconds=0.012, welch_seconds=1.0, verbose=None):
    """Decode from EEG, EEG + synthetic MEG and EEG + real MEG on the same folds (Fig. 5).

    Parameters
    ----------
    eeg : array, shape (n_trials, n_eeg, n_times)
    y : array, shape (n_trials,)
        Class labels.
    sfreq : float
        Sampling rate of every modality (Hz).
    synthetic_meg, real_meg : array, shape (n_trials, n_meg, n_times) | None
        Trial-aligned with ``eeg``; a condition whose MEG is None is skipped (e.g. no real
        MEG for an EEG-only dataset, Fig. 6).
    n_runs, n_splits, decoder, seed
        As :func:`cross_validate_svm`; with the default decoder each feature family of each
        modality is one block of :func:`make_decoder`'s ``groups``.
    bands, n_windows, window_seconds, welch_seconds
        As :func:`extract_features`.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    scores : dict of str to DecodingScores
        Keys among :data:`CONDITIONS`, in that order.
    """
    megs = {"eeg+synthetic_meg": synthetic_meg, "eeg+real_meg": real_meg}
    return _cross_validate_conditions(
        eeg, y, sfreq, {k: v for k, v in megs.items() if v is not None}, base="eeg",
        n_runs=n_runs, n_splits=n_splits, decoder=decoder, seed=seed,
        features=dict(bands=bands, n_windows=n_windows, window_seconds=window_seconds,
                      welch_seconds=welch_seconds))


def _cross_validate_conditions(eeg, y, sfreq, megs, *, base, n_runs, n_splits, decoder=None,
                               seed=0, features=None, verbose=None):
    """Cross-validate EEG alone and EEG + each MEG of ``megs`` on the same folds.

    The EEG features are computed once; each family of each modality is one block of
    :func:`make_decoder`'s ``groups``. ``megs`` maps a condition's name to its MEG epochs,
    shape (n_trials, n_meg, n_times), trial- and time-aligned with ``eeg``; ``base`` names the
    EEG-alone condition. Returns ``{base: DecodingScores, **{name: DecodingScores}}`` in that
    order (:func:`compare_decoding` and the EEG→MEG pipeline's rows). ``verbose`` is passed to
    :func:`cross_validate_svm`.
    """
    kw = dict(features or {}, return_groups=True)
    eeg = _check_epochs("eeg", eeg)
    f_eeg, g_eeg = extract_features(eeg, sfreq, **kw)
    g_eeg = np.char.add("eeg-", g_eeg)
    conditions = {base: (f_eeg, g_eeg)}
    for name, meg in megs.items():
        label = name.split("+")[-1]
        meg = _check_epochs(label, meg)
        if len(meg) != len(eeg) or meg.shape[2] != eeg.shape[2]:
            raise ValueError(
                f"'{label}' must be trial- and time-aligned with 'eeg' ({len(eeg)} trials x "
                f"{eeg.shape[2]} samples), got shape {meg.shape}: pass the MEG epochs of the "
                "same trials, in the same order, at the same rate and length.")
        f_meg, g_meg = extract_features(meg, sfreq, **kw)
        conditions[name] = (np.concatenate([f_eeg, f_meg], axis=1),
                            np.concatenate([g_eeg, np.char.add("meg-", g_meg)]))
    out = {}
    for name, (X, groups) in conditions.items():
        logger.debug("Condition %s", name)
        out[name] = cross_validate_svm(X, y, n_runs=n_runs, n_splits=n_splits, decoder=decoder,
                                       groups=groups, seed=seed, verbose=verbose)
    return out
