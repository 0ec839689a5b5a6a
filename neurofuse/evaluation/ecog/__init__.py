"""ECoG validation (paper §5, Fig. 4): predicting new people's ECoG from the source estimates.

The source estimates of a trained joint model (or any fsaverage source model,
:class:`~neurofuse.evaluation.source_model.SourceModel`, e.g. the ground-truth encoder of a
simulation) are computed for the ECoG story and compared with the
ECoG of every subject of an ECoG dataset (:mod:`neurofuse.data.ecog`, ``docs/ecog.md``):

**Zero-shot prediction.** Each electrode is mapped to the nearest fsaverage source (its
fsaverage position vs the pial-surface positions of the model's source vertices, same
hemisphere; :func:`nearest_sources`), and that source's time course is its prediction
(optionally its Hilbert envelope, for high-gamma-envelope ECoG). Scores, over the whole story:

* Pearson r per electrode with a **circular-shift permutation test**
  (:func:`circular_shift_test`): the null distribution is r with the ECoG circularly shifted
  by ``n_permutations`` random non-zero shifts, which keeps each signal's autocorrelation (all
  shifts are allowed: excluding those near 0 makes the test anti-conservative); all shifts
  come from one FFT cross-correlation per electrode.
  One-sided by default (a prediction counts when it correlates *positively*: an electrode
  anti-correlated with its nearest source is not predicted; ``alternative="two-sided"``
  counts both signs); ``p = (1 + #{r_null >= r}) / (1 + n_permutations)``.
  Significance is **Benjamini-Hochberg FDR** at ``alpha`` across all electrodes of all
  subjects together (:func:`fdr_significant`).
* **Segment identification** (:func:`segment_identification`): per electrode, ``n_trials``
  (1000) times, a random one-minute segment of the prediction is correlated (absolute r) with
  the true ECoG segment and with a distractor segment of the same electrode that does not
  overlap it; the trial is correct when the true one wins (ties count as errors). The paper
  tests the accuracy with a binomial test over the trials, but the trials overlap heavily (a
  30-min story holds 30 one-minute segments), so that test is far too liberal (26-39 % false
  positives at alpha = 0.05 on independent noise, measured). By default significance comes
  instead from :func:`identification_shift_test` (accuracy over all segment pairs against
  circularly shifted truths, 5-6 % false positives); ``identification_test="binomial"`` gives
  the paper's test. FDR across electrodes as above.

**Trained prediction** (:func:`trained_prediction`). ``n_folds`` (3) contiguous test blocks
(by default ``n_times / n_folds`` each: 10 min of the 30-min Podcast story, as in the paper).
For each fold the training candidates are all samples at least ``gap_seconds`` (2 s) away
from the test block, on both sides; the gap must be at least the longest stimulus delay, so no
delayed feature window of a training sample touches a test sample and the ECoG's
autocorrelation does not carry test minutes into training. A training fraction ``f`` uses
the first ``round(f * n_candidates)`` candidates in time order. Two methods, same samples:

* ``"neurofuse"``: per electrode, ridge regression from the source estimates of its
  ``n_neighbors`` (10) nearest fsaverage sources (same time sample, no delays; features
  standardised, one alpha per electrode chosen by cross-validation over ``inner_folds``
  contiguous blocks of the training samples). At ``f = 0`` the prediction is the zero-shot one
  (the nearest source, no fitting).
* ``"ridge"``: a stacked-ridge encoding model (:class:`~neurofuse.baselines.ridge.
  StackedRidge`, Lin et al. 2024) trained on the stimulus features delayed by the MEG
  ceiling's delays (0, 20, ..., 600 ms), one feature space per stream; streams wider than
  ``n_components`` (64) are projected on their principal components fitted on the training
  samples' stimulus (as :func:`~neurofuse.baselines.ridge.fit_meg_ceiling` does). At ``f = 0``
  it is an untrained model: random weights (standard normal, fixed seed) on the standardised
  delayed features, so its r is chance, like the paper's randomly initialised model.

r is computed per electrode on each fold's test block and averaged over folds; the reported
score of a condition is the mean r of the top 25 % of electrodes (all subjects pooled, chosen
per condition, as in Fig. 4).

Modules: :mod:`.geometry` (nearest sources), :mod:`.statistics` (permutation, FDR and
identification tests), :mod:`.folds` (CV blocks, training subsets), :mod:`.prediction`
(source ridge and stimulus ridge, on the shared solver of :mod:`neurofuse.baselines.ridge`)
and :mod:`.validation` (:func:`run_ecog_validation`).
"""

from ...anatomy.cortex import fsaverage_source_positions
from .folds import make_cv_folds, training_subset
from .geometry import nearest_sources
from .prediction import PAPER_FRACTIONS, predict_fold, trained_prediction
from .statistics import (
    circular_shift_test,
    fdr_significant,
    identification_shift_test,
    segment_identification,
)
from .validation import run_ecog_validation

__all__ = [
    "PAPER_FRACTIONS",
    "circular_shift_test",
    "fdr_significant",
    "fsaverage_source_positions",
    "identification_shift_test",
    "make_cv_folds",
    "nearest_sources",
    "predict_fold",
    "run_ecog_validation",
    "segment_identification",
    "trained_prediction",
    "training_subset",
]
