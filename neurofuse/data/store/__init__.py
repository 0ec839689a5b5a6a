"""The on-disk dataset store: one documented folder format for a whole study, any modality.

A dataset holds stimulus features per story, per subject and modality continuous runs
(``(n_repeats, *spatial, n_times)``) and labelled epochs (``(n_epochs, *spatial, n_times)``
with event times), each subject's anatomy (morph, source-space vertices), the description of
each modality (sensor: ``mne.Info``, lead field, forward, electrodes; volume: the grid
affine), ground truth for simulations and optional per-target repeatability. Modalities and
their kinds (sensor / source / volume) are in :mod:`.modalities`. See
``docs/dataset-format.md``.

Write with :class:`DatasetWriter` (everything goes to a temporary folder that is moved into
place only when the ``with`` block succeeds); read with :func:`read_dataset`, which checks
the manifest against itself and against the arrays' headers and samples (:mod:`.validate`;
:meth:`Dataset.check` reads everything) and memory-maps arrays when they are asked for.
"""

from .manifest import (  # _check_name: used by the loaders and simulators
    MANIFEST,
    SCHEMA_VERSION,
    SPLITS,
    _check_name,  # noqa: F401
    expected_n_trs,
)
from .modalities import MODALITIES, MODALITY_REGISTRY, Modality, ModalityKind, get_modality
from .reader import Dataset, read_dataset
from .upgrade import upgrade_dataset
from .validate import Problem, StoreError, check_store
from .writer import DatasetWriter

__all__ = [
    "MANIFEST",
    "MODALITIES",
    "MODALITY_REGISTRY",
    "SCHEMA_VERSION",
    "SPLITS",
    "Dataset",
    "DatasetWriter",
    "Modality",
    "Problem",
    "StoreError",
    "ModalityKind",
    "check_store",
    "expected_n_trs",
    "get_modality",
    "read_dataset",
    "upgrade_dataset",
]
