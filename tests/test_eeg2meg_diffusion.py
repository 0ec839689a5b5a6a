"""System B's latent diffusion (Eq. 5–6): schedule, forward process, denoiser and samplers."""

import math

import numpy as np
import pytest
import torch

from neurofuse.systems.eeg2meg.diffusion import (
    ConditionalDenoiser,
    GaussianDiffusion,
    make_beta_schedule,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _oracle(diffusion, z0):
    """A perfect ε predictor for a known z0: ε = (z_t − √ᾱ_t z0) / √(1−ᾱ_t)."""
    def eps(z_t, t, cond):
        abar = diffusion.alphas_cumprod[t].to(z_t.dtype).reshape(-1, 1, 1)
        return (z_t - abar.sqrt() * z0) / (1 - abar).sqrt()
    return eps


def _denoiser(seed=0, n_cond=6):
    torch.manual_seed(seed)
    net = ConditionalDenoiser(latent_dim=3, cond_dim=4, n_cond_tokens=n_cond, dim=16,
                              n_layers=2, n_heads=2)
    torch.nn.init.normal_(net.out.weight, std=0.5)  # the output layer starts at zero
    return net.eval()


def test_schedules_follow_their_definitions():
    betas = make_beta_schedule(1000)
    np.testing.assert_allclose(betas.numpy(), np.linspace(1e-4, 0.02, 1000))
    betas = make_beta_schedule(100, "cosine")
    s, t = 0.008, np.arange(101) / 100
    abar = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
    abar /= abar[0]
    # the last β is clipped at 0.999 (ᾱ would reach exactly 0)
    np.testing.assert_allclose(np.cumprod(1 - betas.numpy())[:-1], abar[1:-1], rtol=1e-9)
    assert betas[-1].item() == pytest.approx(0.999)
    with pytest.raises(ValueError, match="schedule"):
        make_beta_schedule(10, "quadratic")


@pytest.mark.parametrize("t_now", [0, 250, 999])
def test_forward_process_has_the_scheduled_mean_and_variance(t_now):
    diffusion = GaussianDiffusion(1000)
    n = 200_000
    gen = torch.Generator().manual_seed(t_now)
    z0 = torch.tensor([1.5, -0.7, 3.0], dtype=torch.float64).expand(n, 3)
    t = torch.full((n,), t_now, dtype=torch.long)
    noise = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    z_t = diffusion.q_sample(z0, t, noise)
    abar = float(np.prod(1 - np.linspace(1e-4, 0.02, 1000)[:t_now + 1]))
    var = 1 - abar
    # 5 standard errors of the sample mean and of the sample variance (normal data)
    np.testing.assert_allclose(z_t.mean(0).numpy(), math.sqrt(abar) * z0[0].numpy(),
                               atol=5 * math.sqrt(var / n))
    np.testing.assert_allclose(z_t.var(0).numpy(), var, atol=5 * var * math.sqrt(2 / (n - 1)))


@pytest.mark.parametrize("steps", [None, 37, 1])
def test_ddim_with_a_perfect_noise_oracle_recovers_z0_exactly(steps):
    diffusion = GaussianDiffusion(200, "cosine")
    gen = torch.Generator().manual_seed(1)
    z0 = torch.randn(2, 3, 8, generator=gen, dtype=torch.float64)
    z_T = torch.randn(2, 3, 8, generator=gen, dtype=torch.float64)
    out = diffusion.ddim_sample(_oracle(diffusion, z0), z0.shape, None, steps=steps, z_T=z_T)
    torch.testing.assert_close(out, z0, rtol=0, atol=1e-10)


def test_ancestral_sampling_with_a_perfect_oracle_ends_on_z0():
    diffusion = GaussianDiffusion(100)
    z0 = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = diffusion.ddpm_sample(_oracle(diffusion, z0), z0.shape, None, dtype=torch.float64,
                                generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, z0, rtol=0, atol=1e-10)


def test_ddim_with_eta_one_on_every_step_is_ancestral_sampling():
    # σ_t² of DDIM at η = 1 is the DDPM posterior variance, and its mean is the posterior mean
    diffusion = GaussianDiffusion(30)
    net = _denoiser().double()
    cond = torch.randn(2, 3, 2, 4, dtype=torch.float64)
    kw = {"dtype": torch.float64}
    a = diffusion.ddpm_sample(net, (2, 3, 8), cond, generator=torch.Generator().manual_seed(4),
                              **kw)
    b = diffusion.ddim_sample(net, (2, 3, 8), cond, eta=1.0,
                              generator=torch.Generator().manual_seed(4), **kw)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_deterministic_sampling_is_reproducible_and_depends_on_the_start():
    diffusion = GaussianDiffusion(50)
    net = _denoiser()
    cond = torch.randn(2, 3, 2, 4)
    runs = [diffusion.ddim_sample(net, (2, 3, 8), cond, steps=10,
                                  generator=torch.Generator().manual_seed(seed))
            for seed in (5, 5, 6)]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert not torch.allclose(runs[0], runs[2])
    z_T = torch.zeros(2, 3, 8)
    a = diffusion.ddim_sample(net, (2, 3, 8), cond, steps=10, z_T=z_T)
    b = diffusion.ddim_sample(net, (2, 3, 8), cond, steps=10, z_T=z_T)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_timesteps_are_descending_evenly_spaced_and_checked():
    diffusion = GaussianDiffusion(1000)
    assert diffusion.timesteps(None) == list(range(999, -1, -1))
    ts = diffusion.timesteps(4)
    assert ts == [999, 666, 333, 0]
    assert diffusion.timesteps(1) == [999]
    with pytest.raises(ValueError, match="'steps' must be <= the 1000"):
        diffusion.timesteps(1001)


def test_clipping_bounds_every_estimate():
    diffusion = GaussianDiffusion(50)
    z_t, t = 100 * torch.ones(1, 3, 4), torch.tensor([10])
    assert diffusion.predict_z0(z_t, t, torch.zeros_like(z_t), clip=2.0).abs().max() == 2.0
    out = diffusion.ddim_sample(lambda z, t, c: -z, (1, 3, 4), None, steps=5, clip=1.5,
                                z_T=z_t)
    assert out.abs().max() <= 1.5 + 1e-6


def test_loss_is_zero_for_the_oracle_and_the_mean_squared_noise_error_otherwise():
    diffusion = GaussianDiffusion(100)
    z0 = torch.randn(4, 3, 8, dtype=torch.float64)
    out = diffusion.loss(_oracle(diffusion, z0), z0, None,
                         generator=torch.Generator().manual_seed(0))
    assert out["loss"].item() < 1e-20
    out = diffusion.loss(lambda z, t, c: torch.zeros_like(z), z0, None,
                         generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["loss"], out["noise"].pow(2).mean())
    torch.testing.assert_close(out["z_t"], diffusion.q_sample(z0, out["t"], out["noise"]))


def test_denoiser_uses_the_timestep_and_every_condition_token():
    net = _denoiser()
    z = torch.randn(2, 3, 8)
    cond = torch.randn(2, 3, 2, 4, requires_grad=True)  # (B, C_e, P, D): 6 tokens
    t = torch.tensor([3, 40])
    eps = net(z, t, cond)
    assert eps.shape == z.shape
    assert not torch.allclose(eps, net(z, t + 1, cond))
    eps.sum().backward()
    assert (cond.grad.abs().sum(dim=-1) > 0).all()  # cross-attention reads every token
    fresh = ConditionalDenoiser(3, 4, 6, dim=16, n_layers=1, n_heads=2)
    assert not fresh(z, t, cond).any()  # zero-initialised output layer
    with pytest.raises(ValueError, match="6 tokens"):
        net(z, t, torch.randn(2, 3, 3, 4))


def test_time_aligned_condition_reaches_only_the_frames_of_its_patch():
    # 3 channels × 4 patches of 10 samples → 40 samples, 20 latent frames (2 samples each):
    # a token of patch p must change frames 5p … 5p+4 and no other
    torch.manual_seed(0)
    net = ConditionalDenoiser(latent_dim=3, cond_dim=4, n_cond_tokens=12, dim=16, n_layers=1,
                              n_heads=2, n_channels=3, n_patches=4, patch_size=10,
                              aligned_dim=2, n_frames=20).eval()
    cond = torch.randn(2, 3, 4, 4)
    base = net._aligned(cond, 20)  # (B, T', dim)
    assert base.shape == (2, 20, 16)
    moved = cond.clone()
    moved[:, 1, 2] += 1.0  # channel 1, patch 2
    changed = (net._aligned(moved, 20) - base).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [10 <= f < 15 for f in range(20)]
    # a frame is the mean of its samples' unpatchified vectors (linear map, then average)
    u = net.unpatchify(cond).reshape(2, 3, 40, 2)
    frame3 = u[:, :, 6:8].mean(2).reshape(2, 6)  # frame 3 covers samples 6, 7 (patch 0)
    torch.testing.assert_close(base[:, 3], net.aligned_proj(frame3))
    with pytest.raises(ValueError, match="multiple of n_frames"):
        ConditionalDenoiser(3, 4, 12, dim=16, n_layers=1, n_heads=2, n_channels=3,
                            n_patches=4, patch_size=10, aligned_dim=2, n_frames=16)
