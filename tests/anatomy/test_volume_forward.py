"""Volume source spaces on a voxel grid and their EEG lead field, against MNE-Python."""

import mne
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.spatial import cKDTree

from neurofuse.anatomy.coordinates import MNI152_TO_MNI305
from neurofuse.anatomy.forward import get_source_space, source_normals, source_positions
from neurofuse.anatomy.subjects import make_template_subject
from neurofuse.anatomy.volume import make_tissue_maps, make_volume_grid
from neurofuse.anatomy.volume_forward import make_volume_forward, make_volume_sources


def _cap():
    names = mne.channels.make_standard_montage("biosemi64").ch_names
    info = mne.create_info(names, 100.0, "eeg")
    info.set_montage(mne.channels.make_standard_montage("colin27_1005"), verbose="error")
    return info


def test_sources_are_the_grey_matter_voxels_with_cortical_normals():
    grid = make_volume_grid((8, 10, 7), 20.0, center=(0, -18, 12))
    src = make_volume_sources(grid, gm_threshold=0.3)
    tissues = make_tissue_maps(grid, MNI152_TO_MNI305)
    expected = np.flatnonzero((tissues["mask"] & (tissues["gm"] >= 0.3)).ravel())
    np.testing.assert_array_equal(src.voxels, expected)
    assert_allclose(src.pos, grid.voxel_centers()[expected] * 1e-3)
    cortex = get_source_space(make_template_subject(meg=False), "oct6")
    _, near = cKDTree(source_positions(cortex)).query(src.pos)
    assert_allclose(src.ori, source_normals(cortex)[near], atol=1e-6)
    assert src.subset([0, 2]).n_sources == 2
    with pytest.raises(ValueError, match="'gm_threshold'"):
        make_volume_sources(grid, gm_threshold=1.5)
    with pytest.raises(ValueError, match="No voxel"):
        make_volume_sources(make_volume_grid((2, 2, 2), 5.0, center=(0, 0, 200)))


def test_lead_field_is_mne_free_forward_projected_on_the_orientations():
    """Fixed lead field = MNE's free-orientation gain (head frame) · the voxel orientation."""
    grid = make_volume_grid((8, 10, 7), 20.0, center=(0, -18, 12))
    src = make_volume_sources(grid, orientation="random", seed=1)
    info = _cap()
    gain, kept, fwd = make_volume_forward(src, info, bem="sphere", reference=None)
    free = mne.convert_forward_solution(fwd, force_fixed=False, surf_ori=False, copy=True,
                                        verbose="error")
    subject = make_template_subject(meg=False)
    rot = np.linalg.inv(subject.trans["trans"])[:3, :3]  # MRI -> head rotation
    ori_head = src.ori[kept] @ rot.T
    g = free["sol"]["data"].reshape(len(info["ch_names"]), -1, 3)
    assert_allclose(gain, np.einsum("cjk,jk->cj", g, ori_head), rtol=1e-4,
                    atol=1e-4 * np.abs(gain).max())
    assert_allclose(np.linalg.norm(src.ori, axis=1), 1.0)
    avg, _, _ = make_volume_forward(src, info, bem="sphere")
    assert_allclose(avg, gain - gain.mean(0))
