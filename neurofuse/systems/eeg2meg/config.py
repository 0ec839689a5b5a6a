"""Every size and weight of the EEG→MEG generator, in one validated, JSON-serialisable dataclass.

What each size does is told in the module that uses it
(:mod:`~neurofuse.systems.eeg2meg.spatial_focus`, :mod:`~neurofuse.systems.eeg2meg.vq`,
:mod:`~neurofuse.systems.eeg2meg.meg_autoencoder`, :mod:`~neurofuse.systems.eeg2meg.diffusion`,
:mod:`~neurofuse.systems.eeg2meg.spectral`, :mod:`~neurofuse.systems.eeg2meg.generator`).
The EEG encoder's own sizes (``patch_size``, ``embed_dim`` = D) belong to the encoder and are
read from it when the generator is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..._checks import _check_int, _check_keys, _check_option, _check_positive, _check_type
from ..._io import read_config, write_json

__all__ = ["BAND_PADS", "ENCODER_MODES", "SCHEDULES", "GeneratorConfig"]

#: ``"pretrained"``: the encoder is frozen (no gradients, kept in eval mode); ``"scratch"``:
#: it is trained with the generator (the paper's "w/o pretrained" ablation).
ENCODER_MODES = ("pretrained", "scratch")
#: Edge paddings of the band filters of Eq. 8 (:func:`mne.filter.filter_data`'s ``pad``):
#: MNE's default, or zeros (:mod:`~neurofuse.systems.eeg2meg.spectral`).
BAND_PADS = ("reflect_limited", "constant")
#: DDPM noise schedules: Ho et al.'s linear β schedule, or Nichol & Dhariwal's cosine ᾱ.
SCHEDULES = ("linear", "cosine")

_INTS = {  # name: minimum
    "n_eeg": 1, "n_meg": 1, "n_times": 1, "channel_heads": 1, "temporal_heads": 1,
    "codebook_size": 1, "latent_dim": 1, "ae_hidden": 1, "ae_downsamplings": 0, "ae_kernel": 1,
    "denoiser_dim": 1, "denoiser_layers": 1, "denoiser_heads": 1, "diffusion_steps": 2,
    "sample_steps": 1, "aligned_dim": 0, "posterior_samples": 0, "posterior_steps": 1,
}
_POSITIVE = ("sfreq", "beta_start", "beta_end", "latent_clip")
_NON_NEGATIVE = ("vq_beta", "dead_code_threshold", "lambda_rec", "lambda_vq", "lambda_diff",
                 "lambda_spec", "lambda_ae", "dropout")
_BOOLS = ("sfm", "bsc", "diffusion")


@dataclass(frozen=True)
class GeneratorConfig:
    """Every constructor argument of :class:`~neurofuse.systems.eeg2meg.generator.EEG2MEGGenerator`.

    Parameters
    ----------
    n_eeg : int
        EEG channels ``C_e`` (the encoder is channel-independent; the generator learns one
        embedding per channel).
    n_meg : int
        MEG channels ``C_m`` (306 for the Elekta/MEGIN layout).
    n_times : int
        Samples per epoch ``T``; a multiple of the encoder's ``patch_size`` and of
        ``2 ** ae_downsamplings``.
    sfreq : float
        Sampling rate in Hz (250 by default so the γ band, 30–100 Hz, is carried); sets the
        band filters of Eq. 8.
    channel_heads : int
        Heads of the channel self-attention of Eq. 2 (1 is the paper's single ``W_Q, W_K,
        W_V ∈ R^{D×D}`` attention; must divide D).
    temporal_heads : int
        Heads of the temporal attention over patches (must divide D).
    codebook_size : int
        Codewords ``K`` of the vector quantiser (Eq. 3).
    vq_beta : float
        Commitment weight ``β`` of Eq. 4 (0.25, van den Oord et al.'s value; the paper gives
        none).
    dead_code_threshold : float
        Restart a codeword whose moving-average use falls below this many assignments per
        training batch with a random input vector of the batch (the dead-code restart of
        Jukebox / SoundStream; the paper says nothing of collapse;
        :mod:`~neurofuse.systems.eeg2meg.vq`). 0 (default, and how model folders written
        before the field load): never.
    latent_dim : int
        Channels ``d_lat`` of the MEG latent ``z₀`` (B, d_lat, T').
    ae_hidden : int
        Feature maps of the MEG autoencoder's convolutions.
    ae_downsamplings : int
        Stride-2 stages of the MEG encoder: ``T' = T / 2**ae_downsamplings``.
    ae_kernel : int
        Odd kernel of the autoencoder's "same" convolutions.
    denoiser_dim : int
        Width of the conditional denoiser ``ε_θ`` (must be divisible by ``denoiser_heads``).
    denoiser_layers : int
        Blocks of the denoiser (self-attention over T', cross-attention to the condition,
        MLP; each modulated by the timestep).
    denoiser_heads : int
        Attention heads of the denoiser.
    aligned_dim : int
        Features per EEG channel and latent frame of the denoiser's time-aligned condition
        (each token unpatchified onto the latent frames of its patch, then mapped across
        channels onto every frame; see :mod:`~neurofuse.systems.eeg2meg.diffusion`); 0:
        cross-attention alone.
    diffusion_steps : int
        DDPM steps ``T_diff`` of the forward process (1000, Ho et al.'s).
    schedule : 'linear' | 'cosine'
        Noise schedule (:data:`SCHEDULES`).
    beta_start, beta_end : float
        First and last ``β_t`` of the linear schedule (1e-4, 0.02: Ho et al.'s); unused by
        the cosine schedule.
    sample_steps : int
        Default number of DDIM steps of :meth:`generate`'s single run from ``z_T = 0``
        (``<= diffusion_steps``).
    posterior_samples : int
        K: :meth:`generate` (``deterministic=True``) returns the mean of K stochastic samples
        (DDIM with η = 1 on ``posterior_steps`` steps, each decoded to MEG), an estimate of
        the posterior mean E[MEG | EEG] that Pearson r and RMSE reward; 0: one DDIM (η = 0)
        run from ``z_T = 0`` on ``sample_steps`` steps (the only path before this field;
        model folders without it load with 0). 64 was chosen on the demo's validation
        subject (mean per-band r 0.228 against 0.209 for 0; docs/eeg2meg.md, "How the
        trained generator generates").
    posterior_steps : int
        DDIM steps of each of the ``posterior_samples`` samples (at most
        ``diffusion_steps``; larger values are capped). 5: as good as 20 on the validation
        subject (r 0.228 both) at a quarter of the cost.
    latent_clip : float
        Bound on every estimate ``ẑ₀`` (training's one-step estimate and each sampling
        step), in units of the standardised latent: ``(z_t − √(1−ᾱ_t) ε̂)/√ᾱ_t`` divides by
        ``√ᾱ_t`` ≈ 0.006 at the last step of the linear schedule, so it is clamped (the DDPM
        "clip denoised" practice).
    lambda_rec, lambda_vq, lambda_diff, lambda_spec : float
        Weights of Eq. 9's terms: L1 reconstruction, VQ (Eq. 4), diffusion (Eq. 6) and the
        band loss (Eq. 8). The paper gives no values; 1 each.
    band_pad : 'reflect_limited' | 'constant'
        Edge padding of the band filters of Eq. 8 (``pad`` of :func:`mne.filter.filter_data`;
        :data:`BAND_PADS`). ``"reflect_limited"`` (MNE's default, and every model folder
        written before the field) puts 40 % of the loss's weight on the first and last
        samples of 1-s epochs; ``"constant"`` (zeros) weighs the samples nearly alike (0.74
        at the ends, 0.96 inside; :mod:`~neurofuse.systems.eeg2meg.spectral`).
    lambda_ae : float
        Weight of the MEG autoencoder's own L1 reconstruction, ``|Y - D(E(Y))|`` (not in the
        paper, which does not say how the latent space is learnt).
    dropout : float
        Dropout in the attention blocks (0 to < 1).
    encoder : 'pretrained' | 'scratch'
        Frozen pretrained encoder or one trained with the generator (:data:`ENCODER_MODES`).
    sfm : bool
        Spatial focus mapping (Eq. 2 + temporal attention); False: a plain linear map of
        each token (the "w/o SFM" ablation). The vector quantiser is kept either way.
    bsc : bool
        Broadband spectral calibration (Eq. 7 filter and the Eq. 8 loss); False: neither
        (``lambda_spec`` is ignored).
    diffusion : bool
        Latent diffusion (Eq. 5–6); False: a deterministic decoder from the condition to
        ``z₀`` (the "no diffusion" ablation).
    """

    n_eeg: int = 64
    n_meg: int = 306
    n_times: int = 500
    sfreq: float = 250.0
    channel_heads: int = 1
    temporal_heads: int = 4
    codebook_size: int = 512
    vq_beta: float = 0.25
    dead_code_threshold: float = 0.0
    latent_dim: int = 32
    ae_hidden: int = 128
    ae_downsamplings: int = 2
    ae_kernel: int = 7
    denoiser_dim: int = 128
    denoiser_layers: int = 4
    denoiser_heads: int = 4
    aligned_dim: int = 8
    diffusion_steps: int = 1000
    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sample_steps: int = 50
    posterior_samples: int = 64
    posterior_steps: int = 5
    latent_clip: float = 5.0
    lambda_rec: float = 1.0
    lambda_vq: float = 1.0
    lambda_diff: float = 1.0
    lambda_spec: float = 1.0
    lambda_ae: float = 1.0
    band_pad: str = "reflect_limited"
    dropout: float = 0.0
    encoder: str = "pretrained"
    sfm: bool = True
    bsc: bool = True
    diffusion: bool = True

    def __post_init__(self):
        for name, minimum in _INTS.items():
            _check_int(f"GeneratorConfig.{name}", getattr(self, name), minimum)
        for name in _POSITIVE:
            object.__setattr__(self, name, _check_positive(f"GeneratorConfig.{name}",
                                                           getattr(self, name)))
        for name in _NON_NEGATIVE:
            object.__setattr__(self, name, _check_positive(f"GeneratorConfig.{name}",
                                                           getattr(self, name),
                                                           allow_zero=True))
        for name in _BOOLS:
            _check_type(f"GeneratorConfig.{name}", getattr(self, name), bool)
        _check_type("GeneratorConfig.schedule", self.schedule, str)
        _check_option("GeneratorConfig.schedule", self.schedule, SCHEDULES)
        _check_type("GeneratorConfig.band_pad", self.band_pad, str)
        _check_option("GeneratorConfig.band_pad", self.band_pad, BAND_PADS)
        _check_type("GeneratorConfig.encoder", self.encoder, str)
        _check_option("GeneratorConfig.encoder", self.encoder, ENCODER_MODES)
        if self.dropout >= 1:
            raise ValueError(f"'GeneratorConfig.dropout' must be < 1, got {self.dropout}.")
        if self.beta_end <= self.beta_start or self.beta_end >= 1:
            raise ValueError(f"'GeneratorConfig.beta_start' < 'beta_end' < 1 is required, got "
                             f"{self.beta_start} and {self.beta_end}.")
        if self.ae_kernel % 2 == 0:
            raise ValueError(f"'GeneratorConfig.ae_kernel' must be odd (a 'same' padding), got "
                             f"{self.ae_kernel}; use e.g. {self.ae_kernel + 1}.")
        factor = 2 ** self.ae_downsamplings
        if self.n_times % factor:
            raise ValueError(f"'GeneratorConfig.n_times' ({self.n_times}) must be a multiple of "
                             f"2**ae_downsamplings = {factor}; crop the epochs or change "
                             "'ae_downsamplings'.")
        if self.denoiser_dim % self.denoiser_heads:
            raise ValueError(f"'GeneratorConfig.denoiser_dim' ({self.denoiser_dim}) must be "
                             f"divisible by 'denoiser_heads' ({self.denoiser_heads}).")
        if self.sample_steps > self.diffusion_steps:
            raise ValueError(f"'GeneratorConfig.sample_steps' ({self.sample_steps}) must be <= "
                             f"'diffusion_steps' ({self.diffusion_steps}).")

    @property
    def n_latent_times(self) -> int:
        """Length ``T'`` of the MEG latent: ``n_times / 2**ae_downsamplings``."""
        return self.n_times // 2 ** self.ae_downsamplings

    def replace(self, **changes) -> GeneratorConfig:
        """A copy with ``changes`` applied (validated; unknown keys raise)."""
        _check_keys("GeneratorConfig", changes, [f.name for f in dataclasses.fields(self)])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The configuration as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values) -> GeneratorConfig:
        """A configuration from :meth:`to_dict`'s dict (unknown keys raise ValueError).

        Parameters
        ----------
        values : dict
            Field names to values; missing fields take their defaults.

        Returns
        -------
        config : GeneratorConfig
        """
        if not isinstance(values, dict):
            raise TypeError(f"'values' must be a dict of GeneratorConfig fields, got "
                            f"{type(values).__name__}.")
        _check_keys("GeneratorConfig", values, [f.name for f in dataclasses.fields(cls)])
        return cls(**values)

    def to_json(self, fname) -> None:
        """Write the configuration to a JSON file (atomically).

        Parameters
        ----------
        fname : path-like
            The file to write.
        """
        write_json(fname, self.to_dict(), what="generator config")

    @classmethod
    def from_json(cls, fname) -> GeneratorConfig:
        """Read a configuration written by :meth:`to_json`.

        Parameters
        ----------
        fname : path-like
            A JSON file holding one table of :class:`GeneratorConfig` fields.

        Returns
        -------
        config : GeneratorConfig
        """
        return cls.from_dict(read_config(fname, what="generator config"))
