"""Anatomy: the embedded template, subjects, sensors and forward models."""

from .cortex import fsaverage_source_positions, source_smoother
from .forward import (
    check_leadfield,
    check_morph,
    get_bem_solution,
    get_leadfield,
    get_source_space,
    make_forward,
    make_morph,
    read_forward,
    source_normals,
    source_positions,
)
from .sensors import (
    ElectrodeArray,
    apply_head_position,
    make_ecog_electrodes,
    make_ecog_info,
    make_eeg_info,
    make_meg_info,
)
from .subjects import (
    Subject,
    make_simulated_subject,
    make_template_subject,
    read_subject,
)
from .template import get_template_subjects_dir

__all__ = [
    "ElectrodeArray", "Subject", "apply_head_position", "check_leadfield", "check_morph",
    "fsaverage_source_positions",
    "get_bem_solution", "get_leadfield", "get_source_space", "get_template_subjects_dir",
    "make_ecog_electrodes", "make_ecog_info", "make_eeg_info", "make_forward", "make_meg_info",
    "make_morph", "make_simulated_subject", "make_template_subject", "read_forward",
    "read_subject", "source_normals", "source_positions", "source_smoother",
]
