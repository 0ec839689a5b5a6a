"""System B, the pretrained EEG→MEG generator (Li & Wang; ``shared/papers/eeg-to-meg-generative.md``).

A frozen, pretrained EEG representation encoder (LaBraM's architecture, channel-independent),
spatial focus mapping (channel and temporal attention, vector quantisation), a latent
conditional diffusion generator over an MEG latent space, and broadband spectral calibration
synthesise MEG from EEG. It is judged against what physics already gives (EEG → minimum-norm
inverse → MEG forward) and a linear spatio-temporal ridge, on held-out simulated subjects.

This package is being built in steps (issue 12); see ``docs/eeg2meg.md`` once it lands.
"""
