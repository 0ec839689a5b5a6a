"""The LeBel et al. (2023) ds003020 loader, on small files written in the dataset's formats.

The fixture writes a ds003020 copy as the dataset's code reads it: ``derivative/
preprocessed_data/<UTS0X>/<story>.hf5`` (HDF5, ``data`` = (n_TRs, n_voxels) float32, with
``respdict[story] - 20`` volumes), ``derivative/TextGrids/<story>.TextGrid`` (Praat long text
format, a ``phone`` tier with LeBel's ARPAbet/non-speech labels and a ``word`` tier),
``derivative/respdict.json`` and ``stimuli/<story>.wav`` (16-bit PCM). The voxel signals are
known functions of audio time, so the store's timing can be checked against them.
"""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import scipy.sparse
from scipy.io import wavfile

from neurofuse.anatomy.coordinates import fsaverage5_to_oct6
from neurofuse.data._prepare import lm_id
from neurofuse.data.datasets.lebel import (
    LEBEL_TR,
    N_FSAVERAGE5,
    N_OCT6,
    prepare_lebel,
    read_voxel_to_source,
    write_voxel_to_source,
)
from neurofuse.data.datasets.lebel import mapping as lebel_mapping
from neurofuse.data.datasets.lebel import prepare as lebel_prepare
from neurofuse.data.repeatability import compute_repeatability
from neurofuse.data.store import read_dataset
from neurofuse.preprocessing.fmri import resample_volumes
from neurofuse.systems.joint.data import loss_weights

SFREQ = 50.0
T0 = 10 * LEBEL_TR - 10.0  # audio time of the first .hf5 volume (trim_start * tr - sound_start)
# (word, phones) with LeBel's labels: stress digits, 'sp' pauses, {NS}/{BR} non-speech.
VOCAB = [("i", ["AY1"]), ("went", ["W", "EH1", "N", "T"]), ("sp", ["sp"]),
         ("home", ["HH", "OW1", "M"]), ("with", ["W", "IH1", "DH"]), ("{NS}", ["{NS}"]),
         ("the", ["DH", "AH0"]), ("dog", ["D", "AO1", "G"]), ("{BR}", ["{BR}"])]


# ---------------------------------------------------------------------- files in LeBel's formats
def _textgrid(path, duration):
    words, phones, t, i = [], [], 0.0, 0
    while duration - t > 1e-6:
        word, phs = VOCAB[i % len(VOCAB)]
        dur = min(0.25 + 0.1 * len(phs), duration - t)
        words.append((t, t + dur, word))
        edges = np.linspace(t, t + dur, len(phs) + 1)
        phones += [(a, b, p) for a, b, p in zip(edges[:-1], edges[1:], phs)]
        t, i = t + dur, i + 1
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ",
             f"xmax = {duration!r} ", "tiers? <exists> ", "size = 2 ", "item []: "]
    for k, (name, ivs) in enumerate((("phone", phones), ("word", words)), 1):
        lines += [f"    item [{k}]:", '        class = "IntervalTier" ', f'        name = "{name}" ',
                  "        xmin = 0 ", f"        xmax = {duration!r} ",
                  f"        intervals: size = {len(ivs)} "]
        for j, (a, b, text) in enumerate(ivs, 1):
            lines += [f"        intervals [{j}]:", f"            xmin = {a!r} ",
                      f"            xmax = {b!r} ", f'            text = "{text}" ']
    path.write_text("\n".join(lines) + "\n")


def _signal(v, t):
    """Voxel v's (noise-free) BOLD at audio time t: slow sinusoids (periods 24-60 s)."""
    return np.sin(2 * np.pi * t / (24.0 + 2.0 * v) + 0.7 * v)


def make_lebel(root, *, stories=None, subjects=("UTS01", "UTS02"), n_vox=12, rate=8000,
               repeats=None, rows_delta=0, audio_delta=0.0, key="data", columns=None):
    """A ds003020 copy. ``stories``: {story: respdict volumes}; ``repeats``: {story: noise sd
    per voxel (n_repeats, n_vox)} makes that story's .hf5 3-D for UTS01."""
    stories = {"alternateithicatom": 40, "wheretheressmoke": 36} if stories is None else stories
    root = Path(root)
    der = root / "derivative"
    (der / "TextGrids").mkdir(parents=True)
    (root / "stimuli").mkdir()
    (der / "respdict.json").write_text(json.dumps(stories))
    rng = np.random.default_rng(0)
    for story, n_scan in stories.items():
        n_samples = int(round(((n_scan - 5) * LEBEL_TR - 10.0 + audio_delta) * rate))
        audio = (0.1 * rng.standard_normal(n_samples) * 32767).astype(np.int16)
        wavfile.write(root / "stimuli" / f"{story}.wav", rate, audio)
        _textgrid(der / "TextGrids" / f"{story}.TextGrid", n_samples / rate)
        n_rows = n_scan - 20 + rows_delta
        centres = T0 + (np.arange(n_rows) + 0.5) * LEBEL_TR
        for s, sub in enumerate(subjects):
            n_col = n_vox if columns is None else columns
            data = np.stack([_signal(v % n_vox, centres) + s for v in range(n_col)], 1)
            if repeats and story in repeats and sub == "UTS01":
                sd = np.asarray(repeats[story])
                data = data + sd[:, None, :] * rng.standard_normal((len(sd), *data.shape))
            folder = der / "preprocessed_data" / sub
            folder.mkdir(parents=True, exist_ok=True)
            with h5py.File(folder / f"{story}.hf5", "w") as fid:
                fid.create_dataset(key, data=data.astype(np.float32))
    return root


def _template_vertices():
    return lebel_mapping._template_vertices()


def make_maps(folder, subjects=("UTS01", "UTS02"), n_vox=12, n_src=N_OCT6):
    """Source i = voxel (i mod n_vox): a sparse (n_src, n_vox) selection per subject."""
    rows = np.arange(n_src)
    matrix = scipy.sparse.csr_matrix((np.ones(n_src), (rows, rows % n_vox)), shape=(n_src, n_vox))
    for sub in subjects:
        write_voxel_to_source(Path(folder) / sub, matrix, _template_vertices())
    return matrix


class StubFeatures:
    """Stands in for extract_features: column 0 = frame start time, the rest constant."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, audio, textgrid, *, language_model, layer, context_tokens, sfreq):
        assert Path(textgrid).stem == Path(audio).stem
        self.calls.append(Path(audio).stem)
        if self.fail_on == Path(audio).stem:
            raise RuntimeError("interrupted")
        rate, wav = wavfile.read(audio)
        n = int(math.floor(len(wav) / rate * sfreq + 1e-9))
        data = np.zeros((n, 6), np.float32)
        data[:, 0] = np.arange(n) / sfreq
        data[:, 1], data[:, 2] = layer, context_tokens
        return SimpleNamespace(data=data, sfreq=sfreq, n_times=n,
                               streams={"word": (0, 2), "phoneme": (2, 4), "spectrogram": (4, 6)})


@pytest.fixture(scope="module")
def maps_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maps")
    make_maps(folder)
    return folder


def _prepare(root, out, maps, **kw):
    kw.setdefault("features_fn", StubFeatures())
    kw.setdefault("language_model", "stub")
    return prepare_lebel(root, out, voxel_to_source=maps, **kw)


# ---------------------------------------------------------------------- timing and projection
def test_prepare_aligns_fmri_with_features(tmp_path, maps_dir):
    root = make_lebel(tmp_path / "ds003020", stories={"legacy": 120, "wheretheressmoke": 36})
    out = _prepare(root, tmp_path / "store", maps_dir, verbose=True)
    ds = read_dataset(out)
    assert ds.tr == 2.0 and ds.sfreq == SFREQ
    assert ds.subjects == ["UTS01", "UTS02"] and ds.stories == ["legacy", "wheretheressmoke"]
    assert ds.splits == {"train": ["legacy"], "test": ["wheretheressmoke"]}
    assert ds.feature_streams == {"word": (0, 2), "phoneme": (2, 4), "spectrogram": (4, 6)}
    start = math.ceil(T0 * SFREQ - 1e-6)  # 503: the first frame at or after 10.045 s
    for story, n_scan in (("legacy", 120), ("wheretheressmoke", 36)):
        n_rows = n_scan - 20
        n_trs = int(math.floor((n_rows * LEBEL_TR - (start / SFREQ - T0)) / 2.0))
        feats = np.asarray(ds.features(story))
        assert feats.shape == (n_trs * 100, 6) == (ds.n_times(story), 6)
        # The store's story starts at the first .hf5 volume's audio time (frame 503).
        np.testing.assert_allclose(feats[:, 0], (start + np.arange(len(feats))) / SFREQ, atol=1e-4)
        np.testing.assert_array_equal(feats[:, 1:3], np.tile([7, 20], (len(feats), 1)))
        for s, sub in enumerate(ds.subjects):
            bold = ds.fmri(sub, story)
            assert bold.shape == (1, N_OCT6, n_trs)
            # Store volume k covers [start/50 + 2k, +2) s of audio: its value is the voxel's
            # signal at that centre (spline interpolation of the 2.0045-s volumes).
            centres = start / SFREQ + (np.arange(n_trs) + 0.5) * 2.0
            for src in (0, 5, 13, 8000):
                expected = _signal(src % 12, centres) + s
                np.testing.assert_allclose(bold[0, src], expected, atol=0.01)
    # Without resampling the 2.0045-s volumes would drift by 0.45 s over 100 TRs: the check above
    # would fail for the long story (phase error up to 0.12 at period 24 s).
    meta = ds.metadata["lebel"]
    assert meta["tr_data"] == LEBEL_TR and meta["resampled"] is True
    assert meta["windows"]["legacy"]["start_s"] == pytest.approx(start / SFREQ)
    np.testing.assert_array_equal(ds.morph("UTS01").toarray()[:5, :5], np.eye(5))
    assert [len(v) for v in ds.vertices("UTS01")] == [4098, 4098]
    _assert_template(ds, "UTS01")
    assert ds.repeatability("UTS01", "fmri") is None  # nothing repeated
    assert not (tmp_path / "store.work").exists()  # work folder removed after success


def test_reference_alignment_is_exact(tmp_path):
    """tr=2.0 (the reference code's grid): no resampling, store fMRI = mapping @ .hf5 data."""
    root = make_lebel(tmp_path / "ds", stories={"souls": 40})
    rng = np.random.default_rng(1)
    matrix = scipy.sparse.random(N_OCT6, 12, density=0.3, format="csr", random_state=rng)
    write_voxel_to_source(tmp_path / "maps" / "UTS01", matrix, _template_vertices())
    out = _prepare(root, tmp_path / "store", tmp_path / "maps", subjects=["UTS01"], tr=2.0,
                   stories=["souls"])
    ds = read_dataset(out)
    assert ds.tr == 2.0 and ds.metadata["lebel"]["resampled"] is False
    with h5py.File(root / "derivative/preprocessed_data/UTS01/souls.hf5") as fid:
        data = fid["data"][()]
    bold = ds.fmri("UTS01", "souls")
    assert bold.shape == (1, N_OCT6, 20)
    np.testing.assert_allclose(bold[0], matrix.astype(np.float32) @ data.T, rtol=1e-5, atol=1e-6)
    assert np.asarray(ds.features("souls"))[0, 0] == pytest.approx(10.0)  # frame 500 = 10 s


def test_native_tr_keeps_volumes_and_rounds_the_start(tmp_path, maps_dir, catch_logs):
    root = make_lebel(tmp_path / "ds", stories={"souls": 40})
    with catch_logs("warning") as log:
        out = _prepare(root, tmp_path / "store", maps_dir, resample_tr=None)
    assert "not a whole number" in log.text  # 2.0045 s = 100.225 frames: the model refuses
    ds = read_dataset(out)
    assert ds.tr == LEBEL_TR and ds.fmri("UTS01", "souls").shape[-1] == 20
    win = ds.metadata["lebel"]["windows"]["souls"]
    assert win["start_s"] == pytest.approx(round(T0 * SFREQ) / SFREQ)
    assert abs(win["offset_error"]) <= 0.5 / SFREQ
    assert ds.n_times("souls") == math.ceil(20 * LEBEL_TR * SFREQ)


def _assert_template(ds, subject):
    """metadata['template'] names the morph's columns: fsaverage oct6, and the joint model's
    smoothed source layer (which needs those vertices) builds on the store."""
    from neurofuse.anatomy import get_source_space, make_template_subject
    from neurofuse.systems.joint.model import JointModel

    tmpl = ds.metadata["template"]
    assert tmpl["subject"] == "fsaverage" and tmpl["spacing"] == "oct6"
    src = get_source_space(make_template_subject(meg=False), "oct6")
    for got, s in zip(tmpl["vertices"], src, strict=True):
        np.testing.assert_array_equal(got, s["vertno"])
    assert sum(map(len, tmpl["vertices"])) == ds.morph(subject).shape[1]
    model = JointModel.from_dataset(ds, encoder_kwargs=dict(
        d_model=8, n_layers=1, n_heads=2, d_ff=8, window=10, source_fwhm=15.0))
    assert [len(v) for v in model.vertices] == [4098, 4098]


def test_surface_data_need_no_mapping(tmp_path):
    root = make_lebel(tmp_path / "oct6", stories={"souls": 30}, subjects=("UTS03",),
                      columns=N_OCT6)
    ds = read_dataset(_prepare(root, tmp_path / "a", None, tr=2.0))
    with h5py.File(root / "derivative/preprocessed_data/UTS03/souls.hf5") as fid:
        np.testing.assert_array_equal(ds.fmri("UTS03", "souls")[0], fid["data"][()].T)
    assert ds.metadata["lebel"]["voxel_to_source"] == {"UTS03": "oct6"}
    root = make_lebel(tmp_path / "fs5", stories={"souls": 30}, subjects=("UTS03",),
                      columns=N_FSAVERAGE5)
    ds = read_dataset(_prepare(root, tmp_path / "b", None, tr=2.0))
    with h5py.File(root / "derivative/preprocessed_data/UTS03/souls.hf5") as fid:
        data = fid["data"][()]
    np.testing.assert_allclose(ds.fmri("UTS03", "souls")[0], fsaverage5_to_oct6() @ data.T,
                               rtol=1e-5, atol=1e-6)


def test_fsaverage5_to_oct6_averages_nearest_vertices():
    mat = fsaverage5_to_oct6()
    assert mat.shape == (N_OCT6, N_FSAVERAGE5)
    np.testing.assert_allclose(np.asarray(mat.sum(1)).ravel(), 1.0, rtol=1e-6)  # means
    assert np.all(np.diff(mat.tocsc().indptr) == 1)  # every vertex in exactly one source
    lh, rh = _template_vertices()
    own = mat.tocsc()
    # A source's own vertex belongs to it (distance 0), in both hemispheres.
    np.testing.assert_array_equal(own[:, lh].indices, np.arange(len(lh)))
    np.testing.assert_array_equal(own[:, 10242 + rh].indices, len(lh) + np.arange(len(rh)))
    # ~20484 / 8196 = 2.5 vertices per source on average.
    assert 2.0 < np.mean(np.diff(mat.indptr)) < 3.0


def test_resample_volumes():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 40))
    np.testing.assert_allclose(resample_volumes(x, tr=2.0, new_tr=2.0), x, atol=1e-12)
    np.testing.assert_allclose(resample_volumes(np.ones((2, 50)), tr=2.0045, new_tr=2.0,
                                                shift=0.015), 1.0, atol=1e-12)
    t_in = (np.arange(300) + 0.5) * 2.0045
    t_out = 0.015 + (np.arange(300) + 0.5) * 2.0
    for period, atol in ((20.0, 1e-3), (30.0, 2e-4), (60.0, 2e-5)):
        y = resample_volumes(np.sin(2 * np.pi * t_in / period), tr=2.0045, new_tr=2.0, shift=0.015)
        assert y.shape == (300,)  # floor((300 * 2.0045 - 0.015) / 2)
        expected = np.sin(2 * np.pi * t_out / period)
        np.testing.assert_allclose(y[1:-1], expected[1:-1], atol=atol)
        np.testing.assert_allclose(y, expected, atol=5 * atol)  # the end volumes: a bit worse
    # Ignoring the 0.0045-s difference would be off by up to 2 pi 300 * 0.0045 / 20 = 0.42.
    assert np.abs(np.sin(2 * np.pi * t_in / 20.0) - np.sin(2 * np.pi * t_out / 20.0)).max() > 0.3
    with pytest.raises(ValueError, match="run past"):
        resample_volumes(x, tr=2.0, new_tr=2.0, n_out=41)


# ---------------------------------------------------------------------- repeats
def test_repeats_and_stored_repeatability(tmp_path, maps_dir):
    sd = np.tile(np.r_[np.full(6, 0.2), np.full(6, 3.0)], (4, 1))  # voxels 6-11 are noisy
    root = make_lebel(tmp_path / "ds", stories={"avatar": 40, "wheretheressmoke": 60},
                      repeats={"wheretheressmoke": sd})
    # Default split: the repeated story is the test story, so no repeatability is stored.
    ds = read_dataset(_prepare(root, tmp_path / "a", maps_dir))
    assert ds.fmri("UTS01", "wheretheressmoke").shape[0] == 4
    assert ds.fmri("UTS02", "wheretheressmoke").shape[0] == 1
    assert ds.repeatability("UTS01", "fmri") is None
    for method in ("repeat", "split-half"):
        out = _prepare(root, tmp_path / method, maps_dir, repeatability=method,
                       splits={"wheretheressmoke": "anchor", "avatar": "train"})
        ds = read_dataset(out)
        r = ds.repeatability("UTS01", "fmri")
        assert r.shape == (N_OCT6,)
        expected = compute_repeatability(ds.fmri("UTS01", "wheretheressmoke"), method=method)
        np.testing.assert_allclose(r, expected, atol=1e-6)
        assert ds.repeatability_info("UTS01", "fmri") == {
            "file": "repeatability-fmri.npy", "method": method, "stories": ["wheretheressmoke"]}
        voxel = np.arange(N_OCT6) % 12
        assert r[voxel < 6].min() > 0.8 and np.median(r[voxel >= 6]) < 0.3
        assert ds.repeatability("UTS02", "fmri") is None  # UTS02 heard it once
        w = loss_weights(ds, "UTS01", "fmri")
        np.testing.assert_allclose(w, np.clip(r, 0, None) / np.clip(r, 0, None).sum())


# ---------------------------------------------------------------------- resumable
def test_interrupted_prepare_resumes(tmp_path, maps_dir, monkeypatch):
    root = make_lebel(tmp_path / "ds", stories={"avatar": 30, "buck": 30, "sloth": 30})
    out = tmp_path / "store"
    with pytest.raises(RuntimeError, match="interrupted"):
        _prepare(root, out, maps_dir, features_fn=StubFeatures(fail_on="buck"))
    assert not out.exists()  # nothing half-written
    work = tmp_path / "store.work"
    assert sorted(p.name for p in (work / "features").iterdir()) == ["avatar.json", "avatar.npy"]
    reads = []
    original = lebel_prepare.read_hf5
    monkeypatch.setattr(lebel_prepare, "read_hf5",
                        lambda path: reads.append(path) or original(path))
    stub = StubFeatures()
    _prepare(root, out, maps_dir, features_fn=stub, keep_work=True)
    assert stub.calls == ["buck", "sloth"]  # avatar's features were reused
    assert len(reads) == 6
    first = read_dataset(out)
    ref = {(sub, st): np.array(first.fmri(sub, st)) for sub in first.subjects for st in first.stories}
    # Everything cached: nothing recomputed; a changed TextGrid recomputes only that story.
    tg = root / "derivative/TextGrids/sloth.TextGrid"
    tg.write_text(tg.read_text().replace('text = "dog"', 'text = "cat"'))
    stub, reads[:] = StubFeatures(), []
    _prepare(root, out, maps_dir, features_fn=stub, overwrite=True)
    assert stub.calls == ["sloth"] and reads == []
    again = read_dataset(out)
    for (sub, st), arr in ref.items():
        np.testing.assert_array_equal(again.fmri(sub, st), arr)
    assert not work.exists()


def test_work_dir_must_be_ours(tmp_path, maps_dir):
    root = make_lebel(tmp_path / "ds", stories={"avatar": 30})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="did not create"):
        _prepare(root, tmp_path / "store", maps_dir, work_dir=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"
    assert not (tmp_path / "store").exists()


# ---------------------------------------------------------------------- errors
def _rm(rel):
    return lambda root: (root / rel).unlink()


@pytest.mark.parametrize("change, kwargs, error, match", [
    (_rm("derivative/TextGrids/avatar.TextGrid"), {}, FileNotFoundError, "avatar.TextGrid"),
    (_rm("stimuli/avatar.wav"), {}, FileNotFoundError, "avatar.wav"),
    (_rm("derivative/respdict.json"), {}, FileNotFoundError, "respdict.json"),
    (None, {"subjects": ["UTS09"]}, ValueError, "UTS01"),
    (None, {"stories": ["nosuchstory"]}, FileNotFoundError, "nosuchstory.hf5"),
    (None, {"splits": {"avatar": "training"}}, ValueError, "split"),
    (None, {"splits": {"nosuchstory": "val"}}, ValueError, "not prepared"),
    # The .hf5 length must match respdict - trim_start - trim_end.
    (None, {"trim_end": 5}, ValueError, "inconsistent length.*respdict.json gives 40"),
    # A wrong TR: the fMRI no longer fits the audio.
    (None, {"tr": 3.0}, ValueError, "inconsistent length.*ends .* after its audio"),
    (None, {"tr": 1.5}, ValueError, "inconsistent length.*left after it.*'tr'"),
    (None, {"sound_start": 40.0}, ValueError, "before the audio"),
    (None, {"features_fn": lambda *a, **k: SimpleNamespace(
        data=np.zeros((10, 2)), streams={"w": (0, 2)}, sfreq=100.0, n_times=10)},
     ValueError, "Wrong sampling rate"),
])
def test_errors_leave_nothing(tmp_path, maps_dir, change, kwargs, error, match):
    root = make_lebel(tmp_path / "ds", stories={"avatar": 40, "wheretheressmoke": 36})
    if change:
        change(root)
    with pytest.raises(error, match=match):
        _prepare(root, tmp_path / "store", maps_dir, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("store.work")) \
        == ["ds"]  # no dataset, no temporary folder


@pytest.mark.parametrize("rows_delta, audio_delta, match", [
    (1, 0.0, "respdict.json gives 40"),
    (0, -14.0, "ends .* after its audio"),  # the audio stops ~4 s before the fMRI does
    (0, 30.0, "left after it"),  # 30 s of audio more than the fMRI and the trimmed end cover
])
def test_inconsistent_story_lengths(tmp_path, maps_dir, rows_delta, audio_delta, match):
    root = make_lebel(tmp_path / "ds", stories={"avatar": 40}, rows_delta=rows_delta,
                      audio_delta=audio_delta)
    with pytest.raises(ValueError, match="inconsistent length.*" + match):
        _prepare(root, tmp_path / "store", maps_dir)
    assert not (tmp_path / "store").exists()


def test_audio_ending_within_tolerance_drops_last_volumes(tmp_path, maps_dir, catch_logs):
    # The 20 volumes end ~10 s before the end of the audio; shorten the audio by 11 s.
    root = make_lebel(tmp_path / "ds", stories={"avatar": 40}, audio_delta=-11.0)
    with catch_logs("warning") as log:
        ds = read_dataset(_prepare(root, tmp_path / "store", maps_dir))
    assert "dropped" in log.text
    win = ds.metadata["lebel"]["windows"]["avatar"]
    assert win["dropped"] == 1 and ds.fmri("UTS01", "avatar").shape[-1] == win["n_trs"]
    assert win["stop_s"] <= win["audio_duration"]


def test_bad_voxel_to_source_mappings(tmp_path):
    root = make_lebel(tmp_path / "ds", stories={"avatar": 30}, subjects=("UTS01",))
    rows = np.arange(N_OCT6)
    good = scipy.sparse.csr_matrix((np.ones(N_OCT6), (rows, rows % 12)), shape=(N_OCT6, 12))
    cases = {
        "cols": (good[:, :10], _template_vertices(), None,
                 "Bad voxel→source mapping shape.*12 voxels"),
        "verts": (good, [np.arange(10), np.arange(10)], None, "lists 20 vertices"),
        "notemplate": (good[:100], [np.arange(50), np.arange(50)], None, "no morph.npz"),
        "morph": (good[:100], [np.arange(50), np.arange(50)], scipy.sparse.eye(100), "Bad morph"),
    }
    for name, (matrix, verts, morph, match) in cases.items():
        write_voxel_to_source(tmp_path / name / "UTS01", matrix, verts, morph=morph)
        with pytest.raises(ValueError, match=match):
            _prepare(root, tmp_path / "store", tmp_path / name)
    (tmp_path / "empty").mkdir()
    for maps in (tmp_path / "empty", {"UTS01": tmp_path / "x"}):
        with pytest.raises(FileNotFoundError, match="No voxel→source mapping folder"):
            _prepare(root, tmp_path / "store", maps)
    # Voxel data without a mapping.
    with pytest.raises(ValueError, match="12 columns: voxels"):
        _prepare(root, tmp_path / "store", None)
    assert not (tmp_path / "store").exists()
    # A mapping to custom sources with its morph is accepted and stored.
    morph = scipy.sparse.random(100, N_OCT6, density=0.001, format="csr", random_state=0)
    write_voxel_to_source(tmp_path / "custom" / "UTS01", good[:100],
                          [np.arange(50), np.arange(50)], morph=morph)
    m = read_voxel_to_source(tmp_path / "custom" / "UTS01", n_voxels=12)
    assert m.n_sources == 100 and m.kind == "mapping"
    ds = read_dataset(_prepare(root, tmp_path / "store", tmp_path / "custom"))
    assert ds.fmri("UTS01", "avatar").shape[1] == 100
    np.testing.assert_allclose(ds.morph("UTS01").toarray(), morph.toarray(), rtol=1e-6)


def test_hf5_keys_and_nonfinite_values(tmp_path, maps_dir, catch_logs):
    root = make_lebel(tmp_path / "ds", stories={"avatar": 30}, key="resp")  # older key
    path = root / "derivative/preprocessed_data/UTS01/avatar.hf5"
    with h5py.File(path, "r+") as fid:
        fid["resp"][2, 3] = np.nan
    with catch_logs("warning") as log:
        ds = read_dataset(_prepare(root, tmp_path / "store", maps_dir, tr=2.0))
    assert "non-finite" in log.text
    assert ds.fmri("UTS01", "avatar")[0, 3, 2] == 0.0  # source 3 = voxel 3, volume 2
    assert ds.metadata["lebel"]["nonfinite_replaced"] == {"UTS01/avatar": 1}
    with h5py.File(path, "w") as fid:
        fid.create_dataset("bold", data=np.zeros((10, 12), np.float32))
    with pytest.raises(ValueError, match="no 'data'"):
        _prepare(root, tmp_path / "store2", maps_dir)


def test_existing_output_is_refused_before_any_work(tmp_path, maps_dir):
    root = make_lebel(tmp_path / "ds", stories={"avatar": 30})
    (tmp_path / "store").mkdir()
    stub = StubFeatures()
    with pytest.raises(FileExistsError, match="already exists"):
        _prepare(root, tmp_path / "store", maps_dir, features_fn=stub)
    assert stub.calls == []


# ---------------------------------------------------------------------- real features
def test_real_features_with_a_tiny_language_model(tmp_path, maps_dir):
    """The default features path: extract_features with a tiny random GPT-2 built in code."""
    features = pytest.importorskip("neurofuse.stimulus.features")
    lm_mod = pytest.importorskip("neurofuse.stimulus.language_model")
    root = make_lebel(tmp_path / "ds", stories={"avatar": 28}, subjects=("UTS01",), rate=22050)
    lm = lm_mod.make_random_language_model([w for w, _ in VOCAB], hidden_size=16, n_layers=2,
                                           n_heads=2)
    out = prepare_lebel(root, tmp_path / "store", voxel_to_source=maps_dir, language_model=lm,
                        layer=2, context_tokens=5)
    ds = read_dataset(out)
    assert ds.feature_streams == {"word": (0, 16), "phoneme": (16, 60), "spectrogram": (60, 100)}
    direct = features.extract_features(root / "stimuli/avatar.wav",
                                       root / "derivative/TextGrids/avatar.TextGrid",
                                       language_model=lm, layer=2, context_tokens=5)
    win = ds.metadata["lebel"]["windows"]["avatar"]
    start = round(win["start_s"] * SFREQ)
    np.testing.assert_array_equal(ds.features("avatar"),
                                  direct.data[start:start + ds.n_times("avatar")])
    assert ds.n_times("avatar") == ds.fmri("UTS01", "avatar").shape[-1] * 100
    # The cache tells loaded models apart by their weights, not only their name.
    other = lm_mod.make_random_language_model([w for w, _ in VOCAB], hidden_size=16, n_layers=2,
                                              n_heads=2, seed=1)
    assert lm_id(lm) != lm_id(other) and lm.name == other.name == "random"


def test_story_names_must_be_valid_file_names(tmp_path, maps_dir):
    root = make_lebel(tmp_path / "ds", stories={"avatar": 30})
    sub = root / "derivative/preprocessed_data/UTS01"
    (sub / "avatar.hf5").rename(sub / "a story.hf5")
    stub = StubFeatures()
    with pytest.raises(ValueError, match="Invalid story name 'a story'"):
        _prepare(root, tmp_path / "store", maps_dir, subjects=["UTS01"], features_fn=stub)
    assert stub.calls == [] and not (tmp_path / "store").exists()


def test_prepare_lebel_command_line(tmp_path, maps_dir, capsys):
    """`neurofuse prepare lebel` with a local language-model folder (as a user passes --lm)."""
    from neurofuse.cli import main

    lm_mod = pytest.importorskip("neurofuse.stimulus.language_model")
    root = make_lebel(tmp_path / "ds", stories={"avatar": 28}, subjects=("UTS01",), rate=22050)
    lm = lm_mod.make_random_language_model([w for w, _ in VOCAB], hidden_size=16, n_layers=2,
                                           n_heads=2)
    folder = tmp_path / "tiny-lm"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    rc = main(["prepare", "lebel", str(root), "--out", str(tmp_path / "store"),
               "--voxel-to-source", str(maps_dir), "--lm", str(folder), "--layer", "2",
               "--context-tokens", "5", "--splits", "avatar=train", "-q"])
    assert rc == 0
    ds = read_dataset(tmp_path / "store")
    assert ds.splits == {"train": ["avatar"]}
    assert ds.feature_streams["word"] == (0, 16)
    assert "UTS01" in capsys.readouterr().out
    # a missing language model is a clear error, and nothing is written
    rc = main(["prepare", "lebel", str(root), "--out", str(tmp_path / "store2"),
               "--voxel-to-source", str(maps_dir), "--lm", str(tmp_path / "nope"), "-q"])
    assert rc == 1 and "--lm" in capsys.readouterr().err
    assert not (tmp_path / "store2").exists()
