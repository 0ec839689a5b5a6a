"""Whole-volume and time-resolved targets of MEG2fMRI (beyond the paper): the pairing against
the slice targets it generalises, paired sets on disk, the baselines on volumes, physics cut
like the targets, and NIfTI export on the grid's affine."""

import nibabel as nib
import numpy as np
import pytest
from skimage.transform import resize

from neurofuse.systems.meg2fmri.baselines import RidgeSlices, mean_slice
from neurofuse.systems.meg2fmri.config import PairingConfig
from neurofuse.systems.meg2fmri.export import volumes_to_nifti
from neurofuse.systems.meg2fmri.paired import PairedSet, concatenate_paired, read_paired
from neurofuse.systems.meg2fmri.pairing import pair_run
from neurofuse.systems.meg2fmri.physics import PhysicsSlices, event_targets

SFREQ, TR = 10.0, 0.5
BASE = dict(n_samples=8, n_volumes=8, time_index=2)
SHAPE = (12, 10, 5)


@pytest.fixture(scope="module")
def run():
    """MEG (6, 400) and float32 volumes (12, 10, 5, 80) on one clock, 9 event onsets."""
    rng = np.random.default_rng(0)
    meg = rng.standard_normal((6, 400)) * rng.uniform(1, 5, (6, 1)) + 3
    vol = (100 + 10 * rng.standard_normal((*SHAPE, 80))).astype(np.float32)
    onsets = np.sort(rng.uniform(0, 35, 9))
    return meg, vol, onsets


def _pair(run, **kw):
    meg, vol, onsets = run
    return pair_run(meg, SFREQ, vol, TR, onsets, PairingConfig(**{**BASE, **kw}))


def test_volume_target_at_the_slice_z_is_the_slice_target_before_resizing(run):
    vol = _pair(run, target="volume")
    assert vol.Y.shape == (len(vol), *SHAPE) and vol.Y.dtype == np.float32
    np.testing.assert_array_equal(vol.slice, -1)
    for z in (0, 3):
        native = _pair(run, slice_selection=z, image_shape=SHAPE[:2])
        np.testing.assert_array_equal(vol.Y[..., z], native.Y)  # exact: same arithmetic
        small = _pair(run, slice_selection=z, image_shape=(6, 4))
        ref = resize(vol.Y[..., z].astype(np.float64), (len(vol), 6, 4), order=1, mode="edge",
                     anti_aliasing=False)
        np.testing.assert_allclose(small.Y, ref, atol=1e-6)
    # the run's min-max, at volume k + time_index
    meg, volumes, _ = run
    norm = (volumes.astype(np.float64) - volumes.min()) / (volumes.max() - volumes.min())
    np.testing.assert_allclose(vol.Y, np.moveaxis(norm[..., vol.volume + 2], -1, 0),
                               atol=1e-6)
    np.testing.assert_array_equal(vol.X, _pair(run, slice_selection=0).X)


def test_sequence_frames_are_the_volumes_after_the_event(run):
    seq = _pair(run, target="sequence", n_frames=3, frame_stride=2)
    vol = _pair(run, target="volume")
    assert seq.Y.shape == (len(vol), 3, *SHAPE)
    for j in range(3):
        at = _pair(run, target="volume", time_index=2 + 2 * j)
        np.testing.assert_array_equal(seq.Y[:, j], at.Y)
    np.testing.assert_array_equal(seq.Y[:, 0], vol.Y)
    per_image = _pair(run, target="sequence", n_frames=2, image_norm="image").Y
    np.testing.assert_allclose(per_image.min(axis=(2, 3, 4)), 0)
    np.testing.assert_allclose(per_image.max(axis=(2, 3, 4)), 1)


def test_config_of_volume_targets():
    assert "target" not in PairingConfig().to_dict()  # the paper's config is as it was
    cfg = PairingConfig(**BASE, target="sequence", n_frames=3, frame_stride=2)
    assert PairingConfig.from_dict(cfg.to_dict()) == cfg
    np.testing.assert_array_equal(cfg.frame_offsets, [2, 4, 6])
    with pytest.raises(ValueError, match="target"):
        PairingConfig(target="slab")
    with pytest.raises(ValueError, match="'n_frames' is for target='sequence'"):
        PairingConfig(target="volume", n_frames=2)
    with pytest.raises(ValueError, match="must be < n_volumes = 8"):
        PairingConfig(**BASE, target="sequence", n_frames=4, frame_stride=2)
    with pytest.raises(ValueError, match="only used with target='slice'"):
        pair_run(np.zeros((2, 100)), SFREQ, np.ones((2, 2, 2, 20)), TR, [1.0],
                 PairingConfig(**BASE, target="volume"), slice_index=0)


def test_paired_volumes_and_sequences_round_trip(run, tmp_path):
    for kw in ({"target": "volume"}, {"target": "sequence", "n_frames": 2}):
        paired = _pair(run, **kw)
        back = read_paired(paired.save(tmp_path / kw["target"]))
        np.testing.assert_array_equal(back.Y, paired.Y)
        assert back.config == paired.config and back.config["target"] == kw["target"]
        both = concatenate_paired([paired, paired.take([0, 1])])
        assert both.Y.shape == (len(paired) + 2, *paired.Y.shape[1:])
        assert kw["target"][:6] in repr(paired)
    vol = _pair(run, target="volume")
    other = PairedSet(**{**_fields(vol), "Y": np.zeros((len(vol), 4, 4, 4))})
    with pytest.raises(ValueError, match="cannot be stacked"):
        concatenate_paired([vol, other])
    with pytest.raises(ValueError, match=r"n_frames, n_x, n_y, n_z\)"):
        PairedSet(**{**_fields(vol), "Y": np.zeros((len(vol), 1, 2, 2, 2, 2))})


def _fields(p):
    return {k: getattr(p, k) for k in ("X", "Y", "subject", "story", "onset", "sample",
                                       "volume", "slice", "config")}


def test_baselines_on_volumes_equal_their_flattened_fit():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 5))
    Y = rng.random((30, 2, 4, 3, 2))
    groups = np.repeat(["a", "b", "c"], 10)
    np.testing.assert_allclose(mean_slice(Y), Y.mean(0), rtol=1e-6)
    ridge = RidgeSlices().fit(X, Y, groups)
    flat = RidgeSlices().fit(X, Y.reshape(30, -1, 1), groups)
    pred = ridge.predict(X[:4])
    assert pred.shape == (4, 2, 4, 3, 2)
    np.testing.assert_allclose(pred.reshape(4, -1), flat.predict(X[:4])[..., 0], rtol=1e-6)
    # physics: mean + a * change recovers a known scale on volumes
    mean = Y.mean(0)
    change = rng.standard_normal((30, 2, 4, 3, 2))
    model = PhysicsSlices(mean).fit(change, mean + 0.3 * change)
    assert model.scale_ == pytest.approx(0.3)
    np.testing.assert_allclose(model.predict(change[:2]), mean + 0.3 * change[:2], rtol=1e-6)
    with pytest.raises(ValueError, match="change"):
        model.predict(change[:, 0])


def test_event_targets_cut_volumes_like_the_pairing(run):
    meg, vol, onsets = run
    cfg = PairingConfig(**BASE, target="sequence", n_frames=2, frame_stride=3)
    paired = pair_run(meg, SFREQ, vol, TR, onsets, cfg)
    cut = event_targets(vol, paired.slice, paired.volume, cfg)
    assert cut.shape == paired.Y.shape
    norm = (cut - vol.min()) / (vol.max() - vol.min())
    np.testing.assert_allclose(norm, paired.Y, atol=1e-6)
    one = event_targets(vol, paired.slice, paired.volume,
                        PairingConfig(**BASE, target="volume"))
    np.testing.assert_array_equal(one, cut[:, 0])


def test_volumes_to_nifti_keeps_the_grid_affine(tmp_path):
    rng = np.random.default_rng(3)
    affine = np.array([[-6.0, 0, 0, 90], [0, 6, 0, -126], [0, 0, 6, -72], [0, 0, 0, 1]])
    volumes = rng.random((3, 5, 4, 3)).astype(np.float32)
    img = volumes_to_nifti(volumes, affine, tr=1.42)
    nib.save(img, tmp_path / "v.nii.gz")
    back = nib.load(tmp_path / "v.nii.gz")
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_array_equal(np.moveaxis(back.get_fdata(), -1, 0), volumes)
    assert back.header.get_zooms() == pytest.approx((6, 6, 6, 1.42))
    # voxel (i, j, k) of the image is voxel (i, j, k) of the grid: same scanner position
    np.testing.assert_allclose(nib.affines.apply_affine(back.affine, [2, 1, 0]),
                               affine[:3, :3] @ [2, 1, 0] + affine[:3, 3])
    with pytest.raises(ValueError, match="n_volumes, n_x, n_y, n_z"):
        volumes_to_nifti(volumes[0], affine)
