"""The LeBel et al. (2023) fMRI dataset (OpenNeuro ds003020) into a neurofuse dataset store.

* :mod:`.layout` — the files of a ds003020 copy (:func:`read_lebel_layout`), what they hold
  and its timing, and the ``.hf5`` files (:func:`read_hf5`);
* :mod:`.mapping` — a subject's data columns (voxels or surface vertices) to its sources
  (:func:`read_voxel_to_source`, :func:`write_voxel_to_source`);
* :mod:`.prepare` — :func:`prepare_lebel`, what is written into the store.
"""

from .layout import (
    LEBEL_TR,
    SOUND_START,
    TEST_STORY,
    TRIM_END,
    TRIM_START,
    LebelLayout,
    hf5_shape,
    read_hf5,
    read_lebel_layout,
)
from .mapping import (
    N_FSAVERAGE5,
    N_OCT6,
    VoxelToSource,
    read_voxel_to_source,
    write_voxel_to_source,
)
from .prepare import prepare_lebel

__all__ = [
    "LEBEL_TR",
    "N_FSAVERAGE5",
    "N_OCT6",
    "SOUND_START",
    "TEST_STORY",
    "TRIM_END",
    "TRIM_START",
    "LebelLayout",
    "VoxelToSource",
    "hf5_shape",
    "prepare_lebel",
    "read_hf5",
    "read_lebel_layout",
    "read_voxel_to_source",
    "write_voxel_to_source",
]
