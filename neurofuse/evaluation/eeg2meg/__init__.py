"""System B's evaluation (issue 12, paper §III): synthetic vs real MEG, decoding, source imaging.

- :mod:`.signal_metrics`: per-band Pearson r, RMSE, NMI and SSIM between synthetic and real
  MEG epochs (:func:`compute_band_metrics`, :func:`summarize_band_metrics`), with their
  precise definitions;
- :mod:`.decoding`: the paper's feature engineering + SVM, 10 runs × 10-fold CV, for EEG,
  EEG + synthetic MEG and EEG + real MEG (:func:`extract_features`, :func:`cross_validate_svm`,
  :func:`compare_decoding`), with chance level and an exact binomial p-value
  (:func:`binomial_p_value`);
- :mod:`.source_imaging`: dSPM from EEG, EEG + real MEG and EEG + synthetic MEG scored against
  ground-truth sources (:func:`make_dspm`, :func:`score_source_estimate`,
  :func:`compare_source_imaging`; :func:`combine_forwards` for one forward per modality).
"""

from .decoding import (
    CONDITIONS,
    SCORES,
    DecodingScores,
    binomial_p_value,
    block_weights,
    compare_decoding,
    cross_validate_svm,
    extract_features,
    make_decoder,
)
from .signal_metrics import (
    BANDS,
    METRICS,
    band_filter,
    compute_band_metrics,
    normalize_like,
    summarize_band_metrics,
)
from .source_imaging import (
    SOURCE_CONDITIONS,
    SOURCE_SCORES,
    combine_forwards,
    compare_source_imaging,
    make_dspm,
    score_source_estimate,
)

__all__ = [
    "BANDS", "CONDITIONS", "DecodingScores", "METRICS", "SCORES", "SOURCE_CONDITIONS",
    "SOURCE_SCORES", "band_filter", "binomial_p_value", "block_weights", "combine_forwards",
    "compare_decoding", "compare_source_imaging", "compute_band_metrics", "cross_validate_svm",
    "extract_features", "make_decoder", "make_dspm", "normalize_like", "score_source_estimate",
    "summarize_band_metrics",
]
