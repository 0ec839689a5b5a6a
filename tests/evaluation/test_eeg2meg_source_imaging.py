"""System B's source imaging: simulated dipoles on the template are found by dSPM, EEG + MEG is
no worse than EEG alone, and the scores equal MNE-Python's own metrics."""

import mne
import numpy as np
import pytest
from mne.simulation.metrics import cosine_score, peak_position_error, spatial_deviation_error

from neurofuse.anatomy import make_forward, make_template_subject
from neurofuse.evaluation.eeg2meg.source_imaging import (
    SOURCE_SCORES,
    combine_forwards,
    compare_source_imaging,
    make_dspm,
    score_source_estimate,
)

SFREQ = 250.0
TMIN = -0.1
N_TIMES = 110  # -0.1 .. 0.336 s
LATENCIES = (0.05, 0.15, 0.25)  # one dipole each, compact bumps that do not overlap


@pytest.fixture(scope="module")
def forward():
    subject = make_template_subject(eeg="standard_1020", sfreq=SFREQ)
    return make_forward(subject, meg=True, eeg=True, spacing="oct5")


def _positions(fwd):
    return np.concatenate([s["rr"][s["vertno"]] for s in fwd["src"]])


def _simulate(fwd, sources, *, snr=1.0, n_epochs=20, seed=0):
    """Epochs of EEG and MEG from dipoles ``sources`` (one Hann bump of 64 ms each), noise
    per channel type at ``snr`` (peak r.m.s. signal / noise s.d.), and the true sources."""
    rng = np.random.default_rng(seed)
    times = TMIN + np.arange(N_TIMES) / SFREQ
    truth = np.zeros((fwd["nsource"], N_TIMES))
    for src, lat in zip(sources, LATENCIES):
        on = np.abs(times - lat) < 0.032
        truth[src, on] = 20e-9 * np.hanning(on.sum() + 2)[1:-1]
    clean = fwd["sol"]["data"] @ truth  # (n_channels, n_times)
    data = np.repeat(clean[None], n_epochs, axis=0)
    for kind in ("eeg", "grad", "mag"):
        picks = mne.pick_types(fwd["info"], meg=kind if kind != "eeg" else False,
                               eeg=kind == "eeg", exclude=[])
        sd = np.sqrt((clean[picks] ** 2).mean(0).max()) / snr
        data[:, picks] += sd * rng.standard_normal((n_epochs, len(picks), N_TIMES))
    eeg = data[:, mne.pick_types(fwd["info"], meg=False, eeg=True, exclude=[])]
    meg = data[:, mne.pick_types(fwd["info"], meg=True, eeg=False, exclude=[])]
    return eeg, meg, truth


def test_dipoles_are_localised_and_meg_helps(forward):
    pos = _positions(forward)
    rng = np.random.default_rng(3)
    # three dipoles away from the centre of the head (cortical, 5 cm or more from the origin)
    candidates = np.flatnonzero(np.linalg.norm(pos - pos.mean(0), axis=1) > 0.05)
    sources = rng.choice(candidates, len(LATENCIES), replace=False)
    eeg, meg, truth = _simulate(forward, sources)
    noise_meg = np.random.default_rng(9).standard_normal(meg.shape) * meg.std()
    errors = {"eeg": [], "eeg+real_meg": [], "eeg+synthetic_meg": []}
    cosines = {k: [] for k in errors}
    stcs = None
    for lat in LATENCIES:
        if stcs is None:
            scores, stcs = compare_source_imaging(forward, eeg, truth, sfreq=SFREQ, tmin=TMIN,
                                                  real_meg=meg, synthetic_meg=noise_meg,
                                                  time=lat, return_estimates=True)
        else:  # same estimates, scored at the next dipole's latency
            scores = {k: score_source_estimate(stc, truth, forward["src"], time=lat)
                      for k, stc in stcs.items()}
        for k, s in scores.items():
            assert set(SOURCE_SCORES) <= set(s)
            assert s["n_true_sources"] == 1 and abs(s["time"] - lat) < 1 / SFREQ
            errors[k].append(s["localization_error_mm"])
            cosines[k].append(s["cosine"])
    mean = {k: np.mean(v) for k, v in errors.items()}
    # found within a few cm from EEG + MEG, and no worse than from EEG alone at the same noise
    assert max(errors["eeg+real_meg"]) < 40.0, errors
    assert mean["eeg+real_meg"] < 25.0, errors
    assert mean["eeg+real_meg"] <= mean["eeg"] + 2.0, errors
    assert np.mean(cosines["eeg+real_meg"]) >= np.mean(cosines["eeg"]) - 0.01, cosines
    # "synthetic" MEG that is pure noise does not do what real MEG does
    assert np.mean(cosines["eeg+synthetic_meg"]) < np.mean(cosines["eeg+real_meg"]), cosines


def test_scores_equal_mne_metrics_and_hand_values(forward):
    pos = _positions(forward)
    n_src = forward["nsource"]
    src = forward["src"]
    eeg, meg, truth = _simulate(forward, [100, 1500, 800], snr=2.0, n_epochs=10, seed=1)
    stc = make_dspm(forward, eeg, meg, sfreq=SFREQ, tmin=TMIN)
    assert stc.data.shape == (n_src, N_TIMES)
    np.testing.assert_allclose(stc.times, TMIN + np.arange(N_TIMES) / SFREQ, atol=1e-9)
    s = score_source_estimate(stc, truth, src, time=0.15)
    idx = int(np.argmin(np.abs(stc.times - 0.15)))
    # MNE's metrics, called directly on a single-dipole truth and the estimate at that sample
    lh = len(src[0]["vertno"])
    true_one = mne.SourceEstimate(truth[1500:1501, idx:idx + 1],
                                  [np.array([], int), src[1]["vertno"][[1500 - lh]]],
                                  stc.times[idx], stc.tstep)
    est = mne.SourceEstimate(stc.data[:, idx:idx + 1], stc.vertices, stc.times[idx], stc.tstep)
    assert s["peak_position_error_mm"] == pytest.approx(
        1e3 * peak_position_error(true_one, est, src, threshold="50%", per_sample=False))
    assert s["spatial_deviation_mm"] == pytest.approx(
        1e3 * spatial_deviation_error(true_one, est, src, threshold="50%", per_sample=False))
    full_true = mne.SourceEstimate(truth[:, idx:idx + 1], stc.vertices, stc.times[idx],
                                   stc.tstep)
    assert s["cosine"] == pytest.approx(cosine_score(full_true, est, per_sample=False))
    # localisation error by hand: |dSPM| peak to the true dipole
    peak = np.argmax(np.abs(stc.data[:, idx]))
    assert s["localization_error_mm"] == pytest.approx(
        1e3 * np.linalg.norm(pos[peak] - pos[1500]))
    # the truth as an mne.SourceEstimate scores the same
    as_stc = mne.SourceEstimate(truth, stc.vertices, stc.tmin, stc.tstep)
    assert score_source_estimate(stc, as_stc, src, time=0.15) == pytest.approx(s, nan_ok=True)
    # without a time, the sample of strongest true activity is scored
    strongest = stc.times[np.argmax((truth**2).sum(0))]
    assert score_source_estimate(stc, truth, src)["time"] == pytest.approx(strongest)
    # the truth scored against itself: no error, cosine 1
    perfect = score_source_estimate(mne.SourceEstimate(truth, stc.vertices, stc.tmin, stc.tstep),
                                    truth, src, time=0.05)
    assert perfect["localization_error_mm"] == 0.0
    assert perfect["peak_position_error_mm"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["region_localization_error_mm"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["cosine"] == pytest.approx(1.0)
    # an estimate peaking at a known wrong source is off by the distance between the two
    wrong = np.zeros_like(truth)
    wrong[7, idx] = 1.0
    off = score_source_estimate(mne.SourceEstimate(wrong, stc.vertices, stc.tmin, stc.tstep),
                                truth, src, time=0.15)
    assert off["localization_error_mm"] == pytest.approx(1e3 * np.linalg.norm(pos[7] - pos[1500]))
    assert off["peak_position_error_mm"] == pytest.approx(off["localization_error_mm"])
    assert off["cosine"] == pytest.approx(0.0)
    # several true sources at once: the single-dipole metrics are undefined
    two = truth.copy()
    two[5, idx] = truth[1500, idx]
    s2 = score_source_estimate(stc, two, src, time=0.15)
    assert s2["n_true_sources"] == 2 and np.isnan(s2["peak_position_error_mm"])


def test_input_errors(forward):
    eeg, meg, truth = _simulate(forward, [10], n_epochs=2)
    with pytest.raises(ValueError, match="EEG channels"):
        make_dspm(forward, eeg[:, :10], sfreq=SFREQ, tmin=TMIN)
    with pytest.raises(ValueError, match="time-aligned"):
        make_dspm(forward, eeg, meg[:1], sfreq=SFREQ, tmin=TMIN)
    with pytest.raises(ValueError, match="pre-stimulus"):
        make_dspm(forward, eeg, sfreq=SFREQ, tmin=0.0)
    with pytest.raises(ValueError, match="noise_cov"):
        make_dspm(forward, eeg, sfreq=SFREQ, tmin=TMIN, noise_cov="empty-room")
    stc = mne.SourceEstimate(truth, [s["vertno"] for s in forward["src"]], TMIN, 1 / SFREQ)
    with pytest.raises(ValueError, match="'truth' must have"):
        score_source_estimate(stc, truth[:, :5], forward["src"])
    with pytest.raises(ValueError, match="all zero"):
        score_source_estimate(stc, truth, forward["src"], time=-0.05)


def test_make_dspm_equals_mnes_own_pipeline(forward):
    from mne.minimum_norm import apply_inverse, make_inverse_operator

    eeg, meg, truth = _simulate(forward, [300], snr=2.0, n_epochs=8, seed=4)
    subject = make_template_subject(eeg="standard_1020", sfreq=SFREQ)
    # the same channels, built independently: the subject's MEG and EEG infos
    epochs = mne.EpochsArray(meg, subject.meg_info, tmin=TMIN, verbose="error")
    epochs.add_channels([mne.EpochsArray(eeg, subject.eeg_info, tmin=TMIN, verbose="error")],
                        force_update_info=True)
    assert epochs.ch_names == forward["info"]["ch_names"]
    epochs.set_eeg_reference("average", projection=True, verbose="error")
    base = epochs.get_data()[:, :, epochs.times <= 0]  # (n, C, T_b)
    var = base.transpose(1, 0, 2).reshape(len(epochs.ch_names), -1).var(axis=1, ddof=1)
    cov = mne.Covariance(var, epochs.ch_names, [], epochs.info["projs"], base[0, 0].size
                         * len(base) - 1, verbose="error")
    free = mne.convert_forward_solution(forward, surf_ori=True, force_fixed=False,
                                        use_cps=True, verbose="error")
    inv = make_inverse_operator(epochs.info, free, cov, loose=0.0, depth=0.8, fixed=True,
                                verbose="error")
    ref = apply_inverse(epochs.average(), inv, lambda2=1 / 9, method="dSPM", verbose="error")
    ours = make_dspm(forward, eeg, meg, sfreq=SFREQ, tmin=TMIN, snr=3.0)
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-6, atol=1e-6 * np.abs(ref.data).max())
    # a given covariance is used as is (EEG only: the cheaper operator)
    eeg_names = [ch for ch in epochs.ch_names if not ch.startswith("MEG")]
    cov_eeg = mne.pick_channels_cov(cov, eeg_names, ordered=True)
    given = make_dspm(forward, eeg, sfreq=SFREQ, tmin=TMIN, noise_cov=cov_eeg)
    own = make_dspm(forward, eeg, sfreq=SFREQ, tmin=TMIN)
    np.testing.assert_allclose(given.data, own.data, rtol=1e-6,
                               atol=1e-6 * np.abs(own.data).max())
    doubled = make_dspm(forward, eeg, sfreq=SFREQ, tmin=TMIN,
                        noise_cov=mne.Covariance(4 * cov_eeg.data, cov_eeg.ch_names, [],
                                                 cov_eeg["projs"], cov_eeg.nfree,
                                                 verbose="error"))
    np.testing.assert_allclose(doubled.data, own.data / 2, rtol=1e-6,  # dSPM ~ 1 / noise s.d.
                               atol=1e-6 * np.abs(own.data).max())


def test_combine_forwards_equals_the_joint_forward(forward):
    subject = make_template_subject(eeg="standard_1020", sfreq=SFREQ)
    meg = make_forward(subject, meg=True, eeg=False, spacing="oct5")
    eeg = make_forward(subject, meg=False, eeg=True, spacing="oct5")
    meg_rows = meg["sol"]["data"].copy()
    both = combine_forwards(meg, eeg)
    assert both["info"]["ch_names"] == forward["info"]["ch_names"]
    assert both["sol"]["row_names"] == forward["sol"]["row_names"]
    assert both["nchan"] == forward["nchan"] == 400
    for got, want in zip(both["info"]["chs"], forward["info"]["chs"]):
        np.testing.assert_allclose(got["loc"], want["loc"])
    scale = np.abs(forward["sol"]["data"]).max()
    np.testing.assert_allclose(both["sol"]["data"], forward["sol"]["data"], atol=1e-6 * scale)
    np.testing.assert_allclose(both["_orig_sol"], forward["_orig_sol"],
                               atol=1e-6 * np.abs(forward["_orig_sol"]).max())
    assert len(mne.pick_types(both["info"], meg=False, eeg=True)) == 94
    # the inputs are left alone
    assert meg["nchan"] == 306 and np.array_equal(meg["sol"]["data"], meg_rows)
    assert len(meg["info"]["ch_names"]) == 306
    with pytest.raises(ValueError, match="only EEG channels"):
        combine_forwards(meg, forward)
    other = eeg.copy()  # another subject's sources: different vertices
    other["src"][0]["vertno"] = other["src"][0]["vertno"] + 1
    with pytest.raises(ValueError, match="same source space"):
        combine_forwards(meg, other)
