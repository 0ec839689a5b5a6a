"""Template anatomy, subjects, source spaces, lead fields and morphs against MNE-Python."""

from pathlib import Path

import mne
import nibabel as nib
import numpy as np
import pytest
import scipy.sparse
from numpy.testing import assert_allclose

from neurofuse.anatomy.forward import (
    check_leadfield,
    check_morph,
    get_leadfield,
    get_source_space,
    make_forward,
    make_morph,
    read_forward,
    source_positions,
)
from neurofuse.anatomy.subjects import (
    make_simulated_subject,
    make_template_subject,
    read_subject,
)
from neurofuse.anatomy.surfaces import (
    make_ico_sphere,
    radial_distances,
    resample_surface_radially,
)
from neurofuse.anatomy.template import get_template_subjects_dir


@pytest.fixture(scope="module")
def template():
    return make_template_subject()


@pytest.fixture(scope="module")
def sim1():
    return make_simulated_subject(1, seed=0)


def test_template_source_space_has_8196_sources(template):
    src = get_source_space(template, "oct6")
    assert [s["nuse"] for s in src] == [4098, 4098]
    # Vertex numbers index the fsaverage5 mesh (first 10242 vertices of full fsaverage).
    assert all(s["np"] == 10242 and s["vertno"].max() < 10242 for s in src)
    assert len(template.meg_info["ch_names"]) == 306


def test_ico_sphere_matches_mne_icosahedra():
    rr, tris = make_ico_sphere(3)
    assert rr.shape == (642, 3) and tris.shape == (1280, 3)
    assert_allclose(np.linalg.norm(rr, axis=1), 1.0, atol=1e-6)
    # outward orientation: triangle normals point away from the centre
    nn = np.cross(rr[tris[:, 1]] - rr[tris[:, 0]], rr[tris[:, 2]] - rr[tris[:, 0]])
    assert (np.einsum("ij,ij->i", nn, rr[tris].mean(1)) > 0).all()


def test_radial_resampling_of_a_sphere_is_exact_at_vertices():
    # Analytic limit: resampling a fine sphere of radius 80 onto a coarse grid gives radius 80
    # up to the chord error of the fine mesh (< 0.1 %).
    fine, fine_tris = make_ico_sphere(5)
    center = np.array([3.0, -2.0, 5.0])
    rr, tris = resample_surface_radially(center + 80 * fine, fine_tris, grade=3, center=center)
    dist = np.linalg.norm(rr - center, axis=1)
    assert dist.max() <= 80 + 1e-9 and dist.min() > 80 * 0.999


def test_bem_shells_are_nested():
    sd = get_template_subjects_dir()
    center = np.array([0.0, -20.0, 5.0])
    dirs, _ = make_ico_sphere(3)
    radii = []
    for name in ("inner_skull", "outer_skull", "outer_skin"):
        rr, tris = nib.freesurfer.read_geometry(sd / "fsaverage" / "bem" / f"{name}.surf")
        radii.append(radial_distances(rr, tris, dirs, center))
    assert (radii[1] - radii[0] >= 2 - 1e-6).all()
    assert (radii[2] - radii[1] >= 1.9).all()


def test_leadfield_equals_mne_direct(template):
    fwd = make_forward(template)
    ours = get_leadfield(fwd)
    assert ours.shape == (306, 8196)
    # The same inputs straight through MNE-Python, without our cache.
    sd = template.subjects_dir
    src = mne.setup_source_space("fsaverage", "oct6", subjects_dir=sd, add_dist=False, verbose="error")
    model = mne.make_bem_model("fsaverage", ico=4, conductivity=(0.3,), subjects_dir=sd, verbose="error")
    bem = mne.make_bem_solution(model, verbose="error")
    ref = mne.make_forward_solution(template.meg_info, template.trans, src, bem, meg=True, eeg=False,
                                    mindist=0.0, verbose="error")
    ref = mne.convert_forward_solution(ref, surf_ori=True, force_fixed=True, use_cps=True, verbose="error")
    assert ref["sol"]["data"].shape == ours.shape
    assert_allclose(ours, ref["sol"]["data"], rtol=1e-6, atol=1e-6 * np.abs(ours).max())
    assert fwd["sol"]["row_names"] == template.meg_info["ch_names"]


def test_warm_cache_returns_identical_leadfield(template):
    from neurofuse._io import get_cache_dir

    first = get_leadfield(make_forward(template))
    files = sorted((get_cache_dir() / "forward" / "fwd").glob("*-fwd.fif"))
    assert files, "the forward model was not cached"
    # No temporary leftovers from the atomic writes.
    assert not list((get_cache_dir() / "forward").rglob(".tmp-*"))
    second = get_leadfield(make_forward(template))
    np.testing.assert_array_equal(first, second)


def test_sphere_model_fallback_agrees_with_bem_for_meg(template):
    # MEG is nearly insensitive to the conductor's shape: a fitted sphere and the BEM give
    # strongly correlated lead-field columns (physics check, not a self-comparison).
    lf_bem = get_leadfield(make_forward(template, bem="bem"))
    lf_sph = get_leadfield(make_forward(template, bem="sphere"))
    mags = mne.pick_types(template.meg_info, meg="mag")
    a, b = lf_bem[mags], lf_sph[mags]
    a = (a - a.mean(0)) / np.linalg.norm(a - a.mean(0), axis=0)
    b = (b - b.mean(0)) / np.linalg.norm(b - b.mean(0), axis=0)
    assert np.median((a * b).sum(0)) > 0.9


def test_eeg_three_layer_forward():
    sub = make_template_subject(meg=False, eeg="standard_1020")
    fwd = make_forward(sub, meg=False, eeg=True)
    lf = get_leadfield(fwd)
    assert lf.shape == (len(sub.eeg_info["ch_names"]), 8196)
    assert np.isfinite(lf).all()
    # Against a 3-layer sphere fitted to the same head: topographies strongly correlated.
    sph = get_leadfield(make_forward(sub, meg=False, eeg=True, bem="sphere"))
    a = lf - lf.mean(0)
    b = sph - sph.mean(0)
    r = (a * b).sum(0) / np.linalg.norm(a, axis=0) / np.linalg.norm(b, axis=0)
    assert np.median(r) > 0.8


def test_morph_rows_sum_to_one_and_match_mne(template, sim1):
    M = make_morph(sim1)
    assert isinstance(M, scipy.sparse.csr_array)
    assert M.shape == (8196, 8196)
    assert_allclose(M.sum(axis=1), 1.0, atol=1e-6)
    assert (M.data >= 0).all()
    # Same as MNE-Python directly.
    src_from = get_source_space(template)
    src_to = get_source_space(sim1)
    ref = mne.compute_source_morph(src_from, "fsaverage", sim1.name, src_to=src_to,
                                   subjects_dir=sim1.subjects_dir, warn=False, verbose="error")
    assert_allclose(M.toarray(), ref.morph_mat.toarray(), atol=1e-7)
    # Template -> template is the identity.
    Mt = make_morph(template)
    assert abs(Mt - scipy.sparse.eye_array(8196)).sum() == 0


def test_simulated_morph_is_not_identity(sim1):
    M = make_morph(sim1)
    # Largest weight of most rows is not on the diagonal: the registration was perturbed.
    argmax = np.asarray(M.argmax(axis=1)).ravel()
    assert np.mean(argmax != np.arange(M.shape[0])) > 0.4


def test_simulated_subjects_differ(template, sim1):
    sim2 = make_simulated_subject(2, seed=0)
    pos_t = source_positions(get_source_space(template))
    pos_1 = source_positions(get_source_space(sim1))
    pos_2 = source_positions(get_source_space(sim2))
    d1 = np.linalg.norm(pos_1 - pos_t, axis=1) * 1e3
    d12 = np.linalg.norm(pos_1 - pos_2, axis=1) * 1e3
    # Smooth deformation of a few mm, different per subject, never tearing the cortex.
    assert 1.0 < np.median(d1) < 15.0 and np.median(d12) > 1.0
    assert not np.allclose(sim1.meg_info["dev_head_t"]["trans"], template.meg_info["dev_head_t"]["trans"])
    assert not np.allclose(sim1.meg_info["dev_head_t"]["trans"], sim2.meg_info["dev_head_t"]["trans"])
    lf1 = get_leadfield(make_forward(sim1))
    lf2 = get_leadfield(make_forward(sim2))
    assert np.isfinite(lf1).all() and lf1.shape == (306, 8196)
    assert np.linalg.norm(lf1 - lf2) > 0.1 * np.linalg.norm(lf1)
    # Deterministic: the same index and seed give the same subject.
    again = make_simulated_subject(1, seed=0)
    assert again.name == sim1.name
    np.testing.assert_array_equal(again.meg_info["dev_head_t"]["trans"], sim1.meg_info["dev_head_t"]["trans"])


def test_read_forward_converts_to_fixed(template, tmp_path):
    src = get_source_space(template)
    from neurofuse.anatomy.forward import get_bem_solution

    free = mne.make_forward_solution(template.meg_info, template.trans, src,
                                     get_bem_solution(template), verbose="error")
    fname = tmp_path / "free-fwd.fif"
    mne.write_forward_solution(fname, free, verbose="error")
    fixed = read_forward(fname)
    assert_allclose(get_leadfield(fixed), get_leadfield(make_forward(template)), rtol=1e-5,
                    atol=1e-6 * np.abs(get_leadfield(fixed)).max())
    with pytest.raises(FileNotFoundError, match="not found"):
        read_forward(tmp_path / "missing-fwd.fif")


def test_real_freesurfer_subject(sim1, tmp_path):
    # A "real" subject: FreeSurfer files in the user's own subjects dir under another name.
    import shutil

    shutil.copytree(Path(sim1.subjects_dir) / sim1.name, tmp_path / "bert")
    sub = read_subject("bert", tmp_path, trans=sim1.trans, info=sim1.meg_info)
    assert sub.kind == "freesurfer" and len(sub.meg_info["ch_names"]) == 306
    M = make_morph(sub)
    assert_allclose(M.toarray(), make_morph(sim1).toarray(), atol=1e-7)
    with pytest.raises(FileNotFoundError, match="recon-all"):
        read_subject("nobody", tmp_path, trans=sim1.trans)


def test_bad_inputs(template):
    with pytest.raises(ValueError, match="spacing"):
        get_source_space(template, "oct7")
    info = template.meg_info
    with pytest.raises(ValueError, match="Lead field vs channel count mismatch.*305 rows.*306 channels"):
        check_leadfield(np.zeros((305, 8196)), info)
    with pytest.raises(ValueError, match="Morph vs source-space mismatch"):
        check_morph(scipy.sparse.eye_array(100), 8196, 8196)
    with pytest.raises(ValueError, match="no EEG channels"):
        make_forward(template, meg=False, eeg=True)



@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"index": -1}, ValueError, "'index' must be an int >= 0, got -1"),
    ({"index": True}, TypeError, "'index' must be an int, got bool"),
    ({"index": 1.0}, TypeError, "'index' must be an int, got float"),
    ({"index": 1, "seed": -3}, ValueError, "'seed' must be an int >= 0, got -3"),
    ({"index": 1, "seed": "0"}, TypeError, "'seed' must be an int, got str"),
])
def test_simulated_subject_index_and_seed_checks(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_simulated_subject(**kwargs)


def test_make_forward_is_fixed_orientation_cold_and_warm(template):
    from mne.io.constants import FIFF

    fwd = make_forward(template)
    assert fwd["source_ori"] == FIFF.FIFFV_MNE_FIXED_ORI and fwd["surf_ori"]
    assert fwd["sol"]["data"].shape == (306, 8196)
