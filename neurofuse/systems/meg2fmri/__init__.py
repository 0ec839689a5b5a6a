"""System C, MEG→fMRI slice synthesis (MEG2fMRI, Aldal; ``shared/papers/meg2fmri-cgan.md``).

A Pix2Pix-style conditional GAN turns one MEG event vector into a 32 × 32 axial fMRI slice.
This package holds what is unique to the system: the paper's pairing of MEG events with fMRI
slices (:mod:`.pairing`, :mod:`.slices`) and, beside it, the model, its training task and its
trainer. Image metrics live in :mod:`neurofuse.evaluation.images`.
"""
