"""Tests for neurofuse.anatomy.sensors: geometry and physics of the MEG, EEG and ECoG arrays."""

import re
import warnings
from pathlib import Path

import mne
import numpy as np
import pytest
from mne.io.constants import FIFF
from mne.transforms import Transform, apply_trans, invert_transform
from scipy.spatial import cKDTree

from neurofuse.anatomy.sensors import (
    DEFAULT_DEV_HEAD_T,
    ElectrodeArray,
    apply_head_position,
    make_ecog_electrodes,
    make_ecog_info,
    make_eeg_info,
    make_meg_info,
)

MNE_DATA = Path(mne.__file__).parent / "data"
HEAD_R0 = np.array([0.0, 0.0, 0.04])  # usual MEG sphere centre, head coordinates (m)
MU0 = 4e-7 * np.pi


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _locs(info, picks=None):
    picks = range(len(info["chs"])) if picks is None else picks
    return np.array([info["chs"][p]["loc"] for p in picks])


def _fsaverage_scalp_head():
    """fsaverage scalp vertices and normals in head coordinates."""
    mri_head = invert_transform(mne.read_trans(MNE_DATA / "fsaverage" / "fsaverage-trans.fif"))
    surf = mne.read_bem_surfaces(MNE_DATA / "fsaverage" / "fsaverage-head.fif", verbose=False)[0]
    rr = apply_trans(mri_head, surf["rr"])
    nn = apply_trans(mri_head, surf["nn"], move=False)
    return rr, nn


def _dense_surface_points(rr, tris, n_sub=10):
    """Points sampled on every triangle with a barycentric grid (n_sub steps per edge)."""
    g = np.linspace(0, 1, n_sub + 1)
    u, v = np.meshgrid(g, g)
    m = u + v <= 1 + 1e-12
    u, v = u[m], v[m]
    a, b, c = rr[tris[:, 0]], rr[tris[:, 1]], rr[tris[:, 2]]
    w0, wu, wv = ((1 - u - v)[None, :, None], u[None, :, None], v[None, :, None])
    return (a[:, None] * w0 + b[:, None] * wu + c[:, None] * wv).reshape(-1, 3)


def _sarvas(r, rq, q):
    """Sarvas (1987) field of a current dipole in a spherical conductor centred at 0.

    r : (n, 3) field points, rq : (3,) dipole location, q : (3,) moment. Returns B, (n, 3).
    """
    a_vec = r - rq
    a = np.linalg.norm(a_vec, axis=1)
    rn = np.linalg.norm(r, axis=1)
    ar = np.einsum("ij,ij->i", a_vec, r)
    F = a * (rn * a + rn**2 - r @ rq)
    gradF = (a**2 / rn + ar / a + 2 * a + 2 * rn)[:, None] * r - (a + 2 * rn + ar / a)[:, None] * rq
    qxr = np.cross(q, rq)
    return MU0 / (4 * np.pi * F[:, None] ** 2) * (F[:, None] * qxr - (r @ qxr)[:, None] * gradF)


def _sarvas_meg(info, rq, q, r0=HEAD_R0):
    """Independent MEG reference: Sarvas field at the coils' point approximations.

    Magnetometers: B . ez at the coil centre; planar gradiometers: (B+ - B-) . ez / 16.8 mm
    with the two points 8.4 mm either side of the centre along ex (MNE's coil_def values).
    """
    head_t = info["dev_head_t"]
    out = np.empty(len(info["chs"]))
    for k, ch in enumerate(info["chs"]):
        loc = ch["loc"]
        pos = apply_trans(head_t, loc[:3])
        ex, ez = (apply_trans(head_t, loc[i : i + 3], move=False) for i in (3, 9))
        if ch["coil_type"] == FIFF.FIFFV_COIL_VV_MAG_T3:
            pts, w = (pos + 3e-4 * ez)[None], np.array([1.0])
        else:
            pts = np.array([pos + 8.4e-3 * ex, pos - 8.4e-3 * ex]) + 3e-4 * ez
            w = np.array([1.0, -1.0]) / 16.8e-3
        out[k] = w @ (_sarvas(pts - r0, rq - r0, q) @ ez)
    return out


def _forward(info, rr, r0=HEAD_R0):
    """MNE free-orientation gain (n_channels, 3 * n_sources) for sources at head coords rr."""
    rr = np.atleast_2d(rr)
    src = mne.setup_volume_source_space(
        "sample", pos=dict(rr=rr, nn=np.tile([0.0, 0.0, 1.0], (len(rr), 1))), verbose=False
    )
    sphere = mne.make_sphere_model(r0=tuple(r0), head_radius=None, verbose=False)
    fwd = mne.make_forward_solution(
        info, Transform("mri", "head", np.eye(4)), src, sphere, meg=True, eeg=False, verbose=False
    )
    assert fwd["nsource"] == len(rr)
    return fwd["sol"]["data"]


@pytest.fixture(scope="module")
def meg_info():
    return make_meg_info()


@pytest.fixture(scope="module")
def pial_left():
    """fsaverage5 left pial surface shipped with nilearn, in metres."""
    nib = pytest.importorskip("nibabel")
    nilearn = pytest.importorskip("nilearn")
    fname = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5" / "pial_left.gii.gz"
    gii = nib.load(fname)
    rr = np.asarray(gii.darrays[0].data, float) / 1000.0  # mm -> m
    tris = np.asarray(gii.darrays[1].data, np.int64)
    return rr, tris


# ------------------------------------------------------------------------------------------------
# MEG
# ------------------------------------------------------------------------------------------------


def test_meg_channels_types_and_real_names(meg_info):
    info = meg_info
    assert info["nchan"] == 306
    mags = mne.pick_types(info, meg="mag")
    grads = mne.pick_types(info, meg="grad")
    assert len(mags) == 102 and len(grads) == 204
    for p in mags:
        ch = info["chs"][p]
        assert ch["coil_type"] == FIFF.FIFFV_COIL_VV_MAG_T3 and ch["unit"] == FIFF.FIFF_UNIT_T
        assert ch["ch_name"].endswith("1")
    for p in grads:
        ch = info["chs"][p]
        assert ch["coil_type"] == FIFF.FIFFV_COIL_VV_PLANAR_T1 and ch["unit"] == FIFF.FIFF_UNIT_T_M
        assert ch["ch_name"][-1] in "23"
    assert all(ch["kind"] == FIFF.FIFFV_MEG_CH for ch in info["chs"])
    assert all(ch["coord_frame"] == FIFF.FIFFV_COORD_DEVICE for ch in info["chs"])
    assert all(re.fullmatch(r"MEG\d{4}", n) for n in info["ch_names"])
    # Real Vectorview names: the same set as MNE's Vectorview layout (which spells 'MEG 0111').
    lout = mne.channels.read_layout("Vectorview-all")
    assert set(info["ch_names"]) == {n.replace(" ", "") for n in lout.names}
    # Each location: exactly one magnetometer and two gradiometers.
    locations = {}
    for n in info["ch_names"]:
        locations.setdefault(n[:-1], []).append(n[-1])
    assert len(locations) == 102
    assert all(sorted(v) == ["1", "2", "3"] for v in locations.values())


def test_meg_coil_frames_orthonormal_and_triplets(meg_info):
    locs = _locs(meg_info)
    pos, ex, ey, ez = locs[:, :3], locs[:, 3:6], locs[:, 6:9], locs[:, 9:12]
    for e in (ex, ey, ez):
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=2e-4)
    assert np.abs(np.einsum("ij,ij->i", ex, ey)).max() < 2e-4
    assert np.abs(np.einsum("ij,ij->i", ex, ez)).max() < 2e-4
    np.testing.assert_allclose(np.cross(ex, ey), ez, atol=3e-4)  # right-handed
    # MNE's coil transform puts ex, ey, ez in the columns and the position in the last one.
    from mne._fiff.tag import _loc_to_coil_trans

    ct = _loc_to_coil_trans(locs)
    np.testing.assert_allclose(ct[:, :3, 2], ez)
    np.testing.assert_allclose(ct[:, :3, 3], pos)
    names = meg_info["ch_names"]
    by_loc = {}
    for k, n in enumerate(names):
        by_loc.setdefault(n[:-1], {})[n[-1]] = k
    for trip in by_loc.values():
        m, g2, g3 = trip["1"], trip["2"], trip["3"]
        np.testing.assert_allclose(pos[[g2, g3]], pos[[m, m]], atol=1e-9)
        np.testing.assert_allclose(ez[[g2, g3]], ez[[m, m]], atol=1e-9)
        # the two gradiometers measure along orthogonal tangents
        assert abs(ex[g2] @ ex[g3]) < 1e-3


def test_meg_sensors_on_helmet_and_outside_head(meg_info):
    locs = _locs(meg_info, mne.pick_types(meg_info, meg="mag"))
    pos_dev, ez_dev = locs[:, :3], locs[:, 9:12]
    # On (just outside) MNE's Neuromag helmet surface, ez along the helmet's outward normal.
    helmet = mne.read_bem_surfaces(MNE_DATA / "helmets" / "306m.fif.gz", verbose=False)[0]
    assert helmet["coord_frame"] == FIFF.FIFFV_COORD_DEVICE
    pts = _dense_surface_points(helmet["rr"], helmet["tris"], n_sub=20)
    dist, idx = cKDTree(pts).query(pos_dev)
    assert dist.max() < 5e-3
    assert np.all(np.einsum("ij,ij->i", pos_dev - pts[idx], ez_dev) > 0)  # outside the helmet
    # In head coordinates: outside a 9 cm head sphere by > 1.5 cm, ez pointing away from it.
    pos = apply_trans(meg_info["dev_head_t"], pos_dev)
    ez = apply_trans(meg_info["dev_head_t"], ez_dev, move=False)
    radial = pos - HEAD_R0
    r = np.linalg.norm(radial, axis=1)
    assert r.min() > 0.09 + 0.015
    assert np.all(np.einsum("ij,ij->i", ez, radial) / r > 0.6)
    # The fsaverage scalp fits inside the helmet with realistic clearance (~2-3 cm).
    scalp_rr, scalp_nn = _fsaverage_scalp_head()
    dist, idx = cKDTree(scalp_rr).query(pos)
    assert np.all(np.einsum("ij,ij->i", pos - scalp_rr[idx], scalp_nn[idx]) > 0)  # outside scalp
    assert dist.min() > 0.012
    assert 0.015 < np.median(dist) < 0.04


def test_meg_forward_matches_sarvas_and_radial_null(meg_info):
    info = meg_info
    mags = mne.pick_types(info, meg="mag")
    grads = mne.pick_types(info, meg="grad")
    pos = apply_trans(info["dev_head_t"], _locs(info, mags)[:, :3])
    # dipole 6 cm from the sphere centre, right under the most superior sensor location
    top = int(np.argmax((pos - HEAD_R0)[:, 2] / np.linalg.norm(pos - HEAD_R0, axis=1)))
    radial = (pos[top] - HEAD_R0) / np.linalg.norm(pos[top] - HEAD_R0)
    rq = HEAD_R0 + 0.06 * radial
    G = _forward(info, rq)  # (306, 3)
    assert G.shape == (306, 3) and np.isfinite(G).all()
    tangential = np.cross(radial, [1.0, 0.0, 0.0])
    tangential /= np.linalg.norm(tangential)
    q = 1e-8  # 10 nA m
    b_tan = G @ (q * tangential)
    b_rad = G @ (q * radial)
    # Sarvas: a radial dipole in a spherical conductor produces no field outside it.
    assert np.abs(b_rad[mags]).max() < 1e-6 * np.abs(b_tan[mags]).max()
    assert np.abs(b_rad[grads]).max() < 1e-6 * np.abs(b_tan[grads]).max()
    # A tangential dipole: one positive and one negative magnetometer lobe of similar size,
    # with the field near zero right above the dipole.
    bm = b_tan[mags]
    assert bm.max() > 0 > bm.min()
    assert 0.5 < -bm.min() / bm.max() < 2.0
    assert abs(bm[top]) < 0.3 * np.abs(bm).max()
    # Planar gradiometers peak above the dipole.
    names = info["ch_names"]
    planar = {}
    for p in grads:
        planar.setdefault(names[p][:-1], []).append(b_tan[p])
    mag_loc = [names[p][:-1] for p in mags]
    grad_power = np.array([np.hypot(*planar[loc]) for loc in mag_loc])
    peak_dist = np.linalg.norm(pos[np.argmax(grad_power)] - pos[top])
    assert peak_dist < 0.04
    # Amplitudes agree with an independent Sarvas evaluation at the coil positions.
    ref = _sarvas_meg(info, rq, q * tangential)
    for picks in (mags, grads):
        err = np.abs(b_tan[picks] - ref[picks]).max() / np.abs(ref[picks]).max()
        assert err < 0.05, err
        assert np.corrcoef(b_tan[picks], ref[picks])[0, 1] > 0.995
    # Realistic magnitude: 10 nA m at ~5 cm gives tens to hundreds of fT.
    assert 1e-14 < np.abs(bm).max() < 1e-12


def test_meg_subset_and_helmet_geometry():
    full = make_meg_info()
    sub = make_meg_info(n_locations=30)
    assert sub["nchan"] == 90
    assert len(mne.pick_types(sub, meg="mag")) == 30
    # the subset keeps the real channels unchanged ...
    full_loc = dict(zip(full["ch_names"], _locs(full)))
    for name, loc in zip(sub["ch_names"], _locs(sub)):
        np.testing.assert_array_equal(loc, full_loc[name])
    # ... and is spread out: sparser than the full array everywhere.
    def min_spacing(info):
        p = _locs(info, mne.pick_types(info, meg="mag"))[:, :3]
        return cKDTree(p).query(p, k=2)[0][:, 1]

    assert min_spacing(sub).min() > 1.25 * min_spacing(full).min()
    # farthest-point sampling: every real location is closer to a chosen one than the chosen
    # ones are to each other (the subset covers the whole helmet)
    all_pos = _locs(full, mne.pick_types(full, meg="mag"))[:, :3]
    sub_pos = _locs(sub, mne.pick_types(sub, meg="mag"))[:, :3]
    assert cKDTree(sub_pos).query(all_pos)[0].max() <= min_spacing(sub).min() + 1e-9

    helm = make_meg_info(geometry="helmet", n_locations=60)
    assert helm["nchan"] == 180 and len(set(helm["ch_names"])) == 180
    assert len(mne.pick_types(helm, meg="mag")) == 60 and len(mne.pick_types(helm, meg="grad")) == 120
    locs = _locs(helm)
    ex, ey, ez = locs[:, 3:6], locs[:, 6:9], locs[:, 9:12]
    np.testing.assert_allclose(np.cross(ex, ey), ez, atol=1e-9)
    spacing = min_spacing(helm)
    assert spacing.min() > 0.5 * np.median(spacing)  # evenly spread
    pos = apply_trans(helm["dev_head_t"], locs[:, :3])
    assert np.linalg.norm(pos - HEAD_R0, axis=1).min() > 0.09 + 0.01
    G = _forward(helm, HEAD_R0 + [0.0, 0.0, 0.05])
    assert np.isfinite(G).all() and np.abs(G).max() > 0


def test_apply_head_position_translation_invariance(meg_info):
    shift = np.array([0.004, -0.006, 0.01])
    trans = DEFAULT_DEV_HEAD_T.copy()
    trans[:3, 3] += shift
    moved = apply_head_position(meg_info, trans)
    assert moved is not meg_info
    np.testing.assert_allclose(meg_info["dev_head_t"]["trans"], DEFAULT_DEV_HEAD_T)  # untouched
    np.testing.assert_allclose(moved["dev_head_t"]["trans"], trans)
    np.testing.assert_array_equal(_locs(moved), _locs(meg_info))  # device positions unchanged
    # Moving the head by -shift in the helmet == moving sensors by +shift in head coordinates:
    # fields equal those of the original array with sphere and dipole moved by -shift.
    rq = HEAD_R0 + np.array([0.02, 0.01, 0.05])
    g_moved = _forward(moved, rq)
    g_orig = _forward(meg_info, rq - shift, r0=HEAD_R0 - shift)
    np.testing.assert_allclose(g_moved, g_orig, rtol=1e-6, atol=1e-6 * np.abs(g_orig).max())
    # A head -> device Transform is inverted; the result is the same.
    inv = invert_transform(Transform("meg", "head", trans))
    again = apply_head_position(meg_info, inv)
    np.testing.assert_allclose(again["dev_head_t"]["trans"], trans, atol=1e-12)


def test_apply_head_position_errors(meg_info, catch_logs):
    with pytest.raises(ValueError, match=r"shape \(4, 4\)"):
        apply_head_position(meg_info, np.eye(3))
    bad = np.eye(4)
    bad[0, 0] = 2.0
    with pytest.raises(ValueError, match="rotation"):
        apply_head_position(meg_info, bad)
    mm = np.eye(4)
    mm[2, 3] = 40.0
    with pytest.raises(ValueError, match="millimetres"):
        apply_head_position(meg_info, mm)
    with pytest.raises(ValueError, match="MEG device to head"):
        apply_head_position(meg_info, Transform("mri", "head", np.eye(4)))
    with pytest.raises(TypeError, match="mne.Info"):
        apply_head_position({"chs": []}, np.eye(4))
    # A head pushed 8 cm up would collide with the sensors: logged as a warning.
    up = np.eye(4)
    up[2, 3] = -0.02
    with catch_logs("warning") as log:
        apply_head_position(meg_info, up)
        apply_head_position(meg_info, DEFAULT_DEV_HEAD_T)  # fits: no warning
    assert len(log.records) == 1 and "would not fit" in log.messages[0]


def test_make_meg_info_validation():
    with pytest.raises(ValueError, match="n_locations.*102"):
        make_meg_info(n_locations=103)
    with pytest.raises(ValueError, match="n_locations"):
        make_meg_info(n_locations=0)
    with pytest.raises(TypeError, match="n_locations"):
        make_meg_info(n_locations=10.5)
    with pytest.raises(ValueError, match="geometry"):
        make_meg_info(geometry="ctf")
    with pytest.raises(ValueError, match="sfreq"):
        make_meg_info(sfreq=-1.0)
    info = make_meg_info(sfreq=100.0, dev_head_t=Transform("meg", "head", DEFAULT_DEV_HEAD_T))
    assert info["sfreq"] == 100.0


# ------------------------------------------------------------------------------------------------
# EEG
# ------------------------------------------------------------------------------------------------


def test_eeg_default_montage_in_head_coordinates():
    info = make_eeg_info()
    assert info["nchan"] == 94
    assert len(mne.pick_types(info, meg=False, eeg=True)) == 94
    pos = _locs(info)[:, :3]
    assert np.isfinite(pos).all()
    assert all(ch["coord_frame"] == FIFF.FIFFV_COORD_HEAD for ch in info["chs"])
    fid = {d["ident"]: d["r"] for d in info["dig"] if d["kind"] == FIFF.FIFFV_POINT_CARDINAL}
    nas, lpa, rpa = fid[FIFF.FIFFV_POINT_NASION], fid[FIFF.FIFFV_POINT_LPA], fid[FIFF.FIFFV_POINT_RPA]
    # Neuromag head frame: x through the preauriculars, y through the nasion.
    assert abs(nas[0]) < 1e-6 and nas[1] > 0.08 and abs(nas[2]) < 1e-6
    assert lpa[0] < -0.06 and rpa[0] > 0.06 and abs(lpa[1]) < 1e-6 and abs(rpa[1]) < 1e-6
    # Cz on top, Fpz in front, Oz at the back, T7 left, T8 right.
    p = dict(zip(info["ch_names"], pos))
    assert p["Cz"][2] == pos[:, 2].max() or p["Cz"][2] > np.percentile(pos[:, 2], 95)
    assert p["Fpz"][1] > 0.07 and p["Oz"][1] < -0.07 and p["T7"][0] < -0.06 and p["T8"][0] > 0.06
    # Lines up with the fsaverage scalp (head coordinates via fsaverage-trans).
    scalp_rr, _ = _fsaverage_scalp_head()
    dist, _ = cKDTree(scalp_rr).query(pos)
    assert np.median(dist) < 0.008 and dist.max() < 0.02
    # Unreferenced: no projector, no custom reference.
    assert len(info["projs"]) == 0 and not info["custom_ref_applied"]


def test_eeg_montage_names_aliases_and_forward():
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        alias = make_eeg_info("standard_1020")
    np.testing.assert_allclose(_locs(alias), _locs(make_eeg_info()))
    fs = make_eeg_info("fsaverage_1010", sfreq=100.0)
    assert fs["nchan"] == 70 and fs["sfreq"] == 100.0
    custom = make_eeg_info(mne.channels.make_standard_montage("biosemi32"))
    assert custom["nchan"] == 32
    # EEG forward with a sphere fitted to the electrodes runs and is finite.
    sphere = mne.make_sphere_model("auto", "auto", fs, verbose=False)
    rr = np.array([[0.0, 0.0, 0.06], [0.03, 0.0, 0.05]])
    src = mne.setup_volume_source_space(
        "sample", pos=dict(rr=rr, nn=np.tile([0.0, 0.0, 1.0], (2, 1))), verbose=False
    )
    identity = Transform("mri", "head", np.eye(4))
    fwd = mne.make_forward_solution(fs, identity, src, sphere, meg=False, eeg=True, verbose=False)
    assert fwd["sol"]["data"].shape == (70, 6) and np.isfinite(fwd["sol"]["data"]).all()


def test_eeg_invalid_montage():
    with pytest.raises(ValueError, match="get_builtin_montages") as exc:
        make_eeg_info("not_a_cap")
    msg = str(exc.value)
    assert "not_a_cap" in msg and any(n in msg for n in mne.channels.get_builtin_montages())
    with pytest.raises(ValueError, match="fNIRS"):
        make_eeg_info("artinis-octamon")
    with pytest.raises(TypeError, match="DigMontage"):
        make_eeg_info(42)
    with pytest.raises(ValueError, match="sfreq"):
        make_eeg_info(sfreq=0)


# ------------------------------------------------------------------------------------------------
# ECoG
# ------------------------------------------------------------------------------------------------


def _grid_spacings(el):
    p = el.pos.reshape(*el.shape, 3)
    along_cols = np.linalg.norm(np.diff(p, axis=1), axis=-1).ravel()
    along_rows = np.linalg.norm(np.diff(p, axis=0), axis=-1).ravel()
    return np.r_[along_cols, along_rows]


def _surface_distance(points, rr, tris, radius=0.02):
    """Distance of points to the surface (dense sampling of nearby triangles) and the sample."""
    near = np.unique(np.concatenate(cKDTree(rr).query_ball_point(points, radius)))
    tri_near = tris[np.isin(tris, near).any(axis=1)]
    samples = _dense_surface_points(rr, tri_near, n_sub=12)
    dist, idx = cKDTree(samples).query(points)
    return dist, samples[idx]


def test_ecog_grid_on_cortex(pial_left):
    rr, tris = pial_left
    center = rr[np.argmin(rr[:, 0])] + [-0.004, 0.0, 0.0]  # most lateral point, just outside
    el = make_ecog_electrodes(rr, tris, center=center, spacing=0.01)
    assert isinstance(el, ElectrodeArray) and len(el) == 64 and el.kind == "grid" and el.shape == (8, 8)
    assert el.names == tuple(f"G{i}" for i in range(1, 65))
    assert el.pos.shape == (64, 3) and el.normals.shape == (64, 3)
    np.testing.assert_allclose(np.linalg.norm(el.normals, axis=1), 1.0, atol=1e-9)
    # Every electrode rests on the cortex: ~offset (1 mm) outside the pial surface.
    dist, foot = _surface_distance(el.pos, rr, tris)
    assert dist.max() < 0.002 and dist.min() > 0.0003
    assert np.all(np.einsum("ij,ij->i", el.pos - foot, el.normals) > 0)
    # Normals point out of the hemisphere (lateral surface of the left hemisphere: -x).
    assert np.mean(el.normals[:, 0]) < -0.5
    # Spacing along rows and columns ~ requested; folding makes single pairs vary.
    s = _grid_spacings(el)
    assert abs(np.median(s) - 0.01) < 0.0015
    assert np.mean(np.abs(s - 0.01) < 0.003) > 0.8
    # vertices = brute-force nearest vertex of each electrode
    brute = np.argmin(((el.pos[:, None] - rr[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(el.vertices, brute)
    # read-only arrays
    with pytest.raises(ValueError):
        el.pos[0, 0] = 1.0


def test_ecog_envelope_keeps_spacing(pial_left):
    rr, tris = pial_left
    lateral, temporal, parietal = rr[np.argmin(rr[:, 0])], [-0.06, -0.02, -0.02], [-0.04, -0.05, 0.05]
    for center in (lateral, temporal, parietal):
        el = make_ecog_electrodes(rr, tris, center=center, snap="envelope", offset=0.0)
        s = _grid_spacings(el)
        assert np.all(np.abs(s - 0.01) < 0.003), s
        # On the envelope: never inside the cortex (distance >= 0 outward), close to it.
        dist, foot = _surface_distance(el.pos, rr, tris, radius=0.03)
        outward = np.einsum("ij,ij->i", el.pos - foot, el.normals)
        assert np.all(outward > -2e-4)
        assert np.median(dist) < 0.004


def test_ecog_strip_orientation_and_jitter(pial_left):
    rr, tris = pial_left
    center = rr[np.argmin(rr[:, 0])]
    strip = make_ecog_electrodes(rr, tris, center=center, kind="strip", shape=(1, 6), snap="envelope")
    assert strip.names == tuple(f"S{i}" for i in range(1, 7)) and strip.shape == (1, 6)
    s = _grid_spacings(strip)
    np.testing.assert_allclose(s, 0.01, atol=0.001)
    # angle 0: the strip runs upwards (+z); angle 90: across it.
    axis0 = strip.pos[-1] - strip.pos[0]
    assert np.all(np.diff(strip.pos[:, 2]) > 0)
    turned = make_ecog_electrodes(
        rr, tris, center=center, kind="strip", shape=(1, 6), angle=90.0, snap="envelope"
    )
    axis90 = turned.pos[-1] - turned.pos[0]
    assert abs(axis0 @ axis90) / (np.linalg.norm(axis0) * np.linalg.norm(axis90)) < 0.3
    # default strip shape and custom prefix
    default = make_ecog_electrodes(rr, tris, center=center, kind="strip", prefix="TL")
    assert default.shape == (1, 8) and default.names[0] == "TL1"
    # jitter: reproducible with a seed, zero jitter ignores the seed
    a = make_ecog_electrodes(rr, tris, center=center, shape=(3, 3), jitter=0.002, seed=1)
    b = make_ecog_electrodes(rr, tris, center=center, shape=(3, 3), jitter=0.002, seed=1)
    c = make_ecog_electrodes(rr, tris, center=center, shape=(3, 3), jitter=0.002, seed=2)
    np.testing.assert_array_equal(a.pos, b.pos)
    assert not np.allclose(a.pos, c.pos)
    d = make_ecog_electrodes(rr, tris, center=center, shape=(3, 3), seed=1)
    e = make_ecog_electrodes(rr, tris, center=center, shape=(3, 3), seed=2)
    np.testing.assert_array_equal(d.pos, e.pos)


def test_ecog_validation(pial_left):
    rr, tris = pial_left
    center = rr[np.argmin(rr[:, 0])]
    for shape in [(8,), (0, 8), (2.5, 3), (True, 4), "8x8"]:
        with pytest.raises(ValueError, match="'shape' must be two positive ints"):
            make_ecog_electrodes(rr, tris, center=center, shape=shape)
    with pytest.raises(ValueError, match=r"strip.*\(1, 8\)"):
        make_ecog_electrodes(rr, tris, center=center, kind="strip", shape=(2, 4))
    with pytest.raises(ValueError, match="kind"):
        make_ecog_electrodes(rr, tris, center=center, kind="depth")
    with pytest.raises(ValueError, match="snap"):
        make_ecog_electrodes(rr, tris, center=center, snap="white")
    with pytest.raises(ValueError, match=r"mm from the nearest surface vertex.*within 30 mm"):
        make_ecog_electrodes(rr, tris, center=center + [-0.05, 0.0, 0.0])
    with pytest.raises(ValueError, match="millimetres"):
        make_ecog_electrodes(rr * 1000, tris, center=center * 1000)
    with pytest.raises(ValueError, match="surface_tris"):
        make_ecog_electrodes(rr, tris + len(rr), center=center)
    with pytest.raises(ValueError, match="surface_rr"):
        make_ecog_electrodes(rr[:, :2], tris, center=center)
    with pytest.raises(ValueError, match="center"):
        make_ecog_electrodes(rr, tris, center=[0.0, 0.0])
    with pytest.raises(ValueError, match="spacing"):
        make_ecog_electrodes(rr, tris, center=center, spacing=-0.01)


def test_ecog_info_coordinates(pial_left):
    rr, tris = pial_left
    el = make_ecog_electrodes(rr, tris, center=rr[np.argmin(rr[:, 0])], shape=(4, 4))
    info = make_ecog_info(el, sfreq=100.0)
    assert info["nchan"] == 16 and info["sfreq"] == 100.0
    assert len(mne.pick_types(info, meg=False, ecog=True)) == 16
    assert info["ch_names"] == list(el.names)
    # With the fsaverage fiducials, head coordinates = fsaverage-trans applied to MRI coords.
    mri_head = invert_transform(mne.read_trans(MNE_DATA / "fsaverage" / "fsaverage-trans.fif"))
    np.testing.assert_allclose(_locs(info)[:, :3], apply_trans(mri_head, el.pos), atol=1e-3)
    # No fiducials: stored unchanged, without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = make_ecog_info(el, fiducials=None)
    np.testing.assert_allclose(_locs(raw)[:, :3], el.pos, atol=1e-12)
    # Custom fiducials: identity fiducials give identity transform.
    fids = dict(nasion=[0.0, 0.1, 0.0], lpa=[-0.08, 0.0, 0.0], rpa=[0.08, 0.0, 0.0])
    same = make_ecog_info(el, fiducials=fids)
    np.testing.assert_allclose(_locs(same)[:, :3], el.pos, atol=1e-9)
    with pytest.raises(ValueError, match="rpa"):
        make_ecog_info(el, fiducials=dict(nasion=[0, 0.1, 0], lpa=[-0.08, 0, 0]))
    with pytest.raises(TypeError, match="ElectrodeArray"):
        make_ecog_info({"names": ["G1"]})
