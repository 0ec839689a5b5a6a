"""System D's baselines: classical inverses against MNE-Python's own, the Wiener / Tikhonov
deconvolutions against known convolutions, and the physics chain on noise-free simulated runs."""

import json

import mne
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import signal

from neurofuse.physics.hrf import convolve_hrf
from neurofuse.simulation.eeg_fmri import make_config, simulate_dataset
from neurofuse.simulation.eeg_fmri.eeg import erp_kernel
from neurofuse.simulation.eeg_fmri.fmri import sample_bold, slice_offsets
from neurofuse.stats import pearson_r
from neurofuse.systems.transcoder import baselines as B


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("dbase")
    return {name: simulate_dataset(root / name, make_config(name, "tiny", bem="sphere"), 2,
                                   n_test=1)
            for name in ("noise_free", "snr10")}


def test_true_forward_and_noise_cov(datasets):
    ds = datasets["snr10"]
    fwd, info = B.make_true_forward(ds)
    assert_array_equal(fwd["sol"]["data"], ds.truth("leadfield"))  # the matrix, unchanged
    assert fwd["nsource"] == ds.manifest["n_sources"]
    assert_array_equal(fwd["src"][0]["vertno"], np.arange(fwd["nsource"]))
    assert_allclose(fwd["source_rr"], ds.truth("source_pos"))
    assert any(p["desc"] == "Average EEG reference" for p in info["projs"])
    cov = B.eeg_noise_cov(ds, info)
    sd = json.loads((ds.path / "runs" / "run-001" / "run.json").read_text())["eeg_noise_sd"]
    assert_allclose(cov["data"], sd**2)
    # noise-free: only the (white) shape
    nf = datasets["noise_free"]
    assert_allclose(B.eeg_noise_cov(nf, B.make_true_forward(nf)[1])["data"], 1.0)


@pytest.mark.parametrize("scenario", ["snr10", "noise_free"])
def test_classical_equals_mne(datasets, scenario):
    """Our wrapper adds nothing: MNE-Python's own operator and apply_inverse_raw, same inputs."""
    ds = datasets[scenario]
    fwd, info = B.make_true_forward(ds)
    cov = B.eeg_noise_cov(ds, info)
    ref_inv = mne.minimum_norm.make_inverse_operator(
        info, fwd, cov, loose=0.0, fixed=True,
        depth={"exp": 0.8, "allow_fixed_depth": True}, verbose="error")
    lambda2 = 1 / 100 if scenario == "snr10" else 1e-6  # 1 / SNR², floored
    raw = mne.io.RawArray(np.asarray(ds.read_run(1)["eeg"], np.float64), info, verbose="error")
    ours = B.classical_inverses(ds, 1)
    assert set(ours) == {"MNE", "dSPM", "eLORETA"}
    for method, est in ours.items():
        ref = mne.minimum_norm.apply_inverse_raw(raw, ref_inv, lambda2, method,
                                                 verbose="error").data
        assert est.shape == ref.shape
        assert_allclose(est, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_wiener_inverts_known_convolution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3000))
    # a kernel whose gain is bounded away from 0: exact at high SNR (but the last samples,
    # whose convolution runs past the end of y)
    k = np.array([1.0, -0.6, 0.2])
    y = convolve_hrf(x, k)
    x_hat, lam = B.wiener_deconvolve(y + 1e-9 * rng.standard_normal(y.shape), k,
                                     return_lambda=True)
    assert lam < 1e-8
    assert_allclose(x_hat[:, :-20], x[:, :-20], atol=1e-4)
    # more noise -> GCV regularises more, and the estimate degrades gracefully
    x_noisy, lam_noisy = B.wiener_deconvolve(y + 0.3 * rng.standard_normal(y.shape), k,
                                             return_lambda=True)
    assert lam_noisy > 1e3 * lam
    assert np.all(pearson_r(x_noisy, x) > 0.8)
    # the ERP kernel (zero gain at 0 Hz and at its spectral nulls): activity in its pass band
    # (1.5-8 Hz) is recovered away from the edges
    sfreq = 50.0
    sos = signal.butter(4, [1.5, 8.0], "bandpass", fs=sfreq, output="sos")
    x = signal.sosfiltfilt(sos, x)
    d = erp_kernel(sfreq)
    x_hat = B.wiener_deconvolve(convolve_hrf(x, d), d)
    assert np.all(pearson_r(x_hat[:, 50:-50], x[:, 50:-50]) > 0.9)
    no_deconv = convolve_hrf(x, d)
    assert np.all(pearson_r(x_hat, x) > np.abs(pearson_r(no_deconv, x)))


def test_tr_operators_match_the_simulator():
    """For activity constant within each TR the operators give the simulator's BOLD exactly."""
    rng = np.random.default_rng(1)
    sfreq, tr, n_trs = 10.0, 2.0, 30
    offsets = slice_offsets(5, tr, "interleaved", 2)
    ops = B.tr_operators(sfreq, tr, n_trs * 20, offsets)
    assert ops.shape == (5, n_trs, n_trs)
    x_tr = rng.standard_normal((3, n_trs))
    x = np.repeat(x_tr / 20, 20, axis=1)  # (3, n_times), the TR's activity spread evenly
    bold = sample_bold(x, sfreq, tr, offsets)  # (5, 3, n_trs)
    for z in range(5):
        assert_allclose(x_tr @ ops[z].T, bold[z], rtol=1e-10, atol=1e-12)


def test_tikhonov_recovers_tr_activity():
    rng = np.random.default_rng(2)
    sfreq, tr, n_trs = 10.0, 2.0, 40
    ops = B.tr_operators(sfreq, tr, n_trs * 20, np.array([0.0, 1.0]))
    x = rng.standard_normal((6, n_trs))
    groups = np.array([0, 1, 0, 1, 0, 1])
    y = np.stack([ops[g] @ xi for g, xi in zip(groups, x)])
    x_hat, lam = B.tikhonov_deconvolve(y + 1e-10 * rng.standard_normal(y.shape), ops, groups,
                                       return_lambda=True)
    # the last few TRs barely reach the samples (the HRF peaks ~5 s later): not identifiable
    assert np.all(pearson_r(x_hat[:, :-4], x[:, :-4]) > 0.99)
    _, lam_noisy = B.tikhonov_deconvolve(y + 0.1 * rng.standard_normal(y.shape), ops, groups,
                                         return_lambda=True)
    assert lam_noisy > 100 * lam


def test_physics_chain_noise_free(datasets):
    """The physics chain after the inverse, on a noise-free run. With the true sources the HRF
    part reproduces the recorded fMRI exactly (it is the simulator's operator); with the ERP
    itself (what an identity lead field would give the inverse) the chain is exact up to the
    ERP deconvolution, whose gain vanishes as f² at 0 Hz."""
    ds = datasets["noise_free"]
    X = ds.sources(1)
    P = convolve_hrf(X, ds.truth("erp_kernel"))
    z = np.unravel_index(ds.truth("source_voxels"), tuple(ds.manifest["grid"]["shape"]))[2]
    fmri = np.asarray(ds.read_run(1)["fmri"], np.float64).reshape(-1, ds.config.n_trs)
    fmri = fmri[ds.truth("source_voxels")]
    # the true sources through the HRF part reproduce the recorded fMRI (same operator)
    _, f_exact, _ = B.erp_to_fmri(ds, X, deconvolve_erp=False)
    assert_allclose(f_exact, fmri, rtol=1e-5, atol=1e-6 * np.abs(fmri).max())
    assert z.shape == (X.shape[0],)
    # with P itself: the ERP deconvolution restores much of X; the BOLD band (< 0.25 Hz),
    # where d's gain falls as f², only partly (measured ~0.4 with GCV's lambda)
    sources, f_hat, lam = B.erp_to_fmri(ds, P)
    r_deconv = np.nanmean(pearson_r(f_hat, fmri))
    assert np.nanmean(pearson_r(sources, X)) > 0.6
    # the literal "inverse -> HRF" chain sees X * d * h, whose low frequencies are those of
    # -X'' * h: it is far worse (anti-correlated)
    _, f_literal, _ = B.erp_to_fmri(ds, P, deconvolve_erp=False)
    assert r_deconv > 0.3 > np.nanmean(pearson_r(f_literal, fmri)) + 0.3
    # the full baselines run and have the documented shapes
    out = B.physics_eeg_to_fmri(ds, 1)
    assert out["fmri"].shape == fmri.shape and out["sources"].shape == X.shape
    back = B.physics_fmri_to_eeg(ds, 1)
    assert back["eeg"].shape == ds.read_run(1)["eeg"].shape
    assert back["sources"].shape == X.shape
    # the fMRI-deconvolved activity tracks the TR-binned truth (the fMRI sees no faster)
    npt = int(ds.config.tr * ds.config.sfreq)
    n = ds.config.n_trs - 8  # the last TRs are barely seen by the fMRI
    x_tr = back["sources"][:, :n * npt:npt] * npt
    true_tr = X[:, :n * npt].reshape(len(X), n, npt).sum(-1)
    assert np.nanmean(pearson_r(x_tr, true_tr)) > 0.5
