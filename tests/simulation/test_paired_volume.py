"""System C's world (paired MEG + fmri-volume subjects): layout, BOLD = HRF * envelope of the
saved sources through the saved map, percent change and CNR as requested, subjects that
differ, word/sentence events, presets."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.signal

from neurofuse.data.store import expected_n_trs, read_dataset
from neurofuse.physics.bold_volume import SCALE_PERCENTILE
from neurofuse.physics.hrf import spm_hrf
from neurofuse.simulation.paired_volume import (
    read_volume_truth,
    recompute_bold_change,
    story_events,
    true_bold_change,
)
from neurofuse.simulation.study import PRESETS, StudyConfig, simulate_study

CNR = 0.5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("m2f") / "tiny"
    cfg = StudyConfig.preset("meg2fmri-tiny", volume_cnr=CNR, volume_drift_percent=0.0,
                             save_sources="all")
    simulate_study(cfg, out)
    return cfg, read_dataset(out)


def test_layout(world):
    cfg, ds = world
    assert ds.subjects == ["S01", "S02"] and ds.sfreq == 100.0 and ds.tr == 0.71
    for sub in ds.subjects:
        assert ds.modalities(sub) == ["meg", "fmri-volume"]
        assert ds.cnr(sub)["fmri-volume"] == CNR
        for story in ds.stories:
            n_times = ds.n_times(story)
            n_trs = expected_n_trs(n_times, ds.sfreq, ds.tr)
            assert n_trs >= 64 + 16  # 64-volume windows after the early events
            assert ds.meg(sub, story).shape == (1, 306, n_times)
            assert ds.data(sub, "fmri-volume", story).shape == (1, *cfg.volume_shape, n_trs)
        truth = read_volume_truth(ds, sub)
        np.testing.assert_allclose(ds.affine(sub, "fmri-volume"), truth["grid"]["affine"])
        assert ds.image(sub, "fmri-volume", ds.stories[0]).header.get_zooms() == (12, 12, 12,
                                                                                   np.float32(0.71))


def _reference(truth, sources, voxels, sfreq, tr):
    """HRF * envelope of W_v s (scipy Hilbert, np.convolve), TR means: independent code."""
    x = truth["map"][voxels] @ np.asarray(sources, np.float64)
    env = np.abs(scipy.signal.hilbert(x, axis=1))
    hrf = spm_hrf(sfreq)
    conv = np.array([np.convolve(e, hrf)[: x.shape[1]] for e in env])
    n = round(tr * sfreq)
    bold = conv[:, : conv.shape[1] // n * n].reshape(len(x), -1, n).mean(axis=2)
    return bold - bold.mean(axis=1, keepdims=True)


def test_bold_is_the_hrf_convolved_envelope_of_the_saved_sources_through_the_saved_map(world):
    cfg, ds = world
    for sub in ds.subjects:
        truth = read_volume_truth(ds, sub)
        for story in ds.stories:
            change = recompute_bold_change(ds, sub, story)  # the simulator's code path, in %
            flat = change.reshape(-1, change.shape[-1])
            # The saved ground truth is that change (float32).
            np.testing.assert_allclose(true_bold_change(ds, sub, story), change, rtol=1e-6,
                                       atol=1e-7 * np.abs(change).max())
            mapped = np.flatnonzero(np.diff(truth["map"].indptr))
            assert truth["mask"].ravel()[mapped].all()
            assert not flat[np.setdiff1d(np.arange(len(flat)), mapped)].any()
            voxels = mapped[:: max(1, len(mapped) // 25)]
            ref = _reference(truth, ds.ground_truth(f"sources/{story}"), voxels, ds.sfreq, ds.tr)
            scale = truth["scales"][story]
            np.testing.assert_allclose(flat[voxels], cfg.volume_percent_change * ref / scale,
                                       rtol=1e-4, atol=1e-6 * np.abs(flat).max())
            # The percent change is as requested.
            sd = flat[mapped].std(axis=1)
            assert math.isclose(np.percentile(sd, SCALE_PERCENTILE), cfg.volume_percent_change,
                                rel_tol=1e-9)


def test_measured_cnr_matches_the_requested_one(world):
    _, ds = world
    ratios = []
    for sub in ds.subjects:
        truth = read_volume_truth(ds, sub)
        base = truth["baseline"].astype(np.float64)
        mapped = np.flatnonzero(np.diff(truth["map"].indptr))
        for story in ds.stories:
            clean = base[..., None] * (1 + true_bold_change(ds, sub, story) / 100)
            data = np.asarray(ds.data(sub, "fmri-volume", story)[0], np.float64)
            clean, noise = (a.reshape(-1, a.shape[-1])[mapped] for a in (clean, data - clean))
            ratios.append(clean.std(axis=1) / noise.std(axis=1))
    ratios = np.concatenate(ratios)
    # ~85 volumes per run: each ratio is within ~8 % of the truth, their mean within ~0.3 %.
    assert abs(ratios.mean() / CNR - 1) < 0.03
    assert np.median(np.abs(ratios / CNR - 1)) < 0.1


def test_subjects_differ(world):
    _, ds = world
    a, b = (read_volume_truth(ds, s) for s in ds.subjects)
    assert (a["map"] != b["map"]).nnz > 0.5 * a["map"].nnz
    assert not np.allclose(a["head_position"], b["head_position"])
    assert np.abs(a["baseline"] - b["baseline"]).max() > 100
    for t in (a, b):  # the baseline has the EPI contrast and is dark outside the brain
        assert np.all(t["baseline"][~t["mask"]] == 0) and t["baseline"].max() > 500


def test_word_and_sentence_events_are_stored(world):
    _, ds = world
    for story in ds.stories:
        assert ds.event_names(story) == ["word", "sentence"]
        word, sent = ds.events(story, "word"), ds.events(story, "sentence")
        duration = ds.n_times(story) / ds.sfreq
        assert len(word) > 60 and 1 <= len(sent) < len(word)
        assert np.all(np.diff(word) > 0) and 0 < word[0] and word[-1] < duration
        assert np.isin(sent, word).all() and sent[0] == word[0]
        # Events early enough for a 64-volume window exist.
        assert np.sum(word + 64 * ds.tr <= duration) > 5


def test_sentences_start_after_pauses():
    st = SimpleNamespace(word_onsets=np.array([0.5, 0.9, 1.4, 2.6, 3.0]),
                         word_offsets=np.array([0.9, 1.4, 2.0, 3.0, 3.3]))
    ev = story_events(st)
    np.testing.assert_array_equal(ev["word"], st.word_onsets)
    np.testing.assert_array_equal(ev["sentence"], [0.5, 2.6])


def test_presets_and_config():
    for name in ("meg2fmri", "meg2fmri-demo", "meg2fmri-tiny"):
        cfg = StudyConfig.preset(name)
        assert cfg.n_paired_subjects > 0 and cfg.tr == 0.71 and cfg.sfreq == 100.0
        shortest = min(d for _, _, d, _ in cfg.story_plan())
        assert shortest >= 64 * cfg.tr + 10  # room for 64-volume windows after events
        assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    assert StudyConfig.preset("meg2fmri").volume_shape == (106, 106, 72)
    assert len(StudyConfig.preset("meg2fmri").subject_plan()) == 12
    # Studies without paired subjects serialise as before (no new keys).
    for name in PRESETS:
        cfg = StudyConfig.preset(name)
        if not cfg.n_paired_subjects:
            keys = cfg.to_dict()
            assert "n_paired_subjects" not in keys
            assert not any(k.startswith("volume_") for k in keys)
    with pytest.raises(ValueError, match="volume_shape"):
        StudyConfig.preset("meg2fmri-tiny", volume_shape=(4, 4))
    with pytest.raises(ValueError, match="volume_cnr"):
        StudyConfig.preset("meg2fmri-tiny", volume_cnr=0)
