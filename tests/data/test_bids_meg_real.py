"""BIDS MEG studies as they come from real sites (issue 16): recordings already
Maxwell-filtered by MaxFilter, empty-room recordings beside the story recordings, and a
forward solution of the user's own (``--fwd``), checked before any preprocessing.

One subject (sub-01) hears story01 once in a recording marked as Maxwell-filtered (its
``proc_history`` as MNE's ``maxwell_filter`` writes it); the study also holds an empty-room
recording (``sub-emptyroom/ses-*/meg/*_task-noise_meg.fif``) and a noise recording of sub-01
named in its ``_meg.json`` as ``AssociatedEmptyRoom``. ICA is off to keep the tests fast.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

mne = pytest.importorskip("mne")
mne_bids = pytest.importorskip("mne_bids")
pytestmark = pytest.mark.filterwarnings("ignore:No events found or provided")

from test_bids_meg import _nothing_written, _stub_features, _write_stimuli  # noqa: E402
from test_meg import FAST, as_maxfiltered, simulate_raw  # noqa: E402

from neurofuse.data.datasets.bids_meg import (  # noqa: E402
    find_empty_rooms,
    find_meg_recordings,
    prepare_meg_bids,
)
from neurofuse.data.datasets.bids_meg import prepare as bids_prepare  # noqa: E402
from neurofuse.data.store import read_dataset  # noqa: E402
from neurofuse.preprocessing.meg import MEGPreprocessing  # noqa: E402

STORY = {"story01": 3.0}
#: tSSS on (the default), ICA off; the recording is MaxFiltered, so tSSS must be skipped.
CONFIG = MEGPreprocessing(**{**FAST, "ica": False, "audio_channel": None})
ER_DATE = "20231114"


def _write(raw, root, **entities):
    bp = mne_bids.BIDSPath(datatype="meg", root=root, **entities)
    events = mne.find_events(raw, stim_channel="STI101", shortest_event=1, verbose=False)
    mne_bids.write_raw_bids(raw, bp, events=events if len(events) else None,
                            event_id={"story/story01": 1} if len(events) else None,
                            format="FIF", allow_preload=True, overwrite=True, verbose=False)
    return bp


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("realmeg") / "study"
    _write_stimuli(root / "stimuli", STORY)
    raw, _ = simulate_raw([(1, 1.0, 3.0)], 5.0, seed=3)
    raw.set_meas_date(1_700_000_000)
    sss = mne.preprocessing.maxwell_filter(raw.copy().crop(0, 0.5), origin=(0.0, 0.0, 0.04),
                                           coord_frame="head", int_order=6, ext_order=2,
                                           verbose="error")
    story_bp = _write(as_maxfiltered(raw, sss.info["proc_history"]), root, subject="01",
                      task="listening")
    empty, _ = simulate_raw([], 3.0, seed=4, blinks=False)
    empty.set_meas_date(1_700_000_000)
    _write(empty, root, subject="emptyroom", session=ER_DATE, task="noise")
    _write(empty, root, subject="01", task="baseline")
    side = story_bp.copy().update(suffix="meg", extension=".json")
    meta = json.loads(side.fpath.read_text())
    meta["AssociatedEmptyRoom"] = "bids::sub-01/meg/sub-01_task-baseline_meg.fif"
    side.fpath.write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def prepared(study, tmp_path_factory):
    """The study prepared with the default tSSS setting, and with maxwell=False."""
    from neurofuse._logging import catch_logging

    base = tmp_path_factory.mktemp("realmeg-out")
    kw = {"features_fn": _stub_features(), "repeatability": None}
    with catch_logging("info") as log:
        out = prepare_meg_bids(study, base / "ds", preprocessing=CONFIG, **kw)
    off = prepare_meg_bids(study, base / "off", **kw,
                           preprocessing=dataclasses.replace(CONFIG, maxwell=False))
    return {"out": out, "off": off, "log": log.text, "base": base, "kw": kw, "study": study}


def _no_preprocessing(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the error must come before any preprocessing")

    monkeypatch.setattr(bids_prepare, "_process_recording", boom)


# ---------------------------------------------------------------------------------------------
# Empty-room recordings


def test_empty_room_recordings_are_found_and_left_out(study, catch_logs):
    with catch_logs("info") as log:
        recs = find_meg_recordings(study)
    assert list(recs) == ["sub-01"] and [bp.task for bp in recs["sub-01"]] == ["listening"]
    assert "sub-01_task-baseline_meg.fif' is an empty-room recording (named as " \
           "AssociatedEmptyRoom" in log.text
    assert find_empty_rooms(study) == {
        "sub-01/meg/sub-01_task-baseline_meg.fif":
            "named as AssociatedEmptyRoom in a _meg.json sidecar",
        f"sub-emptyroom/ses-{ER_DATE}/meg/sub-emptyroom_ses-{ER_DATE}_task-noise_meg.fif":
            "subject 'emptyroom'"}
    with pytest.raises(FileNotFoundError, match=r"\['sub-emptyroom'\] have only empty-room "
                                                r"recordings.*leave them out of 'subjects'"):
        find_meg_recordings(study, subjects=["emptyroom"])
    with pytest.raises(FileNotFoundError, match="task 'noise'.*Only empty-room recordings "
                                                "matched.*choose the task of the story"):
        find_meg_recordings(study, task="noise")


def test_prepared_store_lists_the_empty_rooms(prepared):
    ds = read_dataset(prepared["out"])
    assert ds.subjects == ["sub-01"] and ds.stories == ["story01"]
    assert sorted(ds.metadata["meg_bids"]["empty_room"]) == [
        "sub-01/meg/sub-01_task-baseline_meg.fif",
        f"sub-emptyroom/ses-{ER_DATE}/meg/sub-emptyroom_ses-{ER_DATE}_task-noise_meg.fif"]
    assert list(ds.metadata["meg_bids"]["recordings"]) == [
        "sub-01/sub-01_task-listening_meg"]
    assert "Empty-room recordings, not prepared as stories" in prepared["log"]


# ---------------------------------------------------------------------------------------------
# Data already Maxwell-filtered


def test_maxfiltered_recording_skips_tsss_with_a_note(prepared):
    assert "'sub-01_task-listening_meg.fif' was already Maxwell-filtered (raw.info" \
           "['proc_history'] records SSS by mne-python" in prepared["log"]
    assert "Set maxwell = false in the preprocessing settings" in prepared["log"]
    ds, off = read_dataset(prepared["out"]), read_dataset(prepared["off"])
    rep = ds.metadata["meg_bids"]["recordings"]["sub-01/sub-01_task-listening_meg"]
    assert rep["maxwell"] is None and rep["maxwell_skipped"]["steps"] == ["SSS"]
    # The same data as with tSSS switched off by hand.
    np.testing.assert_array_equal(ds.meg("sub-01", "story01"), off.meg("sub-01", "story01"))
    assert ds.meg("sub-01", "story01").shape == (1, 306, 150)


# ---------------------------------------------------------------------------------------------
# A forward solution of one's own


@pytest.fixture(scope="module")
def own_fwd(prepared):
    """The template forward of the store, with its lead field doubled (to tell it apart)."""
    fwd = read_dataset(prepared["out"]).forward("sub-01")
    fwd["sol"]["data"] = 2.0 * fwd["sol"]["data"]
    fwd["_orig_sol"] = 2.0 * fwd["_orig_sol"]  # what write_forward_solution writes
    fname = prepared["base"] / "sub-01-fwd.fif"
    mne.write_forward_solution(fname, fwd, overwrite=True, verbose="error")
    return fname


def test_own_forward_is_used(prepared, own_fwd, monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise AssertionError("the forward model must come from the user's file")

    monkeypatch.setattr("neurofuse.anatomy.make_forward", boom)
    out = prepare_meg_bids(_root(prepared), tmp_path / "ds", preprocessing=CONFIG,
                           forward={"01": own_fwd}, **prepared["kw"])
    ds, ref = read_dataset(out), read_dataset(prepared["out"])
    np.testing.assert_allclose(ds.leadfield("sub-01"), 2 * ref.leadfield("sub-01"), rtol=1e-6)
    assert ds.morph("sub-01").shape == (8196, 8196)
    assert (ds.morph("sub-01") != ref.morph("sub-01")).nnz == 0  # the identity
    assert ds.anatomy("sub-01")["forward_file"] == str(own_fwd)
    assert ds.anatomy("sub-01")["kind"] == "template"


def _root(prepared):
    return prepared["study"]


@pytest.fixture(scope="module")
def fwd_8195(own_fwd):
    """The forward with the first left-hemisphere source dropped (8195 sources)."""
    fwd = mne.read_forward_solution(own_fwd, verbose="error")
    lh, rh = (s["vertno"] for s in fwd["src"])
    stc = mne.SourceEstimate(np.zeros((lh.size - 1 + rh.size, 1)), [lh[1:], rh], 0.0, 1.0)
    fname = own_fwd.with_name("sub-01-8195-fwd.fif")
    mne.write_forward_solution(fname, mne.forward.restrict_forward_to_stc(fwd, stc),
                               overwrite=True, verbose="error")
    return fname


def test_own_forward_with_other_sources_is_refused_early(prepared, fwd_8195, monkeypatch,
                                                         tmp_path):
    _no_preprocessing(monkeypatch)
    out = tmp_path / "ds"
    with pytest.raises(ValueError, match=r"Source-space mismatch for sub-01: the forward "
                                         r"solution '.*sub-01-8195-fwd.fif' has 8195 sources "
                                         r"\(4097 \+ 4098\), expected the 8196 \(4098 \+ 4098\) "
                                         r"of the template source space \(fsaverage, oct6\)"
                                         r".*no subjects_dir was given.*mindist=0.*"
                                         r"--subjects-dir"):
        prepare_meg_bids(_root(prepared), out, preprocessing=CONFIG,
                         forward={"sub-01": fwd_8195}, **prepared["kw"])
    _nothing_written(tmp_path, out)


def test_own_forward_errors(prepared, own_fwd, monkeypatch, tmp_path):
    _no_preprocessing(monkeypatch)
    out = tmp_path / "ds"
    kw = {"preprocessing": CONFIG, **prepared["kw"]}
    fwd = mne.read_forward_solution(own_fwd, verbose="error")
    fewer = tmp_path / "fewer-fwd.fif"
    mne.write_forward_solution(fewer, mne.pick_channels_forward(
        fwd, fwd["info"]["ch_names"][:300], verbose="error"), verbose="error")
    with pytest.raises(ValueError, match=r"lacks 6 of the recording's 306 MEG channels"):
        prepare_meg_bids(_root(prepared), out, forward={"sub-01": fewer}, **kw)
    with pytest.raises(FileNotFoundError, match=r"forward\['sub-01'\] = '.*nowhere-fwd.fif' "
                                                r"does not exist"):
        prepare_meg_bids(_root(prepared), out, forward={"sub-01": tmp_path / "nowhere-fwd.fif"},
                         **kw)
    junk = tmp_path / "junk-fwd.fif"
    junk.write_bytes(b"not a fif file")
    with pytest.raises(ValueError, match=r"'.*junk-fwd.fif' is not a readable MNE forward"):
        prepare_meg_bids(_root(prepared), out, forward={"sub-01": junk}, **kw)
    with pytest.raises(ValueError, match=r"'forward' names subjects without recordings: "
                                         r"\['sub-09'\]"):
        prepare_meg_bids(_root(prepared), out, forward={"sub-09": own_fwd}, **kw)
    _nothing_written(tmp_path, out)


def test_fwd_command_line_option(prepared, fwd_8195, monkeypatch, tmp_path, capsys):
    from neurofuse.cli import main

    _no_preprocessing(monkeypatch)
    rc = main(["data", "prepare", "meg-bids", str(_root(prepared)), "--out",
               str(tmp_path / "ds"), "--fwd", f"sub-01={fwd_8195}", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "8195" in err and "sub-01-8195-fwd.fif" in err, err
    assert not (tmp_path / "ds").exists()


def test_own_forward_on_the_subjects_freesurfer_anatomy(prepared, monkeypatch, tmp_path):
    """With the subject's FreeSurfer folder, a forward on its own sources (here 8195 of them)
    is used with a morph from fsaverage onto exactly those sources; no trans file needed (the
    forward's own). The same forward without the folder is refused."""
    from neurofuse.anatomy import make_forward, make_simulated_subject

    sim = make_simulated_subject(1, seed=0, meg=False)  # as test_freesurfer_subject_...
    fs = tmp_path / "freesurfer"
    fs.mkdir()
    (fs / "sub-01").symlink_to(sim.subjects_dir / sim.name, target_is_directory=True)
    bp = find_meg_recordings(_root(prepared))["sub-01"][0]
    info = mne_bids.read_raw_bids(bp, verbose="error").info
    info = mne.pick_info(info, mne.pick_types(info, meg=True, exclude=()))
    fwd = make_forward(dataclasses.replace(sim, meg_info=info))
    lh, rh = (s["vertno"] for s in fwd["src"])
    stc = mne.SourceEstimate(np.zeros((lh.size - 1 + rh.size, 1)), [lh[1:], rh], 0.0, 1.0)
    fwd = mne.forward.restrict_forward_to_stc(fwd, stc)
    fname = tmp_path / "sub-01-own-fwd.fif"
    mne.write_forward_solution(fname, fwd, verbose="error")
    kw = {"preprocessing": CONFIG, "forward": {"sub-01": fname}, **prepared["kw"]}
    out = prepare_meg_bids(_root(prepared), tmp_path / "ds", subjects_dir=fs, **kw)
    ds = read_dataset(out)
    assert ds.anatomy("sub-01")["kind"] == "freesurfer"
    morph = ds.morph("sub-01")
    assert morph.shape == (fwd["nsource"], 8196) == (8195, 8196)
    np.testing.assert_allclose(morph.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(ds.leadfield("sub-01"), fwd["sol"]["data"], rtol=1e-6)
    with pytest.raises(ValueError, match="has 8195 sources.*no subjects_dir was given"):
        prepare_meg_bids(_root(prepared), tmp_path / "ds2", **kw)


def test_associated_empty_room_as_mne_bids_writes_it(tmp_path):
    """mne-bids writes AssociatedEmptyRoom as an absolute path (stale once the dataset
    moves); BIDS URIs and relative paths occur too: the file name decides."""
    from neurofuse.data.datasets.bids_meg.layout import _associated_empty_rooms, _is_empty_room

    folder = tmp_path / "sub-02" / "meg"
    folder.mkdir(parents=True)
    names = ["sub-02_task-a_meg.fif", "sub-02_task-b_meg.fif", "sub-02_task-c_meg.fif"]
    bps = [mne_bids.BIDSPath(subject="02", task=t, suffix="meg", extension=".fif",
                             datatype="meg", root=tmp_path) for t in "abc"]
    (folder / "sub-02_task-a_meg.json").write_text(json.dumps(
        {"AssociatedEmptyRoom": f"/elsewhere/old-copy/sub-02/meg/{names[1]}"}))
    assert _associated_empty_rooms(bps) == {names[1]}
    assert _is_empty_room(bps[1], {names[1]}).startswith("named as AssociatedEmptyRoom")
    assert _is_empty_room(bps[2], {names[1]}) is None
    (folder / "sub-02_task-a_meg.json").write_text(json.dumps(
        {"AssociatedEmptyRoom": [f"bids::sub-02/meg/{names[2]}", f"sub-02/meg/{names[1]}"]}))
    assert _associated_empty_rooms(bps) == {names[1], names[2]}
