"""Repeatability estimators, repeatability stored in the dataset, and the loss weights using it."""

import json

import numpy as np
import pytest

from neurofuse.data.repeatability import (
    _half_splits,
    compute_repeatability,
    repeatability,
    spearman_brown,
    split_half_repeatability,
)
from neurofuse.data.store import MANIFEST, SCHEMA_VERSION, DatasetWriter, read_dataset
from neurofuse.systems.joint.data import loss_weights
from neurofuse.systems.joint.data import repeatability as training_repeatability

SFREQ, TR, STREAMS = 10.0, 1.0, {"word": [0, 3]}


def _simulate(rng, n_rep, snr2, n_targets=40, n_times=8000):
    """Signal + independent noise; snr2 = var(signal) / var(noise) per target."""
    scale = rng.uniform(0.5, 3.0, (n_targets, 1))  # reliability must not depend on the scale
    signal = rng.standard_normal((n_targets, n_times)) * scale
    noise = rng.standard_normal((n_rep, n_targets, n_times)) * scale / np.sqrt(snr2)
    return signal + noise


@pytest.mark.parametrize("n_rep", [2, 3, 4, 5, 9])
@pytest.mark.parametrize("snr2", [0.25, 1.0, 4.0])
def test_estimators_match_analytic_reliability(n_rep, snr2):
    """Both estimate rho = s² / (1 + s²), the reliability of one presentation."""
    rng = np.random.default_rng(n_rep * 10 + int(snr2 * 4))
    data = _simulate(rng, n_rep, snr2)
    rho = snr2 / (1 + snr2)
    r_rep = compute_repeatability(data, method="repeat")
    r_half = compute_repeatability(data, method="split-half")
    assert r_rep.shape == r_half.shape == (40,)
    # Standard error of one r over 8000 samples is < (1 - rho²) / sqrt(8000) < 0.012.
    np.testing.assert_allclose(r_rep, rho, atol=0.045)
    np.testing.assert_allclose(r_half, rho, atol=0.045)
    assert abs(r_rep.mean() - rho) < 0.01 and abs(r_half.mean() - rho) < 0.01
    # The two estimators agree target by target (same data, same quantity).
    np.testing.assert_allclose(r_half, r_rep, atol=0.03)


def test_split_half_equals_repeat_for_two_repeats_and_is_scale_free():
    rng = np.random.default_rng(3)
    data = _simulate(rng, 2, 1.0, n_targets=6, n_times=500)
    np.testing.assert_allclose(split_half_repeatability(data), repeatability(data), atol=1e-12)
    np.testing.assert_allclose(split_half_repeatability(data * 1e-13),
                               split_half_repeatability(data), atol=1e-9)
    assert training_repeatability is repeatability  # old import path still works


def test_spearman_brown_predicts_reliability_of_averages():
    """Two independent averages of n repeats correlate at spearman_brown(rho, n)."""
    rng = np.random.default_rng(4)
    rho, n = 0.2, 4
    data = _simulate(rng, 2 * n, rho / (1 - rho), n_targets=60, n_times=6000)
    a, b = data[:n].mean(0), data[n:].mean(0)
    r_avg = repeatability(np.stack([a, b]))
    assert abs(r_avg.mean() - spearman_brown(rho, n)) < 0.01
    assert spearman_brown(rho, 1) == pytest.approx(rho)


def test_half_splits_are_distinct_balanced_and_capped():
    for n, expected in [(2, 1), (3, 3), (4, 3), (5, 10), (6, 10)]:
        splits = _half_splits(n, 100, 0)
        assert len(splits) == expected
        keys = {tuple(sorted(map(tuple, (sorted(a), sorted(b))))) for a, b in splits}
        assert len(keys) == expected  # no split twice (also not mirrored)
        for a, b in splits:
            assert sorted(a + b) == list(range(n)) and len(a) == n // 2
    capped = _half_splits(12, 7, seed=1)
    assert len(capped) == 7 and capped == _half_splits(12, 7, seed=1)


def test_uncorrelated_repeats_give_zero_and_errors():
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((4, 300, 50))
    for method in ("repeat", "split-half"):
        r = compute_repeatability(noise, method=method)
        assert r.min() == 0.0 and np.all(r < 0.6) and np.mean(r == 0) > 0.2
    with pytest.raises(ValueError, match=">= 2 repeats"):
        compute_repeatability(noise[:1])
    with pytest.raises(ValueError, match=r"\(n_repeats, n_targets, n_times\)"):
        compute_repeatability(noise[0])
    with pytest.raises(ValueError, match="method"):
        compute_repeatability(noise, method="splithalf")


# ---------------------------------------------------------------------- stored in the dataset
def _store(path, *, stored=None, n_src=6, rep_noise=None, seed=0, n_rep_val=3, extra=None):
    """fMRI subject 'F1' (+ MEG subject 'M1'), a repeated val story, a repeated test story."""
    import mne

    rng = np.random.default_rng(seed)
    n_times = 400
    n_trs = int(n_times / (SFREQ * TR))
    with DatasetWriter(path, sfreq=SFREQ, tr=TR, feature_streams=STREAMS) as w:
        w.add_story("train1", split="train", n_times=n_times)
        w.add_story("val1", split="val", n_times=n_times)
        w.add_story("test1", split="test", n_times=n_times)
        for st in ("train1", "val1", "test1"):
            w.write_features(st, rng.standard_normal((n_times, 3)))
        w.add_subject("F1", modalities=["fmri"], n_sources=n_src)
        info = mne.create_info(["MEG001", "MEG002"], SFREQ, "mag")
        w.add_subject("M1", modalities=["meg"], info=info)
        noise = np.ones(n_src) if rep_noise is None else rep_noise
        for st, n_rep in (("train1", 1), ("val1", n_rep_val), ("test1", 4)):
            sig = rng.standard_normal((n_src, n_trs))
            w.write_fmri("F1", st, sig + noise[:, None] * rng.standard_normal((n_rep, n_src, n_trs)))
            w.write_meg("M1", st, rng.standard_normal((2, 2, n_times)))
        if stored is not None:
            w.write_repeatability("F1", "fmri", stored, method="repeat", stories=["val1"])
        if extra:
            extra(w)
    return read_dataset(path)


def test_stored_repeatability_round_trips(tmp_path):
    values = np.array([0.9, 0.5, 0.0, -0.1, 0.25, 1.0])
    ds = _store(tmp_path / "ds", stored=values)
    got = ds.repeatability("F1", "fmri")
    assert got.shape == (6,)
    np.testing.assert_array_equal(got, values.astype(np.float32))
    assert ds.repeatability_info("F1", "fmri") == {
        "file": "repeatability-fmri.npy", "method": "repeat", "stories": ["val1"]}
    assert (ds.path / "subjects" / "F1" / "repeatability-fmri.npy").is_file()
    assert ds.repeatability("M1", "meg") is None and ds.repeatability_info("M1", "meg") is None
    with pytest.raises(ValueError, match="modality"):
        ds.repeatability("F1", "eeg")
    # A file the manifest names must exist: a deleted one makes the dataset incomplete.
    (ds.path / "subjects" / "F1" / "repeatability-fmri.npy").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        read_dataset(ds.path)


def test_stores_without_repeatability_are_unchanged(tmp_path):
    """Additive: no 'repeatability' key unless written, and older manifests read as None."""
    ds = _store(tmp_path / "ds")
    manifest = json.loads((ds.path / MANIFEST).read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert all("repeatability" not in sub for sub in manifest["subjects"].values())
    assert ds.repeatability("F1", "fmri") is None


@pytest.mark.parametrize("call, match", [
    (lambda w: w.write_repeatability("F1", "fmri", np.ones(5)), "has 5 values but the subject has 6"),
    (lambda w: w.write_repeatability("F1", "fmri", np.full(6, 1.5)), r"in \[-1, 1\]"),
    (lambda w: w.write_repeatability("F1", "fmri", [0.1, np.nan, 0, 0, 0, 0]), "NaN"),
    (lambda w: w.write_repeatability("F1", "fmri", np.ones((2, 3))), "1-D"),
    (lambda w: w.write_repeatability("F1", "meg", np.ones(6)), "modality"),
    (lambda w: w.write_repeatability("nobody", "fmri", np.ones(6)), "subject"),
    (lambda w: w.write_repeatability("F1", "fmri", np.ones(6), stories=["nope"]), "stories"),
    (lambda w: [w.write_repeatability("F1", "fmri", np.ones(6)) for _ in range(2)],
     "already written"),
])
def test_write_repeatability_errors_leave_nothing(tmp_path, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _store(tmp_path / "ds", extra=call)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_repeatability_size_is_checked_when_data_come_later(tmp_path):
    with (pytest.raises(ValueError, match="has 4 values but the subject's fmri data have 3"),
          DatasetWriter(tmp_path / "ds", sfreq=SFREQ, tr=TR, feature_streams=STREAMS) as w):
        w.add_story("s", split="train", n_times=40)
        w.write_features("s", np.zeros((40, 3)))
        w.add_subject("F", modalities=["fmri"])  # n_sources unknown yet
        w.write_repeatability("F", "fmri", np.full(4, 0.5))
        w.write_fmri("F", "s", np.zeros((3, 4)))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- loss weights
def test_loss_weights_use_stored_repeatability(tmp_path):
    stored = np.array([0.8, 0.4, 0.0, -0.2, 0.2, 0.6])
    # The val story's data say the opposite ranking: the stored values must win.
    ds = _store(tmp_path / "a", stored=stored, rep_noise=np.array([9, 3, 1, 1, 1, 0.1]))
    w = loss_weights(ds, "F1", "fmri")
    expected = np.clip(stored, 0, None)
    np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-6)
    assert w.sum() == pytest.approx(1.0)
    # Explicit stories recompute from the data; 'uniform' stays uniform.
    from_data = loss_weights(ds, "F1", "fmri", stories=["val1"])
    r = repeatability(ds.fmri("F1", "val1"))
    np.testing.assert_allclose(from_data, r / r.sum(), rtol=1e-12)
    assert from_data[5] > from_data[0]
    np.testing.assert_array_equal(loss_weights(ds, "F1", "fmri", mode="uniform"), np.full(6, 1 / 6))
    # Without stored values: as before (repeatability of the repeated val story).
    plain = _store(tmp_path / "b", rep_noise=np.array([9, 3, 1, 1, 1, 0.1]))
    np.testing.assert_allclose(loss_weights(plain, "F1", "fmri"), from_data, rtol=1e-12)


def test_loss_weights_stored_zero_falls_back_to_uniform(tmp_path, catch_logs):
    ds = _store(tmp_path / "ds", stored=np.array([0, -0.1, 0, 0, 0, 0]))
    with catch_logs("warning") as log:
        w = loss_weights(ds, "F1", "fmri")
    np.testing.assert_array_equal(w, np.full(6, 1 / 6))
    assert "uniform" in log.text
