"""BIDS EEG + MEG (OpenNeuro ds000117's layout) and EEG-only BIDS into labelled epoch sets.

The MEG+EEG recording is a FIF file with a Vectorview-like MEG info
(:func:`neurofuse.anatomy.make_meg_info`, a subset of locations) and 10-20 EEG channels
(:func:`neurofuse.anatomy.make_eeg_info`), put into BIDS by mne-bids (which copies it).
Each trial carries a response of a known, trial-specific amplitude in both modalities, so
the pairing of EEG and MEG epochs by index is checked against ground truth. The EEG-only
studies are BrainVision, written byte by byte (:mod:`test_ds000116`), and EDF, BDF and EEGLAB
written by MNE's exporter (``edfio`` for EDF/BDF, ``eeglabio`` for EEGLAB: the ``test``
extra).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")
mne_bids = pytest.importorskip("mne_bids")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ds000116 import write_brainvision  # noqa: E402

from neurofuse.data.datasets.ds000117 import (  # noqa: E402
    find_eeg_recordings,
    prepare_ds000117,
    prepare_eeg_meg_bids,
)
from neurofuse.data.datasets.ds000117.recording import match_condition  # noqa: E402
from neurofuse.anatomy.sensors.eeg import _resolve_montage_name  # noqa: E402
from neurofuse.data.store import read_dataset  # noqa: E402

SFREQ = 250.0
EEG_NAMES = ["Fz", "Cz", "Pz", "C3", "C4", "Oz"]
KINDS = ["Famous", "Unfamiliar", "Scrambled"]


def _design(seed, duration=20.0):
    """Trials every 1.0-1.4 s: onsets (s), trial types, amplitudes."""
    rng = np.random.default_rng(seed)
    onsets, t = [], 0.5
    while t < duration - 1.0:
        onsets.append(round(t, 3))
        t += rng.uniform(1.0, 1.4)
    kinds = [KINDS[i] for i in rng.integers(0, 3, len(onsets))]
    amps = rng.uniform(0.5, 2.0, len(onsets))
    return np.array(onsets), kinds, amps


def _signals(n_ch, onsets, amps, scale, seed, duration=20.0):
    """Noise plus, on channel 0, a Gaussian bump 0.1 s after each onset of amplitude amp."""
    rng = np.random.default_rng(seed)
    n = int(duration * SFREQ)
    t = np.arange(n) / SFREQ
    x = 0.01 * rng.standard_normal((n_ch, n))
    for onset, amp in zip(onsets, amps):
        x[0] += amp * np.exp(-0.5 * ((t - onset - 0.1) / 0.02) ** 2)
    return scale * x


def _meg_eeg_raw(seed):
    from neurofuse.anatomy import make_eeg_info, make_meg_info

    meg_info = make_meg_info(SFREQ, n_locations=6)
    eeg_info = make_eeg_info("standard_1020", SFREQ)
    eeg_info = mne.pick_info(eeg_info, [eeg_info["ch_names"].index(c) for c in EEG_NAMES])
    onsets, kinds, amps = _design(seed)
    meg = mne.io.RawArray(_signals(len(meg_info["ch_names"]), onsets, amps, 1e-12, seed),
                          meg_info, verbose="error")
    eeg = mne.io.RawArray(_signals(len(EEG_NAMES), onsets, amps, 1e-5, seed + 50), eeg_info,
                          verbose="error")
    meg.add_channels([eeg], force_update_info=True)
    meg.info["line_freq"] = 50.0
    meg.set_annotations(mne.Annotations(onsets, [0.0] * len(onsets), kinds))
    return meg, onsets, kinds, amps


def write_meg_study(root, subjects=("01",), runs=("01", "02")):
    truth = {}
    for k, sub in enumerate(subjects):
        for r, run in enumerate(runs):
            raw, onsets, kinds, amps = _meg_eeg_raw(10 * k + r)
            src = root.parent / f"src-{sub}-{run}_raw.fif"
            raw.save(src, overwrite=True, verbose="error")
            bp = mne_bids.BIDSPath(subject=sub, session="meg", task="facerecognition", run=run,
                                   datatype="meg", root=root)
            mne_bids.write_raw_bids(mne.io.read_raw_fif(src, verbose="error"), bp,
                                    overwrite=True, verbose="error")
            truth[sub, run] = (onsets, kinds, amps)
    return truth


def test_meg_eeg_study_into_paired_epochs(tmp_path):
    root = tmp_path / "bids"
    truth = write_meg_study(root)
    recs = find_eeg_recordings(root)
    assert list(recs) == ["sub-01"] and len(recs["sub-01"]) == 2
    conditions = {"face": ["Famous", "Unfamiliar"], "scrambled": ["Scrambled"]}
    out = prepare_eeg_meg_bids(root, tmp_path / "store", conditions=conditions, tmin=-0.1,
                               tmax=0.3, baseline=None)
    ds = read_dataset(out)
    assert ds.modalities("sub-01") == ["eeg", "meg"] and ds.tr is None and ds.sfreq == SFREQ
    assert ds.info("sub-01", "eeg")["ch_names"] == EEG_NAMES
    assert len(ds.info("sub-01", "meg")["ch_names"]) == 18
    name = "ses-meg_task-facerecognition_run-02"
    assert ds.epoch_names("sub-01", "eeg") == ds.epoch_names("sub-01", "meg") == [
        "ses-meg_task-facerecognition_run-01", name]
    onsets, kinds, amps = truth["01", "02"]
    eeg = np.asarray(ds.epochs("sub-01", "eeg", name))
    meg = np.asarray(ds.epochs("sub-01", "meg", name))
    assert eeg.shape == (len(onsets), 6, 101) and meg.shape == (len(onsets), 18, 101)
    np.testing.assert_allclose(ds.epoch_events("sub-01", "eeg", name), onsets, atol=1 / SFREQ)
    want = [1 if kd in ("Famous", "Unfamiliar") else 2 for kd in kinds]
    assert list(ds.epoch_labels("sub-01", "meg", name)) == want
    assert ds.epochs_info("sub-01", "eeg", name)["event_id"] == {"face": 1, "scrambled": 2}
    # ground truth: the bump 0.1 s after the event (sample 50 from tmin = -0.1 s) has the
    # trial's amplitude in both modalities, epoch by epoch
    peak = int(round(0.2 * SFREQ))
    np.testing.assert_allclose(eeg[:, 0, peak] / 1e-5, amps, atol=0.05)
    np.testing.assert_allclose(meg[:, 0, peak] / 1e-12, amps, atol=0.05)
    assert ds.check(full=True) == []


# The EEG-only formats: extension -> (the package MNE's exporter needs, bits per sample of an
# integer format or None for float32 samples).
EEG_FORMATS = {".vhdr": (None, None), ".edf": ("edfio", 16), ".bdf": ("edfio", 24),
               ".set": ("eeglabio", None)}


def _require_writer(ext):
    """Skip without the format's writer package, but fail under CI (the ``test`` extra has
    it: a skip there would hide a missing install)."""
    package = EEG_FORMATS[ext][0]
    if package is None or importlib.util.find_spec(package) is not None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{package} is not installed; CI must test {ext} EEG (the 'test' extra).")
    pytest.skip(f"{package} is needed to write {ext} files.")


def _write_eeg_file(path, data, sfreq, onsets, kinds):
    """One EEG recording (V) with its events in the format of ``path``'s extension, read back.

    BrainVision is written byte by byte without markers (its events are set on the recording
    read back); EDF, BDF and EEGLAB by :func:`mne.export.export_raw`, events included (EDF+
    and BDF+ annotations, EEGLAB events), so the events come from the file.
    """
    if path.suffix == ".vhdr":
        write_brainvision(path, data, sfreq, EEG_NAMES)
        raw = mne.io.read_raw_brainvision(path, verbose="error")
        raw.set_annotations(mne.Annotations(onsets, [0.0] * len(onsets), kinds))
        return raw
    src = mne.io.RawArray(data, mne.create_info(EEG_NAMES, sfreq, "eeg"), verbose="error")
    src.set_annotations(mne.Annotations(onsets, [0.0] * len(onsets), kinds))
    mne.export.export_raw(path, src, verbose="error")
    raw = mne.io.read_raw(path, verbose="error")
    assert list(raw.annotations.description) == list(kinds)
    np.testing.assert_allclose(raw.annotations.onset - raw.first_time, onsets, atol=1e-6)
    return raw


def _write_eeg_only(root, sub, seed, sfreq=SFREQ, ext=".vhdr"):
    """A one-run EEG-only BIDS recording (task ``faces``) of ``sub`` in the format ``ext``,
    copied into BIDS by mne-bids; returns the design and the data written (V)."""
    onsets, kinds, amps = _design(seed)
    data = _signals(len(EEG_NAMES), onsets, amps, 1e-5, seed)
    if sfreq != SFREQ:  # the same signals at another rate
        from scipy.signal import resample_poly

        data = resample_poly(data, int(sfreq), int(SFREQ), axis=-1)
    src = root.parent / f"src-{sub}" / f"rec{ext}"
    src.parent.mkdir(parents=True)
    raw = _write_eeg_file(src, data, sfreq, onsets, kinds)
    raw.set_montage(_resolve_montage_name("colin27_1020"), verbose="error")
    raw.info["line_freq"] = 50.0
    bp = mne_bids.BIDSPath(subject=sub, task="faces", run="1", datatype="eeg", root=root)
    mne_bids.write_raw_bids(raw, bp, overwrite=True, verbose="error")
    assert bp.fpath.suffix == ext      # copied, not converted
    return onsets, kinds, amps, data


def test_eeg_only_formats_give_the_written_epochs(tmp_path):
    """One study, one subject per format (BrainVision, EDF, BDF, EEGLAB), all with the same
    signals and events: each is cut into the epochs of the data written, up to its format's
    quantisation, with the events and labels written, and the channels written (names, EEG
    type, the montage's positions through ``electrodes.tsv``)."""
    for ext in EEG_FORMATS:
        _require_writer(ext)
    root = tmp_path / "bids"
    subs = {ext: ext[1:] for ext in EEG_FORMATS}         # sub-vhdr, sub-edf, sub-bdf, sub-set
    for ext, label in subs.items():      # the same design and data (seed 7) in every format
        onsets, kinds, _, data = _write_eeg_only(root, label, 7, ext=ext)
    recs = find_eeg_recordings(root)
    assert {sub: [bp.fpath.suffix for bp in bps] for sub, bps in recs.items()} == {
        f"sub-{label}": [ext] for ext, label in subs.items()}
    out = prepare_eeg_meg_bids(root, tmp_path / "store", tmin=-0.1, tmax=0.3, baseline=None)
    ds = read_dataset(out)
    assert ds.sfreq == SFREQ and ds.check(full=True) == []
    # ground truth: the window [-25, +75] samples around each event's sample, as written
    samples = np.round(onsets * SFREQ).astype(int)
    want = np.stack([data[:, s - 25:s + 76] for s in samples])
    event_id = {k: i + 1 for i, k in enumerate(sorted(set(kinds)))}
    f32 = np.finfo(np.float32).eps * np.abs(data).max()
    name = "task-faces_run-1"
    written = mne.create_info(EEG_NAMES, SFREQ, "eeg").set_montage(
        _resolve_montage_name("colin27_1020"), verbose="error")
    positions = [c["loc"][:3] for c in written["chs"]]      # head frame, m
    for ext, label in subs.items():
        sub = f"sub-{label}"
        assert ds.modalities(sub) == ["eeg"] and ds.epoch_names(sub, "eeg") == [name], ext
        ep = np.asarray(ds.epochs(sub, "eeg", name))
        assert ep.shape == want.shape, ext
        # integer formats: one digital step, the data's range (MNE writes the channel type's
        # physical range) over the symmetric digital range +-(2**(bits - 1) - 1); float32
        # formats: their rounding; and the store's float32 either way
        bits = EEG_FORMATS[ext][1]
        step = np.ptp(data) / (2 ** bits - 2) if bits else f32
        np.testing.assert_allclose(ep, want, rtol=0, atol=step + f32, err_msg=ext)
        np.testing.assert_allclose(ds.epoch_events(sub, "eeg", name), samples / SFREQ,
                                   rtol=0, atol=1e-9, err_msg=ext)
        assert ds.epochs_info(sub, "eeg", name)["event_id"] == event_id, ext
        assert list(ds.epoch_labels(sub, "eeg", name)) == [event_id[k] for k in kinds], ext
        info = ds.info(sub, "eeg")
        assert info["ch_names"] == EEG_NAMES and set(info.get_channel_types()) == {"eeg"}, ext
        np.testing.assert_allclose([c["loc"][:3] for c in info["chs"]], positions,
                                   rtol=0, atol=1e-6, err_msg=ext)


def test_eeg_only_brainvision_resampled(tmp_path):
    root = tmp_path / "bids"
    onsets, kinds, amps, _ = _write_eeg_only(root, "02", 3)
    out = prepare_ds000117(root, tmp_path / "store", sfreq=125.0, tmin=-0.2, tmax=0.4)
    ds = read_dataset(out)
    assert ds.modalities("sub-02") == ["eeg"] and ds.sfreq == 125.0
    name = "task-faces_run-1"
    ep = np.asarray(ds.epochs("sub-02", "eeg", name))
    assert ep.shape == (len(onsets), 6, 76)   # MNE: 151 samples at 250 Hz (tmax included)
    # default conditions: every trial type, sorted, its own label
    info = ds.epochs_info("sub-02", "eeg", name)
    assert info["event_id"] == {k: i + 1 for i, k in enumerate(sorted(set(kinds)))}
    assert list(ds.epoch_labels("sub-02", "eeg", name)) == [info["event_id"][k] for k in kinds]
    # the bump survives resampling with its amplitude (baseline: the 0.2 s before it)
    peak = int(round(0.3 * 125))
    np.testing.assert_allclose(ep[:, 0, peak] / 1e-5, amps, rtol=0.1, atol=0.05)


def test_different_rates_need_sfreq(tmp_path):
    """The store has one rate: recordings at 250 and 200 Hz are refused (after the first one
    was cut, the writer open: nothing is left behind), and accepted with ``sfreq``."""
    root = tmp_path / "bids"
    _write_eeg_only(root, "02", 3)
    _write_eeg_only(root, "03", 4, sfreq=200.0)
    with pytest.raises(ValueError, match="different rates .*250 and 200 Hz.*'sfreq'"):
        prepare_eeg_meg_bids(root, tmp_path / "store")
    assert not (tmp_path / "store").exists() and list(tmp_path.glob("*store*")) == []
    ds = read_dataset(prepare_eeg_meg_bids(root, tmp_path / "store", sfreq=100.0))
    assert ds.subjects == ["sub-02", "sub-03"] and ds.sfreq == 100.0


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        prepare_eeg_meg_bids(tmp_path / "nope", tmp_path / "store")
    root = tmp_path / "bids"
    write_meg_study(root, runs=("01",))
    with pytest.raises(ValueError, match="no event of the conditions"):
        prepare_eeg_meg_bids(root, tmp_path / "store", conditions=["Houses"])
    assert not (tmp_path / "store").exists()
    with pytest.raises(ValueError, match="'tmax'"):
        prepare_eeg_meg_bids(root, tmp_path / "store", tmin=0.5, tmax=0.1)
    with pytest.raises(FileNotFoundError, match=r"subjects \['sub-05'\]"):
        find_eeg_recordings(root, subjects=["05"])


def test_match_condition():
    cond = {"face": ["Famous", "Unfamiliar"], "scrambled": ["Scrambled"]}
    assert match_condition("Famous/First", cond) == "face"
    assert match_condition("Scrambled", cond) == "scrambled"
    assert match_condition("Fam", cond) is None
