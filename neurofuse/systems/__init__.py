"""The systems neurofuse implements, one folder each, holding only what is unique to it.

- :mod:`neurofuse.systems.joint` -- A, the joint MEG-fMRI encoding model (stimulus ->
  cortical sources -> MEG and fMRI of every subject).
- :mod:`neurofuse.systems.meg2fmri` -- C, the MEG->fMRI-slice cGAN (MEG event vector ->
  32 x 32 axial fMRI slice) with its pairing pipeline and baselines.

The EEG->MEG generator (B) and the EEG<->fMRI transcoder (D) get their folders here when they
are built; what they share with A lives below
``systems`` (``nn``, ``training``, ``physics``, ``data``).
"""
