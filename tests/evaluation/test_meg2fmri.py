"""System C end to end on a tiny paired world: pairs, the cGAN and every baseline on held-out
subjects, caching, and the CLI from a store to NIfTI."""

import json

import nibabel as nib
import numpy as np
import pytest

from neurofuse.cli.main import main
from neurofuse.data import read_dataset
from neurofuse.evaluation.meg2fmri import METHODS, evaluate_meg2fmri, summary_line
from neurofuse.systems.meg2fmri import load_model, read_paired, synthesize
from neurofuse.systems.meg2fmri.baselines import shuffle_rows
from neurofuse.systems.meg2fmri.export import slice_affine


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Four paired subjects (two held out), one training and one test story of 60 s."""
    from neurofuse.simulation.study import StudyConfig, simulate_study

    config = StudyConfig.resolve({"preset": "meg2fmri-tiny", "n_paired_subjects": 4})
    return simulate_study(config, tmp_path_factory.mktemp("c") / "world")


@pytest.fixture(scope="module")
def evaluated(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "eval"
    return out, evaluate_meg2fmri(world, out, fit_config="tiny")


def test_every_method_is_scored_on_held_out_subjects(world, evaluated):
    out, res = evaluated
    assert [r["method"] for r in res["rows"]] == list(METHODS)
    assert res["held_out"] == ["S03", "S04"] and res["train_subjects"] == ["S01", "S02"]
    for row in res["rows"]:
        assert np.isfinite([row["mse"], row["ssim"], row["activation_r"]]).all(), row
    pairs = {k: read_paired(out / "pairs" / f"{k}.npz") for k in ("train", "calib", "test")}
    # held-out subjects never train anything; training subjects never score
    assert set(pairs["train"].subjects).isdisjoint(res["held_out"])
    assert set(pairs["calib"].subjects).isdisjoint(res["held_out"])
    assert set(pairs["test"].subjects) == set(res["held_out"])
    assert res["n_pairs"]["test"] == len(pairs["test"]) > 0
    # the mean-slice row is the mean training slice scored by hand
    mean = pairs["train"].Y.mean(0)
    row = res["rows"][1]
    assert row["method"] == "mean_slice" and row["activation_r"] == 0.0
    np.testing.assert_allclose(row["mse"], np.mean((pairs["test"].Y - mean) ** 2), rtol=1e-5)
    cgan = res["rows"][0]
    beats = cgan["mse"] < row["mse"] and cgan["ssim"] > row["ssim"]
    assert ("does NOT beat" not in summary_line(res)) == beats


def test_physics_tracks_the_true_bold_change(evaluated):
    """MNE → envelope → HRF → voxels is physics: its activation follows the true change."""
    _, res = evaluated
    assert set(res["truth_r"]) == set(METHODS)
    assert res["truth_r"]["mean_slice"] == 0.0
    assert res["truth_r"]["physics"] > 0.1


def test_shuffled_control_feeds_each_event_another_events_meg(evaluated):
    out, _ = evaluated
    test = read_paired(out / "pairs" / "test.npz")
    model = load_model(out / "cgan" / "model")
    with np.load(out / "predictions.npz") as z:
        np.testing.assert_allclose(z["cgan"], synthesize(model, test.X), atol=1e-6)
        order = shuffle_rows(len(test), 0)
        np.testing.assert_allclose(z["cgan_shuffled"], synthesize(model, test.X[order]),
                                   atol=1e-6)
        assert not np.allclose(z["cgan"], z["cgan_shuffled"])


def test_a_second_run_reuses_the_outputs_and_other_settings_are_refused(world, evaluated):
    out, res = evaluated
    stamp = (out / "cgan" / "model" / "model.safetensors").stat().st_mtime_ns
    again = evaluate_meg2fmri(world, out, fit_config="tiny")
    assert again["rows"] == res["rows"]
    assert (out / "cgan" / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"other settings \(seed: 0 there, 1 now\)"):
        evaluate_meg2fmri(world, out, fit_config="tiny", seed=1)
    # the cGAN's training settings, whatever names them; not the device
    with pytest.raises(ValueError, match=r"cGAN .*differing: train\.lr\)"):
        evaluate_meg2fmri(world, out, fit_config={"preset": "tiny", "train": {"lr": 0.5}})
    again = evaluate_meg2fmri(world, out, fit_config={"preset": "tiny",
                                                      "train": {"device": "cpu"}})
    assert again["rows"] == res["rows"]
    assert json.loads((out / "results.json").read_text())["rows"] == res["rows"]


def test_cli_prepare_fit_synthesize(world, tmp_path):
    pairs = tmp_path / "pairs.npz"
    assert main(["meg2fmri", "prepare", "--data", str(world), "--out", str(pairs),
                 "--subjects", "S01", "S02", "-q"]) == 0
    assert main(["meg2fmri", "fit", "tiny", "--train", str(pairs), "--out",
                 str(tmp_path / "fit"), "-q"]) == 0
    assert main(["meg2fmri", "synthesize", str(tmp_path / "fit" / "model"), "--pairs",
                 str(pairs), "--data", str(world), "--out", str(tmp_path / "nii"), "-q"]) == 0
    paired = read_paired(pairs)
    ds = read_dataset(world)
    files = sorted((tmp_path / "nii").glob("*.nii.gz"))
    assert len(files) == len({(s, z) for s, z in zip(paired.subject, paired.slice)})
    img = nib.load(files[0])
    subject, z = files[0].name.split("_")[0], int(files[0].name.split("-")[1][:2])
    n = int(np.sum((paired.subject == subject) & (paired.slice == z)))
    assert img.shape == (32, 32, 1, n)
    np.testing.assert_allclose(img.affine, slice_affine(
        ds.affine(subject, "fmri-volume"), ds.spatial_shape(subject, "fmri-volume"),
        (32, 32), z), rtol=1e-6)


# -- whole volumes and sequences (beyond the paper) -------------------------------------------
@pytest.mark.slow  # ~60 s: the 3-D cGAN, ridge to every voxel, physics on 4 subjects
def test_whole_volume_evaluation_scores_every_method_in_3d(world, tmp_path):
    """target='volume': the 3-D cGAN and every baseline on held-out subjects, same rows."""
    out = tmp_path / "eval-volume"
    res = evaluate_meg2fmri(world, out, fit_config="tiny", pairing={"target": "volume"})
    assert [r["method"] for r in res["rows"]] == list(METHODS) and res["target"] == "volume"
    for row in res["rows"]:
        assert set(row) == {"method", "mse", "ssim", "activation_r"}
        assert np.isfinite([row["mse"], row["ssim"], row["activation_r"]]).all(), row
    ds = read_dataset(world)
    grid = tuple(ds.spatial_shape("S03", "fmri-volume"))
    test, train = (read_paired(out / "pairs" / f"{k}.npz") for k in ("test", "train"))
    assert test.Y.shape == (len(test), *grid) and set(test.subjects) == set(res["held_out"])
    mean = train.Y.mean(0)
    row = res["rows"][1]
    np.testing.assert_allclose(row["mse"], np.mean((test.Y - mean) ** 2), rtol=1e-5)
    assert row["activation_r"] == 0.0 and res["truth_r"]["mean_slice"] == 0.0
    with np.load(out / "predictions.npz") as z:
        assert all(z[m].shape == test.Y.shape for m in z.files)
        np.testing.assert_allclose(z["cgan"], synthesize(load_model(out / "cgan" / "model"),
                                                         test.X), atol=1e-6)
    assert res["truth_r"]["physics"] > 0.1  # physics follows the true change in 3-D too
    assert "mean training volume" in summary_line(res) and "paper" not in summary_line(res)


def test_cli_sequence_prepare_fit_synthesize_nifti(world, tmp_path):
    pairs = tmp_path / "seq.npz"
    assert main(["meg2fmri", "prepare", "--data", str(world), "--out", str(pairs),
                 "--subjects", "S01", "--target", "sequence", "--frames", "2",
                 "--frame-stride", "3", "-q"]) == 0
    paired = read_paired(pairs)
    ds = read_dataset(world)
    grid = tuple(ds.spatial_shape("S01", "fmri-volume"))
    assert paired.Y.shape == (len(paired), 2, *grid) and paired.config["frame_stride"] == 3
    assert main(["meg2fmri", "fit", "tiny", "--train", str(pairs), "--out",
                 str(tmp_path / "fit"), "-q"]) == 0
    assert load_model(tmp_path / "fit" / "model").config.n_frames == 2
    assert main(["meg2fmri", "synthesize", str(tmp_path / "fit" / "model"), "--pairs",
                 str(pairs), "--data", str(world), "--out", str(tmp_path / "nii"), "-q"]) == 0
    files = sorted((tmp_path / "nii").glob("S01_event-*_synthesized.nii.gz"))
    assert len(files) == len(paired)
    img = nib.load(files[0])
    assert img.shape == (*grid, 2)
    np.testing.assert_allclose(img.affine, ds.affine("S01", "fmri-volume"), rtol=1e-6)
    assert img.header.get_zooms()[3] == pytest.approx(3 * ds.tr)
    np.testing.assert_allclose(np.moveaxis(img.get_fdata(), -1, 0),
                               synthesize(tmp_path / "fit" / "model", paired.X[:1])[0],
                               atol=1e-6)
