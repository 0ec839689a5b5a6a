"""The MEG2fMRI pairing (paper §3.2): event indices at the edges, MEG vectors against scipy,
the slice choice (per event and on training events only), targets against scikit-image, the
authors' options, the store entry point and paired sets on disk."""

import json

import mne
import numpy as np
import pytest
from scipy import stats
from skimage.transform import resize

from neurofuse.data import DatasetWriter, read_dataset
from neurofuse.systems.meg2fmri.paired import concatenate_paired, read_paired
from neurofuse.systems.meg2fmri.pairing import (
    PairingConfig,
    event_indices,
    meg_event_features,
    pair_run,
    pair_subject,
    select_slice,
)

SFREQ, TR = 10.0, 0.5  # small clocks keep the runs small: 64 samples = 6.4 s, 64 TRs = 32 s
CFG = PairingConfig(n_samples=8, n_volumes=6, time_index=3, image_shape=(8, 8))


def _run(rng, n_times=400, shape=(12, 10, 5), n_ch=6):
    """MEG (n_ch, n_times) and volumes (*shape, n_trs) on the same clock."""
    n_trs = int(n_times / (SFREQ * TR))
    meg = rng.standard_normal((n_ch, n_times)) * rng.uniform(1, 5, (n_ch, 1)) + 3
    vol = 100 + 10 * rng.standard_normal((*shape, n_trs))
    return meg, vol


def _reference_target(vol, z, t, shape):
    norm = (vol - vol.min()) / (vol.max() - vol.min())
    return resize(norm[:, :, z, t], shape, order=1, mode="edge", anti_aliasing=False)


# -- event indices ------------------------------------------------------------------------------
def test_event_indices_at_the_edges(catch_logs):
    cfg = PairingConfig(n_samples=64, n_volumes=64)
    sfreq, tr, n_times, n_trs = 100.0, 2.0, 200, 1000
    # first sample; epoch ending exactly at the last sample (kept); one sample later (dropped)
    onsets = [0.0, (n_times - 64) / sfreq, (n_times - 63) / sfreq, 0.29, 0.004, 0.006]
    with catch_logs("info") as log:
        sample, _, keep = event_indices(onsets, sfreq=sfreq, tr=tr, n_times=n_times,
                                        n_trs=n_trs, config=cfg)
    np.testing.assert_array_equal(sample, [0, 136, 137, 29, 0, 1])  # nearest sample
    np.testing.assert_array_equal(keep, [True, True, False, True, True, True])
    assert "Dropped 1 of 6 events: 1 with the 64-sample MEG epoch" in log.text
    # volumes: k covers [k tr, (k + 1) tr); the window ending at the last volume is kept
    n_trs = 70
    onsets = [0.0, 1.999, 2.0, 12.0, 13.99, 14.0, -0.5]
    _, volume, keep = event_indices(onsets, sfreq=1000.0, tr=tr, n_times=10**6, n_trs=n_trs,
                                    config=cfg)
    np.testing.assert_array_equal(volume, [0, 0, 1, 6, 6, 7, -1])
    np.testing.assert_array_equal(keep, [True, True, True, True, True, False, False])
    # onsets on a volume boundary despite float error (0.6 / 0.2 = 2.9999999999999996)
    _, volume, _ = event_indices([0.6, 0.3], sfreq=10.0, tr=0.2, n_times=100, n_trs=100,
                                 config=PairingConfig(n_samples=1, n_volumes=1, time_index=0))
    np.testing.assert_array_equal(volume, [3, 1])


def test_onset_as_index_reads_sample_int_onset():
    cfg = PairingConfig(n_samples=8, n_volumes=6, time_index=3, image_shape=(8, 8),
                        onset_as_index=True, reduce="first", slice_selection=2)
    sample, volume, _ = event_indices([5.7, 12.2], sfreq=SFREQ, tr=TR, n_times=400, n_trs=80,
                                      config=cfg)
    np.testing.assert_array_equal(sample, [5, 12])
    np.testing.assert_array_equal(volume, [5, 12])
    meg, vol = _run(np.random.default_rng(0))
    out = pair_run(meg, SFREQ, vol, TR, [5.7], cfg)
    assert out.sample.tolist() == [5] and out.volume.tolist() == [5]
    ref = stats.zscore(stats.zscore(meg, axis=1)[:, 5])  # the single sample int(onset)
    np.testing.assert_allclose(out.X[0], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.Y[0], _reference_target(vol, 2, 5 + 3, (8, 8)), atol=1e-6)
    # the paper's defaults read the sample nearest to onset * sfreq instead
    paper = pair_run(meg, SFREQ, vol, TR, [5.7], PairingConfig(**{**cfg.to_dict(),
                                                                  "onset_as_index": False}))
    assert paper.sample.tolist() == [57] and paper.volume.tolist() == [11]


# -- MEG vectors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("reduce", ["mean", "first"])
def test_meg_features_equal_scipy_zscores(reduce):
    rng = np.random.default_rng(1)
    meg, _ = _run(rng)
    sample = np.array([0, 17, 392])
    cfg = PairingConfig(n_samples=8, reduce=reduce)
    x, profiles = meg_event_features(meg, sample, cfg)
    z = stats.zscore(meg, axis=1)
    epochs = np.stack([z[:, s:s + 8] for s in sample])  # (E, C, T)
    red = epochs.mean(axis=2) if reduce == "mean" else epochs[:, :, 0]
    np.testing.assert_allclose(x, stats.zscore(red, axis=1), atol=1e-12)
    np.testing.assert_allclose(profiles, epochs.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(x.mean(1), 0, atol=1e-12)  # one scale for every event
    np.testing.assert_allclose(x.std(1), 1)
    with pytest.raises(ValueError, match="must lie inside the run"):
        meg_event_features(meg, [393], cfg)


# -- slice choice and targets ---------------------------------------------------------------------
def test_event_selection_picks_each_events_best_slice_and_targets_match_skimage():
    rng = np.random.default_rng(2)
    meg, vol = _run(rng)
    onsets = [3.0, 0.0, 7.3, 30.0, 39.5]  # unsorted; the last runs past the end of the run
    cfg = PairingConfig(**{**CFG.to_dict(), "slice_selection": "event"})
    out = pair_run(meg, SFREQ, vol, TR, onsets, cfg, story="s1", subject="sub-01")
    np.testing.assert_array_equal(out.onset, [0.0, 3.0, 7.3, 30.0])  # onset order, 1 dropped
    np.testing.assert_array_equal(out.volume, [0, 6, 14, 60])
    z = stats.zscore(meg, axis=1)
    means = vol.mean(axis=(0, 1))
    for e, (s, k) in enumerate(zip(out.sample, out.volume)):
        profile = z[:, s:s + 8].mean(0)
        r = [stats.pearsonr(stats.zscore(means[zz, k:k + 6]), profile[:6]).statistic
             for zz in range(vol.shape[2])]
        assert out.slice[e] == int(np.argmax(r))
        np.testing.assert_allclose(out.Y[e], _reference_target(vol, out.slice[e], k + 3, (8, 8)),
                                   atol=1e-6)
    assert out.X.dtype == np.float32 and out.Y.dtype == np.float32
    assert out.Y.min() >= 0 and out.Y.max() <= 1
    assert set(out.subject) == {"sub-01"} and set(out.story) == {"s1"}


def test_train_selection_needs_a_slice_and_uses_it_for_every_event():
    rng = np.random.default_rng(3)
    meg, vol = _run(rng)
    with pytest.raises(ValueError, match="slice_selection='train' needs the slice"):
        pair_run(meg, SFREQ, vol, TR, [1.0], CFG)
    z = select_slice(meg, SFREQ, vol, TR, [1.0, 5.0, 9.0], CFG)
    out = pair_run(meg, SFREQ, vol, TR, [1.0, 20.0], CFG, slice_index=z)
    assert out.slice.tolist() == [z, z]
    fixed = pair_run(meg, SFREQ, vol, TR, [1.0], PairingConfig(**{**CFG.to_dict(),
                                                                  "slice_selection": 4}))
    assert fixed.slice.tolist() == [4]
    with pytest.raises(ValueError, match="only used with slice_selection='train'"):
        pair_run(meg, SFREQ, vol, TR, [1.0], fixed_cfg := PairingConfig(
            **{**CFG.to_dict(), "slice_selection": "event"}), slice_index=1)
    assert fixed_cfg.slice_selection == "event"


def test_picks_and_events_per_run():
    rng = np.random.default_rng(4)
    meg, vol = _run(rng, n_ch=6)
    info = mne.create_info(["MEG0111", "MEG0112", "STI101", "MEG0113", "EOG061", "ECG063"],
                           SFREQ, ["mag", "grad", "stim", "grad", "eog", "ecg"])
    onsets = [1.0, 2.0, 3.0]
    cfg = PairingConfig(**{**CFG.to_dict(), "slice_selection": 0})
    meg_only = pair_run(meg, SFREQ, vol, TR, onsets, cfg, info=info)
    ref = pair_run(meg[[0, 1, 3]], SFREQ, vol, TR, onsets, cfg)
    np.testing.assert_array_equal(meg_only.X, ref.X)  # MEG sensors only, by default
    every = pair_run(meg, SFREQ, vol, TR, onsets, PairingConfig(**{**cfg.to_dict(),
                                                                  "picks": "all"}), info=info)
    assert every.X.shape == (3, 6)  # trigger/EOG/ECG among the inputs (authors' code)
    named = pair_run(meg, SFREQ, vol, TR, onsets, PairingConfig(**{
        **cfg.to_dict(), "picks": ["grad", "EOG061"]}), info=info)
    np.testing.assert_array_equal(named.X, pair_run(meg[[1, 3, 4]], SFREQ, vol, TR, onsets,
                                                    cfg).X)
    with pytest.raises(ValueError, match="neither a channel name nor a channel type"):
        pair_run(meg, SFREQ, vol, TR, onsets, PairingConfig(**{**cfg.to_dict(),
                                                               "picks": ["MEG9999"]}), info=info)
    # one event per run: the first one that fits (onset order)
    one = pair_run(meg, SFREQ, vol, TR, [9.0, -1.0, 4.0],
                   PairingConfig(**{**cfg.to_dict(), "events_per_run": 1}))
    assert one.onset.tolist() == [4.0]


def test_config_validates_and_round_trips_json():
    cfg = PairingConfig.authors(image_shape=[16, 16])
    assert (cfg.reduce, cfg.onset_as_index, cfg.events_per_run, cfg.picks,
            cfg.slice_selection) == ("first", True, 1, "all", "event")
    again = PairingConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.image_shape == (16, 16)
    assert PairingConfig().slice_selection == "train"  # the leak-free default
    with pytest.raises(ValueError, match="'reduce'"):
        PairingConfig(reduce="median")
    with pytest.raises(ValueError, match="'time_index' must be < n_volumes"):
        PairingConfig(n_volumes=10, time_index=10)
    with pytest.raises(ValueError, match="did you mean 'n_volumes'"):
        PairingConfig.from_dict({"n_volume": 3})
    with pytest.raises(ValueError, match="slice_selection"):
        PairingConfig(slice_selection="best")


# -- the store entry point ------------------------------------------------------------------------
def _store(path, changed_test=False, n_times=400, n_repeats=2):
    """Two subjects; stories a, b (train) and c (test). The MEG rises steadily and slice 3
    rises with it, so slice 3 correlates best; ``changed_test`` changes story c only: there
    slice 3 falls and slice 1 rises (a choice that looked at c would move to slice 1)."""
    shape, n_trs = (12, 10, 5), int(n_times / (SFREQ * TR))
    info = mne.create_info([f"MEG{i:03d}" for i in range(6)], SFREQ, ["mag", "grad"] * 3)
    data = {}
    with DatasetWriter(path, sfreq=SFREQ, tr=TR, overwrite=True) as w:
        for story, split in (("a", "train"), ("b", "train"), ("c", "test")):
            w.add_story(story, split=split, n_times=n_times)
        for sub in ("sub-01", "sub-02"):
            w.add_subject(sub, modalities=["meg", "fmri-volume"], info=info)
            w.add_grid(sub, "fmri-volume", affine=np.diag([2.0, 2.0, 2.0, 1.0]))
            for story in ("a", "b", "c"):
                rng = np.random.default_rng([ord(story), int(sub[-1])])
                meg = 0.1 * rng.standard_normal((n_repeats, 6, n_times)) + np.arange(n_times)
                vol = 100 + 10 * rng.standard_normal((n_repeats, *shape, n_trs))
                ramp = 5.0 * np.arange(n_trs)
                if story == "c" and changed_test:
                    vol[:, :, :, 3] -= ramp
                    vol[:, :, :, 1] += ramp
                else:
                    vol[:, :, :, 3] += ramp
                meg, vol = meg.astype(np.float32), vol.astype(np.float32)
                w.write(sub, "meg", story, meg)
                w.write(sub, "fmri-volume", story, vol)
                data[sub, story] = (meg, vol)
    return data


ONSETS = {"a": [1.0, 4.0, 8.0, 15.0], "b": [2.0, 6.5, 11.0], "c": [0.5, 3.0, 9.0, 12.0, 18.0]}


def test_pair_subject_train_selection_never_reads_held_out_events(tmp_path):
    data = _store(tmp_path / "one")
    _store(tmp_path / "two", changed_test=True)  # only the test story differs
    one = pair_subject(tmp_path / "one", "sub-01", ONSETS, CFG)
    two = pair_subject(read_dataset(tmp_path / "two"), "sub-01", ONSETS, CFG)
    assert one.slice.tolist() == two.slice.tolist() == [3] * len(one)
    assert not np.allclose(one.select(stories="c").Y, two.select(stories="c").Y)
    np.testing.assert_array_equal(one.select(stories=["a", "b"]).Y,
                                  two.select(stories=["a", "b"]).Y)
    # the chosen slice is the brute-force best on the training events (repeat 0)
    runs = [data["sub-01", s] for s in ("a", "b")]
    z = select_slice([m[0] for m, _ in runs], SFREQ, [v[0] for _, v in runs], TR,
                     [ONSETS["a"], ONSETS["b"]], CFG)
    assert one.slice[0] == z
    # per-event selection does look at the held-out events: there the two stores differ
    ev = PairingConfig(**{**CFG.to_dict(), "slice_selection": "event"})
    ev_one = pair_subject(tmp_path / "one", "sub-01", ONSETS, ev).select(stories="c")
    ev_two = pair_subject(tmp_path / "two", "sub-01", ONSETS, ev).select(stories="c")
    assert ev_one.slice.tolist() == [3] * 5 and ev_two.slice.tolist() == [1] * 5
    # order and content: stories in store order, events in onset order, repeat 0
    assert one.story.tolist() == ["a"] * 4 + ["b"] * 3 + ["c"] * 5
    meg, vol = data["sub-01", "c"]
    ref = pair_run(meg[0], SFREQ, vol[0], TR, ONSETS["c"], CFG, slice_index=int(one.slice[0]))
    np.testing.assert_array_equal(one.select(stories="c").X, ref.X)
    np.testing.assert_array_equal(one.select(stories="c").Y, ref.Y)


def test_pair_subject_repeat_mean_and_story_checks(tmp_path):
    data = _store(tmp_path / "ds")
    cfg = PairingConfig(**{**CFG.to_dict(), "repeat": "mean", "slice_selection": 1})
    out = pair_subject(tmp_path / "ds", "sub-02", ONSETS, cfg, stories=["b"])
    meg, vol = data["sub-02", "b"]
    ref = pair_run(meg.astype(np.float64).mean(0), SFREQ, vol.astype(np.float64).mean(0), TR,
                   ONSETS["b"], cfg)
    np.testing.assert_allclose(out.X, ref.X, atol=1e-5)
    np.testing.assert_allclose(out.Y, ref.Y, atol=1e-5)
    with pytest.raises(ValueError, match="'onsets' has no entry for story 'c'"):
        pair_subject(tmp_path / "ds", "sub-02", {"a": [1.0]}, cfg, stories=["a", "c"])
    with pytest.raises(ValueError, match="'repeat'=5"):
        pair_subject(tmp_path / "ds", "sub-02", ONSETS,
                     PairingConfig(**{**cfg.to_dict(), "repeat": 5}))
    with pytest.raises(ValueError, match="needs training events"):
        pair_subject(tmp_path / "ds", "sub-02", ONSETS, CFG, train_stories=[])


def test_paired_sets_concatenate_select_and_round_trip_without_pickle(tmp_path):
    _store(tmp_path / "ds")
    ds = read_dataset(tmp_path / "ds")
    both = concatenate_paired([pair_subject(ds, s, ONSETS, CFG) for s in ("sub-01", "sub-02")])
    assert both.subjects == ["sub-01", "sub-02"] and len(both) == 24
    sub2 = both.select(subjects="sub-02")
    assert set(sub2.subject) == {"sub-02"} and len(sub2) == 12
    with pytest.raises(ValueError, match="No event of subjects"):
        both.select(subjects="sub-03")
    path = both.save(tmp_path / "paired")
    assert path.name == "paired.npz"
    with np.load(path, allow_pickle=False) as raw:  # plain arrays only
        assert raw["X"].dtype == np.float32 and raw["subject"].dtype.kind == "U"
    back = read_paired(path)
    for key in ("X", "Y", "subject", "story", "onset", "sample", "volume", "slice"):
        np.testing.assert_array_equal(getattr(back, key), getattr(both, key))
    assert PairingConfig.from_dict(back.config) == CFG
    meg, vol = _run(np.random.default_rng(0))
    other = pair_run(meg, SFREQ, vol, TR, [1.0], PairingConfig(**{**CFG.to_dict(),
                                                                 "slice_selection": 0}))
    with pytest.raises(ValueError, match="another configuration"):
        concatenate_paired([both, other])


@pytest.mark.parametrize("kind", ["npy", "text", "truncated", "other-npz"])
def test_read_paired_refuses_files_that_are_not_paired_sets(tmp_path, kind):
    path = tmp_path / "pairs.npz"
    if kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros((3, 4)))
    elif kind == "text":
        path.write_text("hello\n")
    elif kind == "truncated":
        np.savez(path, meta=np.array("{}"), X=np.zeros(1000))
        path.write_bytes(path.read_bytes()[:200])
    else:
        np.savez(path, X=np.zeros(3))
    with pytest.raises(ValueError, match=r"pairs\.npz' is not a paired MEG-fMRI set.*"
                       r"neurofuse meg2fmri prepare"):
        read_paired(path)
