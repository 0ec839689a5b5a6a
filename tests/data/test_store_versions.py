"""Older stores: schema 1 and the former separate ECoG store are read, and upgraded on request.

The fixtures write the older formats the way the writers of neurofuse 0.1 did (file names,
array shapes and manifest keys of ``docs/dataset-format.md`` schema 1 and ``docs/ecog.md``).
"""

import io
import json
import logging
import math

import mne
import numpy as np
import pytest
import scipy.sparse

from neurofuse._logging import logger
from neurofuse.data import upgrade_dataset
from neurofuse.data.ecog import EcogElectrodes, read_ecog_dataset, write_ecog_dataset
from neurofuse.data.store import MANIFEST, SCHEMA_VERSION, expected_n_trs, read_dataset

SFREQ, TR, N_CH, N_SRC, N_FS = 50.0, 2.0, 3, 5, 6
STREAMS = {"word": [0, 2], "phoneme": [2, 4]}


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr, allow_pickle=False)


def _write_v1(path, rng):
    """A schema-1 store as neurofuse 0.1's DatasetWriter left it; returns what it holds."""
    ref = {"info": mne.create_info([f"MEG{i:03d}" for i in range(N_CH)], SFREQ, "mag"),
           "lf": rng.standard_normal((N_CH, N_SRC)).astype(np.float32),
           "morph": scipy.sparse.random(N_SRC, N_FS, density=0.5, format="csr",
                                        random_state=0, dtype=np.float32),
           "vertices": [[0, 2, 4], [1, 3]], "rep": np.array([0.5, -0.1, 0.9], np.float32)}
    stories = {"s1": ("train", 200), "s2": ("test", 150)}
    sub = path / "subjects" / "sub-01"
    for name, (_, n) in stories.items():
        ref["feat", name] = rng.standard_normal((n, 4)).astype(np.float32)
        ref["meg", name] = rng.standard_normal((2, N_CH, n)).astype(np.float32)
        ref["fmri", name] = rng.standard_normal(
            (1, N_SRC, expected_n_trs(n, SFREQ, TR))).astype(np.float32)
        _save(path / "features" / f"{name}.npy", ref["feat", name])
        _save(sub / "meg" / f"{name}.npy", ref["meg", name])
        _save(sub / "fmri" / f"{name}.npy", ref["fmri", name])
    ref["gt"] = rng.standard_normal((N_FS, 200)).astype(np.float32)
    _save(path / "ground_truth" / "sources" / "s1.npy", ref["gt"])
    mne.io.write_info(sub / "meg-info.fif", ref["info"])
    _save(sub / "leadfield.npy", ref["lf"])
    scipy.sparse.save_npz(sub / "morph.npz", ref["morph"])
    (sub / "vertices.json").write_text(json.dumps(ref["vertices"]))
    _save(sub / "repeatability-meg.npy", ref["rep"])
    manifest = {
        "schema_version": 1, "sfreq": SFREQ, "tr": TR, "feature_streams": STREAMS,
        "n_features": 4,
        "stories": {n: {"split": s, "n_times": k, "duration": k / SFREQ}
                    for n, (s, k) in stories.items()},
        "subjects": {"sub-01": {
            "modalities": ["meg", "fmri"], "stories": {"meg": ["s1", "s2"], "fmri": ["s1", "s2"]},
            "n_repeats": {"meg": {"s1": 2, "s2": 2}, "fmri": {"s1": 1, "s2": 1}},
            "cnr": {"meg": 0.5, "fmri": "inf"}, "n_channels": N_CH, "n_sources": N_SRC,
            "n_sources_fsaverage": N_FS, "anatomy": {"subject": "sim01"},
            "files": {"info": "meg-info.fif", "leadfield": "leadfield.npy",
                      "morph": "morph.npz", "vertices": "vertices.json"},
            "repeatability": {"meg": {"file": "repeatability-meg.npy", "method": "repeat",
                                      "stories": ["s1"]}}}},
        "ground_truth": {"sources/s1.npy": {"shape": [N_FS, 200], "dtype": "<f4"}},
        "ground_truth_dirs": [], "metadata": {"seed": 0}}
    (path / MANIFEST).write_text(json.dumps(manifest))
    return ref


def _check_v1_content(ds, ref):
    assert ds.schema_version == SCHEMA_VERSION
    assert ds.stories == ["s1", "s2"] and ds.splits == {"train": ["s1"], "test": ["s2"]}
    assert ds.modalities("sub-01") == ["meg", "fmri"]
    for name in ("s1", "s2"):
        np.testing.assert_array_equal(ds.features(name), ref["feat", name])
        np.testing.assert_array_equal(ds.meg("sub-01", name), ref["meg", name])
        np.testing.assert_array_equal(ds.fmri("sub-01", name), ref["fmri", name])
        assert isinstance(ds.meg("sub-01", name), np.memmap)
    assert ds.info("sub-01")["ch_names"] == ref["info"]["ch_names"]
    np.testing.assert_array_equal(ds.leadfield("sub-01"), ref["lf"])
    np.testing.assert_array_equal(ds.morph("sub-01").toarray(), ref["morph"].toarray())
    assert [v.tolist() for v in ds.vertices("sub-01")] == ref["vertices"]
    np.testing.assert_array_equal(ds.repeatability("sub-01", "meg"), ref["rep"])
    assert ds.repeatability_info("sub-01", "meg")["stories"] == ["s1"]
    np.testing.assert_array_equal(ds.ground_truth("sources/s1"), ref["gt"])
    assert ds.cnr("sub-01") == {"meg": 0.5, "fmri": math.inf}
    assert ds.spatial_shape("sub-01", "meg") == (N_CH,)
    assert ds.spatial_shape("sub-01", "fmri") == (N_SRC,)
    summary = ds.summary()["subjects"]["sub-01"]
    assert (summary["n_channels"], summary["n_sources"]) == (N_CH, N_SRC)


@pytest.fixture
def log():
    """The package logger's INFO output (it does not propagate to the root logger)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_schema_1_is_read_as_schema_2(tmp_path, log):
    ref = _write_v1(tmp_path / "v1", np.random.default_rng(0))
    before = (tmp_path / "v1" / MANIFEST).read_text()
    ds = read_dataset(tmp_path / "v1")
    _check_v1_content(ds, ref)
    assert "schema 1" in log.getvalue() and "upgrade_dataset" in log.getvalue()
    assert (tmp_path / "v1" / MANIFEST).read_text() == before  # reading changes nothing


def test_upgrade_dataset_rewrites_schema_1(tmp_path, log):
    ref = _write_v1(tmp_path / "v1", np.random.default_rng(1))
    out = upgrade_dataset(tmp_path / "v1", tmp_path / "v2")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION and "upgraded_from" not in manifest
    sub = manifest["subjects"]["sub-01"]
    assert "n_channels" not in sub and sub["files"] == {"morph": "morph.npz",
                                                        "vertices": "vertices.json"}
    assert sub["modality_info"]["meg"] == {
        "kind": "sensor", "shape": [N_CH],
        "files": {"info": "meg-info.fif", "leadfield": "leadfield.npy"}}
    assert manifest["schema_upgrade"]["from"] == "neurofuse-dataset schema 1"
    assert manifest["metadata"] == {"seed": 0}
    log.truncate(0)
    _check_v1_content(read_dataset(out), ref)
    assert "schema 1" not in log.getvalue()  # read as it is: nothing upgraded in memory
    _check_v1_content(read_dataset(tmp_path / "v1"), ref)  # the original is untouched
    # in place: only once complete, and a current store is left alone
    assert upgrade_dataset(tmp_path / "v1") == tmp_path / "v1"
    assert json.loads((tmp_path / "v1" / MANIFEST).read_text())["schema_version"] == SCHEMA_VERSION
    _check_v1_content(read_dataset(tmp_path / "v1"), ref)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1", "v2"]
    assert upgrade_dataset(tmp_path / "v1") == tmp_path / "v1"


def test_newer_and_broken_schemas_are_refused(tmp_path):
    _write_v1(tmp_path / "ds", np.random.default_rng(2))
    manifest = json.loads((tmp_path / "ds" / MANIFEST).read_text())
    for version, match in ((SCHEMA_VERSION + 1, "newer than the 2.*upgrade neurofuse"),
                           (0, "no valid integer 'schema_version'"),
                           ("1", "no valid integer 'schema_version'")):
        (tmp_path / "ds" / MANIFEST).write_text(json.dumps({**manifest,
                                                             "schema_version": version}))
        with pytest.raises(ValueError, match=match):
            read_dataset(tmp_path / "ds")


# ------------------------------------------------------------------ the former ECoG store
def _ecog_content(rng):
    el = EcogElectrodes(names=["G1", "G2", "S1"], hemi=["lh", "lh", "lh"],
                        pos_fsaverage=[[-0.05, 0.0, 0.01], [-0.05, 0.01, 0.01],
                                       [-0.04, 0.02, 0.0]],
                        pos_mri=[[-0.051, 0.0, 0.01], [-0.05, 0.011, 0.01], [-0.04, 0.02, 0.001]],
                        group=["G", "G", "S"])
    return {"el": el, "feat": rng.standard_normal((120, 4)).astype(np.float32),
            "ecog": rng.standard_normal((3, 120)).astype(np.float32),
            "clean": rng.standard_normal((3, 120)).astype(np.float32)}


def _write_legacy_ecog(path, c):
    """An ECoG store as neurofuse 0.1's write_ecog_dataset left it (neurofuse-ecog.json)."""
    _save(path / "features" / "story.npy", c["feat"])
    _save(path / "subjects" / "P1" / "ecog" / "story.npy", c["ecog"])  # no repeat axis
    _save(path / "ground_truth" / "P1" / "story-clean.npy", c["clean"])
    manifest = {"format": "neurofuse-ecog", "schema_version": 1, "sfreq": SFREQ,
                "feature_streams": STREAMS, "n_features": 4,
                "stories": {"story": {"n_times": 120, "duration": 120 / SFREQ}},
                "subjects": {"P1": {"stories": ["story"], "n_electrodes": 3, "units": "z",
                                    "signal": "high-gamma envelope",
                                    "electrodes": c["el"].to_json(),
                                    "anatomy": {"name": "sim-ecog-01"}}},
                "ground_truth": {"P1/story-clean.npy": {"shape": [3, 120], "dtype": "<f4"}},
                "metadata": {"noise_sd": 0.5}}
    (path / "neurofuse-ecog.json").write_text(json.dumps(manifest))


def _same_ecog(a, b):
    assert a.subjects == b.subjects == ["P1"] and a.stories == b.stories == ["story"]
    assert a.sfreq == b.sfreq and a.feature_streams == b.feature_streams
    assert a.n_features == b.n_features and a.metadata == b.metadata
    assert a.n_times("story") == b.n_times("story") == 120
    np.testing.assert_array_equal(a.features("story"), b.features("story"))
    x, y = a.ecog("P1", "story"), b.ecog("P1", "story")
    assert x.shape == y.shape == (3, 120) and isinstance(x, np.memmap)
    np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.ground_truth("P1/story-clean"),
                                  b.ground_truth("P1/story-clean"))
    ea, eb = a.electrodes("P1"), b.electrodes("P1")
    assert (ea.names, ea.hemi, ea.group) == (eb.names, eb.hemi, eb.group)
    np.testing.assert_array_equal(ea.pos_fsaverage, eb.pos_fsaverage)
    np.testing.assert_array_equal(ea.pos_mri, eb.pos_mri)
    assert (a.units("P1"), a.signal("P1"), a.anatomy("P1")) == \
        (b.units("P1"), b.signal("P1"), b.anatomy("P1"))
    assert a.subject_stories("P1") == b.subject_stories("P1") == ["story"]


def test_ecog_through_the_unified_store_equals_the_former_ecog_store(tmp_path):
    c = _ecog_content(np.random.default_rng(3))
    _write_legacy_ecog(tmp_path / "old", c)
    new = write_ecog_dataset(
        tmp_path / "new", sfreq=SFREQ, feature_streams=STREAMS, stories={"story": c["feat"]},
        subjects={"P1": {"electrodes": c["el"], "ecog": {"story": c["ecog"]}, "units": "z",
                         "signal": "high-gamma envelope", "anatomy": {"name": "sim-ecog-01"}}},
        ground_truth={"P1/story-clean": c["clean"]}, metadata={"noise_sd": 0.5})
    old, unified = read_ecog_dataset(tmp_path / "old"), read_ecog_dataset(new)
    _same_ecog(old, unified)
    np.testing.assert_array_equal(unified.ecog("P1", "story"), c["ecog"])
    # the unified store is an ordinary dataset: the ecog sensor modality with its info
    ds = read_dataset(new)
    assert ds.modalities("P1") == ["ecog"] and ds.splits == {"test": ["story"]}
    assert ds.info("P1", "ecog")["ch_names"] == ["G1", "G2", "S1"]
    assert ds.info("P1", "ecog").get_channel_types() == ["ecog"] * 3
    assert ds.data("P1", "ecog", "story").shape == (1, 3, 120)
    assert not (new / "neurofuse-ecog.json").exists()
    # the former store upgrades to the unified layout (repeat axis on disk)
    up = upgrade_dataset(tmp_path / "old", tmp_path / "up")
    assert np.load(up / "subjects" / "P1" / "ecog" / "story.npy").shape == (1, 3, 120)
    _same_ecog(read_ecog_dataset(up), unified)


def test_read_ecog_dataset_refuses_a_store_without_ecog(tmp_path):
    _write_v1(tmp_path / "v1", np.random.default_rng(4))
    with pytest.raises(ValueError, match="without ECoG.*simulate_ecog"):
        read_ecog_dataset(tmp_path / "v1")
    with pytest.raises(FileNotFoundError, match="not a neurofuse dataset"):
        read_ecog_dataset(tmp_path)
