"""The registry of modalities a dataset store holds, and the kinds of data they are.

Every modality name (``"meg"``, ``"eeg"``, ``"ecog"``, ``"fmri"``, ``"fmri-volume"``) maps to
one of three *kinds*, which fix the shape of its arrays, its sampling and the per-subject
description it needs:

========  =====================  ==========  ============================================
kind      spatial axes           sampled at  described by
========  =====================  ==========  ============================================
sensor    (n_channels,)          ``sfreq``   an ``mne.Info`` (FIF), optional lead field and
                                             forward, optional electrode positions (ECoG)
source    (n_sources,)           1 / ``tr``  the subject source space (morph, vertices)
volume    (n_x, n_y, n_z)        1 / ``tr``  a voxel → scanner-RAS affine (4 × 4, mm)
========  =====================  ==========  ============================================

Continuous arrays are ``(n_repeats, *spatial, n_times)`` and epochs are
``(n_epochs, *spatial, n_times)``: time is always the last axis. See
``docs/dataset-format.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..._checks import _check_option

__all__ = ["KINDS", "MODALITIES", "MODALITY_REGISTRY", "Modality", "ModalityKind",
           "get_modality"]


@dataclass(frozen=True)
class ModalityKind:
    """A kind of data: its spatial axes and the clock it is sampled on.

    Attributes
    ----------
    name : str
        ``"sensor"``, ``"source"`` or ``"volume"``.
    spatial_axes : tuple of str
        Names of the axes between the repeat/epoch axis and the time axis.
    sampling : str
        ``"sfreq"`` (samples at the dataset's ``sfreq``, as the stimulus features) or ``"tr"``
        (one volume per ``tr`` seconds; ``floor(n_times / (sfreq * tr))`` per story).
    unit_name : str
        What one spatial element is called in messages (``"channels"``, ``"sources"``...).
    """

    name: str
    spatial_axes: tuple
    sampling: str
    unit_name: str

    @property
    def n_spatial(self) -> int:
        """Number of spatial axes (1 for sensors and sources, 3 for volumes)."""
        return len(self.spatial_axes)

    def shape_doc(self, lead: str = "n_repeats") -> str:
        """The array shape as text, e.g. ``(n_repeats, n_channels, n_times)``."""
        axes = ", ".join(f"n_{a}s" if self.n_spatial == 1 else f"n_{a}"
                         for a in self.spatial_axes)
        return f"({lead}, {axes}, n_times)"


SENSOR = ModalityKind("sensor", ("channel",), "sfreq", "channels")
SOURCE = ModalityKind("source", ("source",), "tr", "sources")
VOLUME = ModalityKind("volume", ("x", "y", "z"), "tr", "voxels")
KINDS = {k.name: k for k in (SENSOR, SOURCE, VOLUME)}


@dataclass(frozen=True)
class Modality:
    """A modality name and what it is.

    Attributes
    ----------
    name : str
        The name used in the store (folder names, manifest keys), e.g. ``"meg"``.
    kind : ModalityKind
    label : str
        Human-readable name for messages, e.g. ``"MEG"``.
    ch_types : tuple of str
        Sensor kind only: the ``mne`` channel types its ``Info`` may hold.
    """

    name: str
    kind: ModalityKind
    label: str
    ch_types: tuple = ()


MODALITY_REGISTRY = {m.name: m for m in (
    Modality("meg", SENSOR, "MEG", ("mag", "grad")),
    Modality("eeg", SENSOR, "EEG", ("eeg",)),
    Modality("ecog", SENSOR, "ECoG", ("ecog", "seeg")),
    Modality("fmri", SOURCE, "fMRI"),
    Modality("fmri-volume", VOLUME, "volumetric fMRI"),
)}
MODALITIES = tuple(MODALITY_REGISTRY)


def get_modality(name, *, what: str = "modality") -> Modality:
    """The registered :class:`Modality` called ``name`` (ValueError naming the known ones)."""
    return MODALITY_REGISTRY[_check_option(what, name, MODALITIES)]
