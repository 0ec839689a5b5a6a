"""The paired EEG + MEG world (System B, issue 12 item 1): physics, classes, jitter, bands,
radial vs tangential sources, noise at the CNR, average reference, determinism, the store."""

import math

import numpy as np
import pytest

from neurofuse.data.store import read_dataset
from neurofuse.simulation.eeg_meg import (
    BANDS,
    ONGOING,
    TASKS,
    EEGMEGWorldConfig,
    band_noise,
    make_world_subject,
    simulate_eeg_meg_world,
)

CNR = 4.0


def _tiny(**kw):
    base = dict(anatomy="template", cnr_eeg=CNR, cnr_meg=CNR / 2)
    return EEGMEGWorldConfig.from_preset("tiny", **{**base, **kw})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Template anatomy, 1 paired + 1 EEG-only subject, 10 trials per class, noisy."""
    config = _tiny(n_trials=10)
    path = simulate_eeg_meg_world(tmp_path_factory.mktemp("world") / "w", config)
    return read_dataset(path), config


@pytest.fixture(scope="module")
def clean_world(tmp_path_factory):
    """Noise-free, one task, a few trials: the exact physics and determinism."""
    config = _tiny(n_trials=3, n_eeg_only_subjects=0, tasks=("somatomotor",),
                   cnr_eeg=math.inf, cnr_meg=math.inf, chunk_trials=2)
    path = simulate_eeg_meg_world(tmp_path_factory.mktemp("clean") / "w", config)
    return read_dataset(path), config


def _sources(ds, sub, task):
    return np.asarray(ds.ground_truth(f"sources/{sub}/{task}"), np.float64)


def _column(ds, sub, region, hemi):
    cols = [tuple(c) for c in ds.metadata["subjects"][sub]["region_columns"]]
    return np.asarray(ds.ground_truth(f"regions/{sub}"))[:, cols.index((region, hemi))]


def _class_means(ds, sub, task, src):
    labels = ds.epoch_labels(sub, "eeg", task)
    return {name: src[labels == val].mean(0) for name, val in TASKS[task].event_id.items()}


# -- store and layout ---------------------------------------------------------------------
def test_store_opens_and_passes_checks(world):
    ds, config = world
    assert ds.check(full=True) == []
    assert ds.subjects == ["sub-01", "sub-101"]
    assert ds.modalities("sub-01") == ["eeg", "meg"] and ds.modalities("sub-101") == ["eeg"]
    assert sorted(ds.epoch_names("sub-01", "meg")) == ["faces", "somatomotor"]
    assert ds.epoch_names("sub-101", "eeg") == ["motor_imagery"]
    assert EEGMEGWorldConfig.from_json(ds.metadata["world"]) == config
    for task in ("somatomotor", "faces"):
        n = config.n_trials * len(TASKS[task].classes)
        eeg, meg = ds.epochs("sub-01", "eeg", task), ds.epochs("sub-01", "meg", task)
        assert eeg.shape == (n, 70, config.n_times) and meg.shape == (n, 306, config.n_times)
        # paired: same trials (events, labels) in both modalities, balanced classes
        np.testing.assert_array_equal(ds.epoch_labels("sub-01", "eeg", task),
                                      ds.epoch_labels("sub-01", "meg", task))
        np.testing.assert_array_equal(ds.epoch_events("sub-01", "eeg", task),
                                      ds.epoch_events("sub-01", "meg", task))
        counts = np.bincount(ds.epoch_labels("sub-01", "eeg", task))[1:]
        assert counts.tolist() == [config.n_trials] * len(TASKS[task].classes)
        assert ds.epochs_info("sub-01", "meg", task)["tmin"] == config.tmin
    epochs = ds.to_mne_epochs("sub-01", "meg", "faces")
    assert epochs.event_id == TASKS["faces"].event_id
    assert epochs.info["sfreq"] == config.sfreq == 250.0


# -- physics: sensors = lead field x saved sources (+ noise at the CNR) ----------------------
def test_sensors_equal_leadfield_times_sources_noise_free(clean_world):
    ds, _ = clean_world
    src = _sources(ds, "sub-01", "somatomotor")  # (n_epochs, n_sources, n_times)
    for mod in ("eeg", "meg"):
        lf = np.asarray(ds.leadfield("sub-01", mod), np.float64)
        want = lf @ src
        got = np.asarray(ds.epochs("sub-01", mod, "somatomotor"))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    # the stored MEG lead field is MNE's forward solution
    fwd = ds.forward("sub-01", "meg")
    np.testing.assert_allclose(np.asarray(ds.leadfield("sub-01", "meg")), fwd["sol"]["data"],
                               rtol=1e-6, atol=0)


def test_noise_at_requested_cnr(world):
    ds, config = world
    for sub, mod, task, cnr in (("sub-01", "eeg", "faces", config.cnr_eeg),
                                ("sub-01", "meg", "somatomotor", config.cnr_meg),
                                ("sub-101", "eeg", "motor_imagery", config.cnr_eeg)):
        clean = np.asarray(ds.leadfield(sub, mod), np.float64) @ _sources(ds, sub, task)
        noise = np.asarray(ds.epochs(sub, mod, task), np.float64) - clean
        measured = clean.std(axis=(0, 2)) / noise.std(axis=(0, 2))  # per channel
        # per channel, within sampling error: the s.d. of n white samples is off by
        # 1 / sqrt(2 n) (relative); 5 of those bounds every channel (the uniform
        # 1 / sqrt(1 - 1/n) reference correction missed EEG electrodes by up to ~9 %)
        n_samples = noise.shape[0] * noise.shape[2]
        z = (measured / cnr - 1) * np.sqrt(2 * n_samples)
        assert np.abs(z).max() < 5, (mod, np.abs(measured / cnr - 1).max())
        assert np.mean(z**2) < 1.5  # ~1 (chi-square / n_channels) when unbiased
        # the residual is noise: unrelated to the signal
        r = np.corrcoef(clean.ravel(), noise.ravel())[0, 1]
        assert abs(r) < 0.05


def test_eeg_average_reference(world):
    ds, _ = world
    eeg = np.asarray(ds.epochs("sub-01", "eeg", "faces"), np.float64)
    assert np.abs(eeg.mean(axis=1)).max() < 1e-5 * np.abs(eeg).max()
    lf = np.asarray(ds.leadfield("sub-01", "eeg"), np.float64)
    assert np.abs(lf.sum(axis=0)).max() < 1e-5 * np.abs(lf).max()
    info = ds.info("sub-01", "eeg")
    assert any(p["active"] and "Average EEG reference" in p["desc"] for p in info["projs"])


# -- classes, jitter, bands ---------------------------------------------------------------
def _index(config, t):
    return int(np.argmin(np.abs(config.times - t)))


def test_somatomotor_classes_differ_contralaterally_only(world):
    ds, config = world
    scale = ds.metadata["subjects"]["sub-01"]["source_scale"]
    means = _class_means(ds, "sub-01", "somatomotor", _sources(ds, "sub-01", "somatomotor"))
    diff = (means["left"] - means["right"]) / scale  # (n_sources, n_times)
    t20 = _index(config, 0.020)
    for region, hemi, sign in (("s1_sulcal", "rh", 1), ("s1_sulcal", "lh", -1)):
        j = np.argmax(_column(ds, "sub-01", region, hemi))
        # left-wrist stimulation drives the right S1 (N20: amplitude +1 at the centre)
        assert sign * diff[j, t20] > 0.5
    # S2 (bilateral, side-independent) and occipital cortex: no class difference at all
    resp = np.abs(diff[:, : _index(config, 0.3)])
    stated = resp[np.argmax(_column(ds, "sub-01", "s1_sulcal", "rh"))].max()
    for region in ("s2", "occipital"):
        for hemi in ("lh", "rh"):
            j = np.argmax(_column(ds, "sub-01", region, hemi))
            assert resp[j].max() < 0.3 * stated, (region, hemi)


def test_beta_suppression_and_rebound_contralateral(world):
    ds, config = world
    from scipy.signal import butter, sosfiltfilt

    src = _sources(ds, "sub-01", "somatomotor")
    labels = ds.epoch_labels("sub-01", "eeg", "somatomotor")
    j = np.argmax(_column(ds, "sub-01", "sensorimotor", "rh"))  # contralateral to 'left'
    sos = butter(4, BANDS["beta"], btype="bandpass", fs=config.sfreq, output="sos")
    power = sosfiltfilt(sos, src[:, j]) ** 2  # (n_epochs, n_times)
    t = config.times

    def mean(cls, lo, hi):
        return power[labels == TASKS["somatomotor"].event_id[cls]][:, (t >= lo) & (t < hi)].mean()

    # contralateral: suppression at 0.15-0.35 s, rebound after 0.45 s (tiny epochs end 0.5 s)
    assert mean("left", 0.15, 0.35) < 0.6 * mean("left", 0.45, 0.5)
    # ipsilateral trials suppress less
    assert mean("right", 0.15, 0.35) > 1.3 * mean("left", 0.15, 0.35)


def test_faces_classes_differ_in_fusiform_not_in_sensorimotor(world):
    ds, config = world
    scale = ds.metadata["subjects"]["sub-01"]["source_scale"]
    means = _class_means(ds, "sub-01", "faces", _sources(ds, "sub-01", "faces"))
    window = slice(_index(config, 0.0), _index(config, 0.3))
    fus = np.argmax(_column(ds, "sub-01", "fusiform", "rh"))
    ant = np.argmax(_column(ds, "sub-01", "anterior_fusiform", "rh"))
    # N170: faces deeper than scrambled (amplitude -1.2 vs -0.42) at the fusiform
    t170 = _index(config, 0.170)
    assert (means["scrambled"][fus, t170] - means["famous"][fus, t170]) / scale > 0.4
    # N250 familiarity: famous > unfamiliar in magnitude (anterior fusiform, ~250 ms)
    t250 = _index(config, 0.250)
    assert (means["unfamiliar"][ant, t250] - means["famous"][ant, t250]) / scale > 0.2
    stated = np.abs(means["scrambled"][fus, window] - means["famous"][fus, window]).max()
    for hemi in ("lh", "rh"):
        j = np.argmax(_column(ds, "sub-01", "s1", hemi))
        for a, b in (("famous", "scrambled"), ("famous", "unfamiliar")):
            assert np.abs(means[a][j, window] - means[b][j, window]).max() < 0.3 * stated


def test_latency_and_amplitude_jitter(world):
    ds, config = world
    task = TASKS["faces"]
    lat = np.asarray(ds.ground_truth("trials/sub-01/faces-latency"))
    amp = np.asarray(ds.ground_truth("trials/sub-01/faces-amplitude"))
    labels = ds.epoch_labels("sub-01", "eeg", "faces")
    k = [c.name for c in task.components].index("n170")
    resid = np.concatenate([lat[labels == v, k] - lat[labels == v, k].mean()
                            for v in task.event_id.values()])
    expected = config.latency_jitter * math.sqrt(1 + 0.25)  # common + own (half) shift
    assert 0.5 * expected < resid.std() < 1.6 * expected
    famous = amp[labels == task.event_id["famous"], k] / task.components[k].amplitude
    assert 0.4 * config.amplitude_jitter < famous.std() < 1.8 * config.amplitude_jitter
    # the jitter is in the sources: the N170 trough of each trial follows its latency
    src = _sources(ds, "sub-01", "faces")
    j = np.argmax(_column(ds, "sub-01", "fusiform", "rh"))
    win = (config.times > 0.12) & (config.times < 0.24)
    trough = config.times[win][np.argmin(src[:, j][:, win], axis=1)]
    keep = labels != task.event_id["scrambled"]  # (scrambled N170 is small)
    assert np.corrcoef(trough[keep], lat[keep, k])[0, 1] > 0.7


def test_every_band_has_power_where_stated(world):
    ds, config = world
    from scipy.signal import welch

    src = _sources(ds, "sub-101", "motor_imagery")  # no evoked responses
    freqs, psd = welch(src, fs=config.sfreq, nperseg=config.n_times, axis=-1)
    psd = psd.mean(0)  # (n_sources, n_freqs)
    for gen in ONGOING:
        lo, hi = BANDS[gen.band]
        band = psd[:, (freqs >= lo) & (freqs <= hi)].sum(1)
        # sources outside every region with an oscillation in this band
        outside = np.ones(len(band), bool)
        for other in ONGOING:
            if other.band == gen.band:
                for hemi in ("lh", "rh"):
                    outside &= _column(ds, "sub-101", other.region, hemi) < 0.05
        assert outside.sum() > 20  # (delta is widespread: few sources lack it)
        for hemi in ("lh", "rh"):
            j = np.argmax(_column(ds, "sub-101", gen.region, hemi))
            assert band[j] > 4 * np.median(band[outside]), (gen.name, hemi)


def test_band_noise_spectrum():
    rng = np.random.default_rng(0)
    from scipy.signal import welch

    x = band_noise(rng, 200, 1000, 250.0, BANDS["alpha"])
    np.testing.assert_allclose(x.var(), 1.0, rtol=0.05)
    f, p = welch(x, fs=250.0, nperseg=250)
    p = p.mean(0)
    inside = (f >= 8) & (f <= 13)
    assert p[inside].sum() > 0.97 * p.sum()


# -- radial vs tangential: EEG and MEG genuinely see different sources ----------------------
def _check_radial_tangential(meg_lf, types, eeg_lf, cos, profile):
    eeg = np.linalg.norm(eeg_lf, axis=0)
    eeg /= np.median(eeg)
    for kind in ("mag", "grad"):
        meg = np.linalg.norm(meg_lf[types == kind], axis=0)
        ratio = np.log10(meg / np.median(meg) / eeg)  # > 0: relatively more visible in MEG
        assert np.corrcoef(ratio, cos)[0, 1] < -0.3
        # radial sources (|cos| > 0.9) are >= 2x less visible in MEG, relative to EEG, than
        # tangential ones (|cos| < 0.2)
        assert np.median(ratio[cos < 0.2]) - np.median(ratio[cos > 0.9]) > np.log10(2)
        # both kinds exist: sources relatively more visible in one modality or the other
        assert np.mean(ratio > np.log10(1.5)) > 0.05 and np.mean(ratio < -np.log10(2)) > 0.05
        for hemi in ("lh", "rh"):
            tangential, radial = profile("s1_sulcal", hemi), profile("s1_crown", hemi)
            assert (np.average(ratio, weights=tangential)
                    - np.average(ratio, weights=radial)) > 0.2
            assert np.average(cos, weights=radial) > 0.75
            assert np.average(cos, weights=tangential) < 0.35


def test_radial_sources_favour_eeg_tangential_favour_meg(world):
    ds, _ = world
    types = np.array(ds.info("sub-01", "meg").get_channel_types())
    _check_radial_tangential(
        np.asarray(ds.leadfield("sub-01", "meg"), np.float64), types,
        np.asarray(ds.leadfield("sub-01", "eeg"), np.float64),
        np.asarray(ds.ground_truth("sources/sub-01/radiality")),
        lambda region, hemi: _column(ds, "sub-01", region, hemi))


@pytest.mark.slow
def test_radial_tangential_on_simulated_anatomy():
    config = EEGMEGWorldConfig.from_preset("tiny")  # a simulated subject's own anatomy
    sub = make_world_subject(config, "sub-01", 1, paired=True, tasks=config.tasks)
    cols = sub.model.columns
    _check_radial_tangential(
        sub.meg_leadfield, np.array(sub.meg_info.get_channel_types()), sub.eeg_leadfield,
        sub.radiality, lambda region, hemi: sub.model.profiles[:, cols.index((region, hemi))])


# -- determinism -------------------------------------------------------------------------
def test_deterministic_and_chunk_independent(clean_world, tmp_path):
    ds, config = clean_world
    again = read_dataset(simulate_eeg_meg_world(tmp_path / "a", config.replace(chunk_trials=5)))
    for mod in ("eeg", "meg"):
        np.testing.assert_array_equal(ds.epochs("sub-01", mod, "somatomotor"),
                                      again.epochs("sub-01", mod, "somatomotor"))
    np.testing.assert_array_equal(ds.ground_truth("sources/sub-01/somatomotor"),
                                  again.ground_truth("sources/sub-01/somatomotor"))
    other = read_dataset(simulate_eeg_meg_world(tmp_path / "b",
                                                config.replace(seed=config.seed + 1)))
    assert not np.array_equal(ds.epochs("sub-01", "eeg", "somatomotor"),
                              other.epochs("sub-01", "eeg", "somatomotor"))


# -- configuration -----------------------------------------------------------------------
def test_config_validation_and_json():
    config = EEGMEGWorldConfig.from_preset("demo", cnr_meg=math.inf)
    assert EEGMEGWorldConfig.from_json(config.to_json()) == config
    assert config.n_times == 250 and config.sfreq >= 250
    with pytest.raises(ValueError, match="'sfreq'"):
        EEGMEGWorldConfig(sfreq=100.0)
    with pytest.raises(ValueError, match="tasks"):
        EEGMEGWorldConfig(tasks=("somatomotor", "nback"))
    with pytest.raises(ValueError, match="'soa'"):
        EEGMEGWorldConfig(soa=(0.5, 1.0))
    with pytest.raises(ValueError, match="preset"):
        EEGMEGWorldConfig.from_preset("huge")
    with pytest.raises(ValueError, match="n_trial"):
        EEGMEGWorldConfig.from_preset("tiny", n_trial=3)
    with pytest.raises(TypeError, match="'config'"):
        simulate_eeg_meg_world("/nonexistent/never", config={"n_subjects": 1})


def test_eeg_only_cap_and_no_sources(tmp_path):
    config = _tiny(n_trials=1, tasks=("faces",), eeg_only_montage="colin27_1020",
                   save_sources=False)
    ds = read_dataset(simulate_eeg_meg_world(tmp_path / "w", config))
    assert ds.epochs("sub-01", "eeg", "faces").shape[1] == 70
    assert ds.epochs("sub-101", "eeg", "motor_imagery").shape[1] == 94
    assert not [n for n in ds.ground_truth_names if n.endswith(("faces.npy", "imagery.npy"))
                and n.startswith("sources/")]
