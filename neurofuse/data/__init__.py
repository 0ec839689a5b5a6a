"""Datasets: the on-disk store, the real-data loaders, merging stores, repeatability.

* :class:`DatasetWriter` / :func:`read_dataset` — the dataset store, any modality (sensor,
  source, volume; continuous runs and labelled epochs; ``docs/dataset-format.md``), and
  :func:`upgrade_dataset` for stores of an older schema;
* :func:`write_ecog_dataset` / :func:`read_ecog_dataset` (:class:`EcogDataset`,
  :class:`EcogElectrodes`) — ECoG as the store's ``ecog`` modality (``docs/ecog.md``);
* :func:`prepare_lebel` (LeBel fMRI, ds003020), :func:`prepare_meg_bids` (MEG in BIDS),
  :func:`prepare_podcast` (Podcast ECoG, ds005574) and :func:`prepare_smn4lang` (SMN4Lang
  MEG + fMRI volumes, ds004078, for system C) — real studies into stores;
* :func:`merge_datasets` — MEG and fMRI stores into one for joint training
  (``docs/real-data.md``).
"""

from .datasets import prepare_lebel, prepare_meg_bids, prepare_podcast, prepare_smn4lang
from .ecog import EcogDataset, EcogElectrodes, read_ecog_dataset, write_ecog_dataset
from .merge import merge_datasets
from .repeatability import compute_repeatability
from .store import Dataset, DatasetWriter, read_dataset, upgrade_dataset

__all__ = [
    "Dataset",
    "DatasetWriter",
    "EcogDataset",
    "EcogElectrodes",
    "compute_repeatability",
    "merge_datasets",
    "prepare_lebel",
    "prepare_meg_bids",
    "prepare_podcast",
    "prepare_smn4lang",
    "read_dataset",
    "read_ecog_dataset",
    "upgrade_dataset",
    "write_ecog_dataset",
]
