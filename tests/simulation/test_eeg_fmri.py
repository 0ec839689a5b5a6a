"""The simultaneous EEG–fMRI simulator (system D): EEG, fMRI, SNR and the data set on disk,
each checked against an independent computation (numpy/scipy convolution on a finer grid)."""

import json
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import signal

from neurofuse.physics.hrf import spm_hrf
from neurofuse.simulation.eeg_fmri import (
    EEGfMRIConfig,
    make_config,
    make_setup,
    read_dataset,
    simulate_dataset,
    simulate_run,
)
from neurofuse.simulation.eeg_fmri.eeg import erp_kernel
from neurofuse.simulation.eeg_fmri.fmri import shifted_hrf, slice_offsets, slice_order

FAST = dict(bem="sphere")  # the BEM lead field is checked in the slow test


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eeg_fmri")
    return {name: simulate_dataset(root / name, make_config(name, "tiny", **FAST), 1)
            for name in ("noise_free", "interleave5_noise_free", "snr10")}


def _expected_eeg(ds, run=0):
    """``L (X * d)`` with X rebuilt from the saved components, convolved row by row."""
    X = ds.sources(run)
    d = ds.truth("erp_kernel")
    conv = np.stack([np.convolve(x, d)[:X.shape[1]] for x in X])
    return ds.truth("leadfield") @ conv


def _expected_fmri(ds, run=0):
    """``(X * h)(m TR + δ_z)`` on a grid ``U`` times finer, where every slice time is a sample.

    The sources are zero-stuffed to ``U sfreq`` and convolved with the HRF sampled there,
    normalised like ``spm_hrf(sfreq)`` (unit sum of its samples at ``sfreq``): an independent
    evaluation of the continuous-time convolution at the slice times.
    """
    cfg = ds.config
    n_slices = cfg.grid_shape[2]
    offsets = slice_offsets(n_slices, cfg.tr, cfg.slice_order, cfg.interleave)
    up = next(u for u in range(1, 100) if np.allclose(offsets * cfg.sfreq * u,
                                                       np.round(offsets * cfg.sfreq * u)))
    X = ds.sources(run)
    if cfg.bold_drive == "envelope":
        X = np.abs(signal.hilbert(X, axis=1))
    fine = np.zeros((len(X), X.shape[1] * up))
    fine[:, ::up] = X
    h = spm_hrf(cfg.sfreq * up)
    h = h / h[::up].sum()
    b = signal.fftconvolve(fine, h[None], axes=1)[:, :fine.shape[1]]
    z = np.unravel_index(ds.truth("source_voxels"), cfg.grid_shape)[2]
    idx = (np.arange(cfg.n_trs)[None] * cfg.tr + offsets[z][:, None]) * cfg.sfreq * up
    return np.take_along_axis(b, np.round(idx).astype(int), axis=1)  # (n_sources, n_trs)


def test_erp_kernel_is_triphasic_and_470_ms():
    d = erp_kernel(1000.0, 0.47)
    assert len(d) == 471 and d[0] == 0 and abs(d[-1]) < 1e-12
    assert_allclose(np.abs(d).max(), 1.0)
    t = np.arange(len(d)) / 1000.0
    assert t[np.argmin(d)] == pytest.approx(0.235, abs=1e-3)
    sign_changes = np.flatnonzero(np.diff(np.sign(d[1:-1])) != 0)
    assert_allclose(t[1 + sign_changes], [0.157, 0.314], atol=2e-3)


def test_slice_orders():
    assert_array_equal(slice_order(12, "interleaved", 5), [0, 5, 10, 1, 6, 11, 2, 7, 3, 8, 4, 9])
    assert_array_equal(slice_order(6, "interleaved", 2), [0, 2, 4, 1, 3, 5])
    assert_array_equal(slice_order(5, "sequential"), np.arange(5))
    off = slice_offsets(12, 2.0, "interleaved", 5)
    assert off[0] == 0 and off[5] == pytest.approx(2 / 12) and off[9] == pytest.approx(22 / 12)
    assert_array_equal(np.sort(off), np.arange(12) * 2 / 12)


def test_shifted_hrf_matches_spm_hrf_on_a_finer_grid():
    assert_array_equal(shifted_hrf(50.0, 0.0), spm_hrf(50.0))
    fine = spm_hrf(200.0)  # samples at k / 200: shift 0.25 of a 50 Hz sample is fine[1::4]
    fine = fine / fine[::4].sum()
    shifted = shifted_hrf(50.0, 0.25)
    assert len(fine[1::4]) == len(shifted) - 1 and shifted[-1] == 0  # t = 32.005 s > length
    assert_allclose(shifted[:-1], fine[1::4], rtol=1e-10, atol=1e-14)


def test_eeg_equals_leadfield_times_erp_convolved_sources(datasets):
    ds = datasets["noise_free"]
    eeg = ds.read_run(0)["eeg"]
    expected = _expected_eeg(ds)
    assert eeg.shape == (64, ds.config.n_times)
    assert_allclose(eeg, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    # average reference: the lead field's columns (and the data) sum to 0 over channels
    lf = ds.truth("leadfield")
    assert_allclose(lf.sum(0), 0, atol=1e-9 * np.abs(lf).max())


@pytest.mark.parametrize("scenario", ["noise_free", "interleave5_noise_free"])
def test_fmri_equals_hrf_convolved_sources_at_slice_times(datasets, scenario):
    ds = datasets[scenario]
    fmri = np.asarray(ds.read_run(0)["fmri"])
    cfg = ds.config
    assert fmri.shape == (*cfg.grid_shape, cfg.n_trs)
    flat = fmri.reshape(-1, cfg.n_trs)
    vox = ds.truth("source_voxels")
    expected = _expected_fmri(ds)
    assert_allclose(flat[vox], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    others = np.setdiff1d(np.arange(len(flat)), vox)
    assert not flat[others].any()  # no source, no noise: nothing


def test_fmri_of_the_envelope(tmp_path):
    cfg = make_config("interleave5_noise_free", "tiny", duration=20.0, bold_drive="envelope",
                      **FAST)
    ds = simulate_dataset(tmp_path / "env", cfg, 1)
    flat = np.asarray(ds.read_run(0)["fmri"]).reshape(-1, cfg.n_trs)
    expected = _expected_fmri(ds)
    assert_allclose(flat[ds.truth("source_voxels")], expected, rtol=1e-5,
                    atol=1e-6 * np.abs(expected).max())


def test_slice_timing_changes_the_fmri(datasets):
    """Same seed, same sources: sequential and interleaved differ only where slice times do."""
    a, b = (np.asarray(datasets[s].read_run(0)["fmri"])
            for s in ("noise_free", "interleave5_noise_free"))
    cfg = datasets["noise_free"].config
    seq = slice_offsets(cfg.grid_shape[2], cfg.tr, "sequential")
    inter = slice_offsets(cfg.grid_shape[2], cfg.tr, "interleaved", 5)
    z_src = np.unique(np.unravel_index(datasets["noise_free"].truth("source_voxels"),
                                       cfg.grid_shape)[2])
    assert (~np.isclose(seq[z_src], inter[z_src])).sum() >= 3
    for z in z_src:
        same = np.isclose(seq[z], inter[z])
        assert np.array_equal(a[:, :, z], b[:, :, z]) == same


def test_snr_measured_equals_requested(datasets):
    ds = datasets["snr10"]
    run = ds.read_run(0)
    clean = _expected_eeg(ds)
    noise = np.asarray(run["eeg"], float) - clean
    snr = math.sqrt(clean.var(1).sum() / noise.var(1).sum())
    assert snr == pytest.approx(10.0, rel=1e-3)
    assert_allclose(noise.mean(0), 0, atol=1e-4 * noise.std())  # average-referenced noise
    assert run["eeg_noise_sd"] == pytest.approx(np.sqrt(noise.var(1).mean()), rel=1e-3)
    vox = ds.truth("source_voxels")
    fmri = np.asarray(run["fmri"]).reshape(-1, ds.config.n_trs)
    bold = _expected_fmri(ds)
    fnoise = fmri[vox] - bold
    assert math.sqrt(bold.var(1).sum() / fnoise.var(1).sum()) == pytest.approx(10.0, rel=1e-3)
    assert run["motion"].shape == (ds.config.n_trs, 6)
    assert run["physio"].shape == (2, ds.config.n_times)


def test_sources_split_into_oscillatory_and_sparse(datasets):
    ds = datasets["noise_free"]
    cfg, run = ds.config, ds.read_run(0)
    kinds = ds.source_kind()
    regions = ds.regions()
    assert (kinds == "oscillatory").any() and (kinds == "sparse").any()
    assert regions["kind"].count("oscillatory") == cfg.n_oscillatory
    evoked = ds.sources(0, kind="evoked")
    osc = ds.sources(0, kind="oscillation")
    assert_allclose(evoked + osc, ds.sources(0))
    assert not osc[kinds == "sparse"].any()
    assert (np.count_nonzero(evoked, axis=1) < 0.05 * cfg.n_times).all()  # impulse trains
    assert (np.count_nonzero(evoked, axis=1) > 0).all()
    # each oscillation peaks inside its region's band
    comps = run["components"]
    for c, (r, k) in enumerate(zip(run["comp_region"], run["comp_kind"])):
        if k != "oscillation":
            continue
        f, p = signal.welch(comps[c], fs=cfg.sfreq, nperseg=512)
        lo, hi = regions["band"][r]
        assert lo <= f[np.argmax(p)] <= hi
    # the evoked impulses follow the design: every event of a region's condition (+ latency)
    onset, cond = np.array(run["onset"]), np.array(run["condition"])
    c0 = run["comp_kind"].index("evoked")
    r0 = run["comp_region"][c0]
    times = onset[cond == regions["condition"][r0]] + regions["latency"][r0]
    idx = np.round(times * cfg.sfreq).astype(int)
    assert (comps[c0, idx[idx < cfg.n_times]] > 0).all()


def test_dataset_resumes_and_refuses_other_configs(tmp_path):
    cfg = make_config("noise_free", "tiny", duration=10.0, **FAST)
    out = tmp_path / "ds"
    ds = simulate_dataset(out, cfg, 3)
    assert ds.runs == ["run-000", "run-001", "run-002"]
    assert ds.manifest["split"] == {"train": ["run-000", "run-001"], "test": ["run-002"]}
    first = np.load(out / "runs/run-001/eeg.npy")
    mtime = (out / "runs/run-000/eeg.npy").stat().st_mtime_ns
    import shutil

    shutil.rmtree(out / "runs/run-001")  # an interrupted data set
    ds = simulate_dataset(out, cfg, 3)
    assert ds.runs == ["run-000", "run-001", "run-002"]
    assert_array_equal(np.load(out / "runs/run-001/eeg.npy"), first)  # same seed, same run
    assert (out / "runs/run-000/eeg.npy").stat().st_mtime_ns == mtime  # skipped
    with pytest.raises(ValueError, match="another configuration"):
        simulate_dataset(out, cfg.replace(seed=1), 3)
    assert json.loads((out / "manifest.json").read_text())["config"] == cfg.to_json()
    assert read_dataset(out).config == cfg
    with pytest.raises(ValueError, match="Invalid run"):
        read_dataset(out).read_run(7)
    with pytest.raises(FileNotFoundError, match="not an EEG-fMRI data set"):
        read_dataset(tmp_path)
    assert not list(out.rglob("*.pkl"))


def test_config_presets_and_errors():
    assert make_config("snr10").eeg_snr == 10 and make_config("snr10").slice_order == "interleaved"
    paper = make_config("noise_free", "paper")
    assert paper.grid_shape == (64, 64, 35) and paper.sfreq == 105 and paper.n_trs == 300
    cfg = make_config("interleave5_noise_free", "tiny")
    assert EEGfMRIConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    with pytest.raises(ValueError, match="'slice_order'"):
        make_config(slice_order="random")
    with pytest.raises(ValueError, match="whole number"):
        make_config(duration=61.0)
    with pytest.raises(ValueError, match="Unknown EEGfMRIConfig key"):
        make_config(tr_s=2.0)
    with pytest.raises(ValueError, match="Unknown hrf key"):
        make_config(hrf={"delay": 6.0})
    with pytest.raises(ValueError, match="'scenario'"):
        make_config("snr5")


def test_simulate_run_is_reproducible():
    setup = make_setup(make_config("snr10", "tiny", duration=10.0, **FAST))
    a, b = simulate_run(setup, 4), simulate_run(setup, 4)
    assert_array_equal(a["eeg"], b["eeg"])
    assert_array_equal(a["fmri"], b["fmri"])
    assert not np.array_equal(a["eeg"], simulate_run(setup, 5)["eeg"])


@pytest.mark.slow
def test_bem_lead_field_agrees_with_the_sphere():
    """The three-layer BEM and the fitted three-shell sphere give similar EEG topographies
    (the BEM is cold the first time: ~1 min)."""
    setup_bem = make_setup(make_config("noise_free", "tiny", bem="bem", duration=4.0))
    setup_sph = make_setup(make_config("noise_free", "tiny", bem="sphere", duration=4.0))
    common, ib, isph = np.intersect1d(setup_bem.sources.voxels, setup_sph.sources.voxels,
                                      return_indices=True)
    a, b = setup_bem.leadfield[:, ib], setup_sph.leadfield[:, isph]
    r = [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(len(common))]
    assert np.median(r) > 0.9
