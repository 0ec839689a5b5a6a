"""BIDS simultaneous EEG–fMRI (OpenNeuro ds000116's layout) into the dataset store.

Small studies are written in the real formats: the EEG as BrainVision or EDF files (written
here byte by byte, as pybv and edfio are not installed) put into BIDS by mne-bids'
``write_raw_bids`` (which copies them and writes the sidecars and events.tsv), the BOLD as
NIfTI with nibabel. The EEG carries a known slow sine that starts at the first volume (ground
truth of the alignment) on top of clean EEG from :mod:`test_mr_artifacts`; the artefacted
variant adds a gradient artefact.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")
mne_bids = pytest.importorskip("mne_bids")
nib = pytest.importorskip("nibabel")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preprocessing"))
from test_mr_artifacts import clean_eeg, gradient_artifact  # noqa: E402

from neurofuse.data.datasets.ds000116 import (  # noqa: E402
    find_eeg_fmri_runs,
    prepare_ds000116,
    prepare_eeg_fmri_bids,
)
from neurofuse.data.datasets.ds000116.prepare import cut_epochs  # noqa: E402
from neurofuse.anatomy.sensors.eeg import _resolve_montage_name  # noqa: E402
from neurofuse.data.store import read_dataset  # noqa: E402

SFREQ, TR, N_VOLS = 500.0, 2.0, 15
CHANNELS = ["Fz", "Cz", "Pz", "Oz", "C3", "C4", "P3", "P4"]
GRID = (4, 5, 3)
AFFINE = np.array([[3.0, 0, 0, -6], [0, 3, 0, -7.5], [0, 0, 3, -4.5], [0, 0, 0, 1]])
SINE_HZ = 0.5


# ----------------------------------------------------------------------- file writers
def write_brainvision(path, data, sfreq, ch_names):
    """A BrainVision file set (``.vhdr``, ``.vmrk``, ``.eeg``: float32 µV, multiplexed)."""
    path = Path(path)
    base = path.stem
    lines = ["Brain Vision Data Exchange Header File Version 1.0", "", "[Common Infos]",
             "Codepage=UTF-8", f"DataFile={base}.eeg", f"MarkerFile={base}.vmrk",
             "DataFormat=BINARY", "DataOrientation=MULTIPLEXED",
             f"NumberOfChannels={len(ch_names)}", f"SamplingInterval={1e6 / sfreq:g}", "",
             "[Binary Infos]", "BinaryFormat=IEEE_FLOAT_32", "", "[Channel Infos]"]
    lines += [f"Ch{i + 1}={name},,1,µV" for i, name in enumerate(ch_names)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.with_suffix(".vmrk").write_text(
        "Brain Vision Data Exchange Marker File Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={base}.eeg\n\n[Marker Infos]\nMk1=New Segment,,1,1,0\n", encoding="utf-8")
    (data.T * 1e6).astype("<f4").tofile(path.with_suffix(".eeg"))


def write_edf(path, data, sfreq, ch_names):
    """A plain EDF file (16-bit, one-second records, physical range per channel, µV)."""
    n_ch, n_times = data.shape
    rec = int(sfreq)
    n_rec = n_times // rec
    uv = data[:, : n_rec * rec] * 1e6
    pmin, pmax = uv.min(1) - 1, uv.max(1) + 1
    dmin, dmax = -32768, 32767
    digital = np.round((uv - pmin[:, None]) / (pmax - pmin)[:, None] * (dmax - dmin) + dmin)

    def field(values, width):
        return "".join(str(v)[:width].ljust(width) for v in values)

    head = ("0".ljust(8) + "X X X X".ljust(80) + "Startdate 01-JAN-2020 X X X".ljust(80)
            + "01.01.20" + "00.00.00" + str(256 * (n_ch + 1)).ljust(8) + "".ljust(44)
            + str(n_rec).ljust(8) + "1".ljust(8) + str(n_ch).ljust(4))
    head += (field(ch_names, 16) + field(["AgAgCl"] * n_ch, 80) + field(["uV"] * n_ch, 8)
             + field([f"{v:.2f}" for v in pmin], 8) + field([f"{v:.2f}" for v in pmax], 8)
             + field([dmin] * n_ch, 8) + field([dmax] * n_ch, 8) + field([""] * n_ch, 80)
             + field([rec] * n_ch, 8) + field([""] * n_ch, 32))
    body = digital.astype("<i2").reshape(n_ch, n_rec, rec).transpose(1, 0, 2).tobytes()
    Path(path).write_bytes(head.encode("ascii") + body)


# ----------------------------------------------------------------------- a study
def _signals(seed, lead, artifact=False):
    """EEG (V) of one run: ``lead`` s before the first volume, N_VOLS TRs, 1 s after."""
    n = int((lead + N_VOLS * TR + 1.0) * SFREQ)
    eeg = clean_eeg(len(CHANNELS), n, seed=seed)
    t = np.arange(n) / SFREQ - lead
    eeg[0] += 1e-4 * np.sin(2 * np.pi * SINE_HZ * t)      # ground truth of the alignment
    if artifact:
        scan = t >= 0
        eeg[:, scan] += gradient_artifact(len(CHANNELS), int(scan.sum()), 50 * eeg.std())
    return eeg


def _events(seed):
    """Oddball events (s from the first volume): 'standard' and 'target' every 2-3 s."""
    rng = np.random.default_rng(100 + seed)
    onsets, kinds, t = [], [], 1.0
    while t < N_VOLS * TR - 1.0:
        onsets.append(round(t, 3))
        kinds.append("target" if rng.uniform() < 0.3 else "standard")
        t += rng.uniform(2.0, 3.0)
    return np.array(onsets), kinds


def _write_run(root, sub, run, seed, *, fmt, lead, artifact, markers, eeg_events, bads,
               brain=None):
    eeg = _signals(seed, lead, artifact=artifact)
    src = root.parent / f"src-{root.name}-{sub}-{run}"
    src.mkdir(parents=True, exist_ok=True)
    if fmt == "BrainVision":
        fname = src / "rec.vhdr"
        write_brainvision(fname, eeg, SFREQ, CHANNELS)
        raw = mne.io.read_raw_brainvision(fname, verbose="error")
    else:
        fname = src / "rec.edf"
        write_edf(fname, eeg, SFREQ, CHANNELS)
        raw = mne.io.read_raw_edf(fname, verbose="error")
    raw.set_montage(_resolve_montage_name("colin27_1020"), verbose="error")
    raw.info["line_freq"] = 50.0
    onsets, kinds = _events(seed)
    ann_on = list(onsets + lead) if eeg_events else []
    ann_desc = list(kinds) if eeg_events else []
    if markers:
        ann_on += list(lead + TR * np.arange(N_VOLS))
        ann_desc += ["R128"] * N_VOLS
    if ann_on:
        raw.set_annotations(mne.Annotations(ann_on, [0.0] * len(ann_on), ann_desc))
    bp = mne_bids.BIDSPath(subject=sub, task="oddball", run=run, datatype="eeg", root=root)
    mne_bids.write_raw_bids(raw, bp, overwrite=True, verbose="error")
    if bads:
        mne_bids.mark_channels(bp, ch_names=bads, status="bad", verbose="error")
    func = root / f"sub-{sub}" / "func"
    func.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    level = 100.0 if brain is None else np.where(brain, 100.0, 5.0)[..., None]  # brain vs air
    bold = (level + rng.standard_normal((*GRID, N_VOLS))).astype(np.float32)
    img = nib.Nifti1Image(bold, AFFINE)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = TR
    nib.save(img, func / f"sub-{sub}_task-oddball_run-{run}_bold.nii.gz")
    with open(func / f"sub-{sub}_task-oddball_run-{run}_events.tsv", "w") as f:
        f.write("onset\tduration\ttrial_type\n")
        f.writelines(f"{o}\t0.2\t{kd}\n" for o, kd in zip(onsets, kinds))
    return {"bold": bold, "onsets": onsets, "kinds": kinds, "raw_file": Path(bp.fpath)}


def write_study(root, *, subjects=("01", "02"), runs=("01",), fmt="BrainVision", lead=3.0,
                artifact=(), markers=True, eeg_events=True, bads=None, brain=None):
    """A BIDS EEG-fMRI study: per subject oddball ``runs``; ``bads`` = {run: [channels]};
    ``brain``: bool (GRID) voxels of the BOLD's bright brain (else every voxel is alike).

    Returns the ground truth: ``truth[sub]`` of the first run, ``truth[sub, run]`` of each.
    """
    root = Path(root)
    truth = {}
    for k, sub in enumerate(subjects):
        for r, run in enumerate(runs):
            seed = 10 * k + r
            truth[sub, run] = _write_run(root, sub, run, seed, fmt=fmt, lead=lead,
                                         artifact=sub in artifact, markers=markers,
                                         eeg_events=eeg_events,
                                         bads=(bads or {}).get(run), brain=brain)
        truth[sub] = truth[sub, runs[0]]
    (root / "task-oddball_bold.json").write_text(json.dumps({"RepetitionTime": TR,
                                                             "TaskName": "oddball"}))
    return truth


# ----------------------------------------------------------------------- tests
def test_brainvision_study_into_the_store(tmp_path):
    root = tmp_path / "bids"
    truth = write_study(root, bads={"01": ["P4"]})
    runs = find_eeg_fmri_runs(root)
    assert list(runs) == ["sub-01", "sub-02"]
    assert runs["sub-01"][0][1].name == "sub-01_task-oddball_run-01_bold.nii.gz"
    out = prepare_eeg_fmri_bids(root, tmp_path / "store", sfreq=100.0, epochs=(-0.1, 0.5))
    ds = read_dataset(out)
    assert ds.tr == TR and ds.sfreq == 100.0
    story = "sub-01_task-oddball_run-01"
    assert ds.subject_stories("sub-01", "eeg") == [story]
    assert ds.n_times(story) == N_VOLS * TR * 100
    eeg = np.asarray(ds.data("sub-01", "eeg", story))[0]
    assert eeg.shape == (len(CHANNELS) - 1, N_VOLS * TR * 100)   # P4 (bad) left out
    assert ds.info("sub-01", "eeg")["ch_names"] == CHANNELS[:-1]
    # the alignment: the sine that starts at the first volume, at the store's rate
    t = np.arange(eeg.shape[1]) / 100.0
    sine = 1e-4 * np.sin(2 * np.pi * SINE_HZ * t)
    inner = slice(100, -100)
    assert np.corrcoef(eeg[0, inner], sine[inner])[0, 1] > 0.98
    # ... and MNE's own crop at the first marker (3 s) and resampling of the file
    ref = mne.io.read_raw(truth["01"]["raw_file"], verbose="error").pick(CHANNELS[:-1])
    ref.crop(3.0, 3.0 + N_VOLS * TR, include_tmax=False).load_data().resample(100.0)
    np.testing.assert_allclose(eeg, ref.get_data(), rtol=1e-5, atol=1e-4 * 1e-5)
    # the BOLD volumes and grid as written
    np.testing.assert_array_equal(np.asarray(ds.data("sub-01", "fmri-volume", story))[0],
                                  truth["01"]["bold"])
    np.testing.assert_allclose(ds.affine("sub-01", "fmri-volume"), AFFINE)
    # the events, from the first volume, per trial type; the volume markers are not events
    assert sorted(ds.event_names(story)) == sorted(set(truth["01"]["kinds"]))
    for kind in set(truth["01"]["kinds"]):
        want = [o for o, kd in zip(truth["01"]["onsets"], truth["01"]["kinds"]) if kd == kind]
        np.testing.assert_allclose(ds.events(story, kind), want, atol=1e-3)
    # epochs around the events, labelled, paired with the run
    labels = ds.epoch_labels("sub-01", "eeg", story)
    info = ds.epochs_info("sub-01", "eeg", story)
    assert info["event_id"] == {"standard": 1, "target": 2} and info["tmin"] == -0.1
    assert len(labels) == len(truth["01"]["onsets"])
    assert np.array_equal(labels, [1 if kd == "standard" else 2 for kd in truth["01"]["kinds"]])
    ep = np.asarray(ds.epochs("sub-01", "eeg", story))
    first = int(round((truth["01"]["onsets"][0] - 0.1) * 100))
    np.testing.assert_allclose(ep[0], eeg[:, first:first + 60], rtol=1e-6)
    meta = ds.metadata["eeg_fmri_bids"]
    rep = meta["runs"][story]
    assert rep["volume_marker"] == "R128" and rep["first_volume_s"] == pytest.approx(3.0)
    assert rep["gradient_score"] < 1.5 and meta["bads"]["sub-01"] == ["P4"]
    assert ds.check(full=True) == []


def test_runs_of_a_subject_share_channels(tmp_path):
    """Two runs; a channel bad in the second is left out of both; each run its own story."""
    root = tmp_path / "bids"
    truth = write_study(root, subjects=("01",), runs=("01", "02"), bads={"02": ["C3"]})
    ds = read_dataset(prepare_eeg_fmri_bids(root, tmp_path / "store", sfreq=100.0))
    stories = ["sub-01_task-oddball_run-01", "sub-01_task-oddball_run-02"]
    assert ds.subject_stories("sub-01", "eeg") == stories
    assert ds.info("sub-01", "eeg")["ch_names"] == [c for c in CHANNELS if c != "C3"]
    for story, run in zip(stories, ("01", "02")):
        assert ds.data("sub-01", "eeg", story).shape == (1, len(CHANNELS) - 1, 3000)
        np.testing.assert_array_equal(np.asarray(ds.data("sub-01", "fmri-volume", story))[0],
                                      truth["01", run]["bold"])
    assert ds.metadata["eeg_fmri_bids"]["bads"] == {"sub-01": ["C3"]}


def test_gradient_artifact_is_refused(tmp_path):
    root = tmp_path / "bids"
    write_study(root, artifact=("02",))
    with pytest.raises(ValueError, match=r"sub-02_task-oddball_run-01_eeg\.vhdr' still carries "
                                         r"the MR gradient artefact") as err:
        prepare_eeg_fmri_bids(root, tmp_path / "store")
    msg = str(err.value)
    assert "threshold 3" in msg and "Remove the gradient artefact" in msg
    assert not (tmp_path / "store").exists()
    out = prepare_eeg_fmri_bids(root, tmp_path / "store", gradient_threshold=np.inf)
    rep = read_dataset(out).metadata["eeg_fmri_bids"]["runs"]
    assert rep["sub-02_task-oddball_run-01"]["gradient_score"] > 100
    assert rep["sub-01_task-oddball_run-01"]["gradient_score"] < 1.5


def test_edf_without_markers_events_from_the_bold(tmp_path):
    """ds000116's case: the EEG starts with the scan (no markers), events only in func/."""
    root = tmp_path / "bids"
    truth = write_study(root, subjects=("01",), fmt="EDF", lead=0.0, markers=False,
                        eeg_events=False)
    assert truth["01"]["raw_file"].suffix == ".edf"
    out = prepare_ds000116(root, tmp_path / "store", sfreq=100.0, subjects=["sub-01"])
    ds = read_dataset(out)
    story = "sub-01_task-oddball_run-01"
    eeg = np.asarray(ds.data("sub-01", "eeg", story))[0]
    t = np.arange(eeg.shape[1]) / 100.0
    sine = 1e-4 * np.sin(2 * np.pi * SINE_HZ * t)
    assert np.corrcoef(eeg[0, 100:-100], sine[100:-100])[0, 1] > 0.98
    rep = ds.metadata["eeg_fmri_bids"]["runs"][story]
    assert rep["volume_marker"] is None \
        and rep["events_from"] == "sub-01_task-oddball_run-01_events.tsv"
    targets = [o for o, kd in zip(truth["01"]["onsets"], truth["01"]["kinds"])
               if kd == "target"]
    np.testing.assert_allclose(ds.events(story, "target"), targets)


def test_errors_name_the_problem(tmp_path):
    root = tmp_path / "bids"
    write_study(root, subjects=("01",))
    (root / "sub-01" / "func" / "sub-01_task-oddball_run-01_bold.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="No BOLD run for the EEG runs"):
        prepare_eeg_fmri_bids(root, tmp_path / "store")
    with pytest.raises(FileNotFoundError, match=r"No EEG run for subjects \['sub-09'\]"):
        find_eeg_fmri_runs(root, subjects=["09"])
    with pytest.raises(ValueError, match="'epochs' must be"):
        prepare_eeg_fmri_bids(root, tmp_path / "store", epochs=(0.5,))


def test_wrong_volume_marker_spacing(tmp_path):
    from neurofuse.data.datasets.ds000116.layout import find_volume_onsets

    onsets = np.arange(10) * 1.5
    with pytest.raises(ValueError, match="every 1.5 s.*TR is 2 s"):
        find_volume_onsets(onsets, ["Response/R128"] * 10, 2.0)
    got, name = find_volume_onsets(np.arange(10) * 2.0 + 1, ["Response/R128"] * 10, 2.0)
    assert name == "Response/R128" and got[0] == 1.0
    assert find_volume_onsets(onsets, ["stim"] * 10, 2.0)[1] is None
    with pytest.raises(ValueError, match="'volume_event' = 'V'"):
        find_volume_onsets(onsets, ["stim"] * 10, 2.0, volume_event="V")


def test_cut_epochs_against_slicing():
    eeg = np.arange(2 * 100, dtype=float).reshape(2, 100)
    data, onsets, labels, event_id = cut_epochs(eeg, 10.0, {"b": [2.0, 9.7], "a": [0.02, 5.0]},
                                                -0.1, 0.4)
    assert event_id == {"a": 1, "b": 2}
    np.testing.assert_allclose(onsets, [2.0, 5.0])   # 0.02 and 9.7 do not fit
    assert list(labels) == [2, 1]
    np.testing.assert_array_equal(data[1], eeg[:, 49:54])


def test_tr_from_the_header_and_different_trs(tmp_path):
    from neurofuse.data.datasets.ds000116.layout import read_tr

    root = tmp_path / "bids"
    write_study(root)
    (root / "task-oddball_bold.json").unlink()
    bold = root / "sub-02" / "func" / "sub-02_task-oddball_run-01_bold.nii.gz"
    assert read_tr(bold, root, "oddball") == TR          # from pixdim[4]
    img = nib.load(bold)
    img.header["pixdim"][4] = 2500.0
    img.header.set_xyzt_units("mm", "msec")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header), bold)
    assert read_tr(bold, root, "oddball") == 2.5
    with pytest.raises(ValueError, match=r"different repetition times \[2\.0, 2\.5\]"):
        prepare_eeg_fmri_bids(root, tmp_path / "store")


def test_brain_mask_stored_with_the_runs(tmp_path):
    """The loader stores each subject's brain mask, the EPI mask of its mean BOLD: here the
    bright ellipsoid the BOLD was written with (the truth); StoreRuns reads it back."""
    from nilearn.masking import compute_epi_mask

    from neurofuse.data.datasets.ds000116.mask import mask_name, read_brain_mask
    from neurofuse.systems.transcoder import StoreRuns

    idx = np.indices(GRID).astype(float)
    centre = (np.array(GRID) - 1) / 2
    brain = sum(((idx[i] - centre[i]) / (0.45 * GRID[i])) ** 2 for i in range(3)) <= 1
    assert 0 < brain.sum() < brain.size
    root = tmp_path / "bids"
    truth = write_study(root, subjects=("01",), runs=("01", "02"), brain=brain)
    ds = read_dataset(prepare_eeg_fmri_bids(root, tmp_path / "store", sfreq=100.0))
    mask = read_brain_mask(ds, "sub-01")
    np.testing.assert_array_equal(mask, brain)
    # nilearn on the mean BOLD of both runs, as the loader says it does (the 4x5x3 grid is
    # too small for nilearn's default 2-voxel opening: the loader drops the opening)
    mean = np.concatenate([truth["01", r]["bold"] for r in ("01", "02")], -1).mean(-1)
    ref = compute_epi_mask(nib.Nifti1Image(mean, AFFINE), opening=False)
    np.testing.assert_array_equal(mask, np.asarray(ref.dataobj).astype(bool))
    meta = ds.metadata["eeg_fmri_bids"]["brain_mask"]["sub-01"]
    assert meta["ground_truth"] == mask_name("sub-01") and meta["n_voxels"] == brain.sum()
    assert "compute_epi_mask" in meta["method"] and "without opening" in meta["method"]
    np.testing.assert_array_equal(StoreRuns(ds).brain_mask, brain)
    assert ds.check(full=True) == []
