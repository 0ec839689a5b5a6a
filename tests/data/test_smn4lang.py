"""SMN4Lang (ds004078) into the store for system C, on a tiny study written in the real formats.

Two subjects; MEG runs are Neuromag FIF files (a real Vectorview info from MNE's canonical
sensor table, plus a trigger and an EOG channel) named ``run-01, run-02, run-10`` under
``meg/``, BOLD runs NIfTI files named ``run-1, run-2, run-10`` under ``func/`` (which list as
``run-10, run-1, run-2``: listing order pairs MEG run-01 with BOLD run-10), each with
``events.tsv`` and a JSON sidecar. sub-02 also has a MEG run without BOLD and a BOLD run
without MEG. The BOLD holds a real activation map (nilearn's ``image_10426``) under a code
that says which run and volume each voxel comes from.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

mne = pytest.importorskip("mne")
nib = pytest.importorskip("nibabel")

from neurofuse.data.datasets.smn4lang import find_runs, pair_runs, prepare_smn4lang
from neurofuse.data.store import read_dataset

SF_IN, SFREQ, TR = 1000.0, 100.0, 1.0
MEG_DUR, N_VOLS, GRID = 40.0, 36, (12, 10, 8)
#: Reference ("start") onsets: MEG (s from the first sample) and BOLD (s from volume 0).
REFS = {"01": (6.0, 4.0), "02": (3.5, 4.0)}
#: Word onsets relative to the stimulus start (+ 0.1 s * run, so stories differ).
WORDS = np.array([0.5, 3.2, 7.9, 12.25, 20.0, 30.5, 33.0])
#: By hand (see alignment's notes): room = min(6, 3.5, 4, 4) = 3.5; lead = 4 - 1 * TR = 3.
LEAD = 3.0
PAIRING = {"n_samples": 20, "n_volumes": 6, "time_index": 2, "image_shape": [4, 4],
           "slice_selection": 0}


def _words(run):
    return WORDS + 0.1 * int(run)


def _write_events(path, ref, run):
    rows = ["onset\tduration\ttrial_type", f"{ref:.4f}\t0.0\tstart"]
    rows += [f"{ref + t:.4f}\t0.2\tword" for t in _words(run)]
    path.write_text("\n".join(rows) + "\n")


def _write_meg(folder, sub, run, ref, seed):
    from neurofuse.anatomy.sensors.meg import make_meg_info

    info = make_meg_info(sfreq=SF_IN, n_locations=4, verbose="error")  # 12 MEG channels
    extra = mne.create_info(["STI101", "EOG061"], SF_IN, ["stim", "eog"])
    rng = np.random.default_rng(seed)
    n = int(MEG_DUR * SF_IN)
    meg = rng.standard_normal((len(info["ch_names"]), n)) * 1e-12
    raw = mne.io.RawArray(meg, info, verbose="error")
    other = np.zeros((2, n))
    other[0, int(ref * SF_IN):int(ref * SF_IN) + 10] = 5  # the trigger the authors fed as input
    other[1] = rng.standard_normal(n) * 1e-4
    raw.add_channels([mne.io.RawArray(other, extra, verbose="error")], force_update_info=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sub-{sub}_task-RDR_run-{run}_meg.fif"
    raw.save(path, overwrite=True, verbose="error")
    _write_events(folder / f"sub-{sub}_task-RDR_run-{run}_events.tsv", ref, run)
    (folder / f"sub-{sub}_task-RDR_run-{run}_meg.json").write_text(
        json.dumps({"SamplingFrequency": SF_IN, "PowerLineFrequency": 50}))
    return path


def _pattern():
    """A real activation map (nilearn's image_10426), cropped to GRID, scaled to [0, 1]."""
    from nilearn.datasets import load_sample_motor_activation_image

    data = np.nan_to_num(nib.load(load_sample_motor_activation_image()).get_fdata())
    c = np.array(data.shape) // 2
    block = data[c[0] - 6:c[0] + 6, c[1] - 5:c[1] + 5, c[2] - 4:c[2] + 4]
    return (block - block.min()) / (block.max() - block.min())


def _bold_code(run, t, z):
    """Voxel value code: which run, volume and slice it comes from (exact in float32)."""
    return 1000.0 * int(run) + 10.0 * t + z + 1


def _write_bold(folder, sub, run, ref, *, header_tr=TR, sidecar_tr=TR):
    z = np.arange(GRID[2])[None, None, :, None]
    t = np.arange(N_VOLS)[None, None, None, :]
    data = (_bold_code(run, t, z) + 0.01 * _pattern()[..., None]).astype(np.float32)
    affine = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = header_tr
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sub-{sub}_task-RDR_run-{run}_bold.nii.gz"
    nib.save(img, path)
    _write_events(folder / f"sub-{sub}_task-RDR_run-{run}_events.tsv", ref, run)
    (folder / f"sub-{sub}_task-RDR_run-{run}_bold.json").write_text(
        json.dumps({"RepetitionTime": sidecar_tr, "TaskName": "RDR"}))
    return path


def write_study(root, *, sidecar_tr=TR):
    for k, (sub, (m_ref, b_ref)) in enumerate(REFS.items()):
        for meg_run, bold_run in (("01", "1"), ("02", "2"), ("10", "10")):
            _write_meg(root / f"sub-{sub}" / "meg", sub, meg_run, m_ref,
                       seed=10 * k + int(bold_run))
            _write_bold(root / f"sub-{sub}" / "func", sub, bold_run, b_ref, sidecar_tr=sidecar_tr)
    _write_meg(root / "sub-02" / "meg", "02", "03", 3.5, seed=99)  # no BOLD run 3
    _write_bold(root / "sub-02" / "func", "02", "5", 4.0)  # no MEG run 5
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny ds004078",
                                                               "BIDSVersion": "1.6.0"}))
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_study(tmp_path_factory.mktemp("smn4lang") / "ds004078")


@pytest.fixture(scope="module")
def store(study, tmp_path_factory):
    from neurofuse._logging import catch_logging

    out = tmp_path_factory.mktemp("store") / "ds"
    with catch_logging("warning") as log:
        prepare_smn4lang(study, out, task="RDR", verbose="warning")
    return read_dataset(out), log.text


def test_runs_paired_by_entities_not_listing_order(study):
    files = find_runs(study)
    meg = sorted(p.name for p in (study / "sub-01" / "meg").glob("*_meg.fif"))
    bold = sorted(p.name for p in (study / "sub-01" / "func").glob("*_bold.nii.gz"))
    assert "run-01_" in meg[0] and "run-10_" in bold[0]  # listing order would mispair these
    paired, unpaired = pair_runs(files)
    for r in paired:
        assert int(r.run) == int(r.bold.name.split("run-")[1].split("_")[0])
        assert r.meg.name.startswith(r.subject) and r.bold.name.startswith(r.subject)
    assert [(r.subject, r.story) for r in paired] == [
        (s, f"task-RDR_run-{n}") for s in ("sub-01", "sub-02") for n in (1, 2, 10)]
    assert len(unpaired) == 2 and any("run-3: MEG only" in u for u in unpaired) \
        and any("run-5: BOLD only" in u for u in unpaired)


def test_unpaired_runs_skipped_with_a_log(store):
    ds, log = store
    assert "run-3: MEG only" in log and "run-5: BOLD only" in log
    assert ds.stories == [f"task-RDR_run-{n}" for n in (1, 2, 10)]
    for sub in ("sub-01", "sub-02"):
        assert ds.subject_stories(sub, "meg") == ds.stories
        assert ds.subject_stories(sub, "fmri-volume") == ds.stories
    assert len(ds.metadata["smn4lang"]["unpaired"]) == 2


def test_story_clock_and_events(store):
    ds, _ = store
    meta = ds.metadata["smn4lang"]
    assert ds.tr == TR and ds.sfreq == SFREQ
    for story in ds.stories:
        run = story.split("run-")[1]
        assert meta["story_lead_s"][story] == pytest.approx(LEAD)
        # shortest cut: sub-01's fMRI, 36 - 1 volumes (its MEG has 40 - 3 = 37 s)
        assert ds.n_times(story) == int((N_VOLS - 1) * TR * SFREQ)
        onsets = LEAD + _words(run)
        np.testing.assert_allclose(ds.events(story, "word"),
                                   onsets[onsets < ds.n_times(story) / SFREQ])
        np.testing.assert_allclose(ds.events(story, "start"), [LEAD])
        for sub, (m_ref, b_ref) in REFS.items():
            rec = meta["runs"][f"sub-{sub}/{story}"]
            assert rec["meg_start_s"] == pytest.approx(m_ref - LEAD)
            assert rec["volume_start"] == round(b_ref - LEAD) and rec["fmri_shift_s"] == 0


def test_volumes_equal_the_nifti(store, study):
    ds, _ = store
    assert ds.spatial_shape("sub-01", "fmri-volume") == GRID
    for sub in ("sub-01", "sub-02"):
        for story in ds.stories:
            run = story.split("run-")[1]
            img = nib.load(study / sub / "func" / f"{sub}_task-RDR_run-{run}_bold.nii.gz")
            k0 = ds.metadata["smn4lang"]["runs"][f"{sub}/{story}"]["volume_start"]
            vol = ds.data(sub, "fmri-volume", story)
            assert vol.shape == (1, *GRID, ds.n_times(story) // int(SFREQ * TR))
            truth = img.get_fdata(dtype=np.float32)[..., k0:k0 + vol.shape[-1]]
            np.testing.assert_array_equal(vol[0], truth)
            np.testing.assert_allclose(ds.affine(sub, "fmri-volume"), img.affine)


def test_meg_equals_mne_after_the_documented_steps(store, study):
    ds, _ = store
    info = ds.info("sub-02", "meg")
    types = info.get_channel_types()  # no trigger, no EOG
    assert len(types) == 12 and types.count("mag") == 4 and types.count("grad") == 8
    pad = 5.0
    for sub in ("sub-01", "sub-02"):
        for story in ds.stories[:2]:
            run = f"{int(story.split('run-')[1]):02d}"
            path = study / sub / "meg" / f"{sub}_task-RDR_run-{run}_meg.fif"
            start = ds.metadata["smn4lang"]["runs"][f"{sub}/{story}"]["meg_start_s"]
            n = ds.n_times(story)
            raw = mne.io.read_raw_fif(path, preload=False, verbose="error").pick("meg")
            first = round(start * SF_IN)
            n_pad = min(math.ceil(pad * SFREQ), first // 10)
            a = first - 10 * n_pad
            b = min(raw.n_times, a + 10 * (n_pad + n) + 10 * math.ceil(pad * SFREQ))
            ref = mne.io.RawArray(raw.get_data(start=a, stop=b), raw.info, verbose="error")
            ref.resample(SFREQ, verbose="error")
            expected = ref.get_data(start=n_pad, stop=n_pad + n)
            got = ds.meg(sub, story)[0]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_pair_subject_gives_the_paired_events(store):
    from neurofuse.systems.meg2fmri import PairingConfig, pair_subject

    ds, _ = store
    config = PairingConfig.from_dict(PAIRING)
    onsets = {s: ds.events(s, "word") for s in ds.stories}
    paired = pair_subject(ds, "sub-01", onsets, config)
    n_vol = ds.n_times(ds.stories[0]) // int(SFREQ * TR)
    expected = [t for s in ds.stories for t in onsets[s]
                if math.floor(t / TR) + config.n_volumes <= n_vol]
    np.testing.assert_allclose(paired.onset, expected)
    assert paired.X.shape == (len(expected), 12)
    # Each target slice comes from the right BOLD file and volume: decode the voxel code.
    k0 = round(REFS["01"][1] - LEAD)
    for i, (story, onset) in enumerate(zip(paired.story, paired.onset)):
        run = story.split("run-")[1]
        v = k0 + math.floor(onset / TR) + config.time_index  # volume in the NIfTI file
        lo, hi = _bold_code(run, k0, 0), _bold_code(run, k0 + n_vol - 1, GRID[2] - 1) + 0.01
        assert paired.Y[i].mean() == pytest.approx((_bold_code(run, v, 0) - lo) / (hi - lo),
                                                   abs=0.02 / (hi - lo))


def test_cli_prepare_and_meg2fmri_prepare(study, store, tmp_path, capsys):
    from neurofuse.cli import main
    from neurofuse.systems.meg2fmri import read_paired

    out = tmp_path / "ds"
    rc = main(["data", "prepare", "smn4lang", str(study), "--out", str(out), "--subjects",
               "01", "--runs", "1", "2", "--splits", "task-RDR_run-2=test", "-q"])
    assert rc == 0, capsys.readouterr().err
    ds = read_dataset(out)
    assert ds.subjects == ["sub-01"] and ds.splits == {"train": ["task-RDR_run-1"],
                                                       "test": ["task-RDR_run-2"]}
    # Alone, sub-01 has 4 s before its stimulus in both runs: the story clock starts 1 s
    # earlier than with sub-02 (lead 4 s, not 3 s), so its samples are 100 later.
    assert ds.metadata["smn4lang"]["story_lead_s"]["task-RDR_run-1"] == pytest.approx(4.0)
    new, old = ds.meg("sub-01", "task-RDR_run-1")[0], store[0].meg("sub-01", "task-RDR_run-1")[0]
    assert new.shape[1] == 3600
    np.testing.assert_allclose(new[:, 100:], old, atol=1e-3 * np.abs(old).max())
    rc = main(["meg2fmri", "prepare", "--data", str(out), "--out", str(tmp_path / "p.npz"),
               "--event", "word", "--pairing", json.dumps(PAIRING), "-q"])
    assert rc == 0, capsys.readouterr().err
    pairs = read_paired(tmp_path / "p.npz")
    assert len(pairs) > 0 and set(pairs.story) == {"task-RDR_run-1", "task-RDR_run-2"}


def test_tr_header_sidecar_mismatch(tmp_path):
    root = tmp_path / "bad"
    _write_meg(root / "sub-01" / "meg", "01", "1", 6.0, seed=0)
    _write_bold(root / "sub-01" / "func", "01", "1", 4.0, sidecar_tr=2.0)
    with pytest.raises(ValueError, match=r"TR of 'sub-01_task-RDR_run-1_bold.nii.gz' "
                                         r"disagrees: 1 s in the NIfTI header .* 2 s"):
        prepare_smn4lang(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    prepare_smn4lang(root, tmp_path / "out", tr=1.0)  # the user says which is right
    assert read_dataset(tmp_path / "out").tr == 1.0


def test_missing_events_named(tmp_path):
    root = tmp_path / "noev"
    _write_meg(root / "sub-01" / "meg", "01", "1", 6.0, seed=0)
    _write_bold(root / "sub-01" / "func", "01", "1", 4.0)
    (root / "sub-01" / "func" / "sub-01_task-RDR_run-1_events.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="sub-01_task-RDR_run-1_events.tsv"):
        prepare_smn4lang(root, tmp_path / "out")


def test_subjects_disagreeing_events_error(tmp_path):
    root = tmp_path / "dis"
    for sub, shift in (("01", 0.0), ("02", 0.5)):
        _write_meg(root / f"sub-{sub}" / "meg", sub, "1", 6.0, seed=0)
        _write_bold(root / f"sub-{sub}" / "func", sub, "1", 4.0)
        ev = root / f"sub-{sub}" / "func" / f"sub-{sub}_task-RDR_run-1_events.tsv"
        _write_events(ev, 4.0, 1 + 5 * shift)  # sub-02's words 0.5 s later than sub-01's
    with pytest.raises(ValueError, match="'word' of sub-01 task-RDR_run-1 and sub-02"):
        prepare_smn4lang(root, tmp_path / "out")


def _one_subject(root, *, b_refs=(("01", 4.0),), m_ref=6.0, run="1"):
    for sub, b_ref in b_refs:
        _write_meg(root / f"sub-{sub}" / "meg", sub, run, m_ref, seed=int(sub))
        _write_bold(root / f"sub-{sub}" / "func", sub, run, b_ref)
    return root


def test_align_start_keeps_the_runs_own_clocks(tmp_path):
    root = _one_subject(tmp_path / "st")
    ds = read_dataset(prepare_smn4lang(root, tmp_path / "out", align="start"))
    rec = ds.metadata["smn4lang"]["runs"]["sub-01/task-RDR_run-1"]
    assert rec["meg_start_s"] == 0 and rec["volume_start"] == 0
    # events on the BOLD run's own clock; the story is as long as the shorter run (36 s)
    onsets = 4.0 + _words("1")
    np.testing.assert_allclose(ds.events("task-RDR_run-1", "word"), onsets[onsets < 36.0])
    assert ds.n_times("task-RDR_run-1") == 3600


def test_fmri_off_the_tr_grid_warns_or_errors(tmp_path, catch_logs):
    root = _one_subject(tmp_path / "sh", b_refs=(("01", 4.0), ("02", 4.3)))
    with catch_logs("warning") as log:
        ds = read_dataset(prepare_smn4lang(root, tmp_path / "out"))
    shift = ds.metadata["smn4lang"]["runs"]["sub-02/task-RDR_run-1"]["fmri_shift_s"]
    assert shift == pytest.approx(0.3) and "+0.300 s off the story clock" in log.text
    with pytest.raises(ValueError, match=r"\+0.300 s off the TR grid"):
        prepare_smn4lang(root, tmp_path / "out2", max_shift=0.1)


def test_run_map_pairs_other_run_numbers(tmp_path):
    root = tmp_path / "rm"
    _write_meg(root / "sub-01" / "meg", "01", "7", 6.0, seed=1)
    _write_bold(root / "sub-01" / "func", "01", "2", 4.0)
    paired, unpaired = pair_runs(find_runs(root))
    assert not paired and len(unpaired) == 2
    paired, unpaired = pair_runs(find_runs(root), run_map={"7": "2"})
    assert len(paired) == 1 and not unpaired and paired[0].bold.name.endswith("run-2_bold.nii.gz")


def test_preprocessing_pipeline_path(tmp_path):
    """With MEGPreprocessing, the window goes through preprocess_meg: here notch + band-pass +
    resampling, which equal MNE's on the MEG channels alone (each channel is filtered alone)."""
    from neurofuse.preprocessing.meg import MEGPreprocessing

    root = _one_subject(tmp_path / "pp")
    config = MEGPreprocessing(maxwell=False, ica=False, l_freq=1.0, h_freq=60.0, sfreq=SFREQ)
    ds = read_dataset(prepare_smn4lang(root, tmp_path / "out", preprocessing=config, pad=2.0))
    story = "task-RDR_run-1"
    start = ds.metadata["smn4lang"]["runs"][f"sub-01/{story}"]["meg_start_s"]
    n = ds.n_times(story)
    raw = mne.io.read_raw_fif(root / "sub-01" / "meg" / "sub-01_task-RDR_run-1_meg.fif",
                              preload=False, verbose="error")
    first = round(start * SF_IN)
    n_pad = min(math.ceil(2.0 * SFREQ), first // 10)
    a = first - 10 * n_pad
    b = min(raw.n_times, a + 10 * (n_pad + n) + 10 * math.ceil(2.0 * SFREQ))
    meg = raw.copy().pick("meg")
    ref = mne.io.RawArray(meg.get_data(start=a, stop=b), meg.info, verbose="error")
    ref.notch_filter([50.0], verbose="error")  # PowerLineFrequency of the _meg.json sidecar
    ref.filter(1.0, 60.0, verbose="error")
    ref.resample(SFREQ, verbose="error")
    expected = ref.get_data(start=n_pad, stop=n_pad + n)
    np.testing.assert_allclose(ds.meg("sub-01", story)[0], expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())


def test_runs_of_different_trs_error(tmp_path):
    root = tmp_path / "trs"
    _write_meg(root / "sub-01" / "meg", "01", "1", 6.0, seed=0)
    _write_bold(root / "sub-01" / "func", "01", "1", 4.0)
    _write_meg(root / "sub-01" / "meg", "01", "2", 6.0, seed=1)
    _write_bold(root / "sub-01" / "func", "01", "2", 4.0, header_tr=2.0, sidecar_tr=2.0)
    with pytest.raises(ValueError, match=r"different TRs: 1 s .*run-1_bold.*, 2 s .*run-2_bold"):
        prepare_smn4lang(root, tmp_path / "out")
