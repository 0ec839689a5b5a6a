"""The LeBel et al. (2023) fMRI dataset (OpenNeuro ds003020) into a neurofuse dataset store."""

from .prepare import (
    LEBEL_TR,
    N_FSAVERAGE5,
    N_OCT6,
    SOUND_START,
    TEST_STORY,
    TRIM_END,
    TRIM_START,
    LebelLayout,
    VoxelToSource,
    hf5_shape,
    prepare_lebel,
    read_hf5,
    read_lebel_layout,
    read_voxel_to_source,
    write_voxel_to_source,
)

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
