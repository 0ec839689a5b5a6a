"""Tests for merging dataset stores (neurofuse.data.merge).

The stores are cut from one "world" per story: features, MEG and fMRI defined on the audio's
own time axis (sample ``t`` of the audio). A store with story offset ``o`` (samples) holds
samples ``o ... o + n_times`` of it, exactly as prepare_lebel cuts LeBel's stories and
prepare_meg_bids keeps whole ones. So after merging, sample ``k`` of a merged story must be
world sample ``start + k``, i.e. source sample ``k + start - o`` of every store.
"""

import dataclasses
import os

import mne
import numpy as np
import pytest
import scipy.sparse

from neurofuse.data import DatasetWriter, merge_datasets, read_dataset
from neurofuse.data.merge import story_offset
from neurofuse.data.store import MANIFEST, expected_n_trs

SFREQ, TR = 10.0, 2.0
SPT = int(SFREQ * TR)  # samples per TR
STREAMS = {"word": (0, 3), "phoneme": (3, 5), "spectrogram": (5, 6)}
N_FEAT, N_CH, N_SRC, N_FS, N_AUDIO = 6, 4, 5, 7, 700


def _world(seed=0, stories=("s1", "s2", "s3")):
    """Per story: features (N_AUDIO, N_FEAT) and MEG (2, N_CH, N_AUDIO) on the audio's axis."""
    rng = np.random.default_rng(seed)
    return {s: {"feat": rng.standard_normal((N_AUDIO, N_FEAT)).astype(np.float32),
                "meg": rng.standard_normal((2, N_CH, N_AUDIO)).astype(np.float32)}
            for s in stories}


WORLD = _world()


def _morph(n_src=N_SRC, n_fs=N_FS, seed=0):
    return scipy.sparse.random(n_src, n_fs, density=0.5, format="csr", random_state=seed,
                               dtype=np.float32) + scipy.sparse.eye(n_src, n_fs, format="csr")


def _vertices(n_src=N_SRC):
    return [np.arange(n_src // 2), np.arange(n_src - n_src // 2)]


def make_store(path, stories, *, subjects=None, world=WORLD, sfreq=SFREQ, tr=TR,
               streams=STREAMS, offsets_key=True, meta=None, seed=1, ground_truth=None):
    """A store cut from ``world``.

    stories : {name: (offset in samples, n_times, split)}
    subjects : {name: modality}; 'meg' subjects get the world's MEG (+ a subject-specific
        constant so subjects differ), 'fmri' subjects random volumes (n_rep=2).
    Returns the fMRI arrays written, {(subject, story): array}.
    """
    rng = np.random.default_rng(seed)
    subjects = {"M1": "meg"} if subjects is None else subjects
    metadata = dict(meta or {})
    if offsets_key:
        metadata["story_offsets"] = {s: o / sfreq for s, (o, _, _) in stories.items()}
    written = {}
    with DatasetWriter(path, sfreq=sfreq, tr=tr, feature_streams=streams,
                       metadata=metadata) as w:
        for name, (off, n, split) in stories.items():
            w.add_story(name, split=split, n_times=n)
            w.write_features(name, world[name]["feat"][off:off + n])
        for k, (sub, mod) in enumerate(subjects.items()):
            if mod == "meg":
                info = mne.create_info([f"MEG{i:03d}" for i in range(N_CH)], sfreq, "mag")
                w.add_subject(sub, modalities=["meg"], info=info,
                              leadfield=rng.standard_normal((N_CH, N_SRC)), morph=_morph(seed=k),
                              vertices=_vertices(), anatomy={"who": sub}, cnr={"meg": 2.0})
                for name, (off, n, _) in stories.items():
                    w.write_meg(sub, name, world[name]["meg"][..., off:off + n] + 10 * k)
            else:
                w.add_subject(sub, modalities=["fmri"], morph=_morph(seed=k),
                              vertices=_vertices(), anatomy={"who": sub}, cnr={"fmri": 0.5})
                for name, (_, n, _) in stories.items():
                    data = rng.standard_normal((2, N_SRC, expected_n_trs(n, sfreq, tr)))
                    w.write_fmri(sub, name, data)
                    written[sub, name] = data.astype(np.float32)
                w.write_repeatability(sub, "fmri", rng.uniform(0, 1, N_SRC), method="repeat",
                                      stories=list(stories)[:1])
        for name, arr in (ground_truth or {}).items():
            w.write_ground_truth(name, arr)
    return written


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A MEG store of whole stories s1, s2 (offset 0) and an fMRI store of s1 (offset 43
    samples, 300 samples = 15 TRs) and s3, as from prepare_meg_bids and prepare_lebel."""
    base = tmp_path_factory.mktemp("pair")
    make_store(base / "meg", {"s1": (0, 600, "train"), "s2": (0, 500, "val")})
    fmri = make_store(base / "fmri", {"s1": (43, 300, "train"), "s3": (20, 400, "test")},
                      subjects={"F1": "fmri"})
    out = merge_datasets([base / "meg", base / "fmri"], base / "merged", verbose="error")
    return base, fmri, read_dataset(out)


def _nothing_written(folder, keep):
    assert sorted(p.name for p in folder.iterdir()) == sorted(keep)


# ----------------------------------------------------------------------------- alignment

def test_merged_story_is_the_common_window(pair):
    _, fmri, ds = pair
    assert ds.stories == ["s1", "s2", "s3"] and ds.subjects == ["M1", "F1"]
    # s1: MEG covers audio samples [0, 600), fMRI [43, 343): the merged story is [43, 343).
    assert ds.n_times("s1") == 300 and ds.metadata["story_offsets"]["s1"] == pytest.approx(4.3)
    meg = np.asarray(ds.meg("M1", "s1"))
    src = WORLD["s1"]["meg"]
    for k in (0, 1, 150, 299):  # sample k of the merged story = MEG store sample k + 43
        np.testing.assert_array_equal(meg[..., k], src[..., k + 43])
    np.testing.assert_array_equal(meg, src[..., 43:343])
    np.testing.assert_array_equal(ds.features("s1"), WORLD["s1"]["feat"][43:343])
    # the fMRI store needed no crop: its 15 volumes are kept as they were
    np.testing.assert_array_equal(ds.fmri("F1", "s1"), fmri["F1", "s1"])
    # stories held by one store only are copied with their own offset
    np.testing.assert_array_equal(ds.meg("M1", "s2"), WORLD["s2"]["meg"][..., :500])
    np.testing.assert_array_equal(ds.fmri("F1", "s3"), fmri["F1", "s3"])
    assert ds.metadata["story_offsets"] == pytest.approx({"s1": 4.3, "s2": 0.0, "s3": 2.0})
    assert ds.subject_stories("M1", "meg") == ["s1", "s2"]
    assert ds.subject_stories("F1", "fmri") == ["s1", "s3"]
    assert ds.splits == {"train": ["s1"], "val": ["s2"], "test": ["s3"]}
    crops = ds.metadata["merge"]["windows"]["s1"]["crops"]
    assert crops == [{"store": 0, "start": 43, "volume": None},
                     {"store": 1, "start": 0, "volume": 0}]


def test_anatomy_repeats_and_repeatability_carried_over(pair):
    base, _, ds = pair
    meg, fmri = read_dataset(base / "meg"), read_dataset(base / "fmri")
    assert ds.info("M1")["ch_names"] == meg.info("M1")["ch_names"]
    assert ds.info("M1")["sfreq"] == SFREQ
    np.testing.assert_array_equal(ds.leadfield("M1"), meg.leadfield("M1"))
    for sub, src in (("M1", meg), ("F1", fmri)):
        assert (ds.morph(sub) != src.morph(sub)).nnz == 0
        for a, b in zip(ds.vertices(sub), src.vertices(sub)):
            np.testing.assert_array_equal(a, b)
        assert ds.anatomy(sub) == {"who": sub} and ds.cnr(sub) == src.cnr(sub)
    assert ds.meg("M1", "s1").shape[0] == 2 and ds.fmri("F1", "s1").shape[0] == 2
    np.testing.assert_array_equal(ds.repeatability("F1", "fmri"),
                                  fmri.repeatability("F1", "fmri"))
    assert ds.repeatability_info("F1", "fmri") == {"file": "repeatability-fmri.npy",
                                                   "method": "repeat", "stories": ["s1"]}


def test_meg_is_cropped_to_the_fmri_grid(tmp_path):
    # The MEG starts later than the fMRI (audio sample 50 vs 43): 7 samples into the fMRI
    # store is not a whole TR, so the merged story starts at the next volume boundary, 63,
    # and the MEG loses 13 samples more than the intersection would.
    make_store(tmp_path / "meg", {"s1": (50, 600, "train")})
    fmri = make_store(tmp_path / "fmri", {"s1": (43, 400, "train")}, subjects={"F1": "fmri"})
    ds = read_dataset(merge_datasets([tmp_path / "meg", tmp_path / "fmri"], tmp_path / "m",
                                     verbose="error"))
    n = 43 + 400 - 63  # ends with the fMRI store
    assert ds.n_times("s1") == n and story_offset(ds, "s1") == pytest.approx(6.3)
    np.testing.assert_array_equal(ds.meg("M1", "s1"), WORLD["s1"]["meg"][..., 63:63 + n])
    np.testing.assert_array_equal(ds.features("s1"), WORLD["s1"]["feat"][63:63 + n])
    n_trs = expected_n_trs(n, SFREQ, TR)
    assert n_trs == 19  # 380 samples; the fMRI store had 20 volumes, the first is dropped
    np.testing.assert_array_equal(ds.fmri("F1", "s1"), fmri["F1", "s1"][..., 1:1 + n_trs])
    # volume j of the merged story covers merged samples [j*SPT, (j+1)*SPT), i.e. audio
    # samples 63 + j*SPT..., which is volume j + 1 of the fMRI store (43 + (j+1)*SPT).
    assert 63 + 0 * SPT == 43 + 1 * SPT
    # merging the merged store again with a MEG store of whole stories: offsets compose
    make_store(tmp_path / "meg0", {"s1": (0, 700, "train")}, subjects={"M2": "meg"})
    again = read_dataset(merge_datasets([tmp_path / "m", tmp_path / "meg0"], tmp_path / "m2",
                                        verbose="error"))
    assert again.n_times("s1") == n and story_offset(again, "s1") == pytest.approx(6.3)
    np.testing.assert_array_equal(again.meg("M2", "s1"), WORLD["s1"]["meg"][..., 63:63 + n])
    np.testing.assert_array_equal(again.fmri("F1", "s1"), ds.fmri("F1", "s1"))


def test_meg_only_store_takes_the_fmri_tr(tmp_path):
    # MEG-only stores do not use their tr (prepare_meg_bids writes 2.0); only fMRI stores'
    # TRs must agree, and the merged store has theirs.
    make_store(tmp_path / "meg", {"s1": (0, 600, "train")}, tr=1.5)
    make_store(tmp_path / "fmri", {"s1": (40, 400, "train")}, subjects={"F1": "fmri"})
    ds = read_dataset(merge_datasets([tmp_path / "meg", tmp_path / "fmri"], tmp_path / "m",
                                     verbose="error"))
    assert ds.tr == TR and ds.fmri("F1", "s1").shape[-1] == 20


def test_old_lebel_store_without_story_offsets(tmp_path):
    # LeBel stores written before 'story_offsets' existed record the window under 'lebel'.
    meta = {"lebel": {"windows": {"s1": {"start_s": 4.3, "n_trs": 15}}}}
    make_store(tmp_path / "fmri", {"s1": (43, 300, "train")}, subjects={"F1": "fmri"},
               offsets_key=False, meta=meta)
    assert story_offset(read_dataset(tmp_path / "fmri"), "s1") == pytest.approx(4.3)
    make_store(tmp_path / "meg", {"s1": (0, 600, "train")}, offsets_key=False)
    assert story_offset(read_dataset(tmp_path / "meg"), "s1") == 0.0
    ds = read_dataset(merge_datasets([tmp_path / "meg", tmp_path / "fmri"], tmp_path / "m",
                                     verbose="error"))
    np.testing.assert_array_equal(ds.meg("M1", "s1"), WORLD["s1"]["meg"][..., 43:343])


def test_stories_subset_and_split_override(tmp_path):
    make_store(tmp_path / "a", {"s1": (0, 600, "train"), "s2": (0, 500, "val")})
    make_store(tmp_path / "b", {"s1": (43, 300, "test"), "s2": (0, 400, "val")},
               subjects={"F1": "fmri"})
    with pytest.raises(ValueError, match="different splits.*'s1': train in store 0.*test in "
                                         "store 1.*splits=.*--splits STORY=SPLIT"):
        merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    # s1 becomes a test story: F1's stored repeatability was computed from s1, so it is
    # dropped (the loss weights must not see test data)
    ds = read_dataset(merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m",
                                     splits={"s1": "test"}, verbose="error"))
    assert ds.splits == {"test": ["s1"], "val": ["s2"]}
    assert ds.repeatability("F1", "fmri") is None
    (tmp_path / "splits.json").write_text('{"s1": "anchor"}')  # a JSON file works too
    ds = read_dataset(merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m3",
                                     splits=tmp_path / "splits.json", verbose="error"))
    assert ds.splits == {"anchor": ["s1"], "val": ["s2"]}
    assert ds.repeatability("F1", "fmri") is not None
    ds = read_dataset(merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m2",
                                     stories=["s2"], verbose="error"))
    assert ds.stories == ["s2"] and ds.n_times("s2") == 400
    # F1's repeatability story s1 is not in the merged store, the values are kept
    assert ds.repeatability_info("F1", "fmri")["stories"] is None


def test_subject_prefixes(tmp_path):
    make_store(tmp_path / "a", {"s1": (0, 600, "train")})
    make_store(tmp_path / "b", {"s1": (0, 600, "train")})
    with pytest.raises(ValueError, match="'M1' is in both.*subject_prefixes"):
        merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    ds = read_dataset(merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m",
                                     subject_prefixes=["a-", "b-"], verbose="error"))
    assert ds.subjects == ["a-M1", "b-M1"]
    np.testing.assert_array_equal(ds.meg("b-M1", "s1"), WORLD["s1"]["meg"][..., :600])


# ----------------------------------------------------------------------------- features

def test_features_must_agree(tmp_path):
    make_store(tmp_path / "meg", {"s1": (0, 600, "train")})
    # another language model: only the word stream differs
    other = {s: dict(v) for s, v in WORLD.items()}
    other["s1"] = {"feat": WORLD["s1"]["feat"].copy(), "meg": WORLD["s1"]["meg"]}
    other["s1"]["feat"][:, 0:3] += 0.5
    make_store(tmp_path / "lm", {"s1": (43, 300, "train")}, subjects={"F1": "fmri"},
               world=other)
    with pytest.raises(ValueError, match=r"features of story 's1' differ.*word: max "
                                         r"\|difference\| 0\.5, 100\.0% of frames; phoneme: "
                                         r"max \|difference\| 0, 0\.0%"):
        merge_datasets([tmp_path / "meg", tmp_path / "lm"], tmp_path / "m")
    _nothing_written(tmp_path, ["meg", "lm"])
    merge_datasets([tmp_path / "meg", tmp_path / "lm"], tmp_path / "m", check_features=False,
                   verbose="error")
    # float32 noise of another device passes the default tolerance
    noisy = {"s1": {"feat": WORLD["s1"]["feat"] * (1 + 1e-5), "meg": WORLD["s1"]["meg"]}}
    make_store(tmp_path / "noisy", {"s1": (43, 300, "train")}, subjects={"F1": "fmri"},
               world=noisy)
    merge_datasets([tmp_path / "meg", tmp_path / "noisy"], tmp_path / "m2", verbose="error")
    with pytest.raises(ValueError, match="differ"):
        merge_datasets([tmp_path / "meg", tmp_path / "noisy"], tmp_path / "m3", atol=0, rtol=0)


def test_wrong_offset_is_caught_by_the_features(tmp_path):
    # The fMRI store says its story starts 3 samples later than it does.
    make_store(tmp_path / "meg", {"s1": (0, 600, "train")})
    make_store(tmp_path / "fmri", {"s1": (43, 300, "train")}, subjects={"F1": "fmri"},
               offsets_key=False, meta={"story_offsets": {"s1": 4.6}})
    with pytest.raises(ValueError, match=r"differ.*sample k of store 0 is compared with "
                                         r"sample k \+3 of store 1.*story_offsets.*by 3 "
                                         r"samples \(\+0\.3 s\)"):
        merge_datasets([tmp_path / "meg", tmp_path / "fmri"], tmp_path / "m")
    _nothing_written(tmp_path, ["meg", "fmri"])


# ----------------------------------------------------------------------------- errors

def _err_stores(tmp_path, kind):
    a, b = tmp_path / "a", tmp_path / "b"
    make_store(a, {"s1": (0, 600, "train")}, subjects={"F1": "fmri"})
    kw = {"subjects": {"F2": "fmri"}}
    if kind == "sfreq":
        make_store(b, {"s1": (0, 600, "train")}, sfreq=20.0, **kw)
    elif kind == "streams":
        make_store(b, {"s1": (0, 600, "train")}, streams={"word": (0, 4), "phoneme": (4, 6)},
                   **kw)
    elif kind == "tr":
        make_store(b, {"s1": (0, 600, "train")}, tr=1.0, **kw)
    elif kind == "grid":  # two fMRI stores whose volumes are 0.7 s apart
        make_store(b, {"s1": (7, 400, "train")}, **kw)
    elif kind == "overlap":
        make_store(b, {"s1": (600, 100, "train")}, world={"s1": {
            "feat": np.zeros((N_AUDIO, N_FEAT), np.float32), "meg": None}}, **kw)
    elif kind == "one-tr":
        # MEG of audio samples [575, 595): the fMRI grid moves the start to 580, leaving 15
        make_store(b, {"s1": (575, 20, "train")}, subjects={"M2": "meg"})
    elif kind == "fsaverage":
        make_store(b, {"s1": (0, 600, "train")}, **kw)
        man = b / MANIFEST
        import json

        m = json.loads(man.read_text())
        m["subjects"]["F2"]["n_sources_fsaverage"] = 8196
        man.write_text(json.dumps(m))
        # the morph too (a store of another template, consistent in itself: read_dataset
        # refuses a manifest that contradicts its morph before the merge sees it)
        import scipy.sparse

        mp = b / "subjects" / "F2" / m["subjects"]["F2"]["files"]["morph"]
        old = scipy.sparse.load_npz(mp).tocsr()
        scipy.sparse.save_npz(mp, scipy.sparse.csr_matrix(
            (old.data, old.indices, old.indptr), shape=(old.shape[0], 8196)))
    return [a, b]


@pytest.mark.parametrize("kind, kwargs, error, match", [
    ("sfreq", {}, ValueError, "Wrong sampling rate.*20 Hz.*10 Hz"),
    ("streams", {}, ValueError, "feature streams differ"),
    ("tr", {}, ValueError, "fMRI TRs differ.*tr = 1 s"),
    ("grid", {}, ValueError, "different grids.*0.7 s, not a whole number of TRs"),
    ("overlap", {}, ValueError, "no common part of its audio"),
    ("one-tr", {}, ValueError, "shorter than one TR"),
    ("fsaverage", {}, ValueError, "different fsaverage source spaces.*8196"),
    (None, {"stories": ["s9"]}, ValueError, "no store has: \\['s9'\\]"),
    (None, {"splits": {"s9": "val"}}, ValueError, "not merged"),
    (None, {"splits": {"s1": "training"}}, ValueError, "split"),
    (None, {"subject_prefixes": ["a-"]}, ValueError, "one prefix per store"),
    (None, {"subject_prefixes": ["a-", "b b"]}, ValueError, "Invalid subject name"),
    (None, {"atol": -1}, ValueError, "atol"),
])
def test_errors_leave_nothing(tmp_path, kind, kwargs, error, match):
    if kind is None:
        stores = [tmp_path / "a", tmp_path / "b"]
        make_store(stores[0], {"s1": (0, 600, "train")})
        make_store(stores[1], {"s1": (43, 300, "train")}, subjects={"F1": "fmri"})
    else:
        stores = _err_stores(tmp_path, kind)
    with pytest.raises(error, match=match):
        merge_datasets(stores, tmp_path / "m", **kwargs)
    _nothing_written(tmp_path, ["a", "b"])


def test_argument_errors(tmp_path, pair):
    base = pair[0]
    with pytest.raises(TypeError, match="list of dataset folders"):
        merge_datasets(base / "meg", tmp_path / "m")
    with pytest.raises(ValueError, match="at least two"):
        merge_datasets([base / "meg"], tmp_path / "m")
    with pytest.raises(ValueError, match="same dataset twice"):
        merge_datasets([base / "meg", base / "meg"], tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="not a neurofuse dataset"):
        merge_datasets([base / "meg", tmp_path], tmp_path / "m")
    with pytest.raises(FileExistsError, match="already exists"):
        merge_datasets([base / "meg", base / "fmri"], base / "merged")
    with pytest.raises(ValueError, match="one of the stores being merged"):
        merge_datasets([base / "meg", base / "fmri"], base / "meg", overwrite=True)
    assert not (tmp_path / "m").exists()


# ----------------------------------------------------------------------------- atomicity

def test_interrupted_merge_leaves_nothing_and_keeps_the_old(tmp_path, monkeypatch):
    from neurofuse.data.merge import write  # where merge_datasets looks the copy up

    make_store(tmp_path / "a", {"s1": (0, 600, "train"), "s2": (0, 500, "val")})
    make_store(tmp_path / "b", {"s1": (43, 300, "train")}, subjects={"F1": "fmri"})
    calls = []
    real = write._copy_time_crop

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return real(*args)

    monkeypatch.setattr(write, "_copy_time_crop", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    _nothing_written(tmp_path, ["a", "b"])
    monkeypatch.setattr(write, "_copy_time_crop", real)
    merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m", stories=["s2"],
                   verbose="error")
    calls.clear()
    monkeypatch.setattr(write, "_copy_time_crop", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m", overwrite=True)
    assert read_dataset(tmp_path / "m").stories == ["s2"]  # the previous merge is intact
    _nothing_written(tmp_path, ["a", "b", "m"])


# ----------------------------------------------------------------------------- ground truth

def test_ground_truth_cropped_and_clashes(tmp_path):
    rng = np.random.default_rng(3)
    truth = rng.standard_normal((N_FS, N_AUDIO)).astype(np.float32)
    gt = {"sources/s1": truth[:, :600], "config/weights": np.arange(6.0)}
    make_store(tmp_path / "a", {"s1": (0, 600, "train")}, ground_truth=gt)
    make_store(tmp_path / "b", {"s1": (43, 300, "train")}, subjects={"F1": "fmri"},
               ground_truth={"sources/s1": truth[:, 43:343]})
    ds = read_dataset(merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m",
                                     verbose="error"))
    np.testing.assert_array_equal(ds.ground_truth("sources/s1"), truth[:, 43:343])
    np.testing.assert_array_equal(ds.ground_truth("config/weights"), np.arange(6.0))
    make_store(tmp_path / "c", {"s1": (43, 300, "train")}, subjects={"F1": "fmri"},
               ground_truth={"sources/s1": truth[:, 43:343] + 1})
    with pytest.raises(ValueError, match="'sources/s1.npy' is in store 0.*different content"
                                         ".*ground_truth=False"):
        merge_datasets([tmp_path / "a", tmp_path / "c"], tmp_path / "m2")
    ds = read_dataset(merge_datasets([tmp_path / "a", tmp_path / "c"], tmp_path / "m2",
                                     ground_truth=False, verbose="error"))
    assert ds.ground_truth_names == []


# ----------------------------------------------------------------------------- end to end

def test_fit_runs_on_a_merged_real_shaped_store(tiny_study, tmp_path):
    """A simulated MEG+fMRI study merged with a LeBel-like fMRI store (stories cut to the
    window its fMRI covers, 1 TR after the audio starts); the joint model trains on it."""
    from neurofuse.systems.joint.trainer import fit, load_fit_config

    src = read_dataset(tiny_study)
    off, n = 100, 1000  # samples at 50 Hz: 2 s = 1 TR in, 20 s long
    n_trs = expected_n_trs(n, src.sfreq, src.tr)
    rng = np.random.default_rng(0)
    stories = ["story-01", "story-02", "story-03"]
    with DatasetWriter(tmp_path / "lebel", sfreq=src.sfreq, tr=src.tr,
                       feature_streams=dict(src.feature_streams),
                       metadata={"story_offsets": {s: off / src.sfreq for s in stories}}) as w:
        w.add_subject("UTS01", modalities=["fmri"], morph=src.morph("S02"),
                      vertices=src.vertices("S02"))
        for s in stories:
            w.add_story(s, split=src._m["stories"][s]["split"], n_times=n)
            w.write_features(s, src.features(s)[off:off + n])
            vol = np.asarray(src.fmri("S02", s))[..., 1:1 + n_trs]
            w.write_fmri("UTS01", s, vol + 0.1 * rng.standard_normal(vol.shape))
    out = merge_datasets([tiny_study, tmp_path / "lebel"], tmp_path / "merged", verbose="error")
    ds = read_dataset(out)
    assert ds.subjects == ["S01", "S02", "UTS01"]
    assert ds.n_times("story-01") == n and ds.n_times("story-04") == src.n_times("story-04")
    np.testing.assert_array_equal(ds.meg("S01", "story-02"),
                                  src.meg("S01", "story-02")[..., off:off + n])
    np.testing.assert_array_equal(ds.fmri("S02", "story-02"),
                                  src.fmri("S02", "story-02")[..., 1:1 + n_trs])
    # the forward solution, the template and the ground truth come along
    np.testing.assert_allclose(ds.forward("S01")["sol"]["data"],
                               src.forward("S01")["sol"]["data"])
    assert ds.metadata["template"] == src.metadata["template"]
    np.testing.assert_array_equal(ds.ground_truth("sources/story-04"),
                                  src.ground_truth("sources/story-04"))
    assert sorted(p.name for p in ds.ground_truth_dir("encoding").iterdir()) == \
        sorted(p.name for p in src.ground_truth_dir("encoding").iterdir())

    cfg, encoder = load_fit_config("tiny")
    history = fit(ds, tmp_path / "run", train_config=dataclasses.replace(cfg, max_epochs=1),
                  encoder_kwargs=encoder, device="cpu", verbose="error")
    assert len(history) == 1 and np.isfinite(history[0]["train_total"])
    assert (tmp_path / "run" / "model").is_dir()
    assert os.listdir(tmp_path / "run")


def test_merge_command_line(pair, tmp_path, capsys):
    """`neurofuse merge`: the same store as merge_datasets; flag errors are reported."""
    from neurofuse.cli import main

    base, _, ref = pair
    rc = main(["merge", str(base / "meg"), str(base / "fmri"), "--out", str(tmp_path / "m"),
               "--splits", "s1=train", "s2=val", "s3=test", "-q"])
    assert rc == 0, capsys.readouterr().err
    ds = read_dataset(tmp_path / "m")
    assert ds.subjects == ref.subjects and ds.splits == ref.splits
    np.testing.assert_array_equal(ds.meg("M1", "s1"), ref.meg("M1", "s1"))
    assert "F1" in capsys.readouterr().out
    rc = main(["merge", str(base / "meg"), str(base / "meg"), "--out", str(tmp_path / "m2"),
               "-q"])
    assert rc == 1 and "same dataset twice" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()
