"""MEG preprocessing (paper §2.4) on a simulated recording with known artefacts.

The recording (:func:`simulate_raw`) is built on the real 306-channel Vectorview geometry:
a few cortical dipoles (sphere model), blinks from a dipole behind the eyes recorded by an
EOG channel, heartbeats recorded by an ECG channel, the stimulus audio leaking into the
sensors and recorded on a misc channel, 60/120 Hz line noise, and triggers at story onsets.
:mod:`test_bids_meg` writes it to BIDS with mne-bids.
"""

from __future__ import annotations

import numpy as np
import pytest

mne = pytest.importorskip("mne")
# FastICA may stop at max_iter on seconds of data; the tests check what was removed instead.
pytestmark = pytest.mark.filterwarnings("ignore:FastICA did not converge")

from neurofuse.anatomy import make_meg_info
from neurofuse.preprocessing.meg import (
    MEGPreprocessing,
    apply_filters,
    apply_ica,
    apply_maxwell,
    epoch_stories,
    find_story_onsets,
    line_noise_freqs,
    maxwell_history,
    preprocess_meg,
)

SFREQ = 500.0
HEART_AMP = 2e-7
BLINK_AMP = 3e-7
#: Fast settings for seconds of data: tSSS buffer of 4 s, 20 ICA components; cardiac
#: components by correlation with the ECG (CTPS needs minutes of heartbeats).
FAST = {"st_duration": 4.0, "ica_n_components": 20, "origin": (0.0, 0.0, 0.04),
            "audio_channel": "MISC001", "line_freq": 60.0, "ecg_method": "correlation",
            "ecg_threshold": 3.0}


def _bandlimited(rng, n, sfreq, lo, hi):
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [lo, hi], btype="band", fs=sfreq, output="sos")
    x = sosfiltfilt(sos, rng.standard_normal(n))
    return x / x.std()


def _dipole_fields(info, pos, ori):
    """Fields (n_channels, n_dipoles) of unit (1 A·m) dipoles at head positions ``pos``."""
    n = len(pos)
    dip = mne.Dipole(np.zeros(n), np.asarray(pos, float), np.ones(n),
                     np.asarray(ori, float), np.ones(n))
    sphere = mne.make_sphere_model(r0=(0.0, 0.0, 0.04), head_radius=None, verbose=False)
    fwd, _ = mne.make_forward_dipole(dip, sphere, info, verbose=False)
    return fwd["sol"]["data"]


def _tangential(pos, direction, r0=(0.0, 0.0, 0.04)):
    """``direction`` with its radial part removed (radial dipoles are silent in a sphere)."""
    pos, d = np.asarray(pos, float), np.asarray(direction, float)
    r = pos - r0
    r /= np.linalg.norm(r, axis=-1, keepdims=True)
    d = d - (d * r).sum(-1, keepdims=True) * r
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def simulate_raw(events, duration, *, sfreq=SFREQ, seed=0, audio=None, line_noise=True,
                 blinks=True, dev_head_t=None, line_freq=60.0):
    """A 306-channel recording with STI101, EOG061, ECG063 and MISC001 (audio).

    Parameters
    ----------
    events : list of (int, float, float)
        ``(trigger code, onset s, story duration s)``; the audio plays during each story.
    duration : float
        Recording length in s.
    audio : dict of int to array | None
        Audio waveform per trigger code at ``sfreq`` (default: band-limited noise).

    Returns
    -------
    raw : mne.io.RawArray
    truth : dict
        ``blink`` and ``audio`` time courses, ``eog_field`` (n_channels,), ``meg`` picks.
    """
    rng = np.random.default_rng(seed)
    info = make_meg_info(sfreq=sfreq, dev_head_t=dev_head_t, verbose="error")
    n = round(duration * sfreq)
    t = np.arange(n) / sfreq
    mags = np.array([ch["coil_type"] == 3024 for ch in info["chs"]])
    # Cortical sources: tangential dipoles 6-7 cm from the sphere centre, 20 nA·m, 2-20 Hz.
    brain_pos = np.array([[0.05, 0.0, 0.07], [-0.05, 0.0, 0.07], [0.0, 0.05, 0.08],
                          [0.0, -0.06, 0.07], [0.04, 0.03, 0.09], [-0.04, -0.03, 0.09]])
    brain_ori = _tangential(brain_pos, rng.standard_normal((6, 3)))
    eye_pos = np.array([[0.0, 0.05, 0.0]])
    heart_pos = np.array([[0.0, -0.03, -0.01]])
    ear_pos = np.array([[0.065, 0.0, 0.02]])
    fields = _dipole_fields(info, np.r_[brain_pos, eye_pos, heart_pos, ear_pos],
                            np.r_[brain_ori, _tangential(eye_pos, [0, 0, 1]),
                                  _tangential(heart_pos, [0, 1, 0]),
                                  _tangential(ear_pos, [0, 0, 1])])
    brain = 20e-9 * np.array([_bandlimited(rng, n, sfreq, 2, 20) for _ in range(6)])
    blink = np.zeros(n)
    if blinks:
        for onset in np.arange(0.7, duration - 0.5, 1.9) + rng.uniform(-0.2, 0.2):
            blink += np.exp(-0.5 * ((t - onset) / 0.06) ** 2)
    beats = np.zeros(n)
    for onset in np.arange(0.3, duration, 0.85):
        beats += np.exp(-0.5 * ((t - onset) / 0.012) ** 2)
    sound = np.zeros(n)
    for code, onset, dur in events:
        a, b = round(onset * sfreq), min(round((onset + dur) * sfreq), n)  # may run past the end
        wave = audio[code] if audio is not None else None
        if wave is None:
            env = 1 + np.sin(2 * np.pi * 4 * t[: b - a])
            wave = env * _bandlimited(rng, b - a, sfreq, 80, 140)
        sound[a:b] = wave[: b - a]
    meg = fields[:, :6] @ brain + np.outer(fields[:, 6], BLINK_AMP * blink) \
        + np.outer(fields[:, 7], HEART_AMP * beats) + np.outer(fields[:, 8], 10e-9 * sound)
    noise_sd = np.where(mags, 10e-15, 3e-13)
    meg += noise_sd[:, None] * rng.standard_normal(meg.shape)
    if line_noise:
        amp = np.where(mags, 1e-12, 2e-11)[:, None] * rng.uniform(0.5, 1.5, (len(mags), 1))
        meg += amp * (np.sin(2 * np.pi * line_freq * t) + 0.5 * np.sin(4 * np.pi * line_freq * t))
    stim = np.zeros(n)
    for code, onset, _ in events:
        k = round(onset * sfreq)
        stim[k:k + 5] = code
    eog = 300e-6 * blink + 5e-6 * rng.standard_normal(n)
    ecg = 1e-3 * beats + 2e-5 * rng.standard_normal(n)
    misc = sound + 0.01 * rng.standard_normal(n)
    aux_info = mne.create_info(["STI101", "EOG061", "ECG063", "MISC001"], sfreq,
                               ["stim", "eog", "ecg", "misc"])
    raw = mne.io.RawArray(meg, info, verbose="error")
    raw.add_channels([mne.io.RawArray(np.array([stim, eog, ecg, misc]), aux_info,
                                      verbose="error")], force_update_info=True)
    raw.info["line_freq"] = line_freq
    truth = {"blink": blink, "audio": sound, "eog_field": fields[:, 6], "brain": brain,
             "brain_fields": fields[:, :6], "brain_pos": brain_pos, "brain_ori": brain_ori}
    return raw, truth


def _meg(raw):
    return mne.pick_types(raw.info, meg=True, ref_meg=False, exclude=())


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording():
    """Story codes 1 (3 s) and 2 (2 s); story 1 is presented twice."""
    events = [(1, 1.0, 3.0), (2, 4.6, 2.0), (1, 7.1, 3.0)]
    return simulate_raw(events, 11.0, seed=1), events


@pytest.fixture(scope="module")
def cleaned(recording):
    (raw, _truth), _ = recording
    clean, report = preprocess_meg(raw, config=MEGPreprocessing(**FAST))
    return clean, report


def test_config_validation_and_round_trip(tmp_path):
    cfg = MEGPreprocessing(**FAST)
    assert MEGPreprocessing.from_dict(cfg.to_dict()) == cfg
    (tmp_path / "p.json").write_text(__import__("json").dumps(cfg.to_dict()))
    assert MEGPreprocessing.resolve(tmp_path / "p.json") == cfg
    with pytest.raises(ValueError, match="did you mean 'st_duration'"):
        MEGPreprocessing.from_dict({"st_durations": 4.0})
    with pytest.raises(ValueError, match="'l_freq'"):
        MEGPreprocessing(l_freq=200.0)
    with pytest.raises(ValueError, match="ica_n_components"):
        MEGPreprocessing(ica_n_components=1.5)
    with pytest.raises(ValueError, match="audio_threshold"):
        MEGPreprocessing(audio_threshold=3.0)
    assert line_noise_freqs(60, 150) == [60, 120]
    assert line_noise_freqs(50, 150) == [50, 100, 150]


def test_filters_remove_line_noise_and_keep_the_signal(recording):
    (raw, _), _ = recording
    raw = raw.copy()
    meg = _meg(raw)
    # A strong 190 Hz tone, above the 150 Hz band-pass edge, must be cut too.
    tone = np.sin(2 * np.pi * 190.0 * raw.times)
    raw._data[meg] += 0.3 * raw._data[meg].std(axis=1, keepdims=True) * tone
    cfg = MEGPreprocessing(**{**FAST, "maxwell": False, "ica": False})
    filt, report = apply_filters(raw.copy(), cfg)
    assert report["notch"] == [60.0, 120.0]
    kw = {"fmin": 1.0, "fmax": 200.0, "n_fft": 1000, "picks": meg[::7], "verbose": False}
    before = raw.compute_psd(**kw)
    after = filt.compute_psd(**kw)

    def drop_db(f):
        k = np.argmin(np.abs(before.freqs - f))
        return 10 * np.log10(before.get_data()[:, k] / after.get_data()[:, k])

    assert np.median(drop_db(60.0)) > 20 and np.median(drop_db(120.0)) > 20
    assert np.median(drop_db(190.0)) > 20
    assert np.all(np.abs(drop_db(10.0)) < 1.0)  # brain band kept within 1 dB


def test_preprocess_output_rate_and_report(recording, cleaned):
    (raw, _), _ = recording
    clean, report = cleaned
    assert clean.info["sfreq"] == 50.0
    assert report["sfreq_in"] == SFREQ and report["sfreq_out"] == 50.0
    assert abs(clean.n_times - raw.n_times / 10) <= 1
    assert len(_meg(clean)) == 306 and "STI101" not in clean.ch_names
    assert report["filters"]["notch"] == [60.0, 120.0]
    assert report["maxwell"]["origin"] == [0.0, 0.0, 0.04]
    assert raw.info["sfreq"] == SFREQ and raw.n_times == int(11.0 * SFREQ)  # input untouched
    __import__("json").dumps(report)  # JSON-serialisable


@pytest.fixture(scope="module")
def filtered(recording):
    """The recording after tSSS and filters, at 500 Hz (the input of the ICA step)."""
    (raw, _), _ = recording
    cfg = MEGPreprocessing(**FAST)
    sss, _ = apply_maxwell(raw, cfg)
    return apply_filters(sss, cfg)[0]


def _r2(data, x):
    """Squared correlation of each row of ``data`` with ``x``."""
    data = data - data.mean(axis=1, keepdims=True)
    x = x - x.mean()
    return (data @ x / np.sqrt((data**2).sum(1) * (x**2).sum())) ** 2


def _brain_part(data, regressors, n_brain):
    """The part of ``data`` (channels, times) explained by the first ``n_brain`` regressors
    (the cortical sources) in a joint least-squares fit with the others (the artefacts), so
    that chance correlations between sources and artefacts do not count as brain signal."""
    data = data - data.mean(axis=1, keepdims=True)
    regressors = regressors - regressors.mean(axis=1, keepdims=True)
    coef = np.linalg.lstsq(regressors.T, data.T, rcond=None)[0]
    return (regressors[:n_brain].T @ coef[:n_brain]).T


@pytest.fixture(scope="module")
def ica_cleaned(filtered):
    return apply_ica(filtered.copy(), MEGPreprocessing(**FAST))


@pytest.mark.parametrize("kind, reference", [("ocular", "EOG061"), ("cardiac", "ECG063"),
                                             ("audio", "MISC001")])
def test_ica_removes_the_artefact_components(filtered, ica_cleaned, kind, reference):
    """One component per artefact is removed; afterwards no channel follows the artefact."""
    clean, report = ica_cleaned
    assert len(report[kind]) == 1 or (kind == "ocular" and len(report[kind]) == 2), report
    meg = _meg(filtered)
    artefact = filtered.get_data(picks=[reference])[0]
    before = _r2(filtered.get_data(picks=meg), artefact)
    after = _r2(clean.get_data(picks=meg), artefact)
    top = np.argsort(before)[-20:]  # the channels where the artefact was strongest
    assert after.max() < before[top].min() / 20, (before[top].min(), after.max())
    if kind == "ocular":
        assert before[top].min() > 0.5  # blinks dominated the frontal channels
        assert report["eog_channels"] == ["EOG061"] and not report["eog_proxy"]


def test_ica_keeps_the_brain_signal(recording, filtered, ica_cleaned):
    (_, truth), _ = recording
    clean, report = ica_cleaned
    assert report["excluded"] == sorted(report["ocular"] + report["cardiac"] + report["audio"])
    meg = _meg(filtered)
    regressors = np.vstack([truth["brain"], filtered.get_data(picks=["EOG061", "ECG063",
                                                                      "MISC001"])])
    scale = filtered.get_data(picks=meg).std(axis=1, keepdims=True)  # mags and grads alike
    before = _brain_part(filtered.get_data(picks=meg) / scale, regressors, 6)
    after = _brain_part(clean.get_data(picks=meg) / scale, regressors, 6)
    kept = np.sum(before * after) / np.sum(before * before)
    assert 0.97 < kept < 1.03


def test_ica_without_eog_channel_uses_frontal_proxy(recording, filtered):
    (_, truth), _ = recording
    no_eog = filtered.copy().drop_channels(["EOG061"])
    clean, report = apply_ica(no_eog, MEGPreprocessing(**FAST))
    assert report["eog_proxy"] and all(ch.startswith("MEG") for ch in report["eog_channels"])
    assert len(report["ocular"]) >= 1
    blink = truth["blink"]
    assert _r2(clean.get_data(picks=_meg(clean)), blink).max() < 0.05


def test_ica_audio_from_an_array(recording, filtered, ica_cleaned):
    """An audio array aligned with the recording (NaN outside stories) finds the same component."""
    (_, truth), _ = recording
    audio = np.where(truth["audio"] != 0, truth["audio"], np.nan)
    cfg = MEGPreprocessing(**{**FAST, "audio_channel": None})
    _, report = apply_ica(filtered.copy(), cfg, audio=audio)
    assert report["audio_reference"] == "array"
    assert report["audio"] == ica_cleaned[1]["audio"] and report["audio_max_r"] > 0.8
    _, none = apply_ica(filtered.copy(), cfg)
    assert none["audio"] == [] and none["audio_reference"] is None
    with pytest.raises(ValueError, match="shape"):
        apply_ica(filtered.copy(), cfg, audio=audio[:-3])


def test_maxwell_moves_the_head_to_the_destination(recording):
    """tSSS with a destination gives what the sensors would record with the head there (so
    all runs of a subject share one forward model): the cortical field patterns in the output
    match the fields computed at the destination better than those at the original position."""
    (raw, truth), _ = recording
    dest = np.array(raw.info["dev_head_t"]["trans"])
    dest[:3, 3] += [0.0, 0.01, -0.01]  # 14 mm
    cfg = MEGPreprocessing(**{**FAST, "detect_bad_channels": False, "st_duration": None})
    moved, report = apply_maxwell(raw, cfg, destination=dest)
    np.testing.assert_allclose(moved.info["dev_head_t"]["trans"], dest)
    np.testing.assert_allclose(report["destination"], dest)
    at_dest = make_meg_info(sfreq=SFREQ, dev_head_t=dest, verbose="error")
    fields_dest = _dipole_fields(at_dest, truth["brain_pos"], truth["brain_ori"])
    mags = mne.pick_types(moved.info, meg="mag")
    brain = truth["brain"] - truth["brain"].mean(axis=1, keepdims=True)
    data = moved.get_data(picks=mags)
    patterns = np.linalg.lstsq(brain.T, (data - data.mean(1, keepdims=True)).T, rcond=None)[0]
    for k in range(brain.shape[0]):
        r_dest = abs(np.corrcoef(patterns[k], fields_dest[mags, k])[0, 1])
        r_orig = abs(np.corrcoef(patterns[k], truth["brain_fields"][mags, k])[0, 1])
        assert r_dest > 0.95 and r_dest > r_orig, (k, r_dest, r_orig)


def test_story_onsets_from_triggers_and_annotations(recording):
    (raw, _), _events = recording
    expected = [("s1", 1.0), ("s2", 4.6), ("s1", 7.1)]
    onsets = find_story_onsets(raw, ["s1", "s2"], source="stim",
                               event_id={"s1": 1, "s2": 2})
    assert [s for s, _ in onsets] == [s for s, _ in expected]
    np.testing.assert_allclose([t for _, t in onsets], [t for _, t in expected], atol=1 / SFREQ)
    ann = raw.copy().set_annotations(mne.Annotations([1.0, 4.6, 7.1, 2.0], [3.0, 2.0, 3.0, 0],
                                                     ["story/s1", "s2", "s1", "button"]))
    assert find_story_onsets(ann, ["s1", "s2"]) == expected
    # Real recordings start at first_samp > 0 and annotations count from meas_date.
    late = mne.io.RawArray(raw.get_data(), raw.info, first_samp=12345, verbose=False)
    late.set_meas_date(1_700_000_000)
    assert find_story_onsets(late, ["s1", "s2"], source="stim",
                             event_id={"s1": 1, "s2": 2}) == onsets
    late.set_annotations(mne.Annotations(np.array([1.0, 4.6, 7.1]) + late.first_time, 0.0,
                                         ["s1", "s2", "s1"], orig_time=late.info["meas_date"]))
    np.testing.assert_allclose([t for _, t in find_story_onsets(late, ["s1", "s2"])],
                               [1.0, 4.6, 7.1])
    with pytest.raises(ValueError, match="event_id"):
        find_story_onsets(raw, ["s1", "s2"])
    with pytest.raises(ValueError, match="codes seen"):
        find_story_onsets(raw, ["s1"], source="stim", event_id={"s1": 7})


def test_epochs_start_at_the_onset_and_have_the_story_length(recording, cleaned):
    (raw, _truth), _ = recording
    clean, _ = cleaned
    onsets = find_story_onsets(raw, ["s1", "s2"], source="stim", event_id={"s1": 1, "s2": 2})
    epochs = epoch_stories(clean, onsets, {"s1": 150, "s2": 100})
    assert epochs["s1"].shape == (2, 306, 150) and epochs["s2"].shape == (1, 306, 100)
    assert epochs["s1"].dtype == np.float32
    data = clean.get_data(picks=_meg(clean))
    np.testing.assert_array_equal(epochs["s1"][1], data[:, 355:505].astype(np.float32))
    np.testing.assert_array_equal(epochs["s2"][0], data[:, 230:330].astype(np.float32))
    with pytest.raises(ValueError, match="stories of inconsistent length"):
        epoch_stories(clean, onsets, {"s1": 200, "s2": 100})


def test_wrong_sampling_rate_is_refused(recording):
    (raw, _), _ = recording
    low = raw.copy().resample(200.0, verbose=False)
    with pytest.raises(ValueError, match="Wrong sampling rate.*200 Hz"):
        preprocess_meg(low, config=MEGPreprocessing(**FAST))


# ---------------------------------------------------------------------------------------------
# Real recordings: low rates, no mains notch, data already Maxwell-filtered (issue 16)


def test_low_rate_recording_follows_the_advice(catch_logs):
    """A 90-Hz recording: the default 150-Hz low-pass is refused with a message naming h_freq
    and a value that works; with that value (40 Hz) there is no 60-Hz notch above Nyquist and
    the filtering is exactly MNE's band-pass alone."""
    raw, _ = simulate_raw([(1, 1.0, 2.0)], 5.0, line_noise=False)
    raw.resample(90.0, verbose="error")
    cfg = MEGPreprocessing(**{**FAST, "maxwell": False, "ica": False})
    with pytest.raises(ValueError, match=r"Wrong sampling rate.*90 Hz.*h_freq=150 Hz.*Nyquist "
                                         r"frequency \(45 Hz\).*h_freq = 40"):
        preprocess_meg(raw, config=cfg)
    low = MEGPreprocessing(**{**cfg.to_dict(), "h_freq": 40.0})
    with catch_logs("info") as log:
        filt, report = apply_filters(raw.copy(), low)
    assert report["notch"] == [] and report["line_freq"] == 60.0
    assert "notch at none (60-Hz mains lie above the low-pass h_freq=40 Hz" in log.text
    ref = raw.copy().filter(1.0, 40.0, picks=_meg(raw), verbose="error")
    np.testing.assert_array_equal(filt.get_data(picks=_meg(raw)), ref.get_data(picks=_meg(raw)))
    clean, report = preprocess_meg(raw, config=low)
    assert clean.info["sfreq"] == 50.0 and report["filters"]["notch"] == []
    # A recording at or below the output rate names sfreq, not h_freq.
    with pytest.raises(ValueError, match=r"Wrong sampling rate.*40 Hz.*sfreq=50 Hz"):
        MEGPreprocessing(h_freq=15.0).check_sfreq(40.0)


def test_line_freq_off_and_harmonics_below_nyquist(recording):
    assert line_noise_freqs(60, 150, 200.0) == [60]  # 120 Hz is above 100-Hz Nyquist
    assert line_noise_freqs(60, 40) == []
    assert MEGPreprocessing(line_freq=0).line_freq is None  # TOML has no null
    assert MEGPreprocessing.from_dict({"line_freq": None}).line_freq is None
    with pytest.raises(ValueError, match="line_freq"):
        MEGPreprocessing(line_freq=-50)
    (raw, _), _ = recording
    meg = _meg(raw)
    off = MEGPreprocessing(**{**FAST, "line_freq": None, "maxwell": False, "ica": False})
    filt, report = apply_filters(raw.copy(), off)
    assert report["notch"] == [] and report["line_freq"] is None
    ref = raw.copy().filter(1.0, 150.0, picks=meg, verbose="error")
    np.testing.assert_array_equal(filt.get_data(picks=meg), ref.get_data(picks=meg))
    # The 60-Hz line noise is still there without the notch, gone with it.
    notched, _ = apply_filters(raw.copy(), {**off.to_dict(), "line_freq": 60.0})
    kw = {"fmin": 55.0, "fmax": 65.0, "n_fft": 1000, "picks": meg[::7], "verbose": False}
    k = np.argmin(np.abs(filt.compute_psd(**kw).freqs - 60.0))
    kept = filt.compute_psd(**kw).get_data()[:, k]
    removed = notched.compute_psd(**kw).get_data()[:, k]
    assert np.median(10 * np.log10(kept / removed)) > 20


@pytest.fixture(scope="module")
def sss_history(recording):
    """``proc_history`` as MNE's maxwell_filter writes it (plain SSS of half a second)."""
    (raw, _), _ = recording
    small = raw.copy().crop(0, 0.5)
    sss = mne.preprocessing.maxwell_filter(small, origin=(0.0, 0.0, 0.04), coord_frame="head",
                                           int_order=6, ext_order=2, verbose="error")
    return sss.info["proc_history"]


def as_maxfiltered(raw, history):
    """``raw`` (a copy) marked as already Maxwell-filtered."""
    import copy

    raw = raw.copy()
    with raw.info._unlock():
        raw.info["proc_history"] = copy.deepcopy(history)
    return raw


def test_maxfiltered_recording_skips_tsss(recording, sss_history, catch_logs):
    (raw, _), _ = recording
    assert maxwell_history(raw.info) is None
    done = as_maxfiltered(raw, sss_history)
    history = maxwell_history(done.info)
    assert history["steps"] == ["SSS"] and history["creator"].startswith("mne-python")
    # MNE itself refuses: "SSS step has already been applied".
    with pytest.raises(RuntimeError, match="already"):
        mne.preprocessing.maxwell_filter(done, origin=(0.0, 0.0, 0.04), verbose="error")
    with pytest.raises(ValueError, match=r"already Maxwell-filtered.*SSS by mne-python.*"
                                         r"Set maxwell = false"):
        apply_maxwell(done, MEGPreprocessing(**FAST))
    cfg = MEGPreprocessing(**{**FAST, "ica": False})
    with catch_logs("warning") as log:
        clean, report = preprocess_meg(done, config=cfg)
    assert "already Maxwell-filtered" in log.text and "maxwell = false" in log.text
    assert report["maxwell"] is None and report["maxwell_skipped"]["steps"] == ["SSS"]
    # Exactly what maxwell=False gives, without a warning.
    with catch_logs("warning") as log:
        ref, _ = preprocess_meg(done, config=MEGPreprocessing(**{**cfg.to_dict(),
                                                                  "maxwell": False}))
    assert "already Maxwell-filtered" not in log.text
    np.testing.assert_array_equal(clean.get_data(), ref.get_data())
