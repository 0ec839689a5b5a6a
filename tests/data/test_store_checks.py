"""Stores are checked against themselves on open and in full (issue 16, item 1).

One small store is written with the writer; each case copies it, damages one thing the way a
user or a disk would, and asserts the documented message: on open (``read_dataset``) for what
a cheap check can see, in the full check (``Dataset.check``, ``neurofuse data info --check``) for
what needs every value read.
"""

import json
import re
import shutil

import mne
import numpy as np
import pytest
import scipy.sparse

from neurofuse.data.store import (
    MANIFEST,
    DatasetWriter,
    Problem,
    StoreError,
    check_store,
    expected_n_trs,
    read_dataset,
)

SFREQ, TR = 50.0, 2.0
STREAMS = {"word": [0, 4], "phoneme": [4, 6]}
N_CH, N_SRC, N_FS = 5, 7, 9
STORIES = {"s1": ("train", 400), "s2": ("test", 300)}
LONG = 20000  # samples of the long story: more than the sample read on open


def _info(n=N_CH):
    return mne.create_info([f"MEG{i:03d}" for i in range(n)], SFREQ, "mag")


def _morph(n_src=N_SRC, n_fs=N_FS):
    return scipy.sparse.random(n_src, n_fs, density=0.4, format="csr", random_state=0,
                               dtype=np.float32)


def _vertices(n=N_SRC):
    return [np.arange(n // 2), np.arange(n - n // 2)]


def _write(path):
    rng = np.random.default_rng(0)
    with DatasetWriter(path, sfreq=SFREQ, tr=TR, feature_streams=STREAMS) as w:
        for name, (split, n) in {**STORIES, "long": ("train", LONG)}.items():
            w.add_story(name, split=split, n_times=n)
            w.write_features(name, rng.standard_normal((n, 6)))
        w.add_subject("sub-01", modalities=["meg", "fmri"], info=_info(),
                      leadfield=rng.standard_normal((N_CH, N_SRC)), morph=_morph(),
                      vertices=_vertices(), cnr={"meg": 0.5, "fmri": float("inf")})
        for name, (_, n) in {**STORIES, "long": ("train", LONG)}.items():
            w.write_meg("sub-01", name, rng.standard_normal((2 if name != "long" else 1,
                                                             N_CH, n)))
            w.write_fmri("sub-01", name,
                         rng.standard_normal((1, N_SRC, expected_n_trs(n, SFREQ, TR))))
        w.write_ground_truth("sources/s1", rng.standard_normal((N_FS, 400)))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("checks") / "base"
    _write(path)
    return path


@pytest.fixture
def store(base, tmp_path):
    """A fresh copy of the sound store, to damage."""
    return shutil.copytree(base, tmp_path / "ds")


def _edit_manifest(path, fn):
    m = json.loads((path / MANIFEST).read_text())
    fn(m)
    (path / MANIFEST).write_text(json.dumps(m))


def _set(*keys, value):
    def fn(m):
        d = m
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return fn


def _resave(rel, fn):
    def damage(path):
        arr = np.load(path / rel)
        np.save(path / rel, fn(arr.copy()), allow_pickle=False)
    return damage


def _nan_at(index, value=np.nan):
    def fn(arr):
        arr[index] = value
        return arr
    return fn


def _truncate(rel):
    def damage(path):
        data = (path / rel).read_bytes()
        (path / rel).write_bytes(data[:len(data) // 2])
    return damage


MEG1, FMRI1 = "subjects/sub-01/meg/s1.npy", "subjects/sub-01/fmri/s1.npy"
N_TRS1 = expected_n_trs(400, SFREQ, TR)

# (case, damage, message on open) — every one is refused when the store is opened
ON_OPEN = [
    ("sfreq", lambda p: _edit_manifest(p, _set("sfreq", value=100.0)),
     r"neurofuse-dataset.json: stories.s1.duration: expected n_times / sfreq = 400 / 100 = "
     r"4 s, got 8.0 \(the manifest's sfreq, n_times and duration contradict each other\)"),
    ("sfreq not a number", lambda p: _edit_manifest(p, _set("sfreq", value="fifty")),
     r"neurofuse-dataset.json: sfreq: expected a positive number \(Hz\), got 'fifty'"),
    ("n_times", lambda p: _edit_manifest(p, lambda m: m["stories"]["s1"].update(
        n_times=390, duration=7.8)),
     r"features/s1.npy: axis 0 of shape \(400, 6\): expected 390 \(stories.s1.n_times\), "
     r"got 400\. The manifest and the file disagree"),
    ("n_repeats", lambda p: _edit_manifest(p, _set("subjects", "sub-01", "n_repeats", "meg",
                                                   "s1", value=3)),
     r"subjects/sub-01/meg/s1.npy: axis 0 of shape \(2, 5, 400\): expected 3 "
     r"\(subjects.sub-01.n_repeats.meg.s1\), got 2"),
    ("tr", lambda p: _edit_manifest(p, _set("tr", value=1.0)),
     rf"{FMRI1}: axis 2 of shape \(1, 7, {N_TRS1}\): expected {2 * N_TRS1} "
     r"\(floor\(stories.s1.n_times / \(sfreq \* tr\)\)\), got " + str(N_TRS1)),
    ("unknown split", lambda p: _edit_manifest(p, _set("stories", "s1", "split",
                                                       value="training")),
     r"stories.s1.split: expected one of \['train', 'val', 'test', 'anchor'\], got "
     r"'training'"),
    ("overlapping streams", lambda p: _edit_manifest(p, _set("feature_streams", "phoneme",
                                                             value=[3, 6])),
     r"feature_streams.phoneme: expected columns from 4 on \(after stream 'word': streams "
     r"must not overlap\), got a stream starting at 3"),
    ("streams short of n_features", lambda p: _edit_manifest(p, _set("n_features", value=8)),
     r"n_features: expected 6 \(the largest stream stop\), got 8"),
    ("cnr abc", lambda p: _edit_manifest(p, _set("subjects", "sub-01", "cnr", "meg",
                                                 value="abc")),
     r"subjects.sub-01.cnr.meg: expected a positive number or \"inf\" for a modality of the "
     r"subject, got 'abc'"),
    ("story of unknown name", lambda p: _edit_manifest(p, _set(
        "subjects", "sub-01", "stories", "meg", value=["s1", "s2", "long", "s9"])),
     r"subjects.sub-01.stories.meg: expected stories of the dataset .*got unknown \['s9'\]"),
    ("truncated npy", _truncate(MEG1),
     r"subjects/sub-01/meg/s1.npy: file size: expected \d+ bytes \(the header's shape "
     r"\(2, 5, 400\) of float32\), got \d+ bytes: the file is truncated\. The file is damaged"),
    ("not an npy", lambda p: (p / "features/s2.npy").write_bytes(b"\x93NUMPY garbage"),
     r"features/s2.npy: file: expected a .npy array, got not a readable .npy file"),
    ("wrong-shape fMRI", _resave(FMRI1, lambda a: a[:, :6]),
     rf"{FMRI1}: axis 1 of shape \(1, 6, {N_TRS1}\): expected 7 "
     r"\(subjects.sub-01.modality_info.fmri.shape\), got 6"),
    ("missing repeat axis", _resave(MEG1, lambda a: a[0]),
     rf"{MEG1}: shape: expected 3 axes \(2, 5, 400\) for its data, got shape \(5, 400\)"),
    ("integer data", _resave(FMRI1, lambda a: (a * 10).astype(np.int32)),
     rf"{FMRI1}: dtype: expected a float array, got <i4"),
    ("ground truth of another dtype", _resave("ground_truth/sources/s1.npy",
                                              lambda a: a.astype(np.float32)),
     r"ground_truth/sources/s1.npy: dtype: expected <f8 \(the manifest\), got <f4"),
    ("NaN lead-field row", _resave("subjects/sub-01/meg-leadfield.npy", _nan_at(2)),
     r"subjects/sub-01/meg-leadfield.npy: values: expected a finite lead field, got NaN/Inf "
     r"in 1 row\(s\) \(channels \[2\]\)"),
    ("lead field of other sources", _resave("subjects/sub-01/meg-leadfield.npy",
                                            lambda a: a[:, :6]),
     r"meg-leadfield.npy: axis 1 of shape \(5, 6\): expected 7 \(subjects.sub-01.n_sources\)"),
    ("NaN in MEG", _resave(MEG1, _nan_at((1, 3, slice(100, 200)))),  # small: read whole
     rf"{MEG1}: values: expected finite values, got NaN/Inf in repeat 1, channel 3: samples "
     r"100-199 \(2.000-4.000 s\)"),
    ("Inf in fMRI", _resave(FMRI1, _nan_at((0, 4, 2), np.inf)),
     rf"{FMRI1}: values: expected finite values, got NaN/Inf in repeat 0, source 4: volumes 2 "
     r"\(4.000-6.000 s\)"),
    ("all-zero MEG story", _resave("subjects/sub-01/meg/s2.npy", np.zeros_like),
     r"subjects/sub-01/meg/s2.npy: values: expected a recording \(not all zero\), got every "
     r"value is 0"),
    ("morph of other sources", lambda p: scipy.sparse.save_npz(
        p / "subjects/sub-01/morph.npz", _morph(6)),
     r"subjects/sub-01/morph.npz: axis 0 of shape \(6, 9\): expected 7 "
     r"\(subjects.sub-01.n_sources\), got 6"),
    ("vertex count", lambda p: (p / "subjects/sub-01/vertices.json").write_text("[[0, 1], [0]]"),
     r"subjects/sub-01/vertices.json: vertex count \(lh \+ rh\): expected 7 "
     r"\(subjects.sub-01.n_sources\), got 3"),
]


@pytest.mark.parametrize("case, damage, message", ON_OPEN, ids=[c[0] for c in ON_OPEN])
def test_damaged_store_is_refused_on_open(store, case, damage, message):
    damage(store)
    with pytest.raises(StoreError, match=message) as err:
        read_dataset(store)
    assert isinstance(err.value, ValueError)  # the CLI prints it as an error, exit 1
    assert f"neurofuse data info --check {store}" in str(err.value)
    # the full check (info --check) lists it too (values: with where they are)
    first = err.value.problems[0]
    assert any((p.file, p.field) == (first.file, first.field)
               for p in check_store(store, full=True))


# (case, damage, message of the full check): where they are, by reading every value (on
# open, arrays over 2 MiB are only sampled)
FULL_ONLY = [
    ("NaN run in the middle of a long story",
     _resave("subjects/sub-01/meg/long.npy", _nan_at((0, 2, slice(10100, 10200)))),
     r"subjects/sub-01/meg/long.npy: values: expected finite values, got NaN/Inf in repeat 0, "
     r"channel 2 \(MEG002\): samples 10100-10199 \(202.000-204.000 s\)"),
    ("one Inf in a long fMRI run",
     _resave("subjects/sub-01/fmri/long.npy", _nan_at((0, 3, 77), -np.inf)),
     r"subjects/sub-01/fmri/long.npy: values: expected finite values, got NaN/Inf in repeat "
     r"0, source 3: volumes 77 \(154.000-156.000 s\)"),
    ("all-zero MEG channel", _resave(MEG1, _nan_at((slice(None), 3), 0.0)),
     rf"{MEG1}: values: expected no flat channels, got 1 channel\(s\) all zero in every "
     r"repeat: channel 3 \(MEG003\)\. Drop or interpolate the dead channels"),
    ("NaN in features", _resave("features/long.npy", _nan_at((slice(5000, 5003), 4))),
     r"features/long.npy: values: expected finite values, got NaN/Inf in columns \[4\], "
     r"samples 5000-5002"),
    ("info of another sfreq", lambda p: mne.io.write_info(
        p / "subjects/sub-01/meg-info.fif", mne.create_info(_info()["ch_names"], 100.0, "mag"),
        overwrite=True),
     r"subjects/sub-01/meg-info.fif: sfreq: expected 50 Hz \(the manifest's sfreq\), got "
     r"100 Hz"),
]


@pytest.mark.parametrize("case, damage, message", FULL_ONLY, ids=[c[0] for c in FULL_ONLY])
def test_full_check_names_bad_values(store, case, damage, message):
    damage(store)
    problems = read_dataset(store, check=False).check(full=True)
    assert problems and all(isinstance(p, Problem) for p in problems)
    assert any(re.search(message, str(p)) for p in problems), \
        [str(p) for p in problems]


def test_sound_stores_pass_both_checks(base):
    ds = read_dataset(base)
    assert ds.check(full=True) == []
    assert ds.check(full=False) == []


def test_nan_run_and_its_time_span_match_the_array(store):
    """The reported runs are exactly the samples set to NaN (two runs, two channels)."""
    rel = "subjects/sub-01/meg/long.npy"
    arr = np.load(store / rel)
    arr[0, 1, 3000:3050] = np.nan
    arr[0, 1, 9000:9001] = np.inf
    arr[0, 4, 19990:] = np.nan
    np.save(store / rel, arr)
    found = [str(p) for p in read_dataset(store, check=False).check() if p.file == rel]
    assert len(found) == 2
    assert found[0].startswith(
        f"{rel}: values: expected finite values, got NaN/Inf in repeat 0, channel 1 (MEG001): "
        "samples 3000-3049 (60.000-61.000 s), 9000 (180.000-180.020 s). Repair the data")
    assert found[1].startswith(
        f"{rel}: values: expected finite values, got NaN/Inf in repeat 0, channel 4 (MEG004): "
        "samples 19990-19999 (399.800-400.000 s). Repair the data")


def test_every_problem_is_listed_not_only_the_first(store):
    _edit_manifest(store, lambda m: (m["stories"]["s1"].update(split="x"),
                                     m["subjects"]["sub-01"]["cnr"].update(meg="abc")))
    with pytest.raises(StoreError) as err:
        read_dataset(store)
    assert [p.field for p in err.value.problems] == ["stories.s1.split",
                                                     "subjects.sub-01.cnr.meg"]
    assert "2 problems" in str(err.value)


def test_info_check_lists_problems_and_exits_1(store, capsys):
    from neurofuse.cli.main import main

    assert main(["data", "info", "--check", str(store)]) == 0
    assert "no problems found" in capsys.readouterr().out
    _resave(MEG1, _nan_at((0, 1, slice(10, 20))))(store)
    _resave("subjects/sub-01/meg/s2.npy", _nan_at((slice(None), 0), 0.0))(store)
    assert main(["info", "--check", str(store)]) == 1
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln.startswith("  - ")]
    assert len(lines) == 2, out
    assert "meg/s1.npy: values: expected finite values, got NaN/Inf in repeat 0, channel 1 " \
           "(MEG001): samples 10-19 (0.200-0.400 s)" in lines[0]
    assert "meg/s2.npy: values: expected no flat channels" in lines[1]
    assert "error: Dataset" in err and "2 problems" in err
    # --json: one object per problem
    assert main(["data", "info", "--check", "--json", str(store)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["n_problems"] == 2 and set(doc["problems"][0]) == {
        "file", "field", "expected", "got", "fix"}


def test_info_check_reports_missing_files_as_problems(store, capsys):
    from neurofuse.cli.main import main

    (store / "features" / "s2.npy").unlink()
    assert main(["data", "info", "--check", str(store)]) == 1
    assert "features/s2.npy: file: expected a file (the manifest names it), got no such file" \
        in capsys.readouterr().out


def test_opening_reads_little(base, store, monkeypatch):
    """On open, arrays over the size read whole are sampled: at most a few % of values; a
    NaN run the sample misses is left to the full check (and to training's guard)."""
    import neurofuse.data.store._scan as scan

    monkeypatch.setattr("neurofuse.data.store.validate._WHOLE_BYTES", 100_000)
    seen = []
    real = scan.sample

    def spy(arr, **kw):
        out = real(arr, **kw)
        seen.append((arr.size, out.size))
        return out

    monkeypatch.setattr("neurofuse.data.store.validate.sample", spy)
    read_dataset(base)
    big = [(n, k) for n, k in seen if n >= 5 * LONG]
    assert big and all(k <= 0.2 * n for n, k in big), big
    # 10100-10199 of channel 2 lies between the sampled blocks and edges: found in full only
    _resave("subjects/sub-01/meg/long.npy", _nan_at((0, 2, slice(10100, 10200))))(store)
    read_dataset(store)
    monkeypatch.undo()
    with pytest.raises(StoreError, match="channel 2: samples 10100-10199"):
        read_dataset(store)  # read whole under the default size


# ---------------------------------------------------------------------------- writer


def test_source_count_mismatch_refused_when_a_subject_is_added(tmp_path):
    """The 8195-vs-8196 case, in small: a head on other sources than its morph or template."""
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError) as err, \
            DatasetWriter(tmp_path / "a", sfreq=SFREQ, tr=TR) as w:
        w.add_subject("sub-01", modalities=["meg"], info=_info(),
                      leadfield=rng.standard_normal((N_CH, N_SRC - 1)), morph=_morph())
    assert str(err.value).startswith(
        "morph vs source-space mismatch for subject 'sub-01': leadfield columns = 6 but morph "
        "rows = 7.")
    with pytest.raises(ValueError, match=r"source-space mismatch for subject 'sub-01': its "
                                         r"n_sources = 7 but leadfield columns = 6"), \
            DatasetWriter(tmp_path / "b", sfreq=SFREQ, tr=TR) as w:
        w.add_subject("sub-01", modalities=["meg", "eeg"], morph=_morph())
        w.add_sensors("sub-01", "eeg", leadfield=rng.standard_normal((3, N_SRC - 1)))
    with pytest.raises(ValueError, match=r"template source-space mismatch for subject "
                                         r"'sub-02': its morph maps a template of 8 sources "
                                         r"\(its columns\) but the store's template has 9 "
                                         r"\(subject 'sub-01''s morph\)"), \
            DatasetWriter(tmp_path / "c", sfreq=SFREQ, tr=TR) as w:
        w.add_subject("sub-01", modalities=["fmri"], morph=_morph())
        w.add_subject("sub-02", modalities=["fmri"], morph=_morph(n_fs=N_FS - 1))
    assert not any(tmp_path.iterdir())  # nothing written


def test_template_mismatch_in_a_manifest_is_refused_on_open(tmp_path):
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "ds", sfreq=SFREQ, tr=TR) as w:
        w.add_story("s1", split="train", n_times=100)
        for sub in ("sub-01", "sub-02"):
            w.add_subject(sub, modalities=["fmri"], morph=_morph())
            w.write_fmri(sub, "s1", rng.standard_normal((N_SRC, 1)))
    _edit_manifest(tmp_path / "ds", _set("subjects", "sub-02", "n_sources_fsaverage", value=8))
    with pytest.raises(StoreError, match=r"subjects.sub-02.n_sources_fsaverage: expected 9 "
                                         r"\(the template of \['sub-01'\]"):
        read_dataset(tmp_path / "ds")


# ---------------------------------------------------------------------------- training


def test_fit_refuses_nan_the_cheap_check_did_not_see(tmp_path):
    """NaN deep inside a training story (which opening samples past) stops training with an
    error naming the likely input and the full check, instead of saving NaN weights."""
    pytest.importorskip("torch")
    from neurofuse.systems.joint.trainer import fit
    from neurofuse.training import TrainingDivergedError

    rng = np.random.default_rng(0)
    sfreq, n_src_fs = 5.0, 12
    with DatasetWriter(tmp_path / "ds", sfreq=sfreq, tr=TR,
                       feature_streams={"a": (0, 3), "b": (3, 6)}) as w:
        w.add_subject("M1", modalities=["meg"],
                      info=mne.create_info([f"MEG{i:03d}" for i in range(5)], sfreq, "mag"),
                      leadfield=rng.standard_normal((5, 10)),
                      morph=scipy.sparse.random(10, n_src_fs, density=0.3, random_state=1)
                      + scipy.sparse.eye(10, n_src_fs), vertices=[np.arange(5), np.arange(5)])
        for name, split, n in (("train-0", "train", 700), ("train-1", "train", 700),
                               ("val-0", "val", 300)):
            w.add_story(name, split=split, n_times=n)
            w.write_features(name, rng.standard_normal((n, 6)))
            w.write_meg("M1", name, rng.standard_normal((1, 5, n)))
    rel = tmp_path / "ds" / "subjects" / "M1" / "meg" / "train-0.npy"
    arr = np.load(rel)
    arr[0, 2, 300:320] = np.nan
    np.save(rel, arr)
    ds = read_dataset(tmp_path / "ds", check=False)  # as if the sample had missed it
    assert any("channel 2 (MEG002): samples 300-319" in str(p) for p in ds.check())
    with pytest.raises(TrainingDivergedError, match="NaN or Inf values in the training data"):
        fit(ds, tmp_path / "run", encoder_kwargs=dict(d_model=8, n_layers=2, n_heads=2,
                                                      d_ff=16, window=10),
            train_config=dict(piece_seconds=40.0, loss_seconds=20.0, batch_size=4, lr=1e-2,
                              max_epochs=1))
    assert not (tmp_path / "run" / "model").exists()


def test_info_check_lists_every_missing_file(store, capsys):
    from neurofuse.cli.main import main

    for rel in ("subjects/sub-01/morph.npz", "subjects/sub-01/meg-info.fif", MEG1):
        (store / rel).unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        read_dataset(store)
    assert main(["data", "info", "--check", str(store)]) == 1
    out = capsys.readouterr().out
    for rel in ("subjects/sub-01/morph.npz", "subjects/sub-01/meg-info.fif", MEG1):
        assert f"{rel}: file: expected a file (the manifest names it), got no such file" in out
    assert "3 problem(s)" in out


def test_full_check_of_ground_truth_names_the_row(store):
    _resave("ground_truth/sources/s1.npy", _nan_at((6, slice(30, 33))))(store)
    problems = [str(p) for p in read_dataset(store, check=False).check()]
    assert any(p.startswith("ground_truth/sources/s1.npy: values: expected finite values, got "
                            "NaN/Inf in row (6,): samples 30-32.") for p in problems), problems


def test_former_ecog_store_is_checked_without_a_repeat_axis(tmp_path):
    """A store of the former ECoG format (2-D arrays on disk) opens, and its NaN is named."""
    path = tmp_path / "ecog"
    (path / "features").mkdir(parents=True)
    (path / "subjects" / "P1" / "ecog").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(path / "features" / "story.npy", rng.standard_normal((120, 6)).astype(np.float32))
    ecog = rng.standard_normal((3, 120)).astype(np.float32)
    np.save(path / "subjects" / "P1" / "ecog" / "story.npy", ecog)
    (path / "neurofuse-ecog.json").write_text(json.dumps({
        "format": "neurofuse-ecog", "schema_version": 1, "sfreq": SFREQ,
        "feature_streams": STREAMS, "n_features": 6,
        "stories": {"story": {"n_times": 120, "duration": 120 / SFREQ}},
        "subjects": {"P1": {"stories": ["story"], "n_electrodes": 3, "electrodes": {}}}}))
    assert read_dataset(path).check() == []
    ecog[1, 10:20] = np.nan
    np.save(path / "subjects" / "P1" / "ecog" / "story.npy", ecog)
    with pytest.raises(StoreError, match=r"subjects/P1/ecog/story.npy: values: expected finite "
                                         r"values, got NaN/Inf in channel 1: samples 10-19 "):
        read_dataset(path)


def test_empty_ground_truth_array_passes_the_full_check(tmp_path):
    # an empty axis (e.g. per-trial latencies of a task with no evoked component) has no value
    # to scan: the full check must not fail on reshaping it
    info = mne.create_info(["a", "b"], 250.0, "eeg")
    with DatasetWriter(tmp_path / "s", sfreq=250.0) as w:
        w.add_subject("s1", modalities=["eeg"])
        w.add_sensors("s1", "eeg", info=info, units="V")
        w.write_epochs("s1", "eeg", "t", np.ones((3, 2, 10)), events=np.arange(3.0), tmin=0.0)
        w.write_ground_truth("trials/x", np.zeros((3, 0)))
    assert read_dataset(tmp_path / "s").check(full=True) == []
