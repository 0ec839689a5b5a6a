"""System C, MEG -> fMRI slice synthesis with a Pix2Pix-style conditional GAN
(shared/papers/meg2fmri-cgan.md)."""
