"""The store's modality kinds: sensor / source / volume, continuous and epoched, round trips."""

import json

import mne
import numpy as np
import pytest

from neurofuse.data.store import (
    MANIFEST,
    MODALITY_REGISTRY,
    SCHEMA_VERSION,
    DatasetWriter,
    expected_n_trs,
    read_dataset,
)

SFREQ, TR = 50.0, 2.0
STREAMS = {"word": [0, 3]}
N_SRC = 7
AFFINE = np.array([[3.0, 0, 0, -90], [0, 3.0, 0, -126], [0, 0, 3.5, -72], [0, 0, 0, 1]])
GRID = (4, 5, 3)


def _eeg_info(n=4):
    return mne.create_info([f"EEG{i:03d}" for i in range(n)], SFREQ, "eeg")


def test_registry_maps_every_modality_to_a_kind():
    kinds = {name: (m.kind.name, m.kind.spatial_axes, m.kind.sampling)
             for name, m in MODALITY_REGISTRY.items()}
    assert kinds == {"meg": ("sensor", ("channel",), "sfreq"),
                     "eeg": ("sensor", ("channel",), "sfreq"),
                     "ecog": ("sensor", ("channel",), "sfreq"),
                     "fmri": ("source", ("source",), "tr"),
                     "fmri-volume": ("volume", ("x", "y", "z"), "tr")}
    assert MODALITY_REGISTRY["fmri-volume"].kind.shape_doc() == \
        "(n_repeats, n_x, n_y, n_z, n_times)"


def _write(path, rng, n_times=300):
    """One subject with EEG (+ lead field), fMRI on sources and volumes; runs and epochs."""
    n_trs = expected_n_trs(n_times, SFREQ, TR)
    ref = {"feat": rng.standard_normal((n_times, 3)).astype(np.float32),
           "eeg": rng.standard_normal((2, 4, n_times)).astype(np.float32),
           "lf": rng.standard_normal((4, N_SRC)).astype(np.float32),
           "fmri": rng.standard_normal((1, N_SRC, n_trs)).astype(np.float32),
           "vol": rng.standard_normal((2, *GRID, n_trs)).astype(np.float32),
           "ep_eeg": rng.standard_normal((6, 4, 25)).astype(np.float32),
           "ev_eeg": np.sort(rng.uniform(0, 5, 6)),
           "lab_eeg": np.array([1, 2, 1, 2, 2, 1]),
           "ep_src": rng.standard_normal((3, N_SRC, 2)).astype(np.float32),
           "ep_vol": rng.standard_normal((3, *GRID, 1)).astype(np.float32),
           "ev_vol": np.array([2.0, 4.0, 8.0])}
    with DatasetWriter(path, sfreq=SFREQ, tr=TR, feature_streams=STREAMS) as w:
        w.add_story("s1", split="train", n_times=n_times)
        w.write_features("s1", ref["feat"])
        w.add_subject("sub-01", modalities=["eeg", "fmri", "fmri-volume"], n_sources=N_SRC,
                      cnr={"eeg": 2.0})
        w.add_sensors("sub-01", "eeg", info=_eeg_info(), leadfield=ref["lf"], units="V")
        w.add_grid("sub-01", "fmri-volume", affine=AFFINE)
        w.write("sub-01", "eeg", "s1", ref["eeg"])
        w.write_fmri("sub-01", "s1", ref["fmri"][0])
        w.write("sub-01", "fmri-volume", "s1", ref["vol"])
        w.write_epochs("sub-01", "eeg", "run-1", ref["ep_eeg"], events=ref["ev_eeg"],
                       labels=ref["lab_eeg"], event_id={"face": 1, "house": 2}, tmin=-0.1,
                       story="s1")
        w.write_epochs("sub-01", "fmri", "trials", ref["ep_src"], events=[1.0, 2.0, 3.0])
        w.write_epochs("sub-01", "fmri-volume", "trials", ref["ep_vol"], events=ref["ev_vol"],
                       labels=[0, 1, 0])
    return ref


def test_round_trip_every_kind_continuous_and_epoched(tmp_path):
    import nibabel as nib

    ref = _write(tmp_path / "ds", np.random.default_rng(0))
    ds = read_dataset(tmp_path / "ds")
    assert ds.schema_version == SCHEMA_VERSION
    assert ds.modalities("sub-01") == ["eeg", "fmri", "fmri-volume"]
    # continuous: sensor / source / volume
    np.testing.assert_array_equal(ds.data("sub-01", "eeg", "s1"), ref["eeg"])
    np.testing.assert_allclose(ds.data("sub-01", "eeg", "s1", average=True),
                               ref["eeg"].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(ds.fmri("sub-01", "s1"), ref["fmri"])
    np.testing.assert_array_equal(ds.data("sub-01", "fmri-volume", "s1"), ref["vol"])
    assert ds.spatial_shape("sub-01", "fmri-volume") == GRID
    assert ds.spatial_shape("sub-01", "eeg") == (4,)
    assert ds.spatial_shape("sub-01", "fmri") == (N_SRC,)
    # sensor description
    assert ds.info("sub-01", "eeg")["ch_names"] == _eeg_info()["ch_names"]
    np.testing.assert_array_equal(ds.leadfield("sub-01", "eeg"), ref["lf"])
    assert ds.modality_info("sub-01", "eeg")["units"] == "V"
    assert ds.cnr("sub-01") == {"eeg": 2.0}
    # volume as NIfTI
    img = ds.image("sub-01", "fmri-volume", "s1", repeat=1)
    assert isinstance(img, nib.Nifti1Image)
    np.testing.assert_array_equal(img.affine, AFFINE)
    np.testing.assert_array_equal(np.asarray(img.dataobj), ref["vol"][1])
    np.testing.assert_allclose(img.header.get_zooms(), (3.0, 3.0, 3.5, TR))
    again = nib.Nifti1Image.from_bytes(img.to_bytes())  # a valid NIfTI file
    np.testing.assert_array_equal(again.get_fdata(), ref["vol"][1])
    mean = ds.image("sub-01", "fmri-volume", "s1", repeat=None)
    np.testing.assert_allclose(mean.get_fdata(), ref["vol"].mean(0), rtol=1e-6)
    # epochs: sensor (labelled, named) / source (unlabelled) / volume
    assert ds.epoch_names("sub-01", "eeg") == ["run-1"]
    np.testing.assert_array_equal(ds.epochs("sub-01", "eeg", "run-1"), ref["ep_eeg"])
    np.testing.assert_array_equal(ds.epoch_events("sub-01", "eeg", "run-1"), ref["ev_eeg"])
    np.testing.assert_array_equal(ds.epoch_labels("sub-01", "eeg", "run-1"), ref["lab_eeg"])
    assert ds.epochs_info("sub-01", "eeg", "run-1") == {
        "n_epochs": 6, "n_times": 25, "sfreq": SFREQ, "tmin": -0.1, "story": "s1",
        "event_id": {"face": 1, "house": 2}, "labels": True}
    np.testing.assert_array_equal(ds.epochs("sub-01", "fmri", "trials"), ref["ep_src"])
    assert ds.epoch_labels("sub-01", "fmri", "trials") is None
    assert ds.epochs_info("sub-01", "fmri", "trials")["sfreq"] == 1 / TR
    np.testing.assert_array_equal(ds.epochs("sub-01", "fmri-volume", "trials"), ref["ep_vol"])
    np.testing.assert_array_equal(ds.epoch_events("sub-01", "fmri-volume", "trials"),
                                  ref["ev_vol"])
    np.testing.assert_array_equal(ds.epoch_labels("sub-01", "fmri-volume", "trials"), [0, 1, 0])
    # MNE epochs: same data, events on the sample grid, label names
    epochs = ds.to_mne_epochs("sub-01", "eeg", "run-1")
    np.testing.assert_allclose(epochs.get_data(), ref["ep_eeg"], rtol=1e-6)
    np.testing.assert_array_equal(epochs.events[:, 0], np.round(ref["ev_eeg"] * SFREQ))
    np.testing.assert_array_equal(epochs.events[:, 2], ref["lab_eeg"])
    assert epochs.event_id == {"face": 1, "house": 2} and epochs.tmin == pytest.approx(-0.1)
    summary = ds.summary()
    json.dumps(summary, allow_nan=False)
    assert summary["subjects"]["sub-01"]["n_epochs"] == {"eeg": 6, "fmri": 3, "fmri-volume": 3}
    assert summary["subjects"]["sub-01"]["n_channels"] == 4


def test_reads_are_lazy_memmaps(tmp_path):
    _write(tmp_path / "ds", np.random.default_rng(1))
    ds = read_dataset(tmp_path / "ds")
    arrays = [ds.data("sub-01", "eeg", "s1"), ds.data("sub-01", "fmri-volume", "s1"),
              ds.epochs("sub-01", "eeg", "run-1"), ds.epochs("sub-01", "fmri-volume", "trials"),
              ds.leadfield("sub-01", "eeg"),
              ds.image("sub-01", "fmri-volume", "s1").dataobj]
    for arr in arrays:
        assert isinstance(arr, np.memmap) and not arr.flags.writeable
    # opening checks the headers (a corrupted array is named); check=False reads only the
    # manifest and a corrupted array fails only when asked for
    (tmp_path / "ds" / "subjects" / "sub-01" / "eeg" / "epochs" / "run-1.npy").write_bytes(b"x")
    with pytest.raises(ValueError, match="eeg/epochs/run-1.npy: file: expected a .npy array"):
        read_dataset(tmp_path / "ds")
    ds = read_dataset(tmp_path / "ds", check=False)
    ds.data("sub-01", "eeg", "s1")
    with pytest.raises(ValueError):
        ds.epochs("sub-01", "eeg", "run-1")
    (tmp_path / "ds" / "subjects" / "sub-01" / "eeg" / "epochs" / "run-1-labels.npy").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete.*run-1-labels.npy"):
        read_dataset(tmp_path / "ds")


def test_store_without_features_or_tr(tmp_path):
    """System B's shape: EEG + MEG epochs with labels, no stimulus and no fMRI."""
    rng = np.random.default_rng(2)
    meg_info = mne.create_info(["MEG0111", "MEG0112"], SFREQ, ["mag", "grad"])
    ep = {m: rng.standard_normal((5, n, 10)).astype(np.float32) for m, n in (("eeg", 4),
                                                                            ("meg", 2))}
    with DatasetWriter(tmp_path / "b", sfreq=SFREQ) as w:
        w.add_subject("sub-01", modalities=["eeg", "meg"])
        w.add_sensors("sub-01", "eeg", info=_eeg_info())
        w.add_sensors("sub-01", "meg", info=meg_info)
        for mod in ("eeg", "meg"):
            w.write_epochs("sub-01", mod, "run-1", ep[mod], events=np.arange(5.0),
                           labels=[0, 1, 2, 1, 0])
        with pytest.raises(ValueError, match="no feature streams"):
            w.add_story("s1", split="train", n_times=10)
            w.write_features("s1", np.zeros((10, 1)))
        with pytest.raises(ValueError, match="tr=None"):
            w.add_subject("sub-02", modalities=["fmri"])
    ds = read_dataset(tmp_path / "b")
    assert ds.tr is None and ds.n_features == 0 and ds.feature_streams == {}
    for mod in ("eeg", "meg"):
        np.testing.assert_array_equal(ds.epochs("sub-01", mod, "run-1"), ep[mod])
    assert ds.info("sub-01", "meg")["ch_names"] == ["MEG0111", "MEG0112"]
    with pytest.raises(ValueError, match="stores no stimulus features"):
        ds.features("s1")
    # `neurofuse data info` describes such a store (no TR, epochs per modality).
    from neurofuse.cli._utils import format_summary

    text = format_summary(ds.summary(), ds.path)
    assert "no TR" in text and "eeg: 5 epochs" in text and "meg: 5 epochs" in text


def test_failures_leave_nothing(tmp_path):
    rng = np.random.default_rng(3)
    with pytest.raises(RuntimeError, match="crash"):
        with DatasetWriter(tmp_path / "ds", sfreq=SFREQ, tr=TR, feature_streams=STREAMS) as w:
            w.add_story("s1", split="train", n_times=100)
            w.write_features("s1", np.zeros((100, 3)))
            w.add_subject("sub-01", modalities=["eeg"])
            w.add_sensors("sub-01", "eeg", info=_eeg_info())
            w.write_epochs("sub-01", "eeg", "e", rng.standard_normal((2, 4, 5)), events=[0, 1])
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no grid affine.*add_grid"):
        with DatasetWriter(tmp_path / "ds", sfreq=SFREQ, tr=TR, feature_streams=STREAMS) as w:
            w.add_story("s1", split="train", n_times=100)
            w.write_features("s1", np.zeros((100, 3)))
            w.add_subject("sub-01", modalities=["fmri-volume"])
            w.write("sub-01", "fmri-volume", "s1", np.zeros((*GRID, 1)))
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def w(tmp_path):
    with pytest.raises(_Abort):
        with DatasetWriter(tmp_path / "ds", sfreq=SFREQ, tr=TR, feature_streams=STREAMS) as wr:
            wr.add_story("s1", split="train", n_times=100)
            wr.add_subject("sub-01", modalities=["eeg", "meg", "fmri-volume"])
            yield wr
            raise _Abort
    assert list(tmp_path.iterdir()) == []


class _Abort(Exception):
    pass


def test_validation(w):
    with pytest.raises(ValueError, match="one sensor modality.*has 2.*add_sensors"):
        w.add_subject("sub-02", modalities=["eeg", "meg"], info=_eeg_info())
    with pytest.raises(ValueError, match="'info' must hold EEG channels only"):
        w.add_sensors("sub-01", "eeg", info=mne.create_info(2, SFREQ, "mag"))
    with pytest.raises(ValueError, match="not a sensor one"):
        w.add_sensors("sub-01", "fmri-volume", info=_eeg_info())
    with pytest.raises(ValueError, match=r"'affine' must have shape \(4, 4\)"):
        w.add_grid("sub-01", "fmri-volume", affine=np.eye(3))
    with pytest.raises(ValueError, match="invertible"):
        w.add_grid("sub-01", "fmri-volume", affine=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="not a volume modality"):
        w.add_grid("sub-01", "eeg", affine=AFFINE)
    w.add_sensors("sub-01", "eeg", info=_eeg_info())
    w.add_grid("sub-01", "fmri-volume", affine=AFFINE, shape=GRID)
    with pytest.raises(ValueError, match="has 3 channels, expected 4"):
        w.write("sub-01", "eeg", "s1", np.zeros((1, 3, 100)))
    with pytest.raises(ValueError, match=r"has grid \(4, 5, 2\), expected \(4, 5, 3\)"):
        w.write("sub-01", "fmri-volume", "s1", np.zeros((1, 4, 5, 2, 1)))
    with pytest.raises(ValueError, match=r"inconsistent length.*2 samples.*is 1"):
        w.write("sub-01", "fmri-volume", "s1", np.zeros((1, *GRID, 2)))
    with pytest.raises(ValueError, match=r"shape \(n_epochs, n_channels, n_times\)"):
        w.write_epochs("sub-01", "eeg", "e", np.zeros((4, 100)), events=[0] * 4)
    data = np.zeros((3, 4, 10))
    with pytest.raises(ValueError, match=r"'events'.*shape \(n_epochs,\) = \(3,\)"):
        w.write_epochs("sub-01", "eeg", "e", data, events=[0.0, 1.0])
    with pytest.raises(ValueError, match="labels \\[3\\] have no name"):
        w.write_epochs("sub-01", "eeg", "e", data, events=[0, 1, 2], labels=[1, 2, 3],
                       event_id={"a": 1, "b": 2})
    with pytest.raises(ValueError, match="'labels'.*integers"):
        w.write_epochs("sub-01", "eeg", "e", data, events=[0, 1, 2], labels=[0.5, 1, 2])
    with pytest.raises(ValueError, match=r"must lie in story 's1' \(\[0, 2\) s\)"):
        w.write_epochs("sub-01", "eeg", "e", data, events=[0, 1, 2.5], story="s1")
    with pytest.raises(ValueError, match="'modality'.*got 'fmri'"):
        w.write_epochs("sub-01", "fmri", "e", data, events=[0, 1, 2])
    w.write_epochs("sub-01", "eeg", "e", data, events=[0, 1, 2])
    with pytest.raises(ValueError, match="already written"):
        w.write_epochs("sub-01", "eeg", "e", data, events=[0, 1, 2])
    with pytest.raises(ValueError, match="has 4 values but the subject has 60 voxels"):
        w.write_repeatability("sub-01", "fmri-volume", np.zeros(4))


def test_manifest_describes_each_modality(tmp_path):
    _write(tmp_path / "ds", np.random.default_rng(4))
    sub = json.loads((tmp_path / "ds" / MANIFEST).read_text())["subjects"]["sub-01"]
    info = sub["modality_info"]
    assert {m: (e["kind"], e["shape"]) for m, e in info.items()} == {
        "eeg": ("sensor", [4]), "fmri": ("source", [N_SRC]), "fmri-volume": ("volume", list(GRID))}
    assert info["eeg"]["files"] == {"info": "eeg-info.fif", "leadfield": "eeg-leadfield.npy"}
    np.testing.assert_array_equal(info["fmri-volume"]["affine"], AFFINE)
    assert sub["n_repeats"] == {"eeg": {"s1": 2}, "fmri": {"s1": 1}, "fmri-volume": {"s1": 2}}
    assert set(sub["epochs"]) == {"eeg", "fmri", "fmri-volume"}
