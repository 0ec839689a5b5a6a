"""``neurofuse data prepare eeg-fmri-bids|eeg-meg-bids`` through the CLI's main function, on
small BIDS studies written by the loaders' own test helpers: the stores equal what the
library functions write with the same settings, the gradient-artefact refusal is one line
(exit 1, no traceback) naming the option to change, and a store from the EEG–fMRI loader
trains the transcoder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")
pytest.importorskip("mne_bids")
pytest.importorskip("nibabel")

_TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_TESTS / "preprocessing"))
sys.path.insert(0, str(_TESTS / "data"))
from test_ds000116 import write_study  # noqa: E402
from test_ds000117 import write_meg_study  # noqa: E402

from neurofuse.cli import main  # noqa: E402
from neurofuse.data.datasets import prepare_eeg_fmri_bids, prepare_eeg_meg_bids  # noqa: E402
from neurofuse.data.store import read_dataset  # noqa: E402


def _same_store(a, b):
    a, b = read_dataset(a), read_dataset(b)
    assert a.splits == b.splits and a.subjects == b.subjects
    assert (a.sfreq, a.tr) == (b.sfreq, b.tr)
    for sub in a.subjects:
        assert a.modalities(sub) == b.modalities(sub)
        for mod in a.modalities(sub):
            for story in a.subject_stories(sub, mod):
                np.testing.assert_array_equal(a.data(sub, mod, story), b.data(sub, mod, story))
            for name in a.epoch_names(sub, mod):
                np.testing.assert_array_equal(a.epochs(sub, mod, name), b.epochs(sub, mod, name))
                np.testing.assert_array_equal(a.epoch_labels(sub, mod, name),
                                              b.epoch_labels(sub, mod, name))
                assert a.epochs_info(sub, mod, name) == b.epochs_info(sub, mod, name)
    return a


@pytest.fixture(scope="module")
def eeg_fmri_store(tmp_path_factory):
    """Two oddball runs of one subject, prepared by the command (run 2 held out)."""
    root = tmp_path_factory.mktemp("bids116")
    write_study(root / "bids", subjects=("01",), runs=("01", "02"))
    out = root / "cli"
    assert main(["data", "prepare", "eeg-fmri-bids", str(root / "bids"), "--out", str(out),
                 "--sfreq", "100", "--epochs", "-0.1", "0.5", "--task", "oddball",
                 "--splits", "sub-01_task-oddball_run-02=test", "-q"]) == 0
    return root, out


def test_eeg_fmri_bids_command_equals_the_function(eeg_fmri_store, capsys):
    root, out = eeg_fmri_store
    ref = prepare_eeg_fmri_bids(root / "bids", root / "ref", sfreq=100.0, epochs=(-0.1, 0.5),
                                task=["oddball"],
                                splits={"sub-01_task-oddball_run-02": "test"})
    ds = _same_store(out, ref)
    assert ds.splits == {"train": ["sub-01_task-oddball_run-01"],
                         "test": ["sub-01_task-oddball_run-02"]}
    assert ds.epoch_names("sub-01", "eeg")  # --epochs was passed on
    capsys.readouterr()
    # an existing store without --overwrite: an explained error; with it: rewritten
    assert main(["data", "prepare", "eeg-fmri-bids", str(root / "bids"), "--out", str(ref),
                 "-q"]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["data", "prepare", "eeg-fmri-bids", str(root / "bids"), "--out", str(ref),
                 "--sfreq", "100", "--volume-event", "none", "--overwrite", "-q"]) == 0
    meta = read_dataset(ref).metadata["eeg_fmri_bids"]
    assert meta["volume_event"] is None


def test_gradient_artifact_refusal_is_one_line(tmp_path, capsys):
    root = tmp_path / "bids"
    write_study(root, subjects=("01",), artifact=("01",))
    assert main(["data", "prepare", "eeg-fmri-bids", str(root), "--out",
                 str(tmp_path / "store"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("neurofuse data prepare eeg-fmri-bids: error: The EEG")
    assert "gradient artefact" in err
    assert "raise --gradient-threshold" in err and "threshold 3" in err
    assert not (tmp_path / "store").exists()
    # the check off: written, with a warning
    assert main(["data", "prepare", "eeg-fmri-bids", str(root), "--out",
                 str(tmp_path / "store"), "--gradient-threshold", "inf", "-q"]) == 0
    assert read_dataset(tmp_path / "store").subjects == ["sub-01"]


def test_transcoder_trains_on_the_loaders_store(eeg_fmri_store, tmp_path):
    _, store = eeg_fmri_store
    cfg = tmp_path / "fit.json"
    cfg.write_text(json.dumps({"preset": "tiny", "train": {"epochs": 1},
                               "data": {"n_val": 0, "fmri_pool": [2, 2, 2]}}))
    assert main(["transcoder", "evaluate", "--data", str(store), "--out", str(tmp_path / "ev"),
                 "--fit", str(cfg), "-q"]) == 0
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    (row,) = res["rows"]
    assert row["n_runs"] == 1 and -1 <= row["fmri_r"] <= 1 and -1 <= row["eeg_r"] <= 1
    model = json.loads((tmp_path / "ev" / "fit" / "model" / "model.json").read_text())
    assert model["data"]["test_runs"] == ["sub-01_task-oddball_run-02"]
    assert model["data"]["train_runs"] == ["sub-01_task-oddball_run-01"]


def test_eeg_meg_bids_command_equals_the_function(tmp_path, capsys):
    root = tmp_path / "bids"
    write_meg_study(root, runs=("01",))
    assert main(["data", "prepare", "eeg-meg-bids", str(root), "--out", str(tmp_path / "cli"),
                 "--conditions", "face=Famous,Unfamiliar", "scrambled=Scrambled",
                 "--tmin", "-0.1", "--tmax", "0.3", "--no-baseline", "-q"]) == 0
    ref = prepare_eeg_meg_bids(root, tmp_path / "ref", tmin=-0.1, tmax=0.3, baseline=None,
                               conditions={"face": ["Famous", "Unfamiliar"],
                                           "scrambled": ["Scrambled"]})
    ds = _same_store(tmp_path / "cli", ref)
    (name,) = ds.epoch_names("sub-01", "eeg")
    assert ds.epochs_info("sub-01", "eeg", name)["event_id"] == {"face": 1, "scrambled": 2}
    # a baseline interval with an open start, and plain trial types as labels
    assert main(["data", "prepare", "eeg-meg-bids", str(root), "--out", str(tmp_path / "b"),
                 "--conditions", "Famous", "Scrambled", "--baseline", "none", "0",
                 "--tmin", "-0.1", "--tmax", "0.3", "-q"]) == 0
    ref = prepare_eeg_meg_bids(root, tmp_path / "rb", tmin=-0.1, tmax=0.3,
                               baseline=(None, 0.0), conditions=["Famous", "Scrambled"])
    _same_store(tmp_path / "b", ref)
    capsys.readouterr()
    assert main(["data", "prepare", "eeg-meg-bids", str(root), "--out", str(tmp_path / "x"),
                 "--conditions", "face=Famous", "Scrambled", "-q"]) == 1
    assert "not a mix" in capsys.readouterr().err
