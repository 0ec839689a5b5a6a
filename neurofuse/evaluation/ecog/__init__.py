"""ECoG validation (paper §5, Fig. 4); split into modules next."""

from .validation import (
    PAPER_FRACTIONS,
    _Predictor,
    circular_shift_test,
    fdr_significant,
    fsaverage_source_positions,
    identification_shift_test,
    make_cv_folds,
    nearest_sources,
    predict_fold,
    ridge_cv_batched,
    run_ecog_validation,
    segment_identification,
    trained_prediction,
    training_subset,
)
from .validation import __all__  # noqa: F401
