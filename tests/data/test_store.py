"""Tests for the on-disk dataset store (neurofuse.data.store)."""

import json
import os

import mne
import numpy as np
import pytest
import scipy.sparse

from neurofuse.data.store import (
    MANIFEST,
    SCHEMA_VERSION,
    DatasetWriter,
    expected_n_trs,
    read_dataset,
)

SFREQ, TR = 50.0, 2.0
STREAMS = {"word": [0, 4], "phoneme": [4, 6], "spectrogram": [6, 8]}
N_FEAT, N_CH, N_SRC, N_FS = 8, 5, 7, 9
STORIES = {"s1": ("train", 400), "s2": ("val", 300), "s3": ("test", 250)}


def _info(n_ch=N_CH):
    types = ["mag" if i % 3 == 0 else "grad" for i in range(n_ch)]
    return mne.create_info([f"MEG{i:03d}" for i in range(n_ch)], SFREQ, types)


def _morph(n_src=N_SRC, n_fs=N_FS, seed=0):
    return scipy.sparse.random(n_src, n_fs, density=0.4, format="csr", random_state=seed,
                               dtype=np.float32)


def _vertices(n_src=N_SRC):
    return [np.arange(0, 2 * (n_src // 2), 2), np.arange(1, 1 + 3 * (n_src - n_src // 2), 3)]


def _writer(path, **kw):
    kw.setdefault("metadata", {"seed": 0, "generator": {"cnr": 1.0}})
    return DatasetWriter(path, sfreq=SFREQ, tr=TR, feature_streams=STREAMS, **kw)


def _subject_kw(rng):
    return dict(modalities=["meg", "fmri"], info=_info(),
                leadfield=rng.standard_normal((N_CH, N_SRC)), morph=_morph(),
                vertices=_vertices(), anatomy={"subject": "fsaverage", "trans": "fsaverage"},
                cnr={"meg": 0.5, "fmri": float("inf")})


def _fill(w, rng, stories=STORIES):
    """Write a small complete study; return the arrays written."""
    ref = {}
    for name, (split, n_times) in stories.items():
        w.add_story(name, split=split, n_times=n_times)
        ref["feat", name] = rng.standard_normal((n_times, N_FEAT)).astype(np.float32)
        w.write_features(name, ref["feat", name])
    ref["kw"] = _subject_kw(rng)
    w.add_subject("sub-01", **ref["kw"])
    w.add_subject("sub-02", modalities=["fmri"], n_sources=N_SRC, cnr={"fmri": 2})
    for name, (_, n_times) in stories.items():
        ref["meg", name] = rng.standard_normal((2, N_CH, n_times)).astype(np.float32)
        w.write_meg("sub-01", name, ref["meg", name])
        n_trs = expected_n_trs(n_times, SFREQ, TR)
        ref["fmri", name] = rng.standard_normal((1, N_SRC, n_trs)).astype(np.float32)
        w.write_fmri("sub-01", name, ref["fmri", name][0])  # 2-D: one repeat
    ref["fmri2"] = rng.standard_normal((3, N_SRC, 4)).astype(np.float32)
    w.write_fmri("sub-02", "s1", ref["fmri2"])  # sub-02 lacks s2, s3: allowed
    ref["gt"] = rng.standard_normal((N_SRC, 400)).astype(np.float32)
    w.write_ground_truth("sources/s1", ref["gt"])
    w.write_ground_truth("weights/labels", np.arange(4))
    return ref


def _make(path, seed=0):
    rng = np.random.default_rng(seed)
    with _writer(path) as w:
        ref = _fill(w, rng)
    return ref


def test_round_trip(tmp_path):
    path = tmp_path / "ds"
    rng = np.random.default_rng(0)
    with _writer(path) as w:
        ref = _fill(w, rng)
    kw = ref["kw"]
    ds = read_dataset(path)
    assert (ds.sfreq, ds.tr, ds.schema_version) == (SFREQ, TR, SCHEMA_VERSION)
    assert ds.feature_streams == {k: tuple(v) for k, v in STREAMS.items()}
    assert ds.stories == ["s1", "s2", "s3"]
    assert ds.splits == {"train": ["s1"], "val": ["s2"], "test": ["s3"]}
    assert ds.subjects == ["sub-01", "sub-02"]
    assert ds.modalities("sub-02") == ["fmri"]
    assert ds.has("sub-01", "meg", "s3") and not ds.has("sub-02", "fmri", "s2")
    assert not ds.has("sub-02", "meg", "s1") and not ds.has("nobody", "meg", "s1")
    assert ds.subject_stories("sub-02", "fmri") == ["s1"]
    assert ds.metadata == {"seed": 0, "generator": {"cnr": 1.0}}
    for name in STORIES:
        np.testing.assert_array_equal(ds.features(name), ref["feat", name])
        np.testing.assert_array_equal(ds.meg("sub-01", name), ref["meg", name])
        np.testing.assert_allclose(ds.meg("sub-01", name, average=True),
                                   ref["meg", name].mean(0), rtol=1e-6)
        np.testing.assert_array_equal(ds.fmri("sub-01", name), ref["fmri", name])
    assert ds.fmri("sub-01", "s1").shape == (1, N_SRC, 4)  # floor(400 / 100)
    np.testing.assert_array_equal(ds.fmri("sub-02", "s1"), ref["fmri2"])
    assert ds.fmri("sub-02", "s1", average=True).shape == (N_SRC, 4)
    info = ds.info("sub-01")
    assert info["ch_names"] == kw["info"]["ch_names"]
    assert info.get_channel_types() == kw["info"].get_channel_types()
    assert ds.info("sub-01") is info  # cached
    np.testing.assert_allclose(ds.leadfield("sub-01"), kw["leadfield"], rtol=1e-6)
    morph = ds.morph("sub-01")
    assert scipy.sparse.isspmatrix_csr(morph) or morph.format == "csr"
    np.testing.assert_allclose(morph.toarray(), kw["morph"].toarray())
    for got, want in zip(ds.vertices("sub-01"), kw["vertices"]):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ds.ground_truth("sources/s1"), ref["gt"])
    np.testing.assert_array_equal(ds.ground_truth("ground_truth/weights/labels.npy"), np.arange(4))
    assert ds.cnr("sub-01") == {"meg": 0.5, "fmri": float("inf")}
    with pytest.raises(ValueError, match="sub-02.*without a leadfield"):
        ds.leadfield("sub-02")
    with pytest.raises(ValueError, match="no fmri data for story 's2'"):
        ds.fmri("sub-02", "s2")

    summary = ds.summary()
    json.dumps(summary, allow_nan=False)  # JSON-able, no NaN/Infinity tokens
    assert summary["schema_version"] == SCHEMA_VERSION
    assert summary["stories"]["s1"] == {"split": "train", "duration": 8.0, "n_times": 400}
    assert summary["subjects"]["sub-01"]["modalities"] == ["meg", "fmri"]
    assert summary["subjects"]["sub-01"]["cnr"] == {"meg": 0.5, "fmri": "inf"}
    assert summary["subjects"]["sub-02"]["n_stories"] == {"fmri": 1}
    assert summary["total_duration"]["meg"] == pytest.approx(2 * (8 + 6 + 5))
    assert summary["total_duration"]["fmri"] == pytest.approx(8 + 6 + 5 + 3 * 8)
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["subjects"]["sub-01"]["n_repeats"]["meg"] == {"s1": 2, "s2": 2, "s3": 2}
    assert manifest["subjects"]["sub-01"]["stories"]["fmri"] == ["s1", "s2", "s3"]


def test_lazy_reading(tmp_path):
    _make(tmp_path / "ds")
    ds = read_dataset(tmp_path / "ds")
    for arr in (ds.features("s1"), ds.meg("sub-01", "s1"), ds.fmri("sub-01", "s2"),
                ds.leadfield("sub-01"), ds.ground_truth("sources/s1")):
        assert isinstance(arr, np.memmap)
        assert not arr.flags.writeable
    # opening checks every array's header: a corrupted array is named on open; with
    # check=False only the manifest is read and the array fails only when asked for
    (tmp_path / "ds" / "features" / "s2.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"features/s2\.npy: file: expected a \.npy array"):
        read_dataset(tmp_path / "ds")
    ds = read_dataset(tmp_path / "ds", check=False)
    ds.features("s1")
    with pytest.raises(ValueError):
        ds.features("s2")


def test_create_array_chunked(tmp_path):
    rng = np.random.default_rng(1)
    full = rng.standard_normal((N_SRC, 400)).astype(np.float32)
    meg = rng.standard_normal((1, N_CH, 400)).astype(np.float32)
    with _writer(tmp_path / "ds") as w:
        w.add_story("s1", split="train", n_times=400)
        w.write_features("s1", np.zeros((400, N_FEAT)))
        w.add_subject("sub-01", modalities=["meg"], info=_info())
        mm = w.create_array("ground_truth/sources/s1.npy", (N_SRC, 400), np.float32)
        assert isinstance(mm, np.memmap)
        for start in range(0, 400, 64):  # fill in time chunks
            mm[:, start:start + 64] = full[:, start:start + 64]
        mm_meg = w.create_array("subjects/sub-01/meg/s1.npy", (1, N_CH, 400))
        mm_meg[:] = meg
        with pytest.raises(ValueError, match=r"'story'.*got 's1b'.*add_story"):
            w.create_array("subjects/sub-01/meg/s1b.npy", (1, N_CH, 400))
        with pytest.raises(ValueError, match="inconsistent length.*399 samples"):
            w.create_array("features/s1.npy", (399, N_FEAT))
    ds = read_dataset(tmp_path / "ds")
    np.testing.assert_array_equal(ds.ground_truth("sources/s1"), full)
    np.testing.assert_array_equal(ds.meg("sub-01", "s1"), meg)
    assert ds.summary()["ground_truth"] == ["sources/s1.npy"]


def test_create_array_checks_nan_at_close(tmp_path, monkeypatch):
    import neurofuse.data.store.writer as store

    monkeypatch.setattr(store, "_CHUNK_BYTES", 64)  # force several chunks
    with pytest.raises(ValueError, match=r"ground_truth/x.npy \(rows"):
        with _writer(tmp_path / "ds") as w:
            w.add_story("s1", split="train", n_times=100)
            w.write_features("s1", np.zeros((100, N_FEAT)))
            mm = w.create_array("ground_truth/x.npy", (50, 10))
            mm[40, 3] = np.nan
    assert list(tmp_path.iterdir()) == []


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


def test_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        with _writer(tmp_path / "ds") as w:
            _fill(w, np.random.default_rng(0))
            raise RuntimeError("simulated crash")
    assert _leftovers(tmp_path) == []
    # an incomplete study (story without features) also fails at close, leaving nothing
    with pytest.raises(ValueError, match=r"Stories without features: \['s1'\]"):
        with _writer(tmp_path / "ds") as w:
            w.add_story("s1", split="train", n_times=10)
    with pytest.raises(ValueError, match="declares modalities \\['meg'\\] but no data"):
        with _writer(tmp_path / "ds") as w:
            w.add_story("s1", split="train", n_times=10)
            w.write_features("s1", np.zeros((10, N_FEAT)))
            w.add_subject("sub-01", modalities=["meg"])
    assert _leftovers(tmp_path) == []


def test_overwrite(tmp_path):
    path = tmp_path / "ds"
    ref = _make(path, seed=0)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        with _writer(path):
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with _writer(path, overwrite=True) as w:
            _fill(w, np.random.default_rng(5))
            raise RuntimeError("boom")
    assert _leftovers(tmp_path) == ["ds"]
    np.testing.assert_array_equal(read_dataset(path).features("s1"), ref["feat", "s1"])
    ref2 = _make_overwrite(path)
    np.testing.assert_array_equal(read_dataset(path).features("s1"), ref2["feat", "s1"])
    assert _leftovers(tmp_path) == ["ds"]
    # never overwrite a folder that is not a dataset
    other = tmp_path / "home"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a neurofuse dataset"):
        with _writer(other, overwrite=True):
            pass
    assert (other / "thesis.tex").read_text() == "precious"


def _make_overwrite(path):
    with _writer(path, overwrite=True) as w:
        return _fill(w, np.random.default_rng(7))


@pytest.fixture
def w(tmp_path):
    """An open writer with one story 's1' (n_times=400) and subject 'sub-01' (meg+fmri)."""
    with pytest.raises(_Abort):
        with _writer(tmp_path / "ds") as writer:
            writer.add_story("s1", split="train", n_times=400)
            writer.add_subject("sub-01", **_subject_kw(np.random.default_rng(0)))
            yield writer
            raise _Abort
    assert _leftovers(tmp_path) == []


class _Abort(Exception):
    pass


def test_validation_data(w):
    with pytest.raises(ValueError, match=r"'meg data for sub-01/s1' contains 1 NaN"):
        bad = np.zeros((1, N_CH, 400))
        bad[0, 2, 7] = np.nan
        w.write_meg("sub-01", "s1", bad)
    feats = np.zeros((400, N_FEAT))
    feats[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"'features data for s1' contains 0 NaN and 1 infinite"
                                         r".*\(3, 1\)"):
        w.write_features("s1", feats)
    with pytest.raises(ValueError, match=r"stories of inconsistent length.*399 samples.*is 400"):
        w.write_meg("sub-01", "s1", np.zeros((1, N_CH, 399)))
    with pytest.raises(ValueError, match=r"inconsistent length.*5 samples.*400 / 100 is 4"):
        w.write_fmri("sub-01", "s1", np.zeros((1, N_SRC, 5)))
    with pytest.raises(ValueError, match=r"inconsistent length: features.*401 samples.*is 400"):
        w.write_features("s1", np.zeros((401, N_FEAT)))
    with pytest.raises(ValueError, match=r"\(400, 8\), got \(400, 7\)"):
        w.write_features("s1", np.zeros((400, 7)))
    with pytest.raises(ValueError, match="has 4 channels, expected 5"):
        w.write_meg("sub-01", "s1", np.zeros((1, 4, 400)))
    with pytest.raises(ValueError, match="has 6 sources, expected 7"):
        w.write_fmri("sub-01", "s1", np.zeros((1, 6, 4)))
    with pytest.raises(ValueError, match=r"'story'.*\['s1'\], got 'nope'.*add_story"):
        w.write_meg("sub-01", "nope", np.zeros((1, N_CH, 400)))
    with pytest.raises(ValueError, match=r"'subject'.*got 'sub-99'.*add_subject"):
        w.write_meg("sub-99", "s1", np.zeros((1, N_CH, 400)))
    w.write_meg("sub-01", "s1", np.zeros((1, N_CH, 400)))
    with pytest.raises(ValueError, match="subjects/sub-01/meg/s1.npy' was already written"):
        w.write_meg("sub-01", "s1", np.zeros((1, N_CH, 400)))
    w.write_ground_truth("sources/s1", np.zeros(3))
    with pytest.raises(ValueError, match="already written"):
        w.create_array("ground_truth/sources/s1.npy", (3,))
    with pytest.raises(ValueError, match="create_array cannot create 'elsewhere/x.npy'"):
        w.create_array("elsewhere/x.npy", (3,))
    with pytest.raises(ValueError, match="Invalid ground-truth path component '..'"):
        w.write_ground_truth("../escape", np.zeros(3))


def test_validation_declarations(w):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="'split'.*'anchor'.*got 'training'"):
        w.add_story("s2", split="training", n_times=10)
    with pytest.raises(ValueError, match="Story 's1' was already added"):
        w.add_story("s1", split="train", n_times=10)
    with pytest.raises(ValueError, match="Invalid story name '../s'"):
        w.add_story("../s", split="train", n_times=10)
    with pytest.raises(ValueError, match="Subject 'sub-01' was already added"):
        w.add_subject("sub-01", modalities=["meg"])
    with pytest.raises(ValueError, match=r"'modalities'.*\['meg', 'eeg', 'ecog', 'fmri', "
                                         r"'fmri-volume'\], got 'nirs'"):
        w.add_subject("sub-02", modalities=["nirs"])
    with pytest.raises(ValueError, match=r"lead field vs channel count mismatch.*6 rows.*5 MEG"):
        w.add_subject("sub-02", modalities=["meg"], info=_info(),
                      leadfield=rng.standard_normal((6, N_SRC)))
    with pytest.raises(ValueError, match=r"morph vs source-space mismatch.*leadfield columns = 7"
                                         r".*morph rows = 8"):
        w.add_subject("sub-02", modalities=["meg"], info=_info(),
                      leadfield=rng.standard_normal((N_CH, N_SRC)), morph=_morph(n_src=8))
    with pytest.raises(ValueError, match=r"morph vs source-space mismatch.*declared n_sources = 6"):
        w.add_subject("sub-02", modalities=["fmri"], n_sources=6, morph=_morph())
    with pytest.raises(ValueError, match=r"source-space mismatch.*vertices \(lh \+ rh\) = 8"):
        w.add_subject("sub-02", modalities=["fmri"], n_sources=N_SRC, vertices=_vertices(8))
    with pytest.raises(ValueError, match="'leadfield' contains 1 NaN"):
        lf = rng.standard_normal((N_CH, N_SRC))
        lf[0, 0] = np.nan
        w.add_subject("sub-02", modalities=["meg"], leadfield=lf)
    with pytest.raises(TypeError, match="'morph' must be a scipy.sparse matrix"):
        w.add_subject("sub-02", modalities=["fmri"], morph=np.zeros((N_SRC, N_FS)))
    with pytest.raises(ValueError, match="'info' must hold MEG channels only"):
        w.add_subject("sub-02", modalities=["meg"], info=mne.create_info(2, SFREQ, "eeg"))
    with pytest.raises(ValueError, match=r"'cnr key'.*\['fmri'\], got 'meg'"):
        w.add_subject("sub-02", modalities=["fmri"], cnr={"meg": 1.0})
    with pytest.raises(ValueError, match="'cnr\\['fmri'\\]' must be > 0"):
        w.add_subject("sub-02", modalities=["fmri"], cnr={"fmri": -1.0})
    with pytest.raises(ValueError, match="'modality'.*\\['fmri'\\], got 'meg'"):
        w.add_subject("sub-03", modalities=["fmri"])
        w.write_meg("sub-03", "s1", np.zeros((1, N_CH, 400)))


def test_validation_constructor(tmp_path):
    with pytest.raises(ValueError, match="'word' and 'phoneme' overlap"):
        DatasetWriter(tmp_path / "d", sfreq=SFREQ, tr=TR,
                      feature_streams={"word": [0, 5], "phoneme": [4, 6]})
    with pytest.raises(ValueError, match=r"feature_streams\['word'\] must be \[start, stop\)"):
        DatasetWriter(tmp_path / "d", sfreq=SFREQ, tr=TR, feature_streams={"word": [3, 3]})
    with pytest.raises(ValueError, match="'sfreq' must be > 0"):
        DatasetWriter(tmp_path / "d", sfreq=0, tr=TR, feature_streams=STREAMS)
    with pytest.raises(TypeError, match="'metadata' must be JSON-serialisable"):
        DatasetWriter(tmp_path / "d", sfreq=SFREQ, tr=TR, feature_streams=STREAMS,
                      metadata={"f": object()})
    with pytest.raises(RuntimeError, match="must be used as a context manager"):
        w = _writer(tmp_path / "d")
        w.add_story("s1", split="train", n_times=10)
        w.write_features("s1", np.zeros((10, N_FEAT)))
    assert not (tmp_path / "d").exists()


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a neurofuse dataset.*no neurofuse-dataset"):
        read_dataset(tmp_path)
    path = tmp_path / "ds"
    _make(path)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"schema_version {SCHEMA_VERSION + 1}.*upgrade neurofuse"):
        read_dataset(path)
    manifest["schema_version"] = SCHEMA_VERSION
    (path / MANIFEST).write_text(json.dumps(manifest))
    os.remove(path / "subjects" / "sub-01" / "meg" / "s2.npy")
    with pytest.raises(FileNotFoundError, match=r"incomplete.*subjects/sub-01/meg/s2.npy"):
        read_dataset(path)
    (path / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_dataset(path)


def test_unwritable_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="a file is where a folder is expected"):
        with _writer(blocker / "ds"):
            pass
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OSError, match="permission denied"):
            with _writer(ro / "ds"):
                pass
    finally:
        ro.chmod(0o700)


def test_forward_and_anatomy_round_trip(tiny_study):
    from neurofuse.data.store import read_dataset

    ds = read_dataset(tiny_study)
    fwd = ds.forward("S01")
    np.testing.assert_array_equal(fwd["sol"]["data"].astype(np.float32), ds.leadfield("S01"))
    assert fwd["sol"]["row_names"] == ds.info("S01")["ch_names"]
    anat = ds.anatomy("S01")
    assert anat["kind"] == "simulated" and anat["name"].startswith("sim-01")
    with pytest.raises(ValueError, match="no forward solution"):
        ds.forward("S02")
