"""System D: the cyclic EEG↔fMRI transcoder (paper eeg-fmri-deep-transcoding), its baselines.

:mod:`.baselines`: classical inverses with the true lead field and the physics transfers.
"""
