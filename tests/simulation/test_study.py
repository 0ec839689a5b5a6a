"""The study simulator: shapes, achieved CNR, determinism, atomicity, config validation."""

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from neurofuse.data.store import expected_n_trs, read_dataset
from neurofuse.physics import make_bold
from neurofuse.simulation.encoding import SourceEncodingModel
from neurofuse.simulation.study import StudyConfig, simulate_study


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "tiny"
    simulate_study(StudyConfig.preset("tiny", meg_cnr=1.0, fmri_cnr=0.3), out)
    return read_dataset(out)


def _test_story(ds):
    (story,) = ds.splits["test"]
    return story


def test_layout_and_shapes(tiny):
    cfg = StudyConfig.preset("tiny")
    assert tiny.splits == {"train": ["story-01", "story-02"], "val": ["story-03"], "test": ["story-04"]}
    assert tiny.subjects == ["S01", "S02"]
    assert tiny.modalities("S01") == ["meg"] and tiny.modalities("S02") == ["fmri"]
    story = _test_story(tiny)
    n_times = tiny.n_times(story)
    assert n_times == round(cfg.story_duration * cfg.sfreq)
    assert tiny.features(story).shape == (n_times, sum(cfg.feature_dims))
    assert tiny.meg("S01", story).shape == (cfg.n_repeats_test, 306, n_times)
    assert tiny.meg("S01", "story-01").shape == (1, 306, n_times)
    n_trs = expected_n_trs(n_times, cfg.sfreq, cfg.tr)
    assert tiny.fmri("S02", story).shape == (cfg.n_repeats_test, 8196, n_trs)
    assert tiny.leadfield("S01").shape == (306, 8196)
    assert tiny.morph("S02").shape == (8196, 8196)
    assert tiny.ground_truth(f"sources/{story}").shape == (8196, n_times)
    # Repeats carry independent noise.
    meg = tiny.meg("S01", story)
    assert np.abs(meg[0] - meg[1]).mean() > 0.5 * np.abs(meg[0]).mean()


def _cnr(clean, noisy):
    noise = noisy - clean[None]
    return clean.std(axis=-1)[None] / noise.std(axis=-1)


def test_achieved_meg_cnr_within_10_percent(tiny):
    story = _test_story(tiny)
    sources = np.asarray(tiny.ground_truth(f"sources/{story}"), float)
    # Clean MEG from the physics, independently of the simulator's code path: L (M s).
    clean = np.asarray(tiny.leadfield("S01"), float) @ (tiny.morph("S01") @ sources)
    cnr = _cnr(clean, np.asarray(tiny.meg("S01", story), float))
    assert abs(np.mean(cnr) - 1.0) < 0.1
    assert np.mean(np.abs(cnr - 1.0) < 0.1) > 0.95


def test_achieved_fmri_cnr_within_10_percent(tiny):
    story = _test_story(tiny)
    sources = np.asarray(tiny.ground_truth(f"sources/{story}"), np.float32)
    clean = make_bold(tiny.morph("S02").astype(np.float32) @ sources, tiny.sfreq, tiny.tr)
    cnr = _cnr(np.asarray(clean, float), np.asarray(tiny.fmri("S02", story), float))
    # Only 12 TRs per story here: per-source estimates scatter, their mean does not.
    assert abs(np.median(cnr) - 0.3) < 0.03


def test_infinite_cnr_is_noiseless(tmp_path):
    out = simulate_study(StudyConfig.preset("tiny", meg_cnr="inf", fmri_cnr=math.inf,
                                            n_train=1, n_val=0), tmp_path / "clean")
    ds = read_dataset(out)
    story = _test_story(ds)
    sources = np.asarray(ds.ground_truth(f"sources/{story}"), float)
    clean = np.asarray(ds.leadfield("S01"), float) @ (ds.morph("S01") @ sources)
    meg = ds.meg("S01", story)
    np.testing.assert_allclose(meg[0], clean, rtol=1e-4, atol=1e-4 * np.abs(clean).max())
    np.testing.assert_array_equal(meg[0], meg[1])
    assert ds.summary()["subjects"]["S01"]["cnr"]["meg"] == "inf"


def test_ground_truth_model_reproduces_saved_sources(tiny):
    model = SourceEncodingModel.load(tiny.ground_truth_dir("encoding"))
    story = _test_story(tiny)
    np.testing.assert_allclose(model.transform(np.asarray(tiny.features(story))),
                               tiny.ground_truth(f"sources/{story}"), rtol=1e-5, atol=1e-15)


def _digest(path):
    h = hashlib.sha256()
    for f in sorted(Path(path).rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def test_same_seed_identical_dataset(tiny, tmp_path):
    cfg = StudyConfig.preset("tiny", meg_cnr=1.0, fmri_cnr=0.3)
    again = simulate_study(cfg, tmp_path / "again")
    assert _digest(again) == _digest(tiny.path)
    other = simulate_study(StudyConfig.preset("tiny", seed=1, n_meg_subjects=0, n_train=1, n_val=0),
                           tmp_path / "other")
    assert not np.array_equal(read_dataset(other).features("story-01"), tiny.features("story-01"))


def test_failed_simulation_leaves_nothing(tmp_path, monkeypatch):
    import neurofuse.physics.measurement as hemo

    calls = {"n": 0}
    real = hemo.make_bold

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(hemo, "make_bold", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        simulate_study("tiny", tmp_path / "broken")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_previous_dataset(tiny, tmp_path, monkeypatch):
    import shutil

    import neurofuse.physics.measurement as hemo

    target = tmp_path / "kept"
    shutil.copytree(tiny.path, target)
    before = _digest(target)

    def failing(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(hemo, "make_bold", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        simulate_study("tiny", target, overwrite=True)
    assert _digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_output_errors(tmp_path):
    (tmp_path / "existing").mkdir()
    with pytest.raises(FileExistsError, match="already exists.*overwrite"):
        simulate_study("tiny", tmp_path / "existing")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError, match="a file is where a folder is expected"):
        simulate_study("tiny", tmp_path / "afile" / "dataset")


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="Unknown StudyConfig key.*'n_trian'.*did you mean 'n_train'"):
        StudyConfig.from_dict({"n_trian": 3})
    with pytest.raises(ValueError, match="whole number of samples"):
        StudyConfig(tr=2.01)
    with pytest.raises(ValueError, match="meg_cnr"):
        StudyConfig(meg_cnr=-1)
    with pytest.raises(ValueError, match=r"'StudyConfig.chunk_size' must be an int >= 64, got 32"):
        StudyConfig(chunk_size=32)
    with pytest.raises(TypeError, match=r"'StudyConfig.n_train' must be an int, got float"):
        StudyConfig(n_train=2.0)
    # A bool is no feature width (True used to pass as a 1-d word stream).
    with pytest.raises(TypeError, match=r"'StudyConfig.feature_dims\[0\]' must be an int"):
        StudyConfig(feature_dims=(True, 44, 16))
    with pytest.raises(ValueError, match=r"'StudyConfig.feature_dims\[2\]' must be an int >= 1"):
        StudyConfig(feature_dims=(32, 44, 0))
    cfg = StudyConfig(seed=np.int64(3), feature_dims=[np.int64(8), 44, 4])
    assert type(cfg.seed) is int and all(type(d) is int for d in cfg.feature_dims)
    with pytest.raises(ValueError, match="preset"):
        StudyConfig.preset("huge")
    with pytest.raises(FileNotFoundError, match="preset name"):
        StudyConfig.resolve(str(tmp_path / "nope.toml"))
    toml = tmp_path / "study.toml"
    toml.write_text('preset = "tiny"\nmeg_cnr = "inf"\nseed = 3\n')
    cfg = StudyConfig.from_file(toml)
    assert cfg.seed == 3 and math.isinf(cfg.meg_cnr) and cfg.n_train == 2
    # JSON round trip
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    # a dict: preset + overrides (the demo's study), without touching the caller's dict
    spec = {"preset": "tiny", "spacing": "oct5", "seed": 7}
    cfg = StudyConfig.resolve(spec)
    assert (cfg.spacing, cfg.seed, cfg.n_train) == ("oct5", 7, StudyConfig.preset("tiny").n_train)
    assert spec == {"preset": "tiny", "spacing": "oct5", "seed": 7}
    assert StudyConfig.resolve({"seed": 5}) == StudyConfig.preset("demo", seed=5)
    with pytest.raises(ValueError, match="Unknown StudyConfig key"):
        StudyConfig.resolve({"preset": "tiny", "n_trian": 3})


def test_paper_preset_matches_the_paper():
    cfg = StudyConfig.preset("paper")
    plan = cfg.story_plan()
    splits = [p[1] for p in plan]
    assert len(plan) == 27
    assert [splits.count(s) for s in ("train", "val", "test", "anchor")] == [21, 1, 4, 1]
    assert 600 <= np.mean([p[2] for p in plan]) <= 840
    assert [p[3] for p in plan if p[1] == "anchor"] == [5]
    mods = [m for _, _, m in cfg.subject_plan()]
    assert mods.count(["meg"]) == 5 and mods.count(["fmri"]) == 8
    assert sum(cfg.feature_dims) == 852
