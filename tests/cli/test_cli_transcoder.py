"""``neurofuse transcoder simulate|fit|transcode|evaluate``: exit codes, files, row schema, and
the messages for bad input, on a tiny simulated data set (spherical head: seconds)."""

import json

import mne
import nibabel as nib
import numpy as np
import pytest

import neurofuse.simulation.eeg_fmri as eeg_fmri
from neurofuse.cli import main

KEYS = {"scenario", "method", "fmri_r", "eeg_r", "source_r", "source_kind", "source_truth"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny data set written by the command, then a model fitted by the command."""
    root = tmp_path_factory.mktemp("dcli")
    mp = pytest.MonkeyPatch()
    make = eeg_fmri.make_config  # the sphere head: no BEM to build on a cold cache
    mp.setattr(eeg_fmri, "make_config", lambda *a, **k: make(*a, bem="sphere", **k))
    try:
        code = main(["transcoder", "simulate", "tiny", "--out", str(root / "data"),
                     "--scenario", "snr10", "--n-runs", "3", "--seed", "3", "-q"])
    finally:
        mp.undo()
    assert code == 0
    code = main(["transcoder", "fit", "tiny", "--data", str(root / "data"), "--out",
                 str(root / "fit"), "-q"])
    assert code == 0
    return root


def test_simulate_writes_and_resumes(world, capsys):
    ds = eeg_fmri.read_dataset(world / "data")
    assert ds.runs == ["run-000", "run-001", "run-002"]
    assert ds.config.seed == 3 and ds.config.eeg_snr == 10.0
    assert ds.config.slice_order == "interleaved"
    assert ds.manifest["split"]["test"] == ["run-002"]
    before = (world / "data" / "runs" / "run-000" / "eeg.npy").stat().st_mtime_ns
    mp = pytest.MonkeyPatch()
    make = eeg_fmri.make_config
    mp.setattr(eeg_fmri, "make_config", lambda *a, **k: make(*a, bem="sphere", **k))
    try:  # same command again: nothing recomputed
        assert main(["transcoder", "simulate", "tiny", "--out", str(world / "data"),
                     "--scenario", "snr10", "--n-runs", "3", "--seed", "3", "-q"]) == 0
        # another configuration in the same folder: a clear error, exit 1
        assert main(["transcoder", "simulate", "tiny", "--out", str(world / "data"),
                     "--scenario", "noise_free", "--n-runs", "3", "-q"]) == 1
    finally:
        mp.undo()
    assert (world / "data" / "runs" / "run-000" / "eeg.npy").stat().st_mtime_ns == before
    assert "another configuration" in capsys.readouterr().err


def test_fit_writes_model(world):
    assert (world / "fit" / "model" / "model.json").is_file()
    assert (world / "fit" / "model" / "model.safetensors").is_file()
    lines = (world / "fit" / "history.csv").read_text().splitlines()
    assert len(lines) == 1 + 2  # header + the tiny preset's 2 epochs


def test_transcode_writes_sources_eeg_fmri(world, tmp_path):
    ds = eeg_fmri.read_dataset(world / "data")
    out = tmp_path / "tc"
    assert main(["transcoder", "transcode", str(world / "fit" / "model"), "--data",
                 str(world / "data"), "--run", "2", "--out", str(out), "-q"]) == 0
    n_src, n_times = int(ds.manifest["n_sources"]), ds.config.n_times
    for path in ("eeg", "fmri"):
        stc = mne.read_source_estimate(out / f"run-002_sources-from-{path}-vl.stc")
        assert isinstance(stc, mne.VolSourceEstimate)
        assert stc.data.shape == (n_src, n_times)
        assert stc.sfreq == pytest.approx(ds.config.sfreq)
        img = nib.load(out / f"run-002_sources-from-{path}.nii.gz")
        assert img.shape == (*ds.config.grid_shape, n_times)
        # the NIfTI holds the same estimate at the source voxels
        flat = np.asarray(img.dataobj).reshape(-1, n_times)[ds.truth("source_voxels")]
        np.testing.assert_allclose(flat, stc.data, rtol=1e-5, atol=1e-6 * np.abs(flat).max())
    eeg = np.load(out / "run-002_eeg-from-fmri.npy", allow_pickle=False)
    assert eeg.shape == (len(ds.manifest["channels"]), n_times)
    fmri = nib.load(out / "run-002_fmri-from-eeg.nii.gz")
    assert fmri.shape == (*ds.config.grid_shape, ds.config.n_trs)
    np.testing.assert_allclose(fmri.affine, np.asarray(ds.manifest["grid"]["affine"]))


def test_evaluate_rows_and_report(world, tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["transcoder", "evaluate", "--data", str(world / "data"), "--out", str(out),
                 "--model", str(world / "fit" / "model"), "--methods", "MNE", "physics",
                 "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert (out / "report.html").stat().st_size > 1000
    rows = res["rows"]
    assert all(KEYS <= set(r) for r in rows)
    assert {r["method"] for r in rows} == {"transcoder", "MNE", "physics"}
    assert {r["source_truth"] for r in rows} == {"latent", "erp"}
    assert {r["scenario"] for r in rows} == {"snr10"}
    for r in rows:
        assert r["source_kind"] in ("oscillatory", "sparse")
        assert -1 <= r["source_r"] <= 1
        assert r["n_runs"] == 1 and r["source_r_ci"] == [None, None]  # one held-out run
    # MNE estimates P = X * d: scored against it, it beats the latent truth's score
    mne_rows = {(r["source_truth"], r["source_kind"]): r["source_r"] for r in rows
                if r["method"] == "MNE"}
    assert mne_rows["erp", "sparse"] > mne_rows["latent", "sparse"]
    assert len(res["learned"]["hrf_true"]) == len(res["learned"]["hrf_learned"]) == 16
    assert "transcoder" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["transcode", "{fit}", "--run", "9"], ["'--run'", "run-002", "got '9'"]),
    (["transcode", "{data}", "--run", "1"], ["not a neurofuse model folder", "fit"]),
    (["fit", "tiny", "--level", "subject"], ["'--group' is required", "group model"]),
    (["evaluate", "--model", "{data}"], ["not a neurofuse model folder"]),
])
def test_bad_input_is_explained(world, tmp_path, capsys, argv, words):
    argv = [a.replace("{fit}", str(world / "fit" / "model")).replace("{data}", str(world))
            for a in argv]
    code = main(["transcoder", *argv[:1], *argv[1:2], "--data", str(world / "data"),
                 "--out", str(tmp_path / "o"), *argv[2:], "-q"]
                if argv[0] != "evaluate" else
                ["transcoder", "evaluate", "--data", str(world / "data"), "--out",
                 str(tmp_path / "o"), *argv[1:], "-q"])
    assert code == 1
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err


def test_bad_choice_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["transcoder", "simulate", "tiny", "--out", "x", "--scenario", "snr5"])
    assert exc.value.code == 2
    assert "snr10" in capsys.readouterr().err


@pytest.mark.slow  # ~25 s of CPU, ~1 min on a busy machine
def test_demo_two_scenarios_one_report(tmp_path, monkeypatch, capsys):
    make = eeg_fmri.make_config
    monkeypatch.setattr(eeg_fmri, "make_config", lambda *a, **k: make(*a, bem="sphere", **k))
    out = tmp_path / "demo"
    assert main(["transcoder", "demo", "--out", str(out), "--size", "tiny", "--n-runs", "2",
                 "--fit", "tiny", "-q"]) == 0
    assert (out / "report.html").is_file()
    for scen in ("noise_free", "snr10"):
        rows = json.loads((out / scen / "eval" / "results.json").read_text())["rows"]
        assert {r["scenario"] for r in rows} == {scen}
        assert {r["method"] for r in rows} == {"transcoder", "physics", "MNE", "dSPM",
                                               "eLORETA"}
    assert "noise_free transcoder" in capsys.readouterr().out
