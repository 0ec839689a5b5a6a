"""The temporal-lobe MEG sensor selection (Table 1) on Vectorview and on other layouts."""

import csv
from pathlib import Path

import mne
import numpy as np
import pytest

from neurofuse.anatomy.sensors import make_meg_info
from neurofuse.evaluation.metrics import temporal_lobe_channels


@pytest.fixture(scope="module")
def vectorview():
    return make_meg_info()


def test_position_reproduces_the_vectorview_selection_by_name(vectorview):
    by_name = temporal_lobe_channels(vectorview)
    assert len(by_name) == 78  # MNE's Left- + Right-temporal selections
    assert temporal_lobe_channels(vectorview, by="position") == by_name


def test_renamed_vectorview_is_selected_by_position(vectorview):
    renamed = vectorview.copy()
    mne.rename_channels(renamed, {n: f"A{i:03d}" for i, n in enumerate(renamed["ch_names"])})
    idx = [vectorview["ch_names"].index(n) for n in temporal_lobe_channels(vectorview)]
    assert temporal_lobe_channels(renamed) == [renamed["ch_names"][i] for i in idx]
    with pytest.raises(ValueError, match="by='position'"):
        temporal_lobe_channels(renamed, by="name")


def _ctf275(dev_head_z):
    """CTF-275 sensors (MNE's canonical geometry, channel names such as MLT11) as an Info."""
    path = Path(mne.__file__).parent / "channels" / "data" / "canonical_meg" / "ctf275.csv"
    with open(path, newline="") as fid:
        rows = list(csv.DictReader(fid))
    info = mne.create_info([r["name"].split("-")[0] for r in rows], 600.0, "mag")
    trans = np.eye(4)
    trans[:3, 3] = (0.0, -0.005, dev_head_z)
    with info._unlock():
        for ch, r in zip(info["chs"], rows):
            ch["loc"][:3] = [float(r[k]) for k in "xyz"]
        info["dev_head_t"] = mne.transforms.Transform("meg", "head", trans)
    return info


@pytest.mark.parametrize("dev_head_z", [0.04, 0.06])
def test_ctf_selection_agrees_with_ctfs_own_temporal_labels(dev_head_z):
    info = _ctf275(dev_head_z)
    picked = set(temporal_lobe_channels(info))
    # CTF names its temporal sensors M{L,R}T..: the reference the positions must agree with
    # (the Neuromag selection reaches a little further up than CTF's labels: not identical)
    ctf_temporal = {n for n in info["ch_names"] if n[2] == "T"}
    hits = len(picked & ctf_temporal)
    assert hits / len(picked) > 0.65 and hits / len(ctf_temporal) > 0.65
    left = sum(n[1] == "L" for n in picked)
    assert left == len(picked) - left  # the helmet is symmetric


def test_no_positions_is_a_clear_error(vectorview):
    info = _ctf275(0.05)
    with info._unlock():
        info["dev_head_t"] = None
    with pytest.raises(ValueError, match="dev_head_t"):
        temporal_lobe_channels(info)
    with pytest.raises(ValueError, match="no MEG channels"):
        temporal_lobe_channels(mne.create_info(["a", "b"], 100.0, "eeg"))
    with pytest.raises(ValueError, match="by"):
        temporal_lobe_channels(vectorview, by="names")
