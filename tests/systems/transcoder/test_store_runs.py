"""System D on a dataset store: a simulated EEG–fMRI data set copied into a store (with
DatasetWriter, as the ds000116 loader writes one: ``eeg`` + ``fmri-volume`` stories) must be
read, reduced and trained on exactly as the simulated data set itself (the reference); the
store's own rules (split, TR x sfreq, one subject, runs of different lengths) are checked;
fit, transcode and evaluate run end to end through the CLI on the store and evaluate scores
only the transcodings, against a hand computation with scipy."""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

mne = pytest.importorskip("mne")
nib = pytest.importorskip("nibabel")

from neurofuse.data.store import DatasetWriter, read_dataset  # noqa: E402
from neurofuse.simulation.eeg_fmri import make_config, simulate_dataset  # noqa: E402
from neurofuse.systems.transcoder import (StoreRuns, TranscoderData, fit,  # noqa: E402
                                          open_eeg_fmri)

TINY1 = {"preset": "tiny", "train": {"epochs": 1}, "data": {"n_val": 0}}


def to_store(sim, out, *, subjects=("sub-01",), cut=None, sfreq=None, split=None):
    """Copy a simulated data set's runs into a dataset store (one story per run).

    ``cut``: ``{run: n_trs}`` shortens runs; ``sfreq`` overrides the store's rate (the
    arrays are not resampled: for the TR x sfreq check only); ``split``: ``{run: split}``.
    """
    cfg, man = sim.config, sim.manifest
    sfreq = cfg.sfreq if sfreq is None else sfreq
    info = mne.create_info(list(man["channels"]), sfreq, "eeg")
    with DatasetWriter(out, sfreq=sfreq, tr=cfg.tr, feature_streams=None) as w:
        for run in sim.runs:
            n_trs = (cut or {}).get(run, cfg.n_trs)
            w.add_story(run, split=(split or {}).get(
                run, "test" if run in man["split"]["test"] else "train"),
                n_times=n_trs * cfg.n_per_tr)
        for sub in subjects:
            w.add_subject(sub, modalities=["eeg", "fmri-volume"])
            w.add_sensors(sub, "eeg", info=info, units="V")
            w.add_grid(sub, "fmri-volume", affine=np.asarray(man["grid"]["affine"]))
            for run in sim.runs:
                n_trs = (cut or {}).get(run, cfg.n_trs)
                data = sim.read_run(run)
                w.write(sub, "eeg", run, np.asarray(data["eeg"])[None, :, :n_trs * cfg.n_per_tr])
                n_vol = int(n_trs * cfg.n_per_tr // (sfreq * cfg.tr))  # = n_trs at cfg.sfreq
                w.write(sub, "fmri-volume", run, np.asarray(data["fmri"])[None, ..., :n_vol])
    return out


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Four 20-s runs (10 TRs) of the tiny grid: 3 train, 1 test."""
    cfg = make_config("snr10", "tiny", bem="sphere", duration=20.0)
    return simulate_dataset(tmp_path_factory.mktemp("d") / "ds", cfg, 4)


@pytest.fixture(scope="module")
def store(sim, tmp_path_factory):
    return to_store(sim, tmp_path_factory.mktemp("s") / "store")


def test_store_runs_present_the_simulated_runs(sim, store):
    runs = open_eeg_fmri(store)
    assert isinstance(runs, StoreRuns) and runs.has_truth is False
    cfg = sim.config
    assert runs.runs == sim.runs and runs.subject == "sub-01"
    for name in ("tr", "sfreq", "n_per_tr", "n_trs", "n_times"):
        assert getattr(runs.config, name) == getattr(cfg, name), name
    assert runs.config.grid_shape == tuple(cfg.grid_shape)
    assert_allclose(runs.config.voxel_size, cfg.voxel_size)
    assert runs.manifest["split"] == {k: sim.manifest["split"][k] for k in ("train", "test")}
    assert runs.manifest["channels"] == list(sim.manifest["channels"])
    for run in sim.runs[:2]:
        a, b = runs.read_run(run), sim.read_run(run)
        assert_array_equal(a["eeg"], b["eeg"]) and assert_array_equal(a["fmri"], b["fmri"])
    # the reduction the transcoder trains on is the simulated data set's, item by item
    ref, got = TranscoderData(sim, 5, {"n_val": 1}), TranscoderData(runs, 5, {"n_val": 1})
    assert (got.pool, got.volume_shape, got.n_channels) == (ref.pool, ref.volume_shape,
                                                             ref.n_channels)
    assert got.items("train") == ref.items("train") and got.items("test") == ref.items("test")
    assert got.val_runs == ref.val_runs
    for (e1, f1, s1), (e2, f2, s2) in zip(
            (got.load(i, "test") for i in got.items("test") + got.items("train")),
            (ref.load(i, "test") for i in ref.items("test") + ref.items("train"))):
        assert_array_equal(e1, e2) and assert_array_equal(f1, f2) and s1 == s2
    with pytest.raises(RuntimeError, match="test split"):
        got.load(got.items("test")[0], "train")


def test_fit_on_a_store_equals_fit_on_the_simulated_data_set(sim, store, tmp_path):
    h_sim = fit(sim, tmp_path / "sim", config=TINY1)
    h_store = fit(store, tmp_path / "store", config=TINY1)
    assert len(h_store) == 1
    for key in ("train_loss", "train_eeg2fmri", "train_fmri2eeg"):
        assert h_store[0][key] == pytest.approx(h_sim[0][key], rel=1e-6), key
    meta = json.loads((tmp_path / "store" / "model" / "model.json").read_text())
    assert meta["data"]["test_runs"] == sim.manifest["split"]["test"]
    assert meta["data"]["dataset"] == str(store)


def test_store_rules(sim, tmp_path):
    cut = {sim.runs[0]: 8, sim.runs[2]: 9}
    runs = StoreRuns(to_store(sim, tmp_path / "cut", cut=cut))
    assert runs.config.n_trs == 8 and runs.run_n_trs[sim.runs[1]] == sim.config.n_trs
    data = runs.read_run(sim.runs[1])
    assert data["fmri"].shape[-1] == 8 and data["eeg"].shape[-1] == 8 * sim.config.n_per_tr
    assert_array_equal(data["eeg"], np.asarray(sim.read_run(sim.runs[1])["eeg"])[:, :data[
        "eeg"].shape[-1]])
    # val stories train (after the train ones); other splits are not used
    split = {sim.runs[0]: "val"}
    runs = StoreRuns(to_store(sim, tmp_path / "val", split=split))
    assert runs.manifest["split"]["train"] == [*sim.runs[1:3], sim.runs[0]]
    two = to_store(sim, tmp_path / "two", subjects=("sub-01", "sub-02"))
    with pytest.raises(ValueError, match="'subject' is needed"):
        StoreRuns(two)
    assert StoreRuns(read_dataset(two), "sub-02").subject == "sub-02"
    with pytest.raises(ValueError, match="'subject' must be a subject"):
        StoreRuns(two, "sub-03")
    with pytest.raises(ValueError, match="whole number"):
        StoreRuns(to_store(sim, tmp_path / "rate", sfreq=sim.config.sfreq + 0.3))
    with pytest.raises(ValueError, match="applies to a dataset store only"):
        open_eeg_fmri(sim.path, "sub-01")
    with pytest.raises(FileNotFoundError, match="neither"):
        open_eeg_fmri(tmp_path)


def _pearson_mean(pred, rec):
    """Mean over rows of scipy's Pearson r, rows constant in either left out."""
    from scipy.stats import pearsonr

    keep = (np.ptp(pred, -1) > 0) & (np.ptp(rec, -1) > 0)
    return float(np.mean([pearsonr(p, r)[0] for p, r in zip(pred[keep], rec[keep])]))


def test_cli_fit_transcode_evaluate_on_a_store(sim, store, tmp_path, capsys):
    from neurofuse.cli import main

    cfg_file = tmp_path / "tiny1.json"
    cfg_file.write_text(json.dumps(TINY1))
    assert main(["transcoder", "fit", str(cfg_file), "--data", str(store), "--out",
                 str(tmp_path / "fit"), "--subject", "sub-01", "-q"]) == 0
    model = tmp_path / "fit" / "model"
    run = sim.manifest["split"]["test"][0]
    assert main(["transcoder", "transcode", str(model), "--data", str(store), "--run", run,
                 "--out", str(tmp_path / "tc"), "-q"]) == 0
    runs, cfg = StoreRuns(store), sim.config
    rec = runs.read_run(run)
    img = nib.load(tmp_path / "tc" / f"{run}_fmri-from-eeg.nii.gz")
    assert img.shape == (*cfg.grid_shape, cfg.n_trs)
    assert_allclose(img.affine, runs.manifest["grid"]["affine"], atol=1e-5)
    assert img.header.get_zooms()[3] == pytest.approx(cfg.tr)
    eeg = np.load(tmp_path / "tc" / f"{run}_eeg-from-fmri.npy")
    assert eeg.shape == rec["eeg"].shape
    pool = TranscoderData(runs, 5, {}).pool
    src = nib.load(tmp_path / "tc" / f"{run}_sources-from-eeg.nii.gz")
    gshape = tuple(-(-n // p) for n, p in zip(cfg.grid_shape, pool))
    assert src.shape == (*gshape, cfg.n_trs * 5)
    # a pooled voxel's centre is the mean of its full-resolution voxels' centres
    aff = np.asarray(runs.manifest["grid"]["affine"])
    centres = aff[:3, :3] @ np.indices(pool).reshape(3, -1) + aff[:3, 3:4]
    assert_allclose(src.affine[:3, 3], centres.mean(1), atol=1e-4)

    out = tmp_path / "eval"
    assert main(["transcoder", "evaluate", "--data", str(store), "--out", str(out),
                 "--model", str(model), "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert (out / "report.html").is_file()
    assert "ground truth" in res["note"] and res["learned"] is None
    (row,) = res["rows"]
    assert row["method"] == "transcoder" and row["source_r"] is None and row["n_runs"] == 1
    fmri = np.asarray(img.dataobj, np.float64).reshape(-1, cfg.n_trs)
    assert row["fmri_r"] == pytest.approx(
        _pearson_mean(fmri, np.asarray(rec["fmri"], np.float64).reshape(-1, cfg.n_trs)),
        abs=1e-4)  # the NIfTI holds float32
    assert row["eeg_r"] == pytest.approx(_pearson_mean(eeg.astype(float), rec["eeg"]), abs=1e-4)
    assert "fMRI r" in capsys.readouterr().out

    # what needs ground truth is refused with a reason
    assert main(["transcoder", "evaluate", "--data", str(store), "--out", str(out),
                 "--model", str(model), "--methods", "MNE", "-q"]) == 1
    assert "true lead field" in capsys.readouterr().err
    assert main(["transcoder", "fit", "tiny", "--data", str(store), "--out",
                 str(tmp_path / "sub"), "--level", "subject", "--group", str(model), "-q"]) == 1
    # the subject level epochs at the runs' events: this store (a simulated copy) has none
    assert "has an event" in capsys.readouterr().err
