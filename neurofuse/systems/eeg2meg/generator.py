"""The EEG→MEG generator of §II: encoder → spatial focus mapping → VQ → latent diffusion → MEG.

``EEG2MEGGenerator(config, encoder)`` composes the parts; :meth:`EEG2MEGGenerator.losses`
gives every term of Eq. 9 and :meth:`EEG2MEGGenerator.generate` synthesises MEG.

Paper ↔ code
------------
- Encoder (Eq. 1): any module mapping ``(B, C_e, T) → (B, C_e, P, D)`` with attributes
  ``patch_size`` and ``embed_dim``. ``encoder="pretrained"``: its parameters get
  ``requires_grad=False``, it runs under ``no_grad`` and stays in eval mode whatever
  :meth:`~torch.nn.Module.train` is called with. ``"scratch"``: trained with the rest (pass an
  untrained encoder for the paper's "w/o pretrained" ablation).
- Channel identity: a channel-independent encoder does not say which electrode a token came
  from, and attention is permutation-equivariant, so a learned embedding per channel and per
  patch (zero-initialised) is added to ``H_enc`` before the spatial focus mapping.
- ``sfm=False``: the spatial focus mapping is replaced by a plain linear map of each token
  (D → D); the quantiser stays.
- Condition ``c = Z_q`` (B, C_e, P, D): the quantised tokens, read by the denoiser's
  cross-attention.
- ``z₀`` = the MEG autoencoder's latent of the real MEG, detached for the diffusion loss (the
  autoencoder is trained by its own reconstruction term; the denoiser and the condition learn
  to reach its latent, so the diffusion loss cannot shrink the latent to make itself small).
- Training ``Ŷ`` (for ``L_rec`` and ``L_spec``): the one-step estimate ``ẑ₀ = (z_t −
  √(1−ᾱ_t) ε̂) / √ᾱ_t`` at the drawn ``t`` (clamped to ±``latent_clip``), decoded by the MEG
  decoder and calibrated (Eq. 7). The paper does not say how ``Ŷ`` is obtained during
  training; a full reverse chain per step would be far too slow.
- ``diffusion=False``: the same network, given a zero latent and ``t = 0``, predicts ``z₀``
  directly (a deterministic decoder from the condition); ``"diff"`` is then the mean squared
  error to ``z₀``, so ``λ_diff`` still supervises the latent.
- Generation: ``deterministic=True`` returns the mean of ``config.posterior_samples`` (K)
  stochastic samples, each decoded to MEG — an estimate of the posterior mean E[Y | EEG],
  which Pearson r and RMSE reward (one sample adds variance the EEG cannot predict; DDIM
  from ``z_T = 0`` is a deterministic map but not that mean). The draws come from
  ``generator``, or from a fresh one seeded with 0, so the output is a function of the EEG
  batch. With K = 0 it runs DDIM (η = 0) on ``steps`` (default ``config.sample_steps``)
  timesteps from ``z_T = 0`` (or from a normal draw when a ``generator`` is given), the
  only path of folders written before K existed. ``deterministic=False`` draws one sample
  (DDPM over every step; with ``steps`` < T, the DDIM update with η = 1 on the shortened
  chain). K = 64 of 5-step samples was chosen on the demo's validation subject
  (docs/eeg2meg.md).
- ``bsc=False``: no Eq. 7 filter, no Eq. 8 term. ``band_pad``: the band filters' edge
  padding (:mod:`~neurofuse.systems.eeg2meg.spectral`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..._checks import _check_int, _check_type
from .config import GeneratorConfig
from .diffusion import ConditionalDenoiser, GaussianDiffusion
from .losses import reconstruction_loss, total_loss
from .meg_autoencoder import MEGAutoencoder
from .spatial_focus import SpatialFocusMapping
from .spectral import BandFilterBank, SpectralFilter, band_loss
from .vq import VectorQuantizer

__all__ = ["EEG2MEGGenerator"]


def _encoder_size(encoder, name: str) -> int:
    value = getattr(encoder, name, None)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError(f"'encoder' must have a positive int attribute '{name}' (the EEG "
                        f"encoder contract: (B, C_e, T) → (B, C_e, P, D), with 'patch_size' "
                        f"and 'embed_dim'), got {type(encoder).__name__} with {name}={value!r}.")
    return value


class EEG2MEGGenerator(nn.Module):
    """Pretrained-encoder EEG→MEG generator (Li & Wang, §II).

    Parameters
    ----------
    config : GeneratorConfig
        Every size, weight and ablation flag.
    encoder : torch.nn.Module
        EEG encoder ``(B, C_e, T) → (B, C_e, P, D)`` with int attributes ``patch_size`` and
        ``embed_dim`` (= D); ``config.n_times`` must be a multiple of ``patch_size``.

    Attributes
    ----------
    n_patches : int
        Patches ``P = n_times / patch_size``.
    """

    def __init__(self, config: GeneratorConfig, encoder: nn.Module):
        super().__init__()
        _check_type("config", config, GeneratorConfig)
        _check_type("encoder", encoder, nn.Module, "a torch.nn.Module")
        self.config = config
        patch_size = _encoder_size(encoder, "patch_size")
        dim = _encoder_size(encoder, "embed_dim")
        if config.n_times % patch_size:
            raise ValueError(f"'config.n_times' ({config.n_times}) must be a multiple of the "
                             f"encoder's patch_size ({patch_size}); crop the epochs or change "
                             "the encoder.")
        self.n_patches = config.n_times // patch_size
        self.embed_dim = dim
        self.encoder = encoder
        self.channel_embed = nn.Parameter(torch.zeros(config.n_eeg, 1, dim))  # (C_e, 1, D)
        self.patch_embed = nn.Parameter(torch.zeros(self.n_patches, dim))  # (P, D)
        if config.sfm:
            self.focus = SpatialFocusMapping(dim, config.channel_heads, config.temporal_heads,
                                             config.dropout)
        else:
            self.focus = nn.Linear(dim, dim)
        self.quantizer = VectorQuantizer(config.codebook_size, dim, config.vq_beta,
                                         dead_code_threshold=config.dead_code_threshold)
        self.autoencoder = MEGAutoencoder(config.n_meg, config.latent_dim, config.ae_hidden,
                                          config.ae_downsamplings, config.ae_kernel)
        self.denoiser = ConditionalDenoiser(config.latent_dim, dim, config.n_eeg * self.n_patches,
                                            config.denoiser_dim, config.denoiser_layers,
                                            config.denoiser_heads, config.dropout,
                                            n_channels=config.n_eeg, n_patches=self.n_patches,
                                            patch_size=patch_size, aligned_dim=config.aligned_dim,
                                            n_frames=config.n_latent_times)
        self.diffusion = GaussianDiffusion(config.diffusion_steps, config.schedule,
                                           config.beta_start, config.beta_end)
        if config.bsc:
            self.calibration = SpectralFilter(config.n_times)
            self.bands = BandFilterBank(config.sfreq, pad=config.band_pad)
        if config.encoder == "pretrained":
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    @property
    def frozen_encoder(self) -> bool:
        """Whether the encoder is frozen (``config.encoder == "pretrained"``)."""
        return self.config.encoder == "pretrained"

    def train(self, mode: bool = True):
        """Set training mode; a frozen encoder stays in eval mode.

        Parameters
        ----------
        mode : bool
            Training (True) or evaluation (False).

        Returns
        -------
        self : EEG2MEGGenerator
        """
        super().train(mode)
        if self.frozen_encoder:
            self.encoder.eval()
        return self

    def trainable_parameters(self) -> list:
        """The parameters the optimiser should update (the frozen encoder's are left out).

        Returns
        -------
        params : list of torch.nn.Parameter
        """
        return [p for p in self.parameters() if p.requires_grad]

    def _check_batch(self, name: str, x: torch.Tensor) -> None:
        """Raise unless ``x`` is a ``(B, n_<name>, n_times)`` tensor (``name``: eeg, meg)."""
        c = self.config
        n = getattr(c, f"n_{name}")
        if not torch.is_tensor(x) or x.ndim != 3 or tuple(x.shape[1:]) != (n, c.n_times):
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"'{name}' must be a tensor of shape (B, {n}, {c.n_times}) "
                             f"(n_{name}, n_times of the config), got {got}.")

    def encode_eeg(self, eeg: torch.Tensor) -> torch.Tensor:
        """The encoder's tokens ``H_enc`` (Eq. 1); without gradients when it is frozen.

        Parameters
        ----------
        eeg : torch.Tensor, shape (B, C_e, T)

        Returns
        -------
        h_enc : torch.Tensor, shape (B, C_e, P, D)
        """
        self._check_batch("eeg", eeg)
        if self.frozen_encoder:
            with torch.no_grad():
                h = self.encoder(eeg)
        else:
            h = self.encoder(eeg)
        self._check_tokens(h, eeg.shape[0], "The encoder returned")
        return h

    def _check_tokens(self, h, n, what):
        expected = (n, self.config.n_eeg, self.n_patches, self.embed_dim)
        if not torch.is_tensor(h) or tuple(h.shape) != expected:
            got = tuple(h.shape) if torch.is_tensor(h) else type(h).__name__
            raise ValueError(f"{what} shape {got}; expected (B, C_e, P, D) = {expected}. "
                             "Check the encoder's patch_size and embed_dim.")

    def condition(self, eeg: torch.Tensor, *, h_enc=None) -> dict:
        """Encoder → spatial focus mapping → vector quantiser.

        Parameters
        ----------
        eeg : torch.Tensor, shape (B, C_e, T)
        h_enc : torch.Tensor, shape (B, C_e, P, D) | None
            The frozen encoder's output for ``eeg``, computed earlier (:meth:`encode_eeg`);
            the encoder is then not run. Only with a frozen encoder (a trained one must see
            its gradients).

        Returns
        -------
        out : dict
            ``"z_q"`` (B, C_e, P, D) the condition; ``"vq"`` the Eq. 4 loss; ``"codes"``
            (B, C_e, P); ``"perplexity"``.
        """
        if h_enc is None:
            h = self.encode_eeg(eeg)
        else:
            if not self.frozen_encoder:
                raise ValueError("'h_enc' can only be given with a frozen encoder "
                                 "(config.encoder='pretrained'); a scratch encoder is trained "
                                 "through its output, so pass the EEG alone.")
            self._check_batch("eeg", eeg)
            self._check_tokens(h_enc, eeg.shape[0], "'h_enc' has")
            h = h_enc.detach()
        h = h + self.channel_embed + self.patch_embed  # (B, C_e, P, D)
        z_q, vq_loss, codes, perplexity = self.quantizer(self.focus(h))
        return {"z_q": z_q, "vq": vq_loss, "codes": codes, "perplexity": perplexity}

    def _direct(self, z_q: torch.Tensor) -> torch.Tensor:
        b = z_q.shape[0]
        zeros = z_q.new_zeros(b, self.config.latent_dim, self.config.n_latent_times)
        t = torch.zeros(b, dtype=torch.long, device=z_q.device)
        return self.denoiser(zeros, t, z_q)

    def _to_meg(self, z0: torch.Tensor) -> torch.Tensor:
        y = self.autoencoder.decode(z0)
        return self.calibration(y) if self.config.bsc else y

    def losses(self, eeg: torch.Tensor, meg: torch.Tensor, *, generator=None,
               h_enc=None) -> dict:
        """Every term of Eq. 9, the autoencoder term and their weighted sum.

        During training ``Ŷ`` is the decoded (and calibrated) one-step estimate ``ẑ₀ = (z_t
        − √(1−ᾱ_t) ε̂) / √ᾱ_t`` at the drawn timestep (see the module docstring).

        Parameters
        ----------
        eeg : torch.Tensor, shape (B, C_e, T)
        meg : torch.Tensor, shape (B, C_m, T)
        generator : torch.Generator | None
            Source of the timesteps and noise (for reproducible evaluations).
        h_enc : torch.Tensor, shape (B, C_e, P, D) | None
            The frozen encoder's output for ``eeg`` if already computed (see
            :meth:`condition`).

        Returns
        -------
        terms : dict of str to torch.Tensor
            Scalars ``"rec"`` (L1), ``"vq"`` (Eq. 4), ``"diff"`` (Eq. 6, or the latent MSE
            when ``diffusion=False``), ``"spec"`` (Eq. 8; 0 when ``bsc=False``), ``"ae"``
            (autoencoder L1), ``"total"`` (the weighted sum, to back-propagate), and
            ``"perplexity"`` (of the codes, detached; a diagnostic).
        """
        c = self.config
        self._check_batch("meg", meg)
        if meg.shape[0] != eeg.shape[0]:
            raise ValueError(f"'eeg' and 'meg' must hold the same epochs, got {eeg.shape[0]} "
                             f"and {meg.shape[0]}.")
        cond = self.condition(eeg, h_enc=h_enc)
        z0 = self.autoencoder.encode(meg)  # (B, d_lat, T')
        ae = reconstruction_loss(self.autoencoder.decode(z0), meg)
        target = z0.detach()
        if c.diffusion:
            out = self.diffusion.loss(self.denoiser, target, cond["z_q"], generator=generator)
            diff = out["loss"]
            z0_hat = self.diffusion.predict_z0(out["z_t"], out["t"], out["eps"], c.latent_clip)
        else:
            z0_hat = self._direct(cond["z_q"])
            diff = (z0_hat - target).pow(2).mean()
        y_hat = self._to_meg(z0_hat)
        terms = {"rec": reconstruction_loss(y_hat, meg), "vq": cond["vq"], "diff": diff,
                 "spec": band_loss(y_hat, meg, self.bands) if c.bsc else y_hat.new_zeros(()),
                 "ae": ae}
        terms["total"] = total_loss(terms, c)
        terms["perplexity"] = cond["perplexity"].detach()
        return terms

    @torch.no_grad()
    def generate(self, eeg: torch.Tensor, *, deterministic: bool = True, steps=None,
                 generator=None, n_samples=None) -> torch.Tensor:
        """Synthesise MEG from EEG (call :meth:`eval` first to switch dropout off).

        Parameters
        ----------
        eeg : torch.Tensor, shape (B, C_e, T)
        deterministic : bool
            True: the mean of ``n_samples`` stochastic samples (an estimate of E[MEG | EEG]),
            or with ``n_samples=0`` DDIM (η = 0) from ``z_T = 0`` (from a draw of
            ``generator`` when given). False: one stochastic sample.
        steps : int | None
            Sampling steps of each run (default: ``config.posterior_steps`` for the averaged
            samples, ``config.sample_steps`` for one DDIM run, every step for one
            ``deterministic=False`` sample); ignored when ``config.diffusion`` is False.
        generator : torch.Generator | None
            Source of the random draws (on the EEG's device). With ``n_samples > 0`` and
            None, a fresh generator seeded with 0 (the result is then reproducible).
        n_samples : int | None
            Samples averaged with ``deterministic=True`` (default
            ``config.posterior_samples``); 0: one DDIM run as above.

        Returns
        -------
        meg : torch.Tensor, shape (B, C_m, T)
        """
        c = self.config
        k = c.posterior_samples if n_samples is None else _check_int("n_samples", n_samples, 0)
        z_q = self.condition(eeg)["z_q"]
        if not c.diffusion:
            return self._to_meg(self._direct(z_q))
        if not deterministic or not k:
            return self._to_meg(self._sample(z_q, deterministic, steps, generator))
        if generator is None:
            generator = torch.Generator(device=eeg.device).manual_seed(0)
        steps = min(c.posterior_steps, c.diffusion_steps) if steps is None else steps
        total = None
        for _ in range(k):  # one sample after the other: the mean of K individual draws
            y = self._to_meg(self._sample(z_q, False, steps, generator))
            total = y if total is None else total + y
        return total / k

    def _sample(self, z_q, deterministic, steps, generator):
        """One latent ``z₀`` (B, d_lat, T') for the condition (see :meth:`generate`)."""
        c = self.config
        shape = (z_q.shape[0], c.latent_dim, c.n_latent_times)
        kw = {"clip": c.latent_clip, "device": z_q.device, "dtype": z_q.dtype}
        if deterministic:
            z_T = None if generator is not None else z_q.new_zeros(shape)
            return self.diffusion.ddim_sample(self.denoiser, shape, z_q,
                                              steps=c.sample_steps if steps is None else steps,
                                              z_T=z_T, generator=generator, **kw)
        if steps is None or steps == c.diffusion_steps:
            return self.diffusion.ddpm_sample(self.denoiser, shape, z_q, generator=generator,
                                              **kw)
        return self.diffusion.ddim_sample(self.denoiser, shape, z_q, steps=steps, eta=1.0,
                                          generator=generator, **kw)
