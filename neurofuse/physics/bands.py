"""The five standard neurophysiological frequency bands, in Hz (one definition for everything).

δ 0.5–4, θ 4–8, α 8–13, β 13–30, γ 30–100 Hz: the bands of the EEG→MEG paper's Eq. 8 and
Fig. 4 (``shared/papers/eeg-to-meg-generative.md``), used by System B's world (where its
ongoing oscillations live), its spectral calibration loss, and its per-band scores.
"""

BANDS = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0),
         "gamma": (30.0, 100.0)}

__all__ = ["BANDS"]
