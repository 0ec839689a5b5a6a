"""System C, MEG→fMRI slice synthesis (MEG2fMRI, Aldal; ``shared/papers/meg2fmri-cgan.md``).

A Pix2Pix-style conditional GAN turns one MEG event vector into a 32 × 32 axial fMRI slice.
This package holds what is unique to the system:

* the paper's pairing of MEG events with fMRI slices (:mod:`.config`, :mod:`.events`,
  :mod:`.slices`, :mod:`.pairing`, :mod:`.paired`);
* the model (:mod:`.model`; its 3-D networks for whole volumes and sequences of volumes,
  beyond the paper, in :mod:`.volume_nets`), its training task (:mod:`.task`) and trainer
  (:mod:`.trainer`);
* the baselines that tell whether it uses the MEG (:mod:`.baselines`, :mod:`.physics`);
* NIfTI export of synthesized slices and volumes (:mod:`.export`).

Image metrics live in :mod:`neurofuse.evaluation.images`, the held-out comparison in
:mod:`neurofuse.evaluation.meg2fmri`.
"""

from .config import PairingConfig
from .model import CganConfig, MEG2fMRICGAN, load_model, synthesize
from .paired import PairedSet, concatenate_paired, read_paired
from .pairing import pair_run, pair_subject
from .trainer import FIT_PRESETS, TrainConfig, fit, load_fit_config

__all__ = [
    "FIT_PRESETS", "CganConfig", "MEG2fMRICGAN", "PairedSet", "PairingConfig", "TrainConfig",
    "concatenate_paired", "fit", "load_fit_config", "load_model", "pair_run", "pair_subject",
    "read_paired", "synthesize",
]
