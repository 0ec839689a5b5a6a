"""The fMRI r of recorded runs is computed inside the store's brain mask: it equals a hand
numpy computation over the masked voxels, voxels outside the mask do not change it, and a
store without a mask (e.g. a simulated data set copied into a store) is scored over every
voxel as before."""

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from neurofuse.data.datasets.ds000116.mask import write_brain_mask  # noqa: E402
from neurofuse.data.store import DatasetWriter  # noqa: E402
from neurofuse.evaluation.transcoder_pipeline import score_recorded  # noqa: E402
from neurofuse.systems.transcoder import StoreRuns  # noqa: E402

GRID, N_TRS, TR, SFREQ, N_CH = (4, 5, 3), 12, 2.0, 10.0, 3


def _write(path, mask=None, seed=0):
    """A one-subject store: a train and a test run of random EEG and BOLD (+ the mask)."""
    rng = np.random.default_rng(seed)
    n_times = int(N_TRS * TR * SFREQ)
    info = mne.create_info([f"E{i}" for i in range(N_CH)], SFREQ, "eeg")
    with DatasetWriter(path, sfreq=SFREQ, tr=TR) as w:
        for run, split in (("run-1", "train"), ("run-2", "test")):
            w.add_story(run, split=split, n_times=n_times)
        w.add_subject("sub-01", modalities=["eeg", "fmri-volume"])
        w.add_sensors("sub-01", "eeg", info=info, units="V")
        w.add_grid("sub-01", "fmri-volume", affine=np.diag([3.0, 3.0, 3.0, 1.0]))
        for run in ("run-1", "run-2"):
            w.write("sub-01", "eeg", run, rng.standard_normal((1, N_CH, n_times)))
            w.write("sub-01", "fmri-volume", run,
                    100 + rng.standard_normal((1, *GRID, N_TRS)).astype(np.float32))
        if mask is not None:
            write_brain_mask(w, "sub-01", mask)
    return path


def _hand_r(pred, rec):
    """Mean over rows of numpy's r (np.corrcoef), row by row."""
    return float(np.mean([np.corrcoef(p, r)[0, 1] for p, r in zip(pred, rec)]))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("mask")
    mask = np.random.default_rng(1).uniform(size=GRID) < 0.5
    return _write(root / "masked", mask), _write(root / "plain"), mask


def _predictor(outside=None):
    """The recorded test run plus noise; ``outside = (mask, how)`` replaces the voxels outside
    the mask with large noise (``'noise'``) or the recording itself (``'perfect'``)."""
    def predict(ds, run):
        rec = ds.read_run(run, mmap=False)
        rng = np.random.default_rng(7)
        eeg = rec["eeg"] + rng.standard_normal(rec["eeg"].shape)
        fmri = rec["fmri"] + 2.0 * rng.standard_normal(rec["fmri"].shape)
        if outside is not None:
            out = ~outside[0]
            fmri[out] = (rec["fmri"][out] if outside[1] == "perfect"
                         else 1e3 * rng.standard_normal((int(out.sum()), N_TRS)))
        return {"fmri": fmri, "eeg": eeg}
    return predict


def test_fmri_r_inside_the_mask(stores):
    masked, plain, mask = stores
    ds = StoreRuns(masked)
    np.testing.assert_array_equal(ds.brain_mask, mask)
    (row,) = score_recorded(ds, _predictor())
    pred = _predictor()(ds, "run-2")["fmri"].reshape(-1, N_TRS)
    rec = np.asarray(ds.read_run("run-2")["fmri"], float).reshape(-1, N_TRS)
    keep = mask.ravel()
    assert row["fmri_r"] == pytest.approx(_hand_r(pred[keep], rec[keep]), abs=1e-12)
    assert row["fmri_voxels"] == mask.sum() and row["fmri_mask"] == "brain mask"
    # the voxels outside the mask do not change it (here made pure noise, or perfect)
    for garbage in ("noise", "perfect"):
        (other,) = score_recorded(ds, _predictor((mask, garbage)))
        assert other["fmri_r"] == row["fmri_r"] and other["eeg_r"] == row["eeg_r"]
    # ... while they would over every voxel: the mask is what keeps them out
    assert _hand_r(pred, rec) != pytest.approx(row["fmri_r"], abs=1e-3)


def test_store_without_a_mask_scores_every_voxel(stores):
    """As before the mask (simulated data copied into a store keep their results)."""
    _, plain, _ = stores
    ds = StoreRuns(plain)
    assert ds.brain_mask is None
    (row,) = score_recorded(ds, _predictor())
    pred = _predictor()(ds, "run-2")["fmri"].reshape(-1, N_TRS)
    rec = np.asarray(ds.read_run("run-2")["fmri"], float).reshape(-1, N_TRS)
    assert row["fmri_r"] == pytest.approx(_hand_r(pred, rec), abs=1e-12)
    assert row["fmri_voxels"] == np.prod(GRID) and row["fmri_mask"] == "all voxels"


def test_a_mask_of_another_grid_is_refused(tmp_path):
    bad = _write(tmp_path / "bad", np.ones((4, 5, 2), bool))
    with pytest.raises(ValueError, match="brain mask .* has shape"):
        StoreRuns(bad)
