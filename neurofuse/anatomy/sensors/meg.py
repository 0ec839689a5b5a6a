"""The 306-channel MEGIN/Elekta (Neuromag Vectorview/TRIUX) MEG: geometry and head position.

Coordinate frames and units (SI throughout): MEG channel ``loc`` values are in **MEG device**
coordinates (metres); ``info['dev_head_t']`` maps device to head coordinates
(``r_head = R @ r_dev + t``), as in real Neuromag files.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..._checks import _check_finite, _check_int, _check_option, _check_positive
from ..._logging import logger, verbose
from ..surfaces import fit_sphere

__all__ = ["DEFAULT_DEV_HEAD_T", "apply_head_position", "make_meg_info"]

#: Default device-to-head transform: identity rotation, device origin 6 cm above and 5 mm
#: behind the head origin. With it the fsaverage scalp sits ~2-3 cm inside the sensors (as
#: in real recordings) and a 9 cm sphere centred at (0, 0, 0.04) m in head coordinates (the
#: usual MEG sphere model) clears every sensor by more than 1.5 cm.
DEFAULT_DEV_HEAD_T = np.array(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, -0.005],
        [0.0, 0.0, 1.0, 0.06],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
DEFAULT_DEV_HEAD_T.setflags(write=False)

_N_VECTORVIEW = 102
_HELMET_STANDOFF = 0.002  # m: real Vectorview coils sit 1-3 mm outside MNE's 306m helmet surface
_MAX_TRANSLATION = 0.2  # m: larger dev_head_t translations are almost surely in millimetres


def _mne_data_dir() -> Path:
    import mne

    return Path(mne.__file__).parent


def _read_vectorview_geometry():
    """Real Vectorview coil positions/orientations from the CSV that MNE >= 1.12 ships.

    Returns
    -------
    names : list of str, length 306
        Channel names without the space (``'MEG0113'``), in acquisition order.
    loc : array, shape (306, 12)
        Position and ex, ey, ez unit vectors, device coordinates, metres.
    coil_type : array of int, shape (306,)
    """
    import mne

    path = _mne_data_dir() / "channels" / "data" / "canonical_meg" / "neuromag306.csv"
    if not path.is_file():
        raise RuntimeError(
            "geometry='vectorview' reads the real Neuromag Vectorview coil geometry that "
            f"MNE-Python ships from version 1.12 on ({path.name}), but the installed mne "
            f"{mne.__version__} does not have it. Upgrade with pip install 'mne>=1.12', or "
            "pass geometry='helmet' for sensors spread over the Neuromag helmet surface."
        )
    names, locs, coil_types = [], [], []
    with open(path, newline="") as fid:
        for row in csv.DictReader(fid):
            names.append(row["name"].replace(" ", ""))
            coil_types.append(int(row["coil_type"]))
            locs.append(
                [float(row[k]) for k in ("x", "y", "z")]
                + [float(row[f"{a}_{c}"]) for a in ("ex", "ey", "ez") for c in "xyz"]
            )
    return names, np.array(locs, float), np.array(coil_types, int)


def _read_helmet():
    """MNE's Neuromag 306 helmet surface (device coordinates, metres, outward normals)."""
    import mne
    from mne.io.constants import FIFF

    path = _mne_data_dir() / "data" / "helmets" / "306m.fif.gz"
    surf = mne.read_bem_surfaces(path, verbose=False)[0]
    if surf["coord_frame"] != FIFF.FIFFV_COORD_DEVICE:  # pragma: no cover - guards MNE changes
        raise RuntimeError(
            f"Expected {path} in MEG device coordinates, got frame {surf['coord_frame']}."
        )
    rr = np.asarray(surf["rr"], float)
    nn = np.asarray(surf["nn"], float)
    nn /= np.linalg.norm(nn, axis=1, keepdims=True)
    center, _ = fit_sphere(rr)
    if np.mean(np.einsum("ij,ij->i", nn, rr - center)) < 0:  # pragma: no cover
        nn = -nn
    return rr, nn, np.asarray(surf["tris"], int)


def _farthest_point_order(rr: np.ndarray, n: int, start: int) -> np.ndarray:
    """Indices of ``n`` points of ``rr`` chosen by greedy farthest-point sampling."""
    chosen = [int(start)]
    dist = np.linalg.norm(rr - rr[start], axis=1)
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(rr - rr[nxt], axis=1))
    return np.array(chosen, int)


def _tangent_frame(ez: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-handed unit tangents (ex, ey) for unit normals ``ez``, shape (n, 3) each."""
    ref = np.tile([0.0, 0.0, 1.0], (len(ez), 1))
    near_z = np.abs(ez[:, 2]) > 0.9
    ref[near_z] = [0.0, 1.0, 0.0]
    ey = ref - np.einsum("ij,ij->i", ref, ez)[:, None] * ez
    ey /= np.linalg.norm(ey, axis=1, keepdims=True)
    ex = np.cross(ey, ez)
    return ex, ey


def _helmet_geometry(n_locations: int):
    """``n_locations`` triplets spread over the helmet by farthest-point sampling."""
    from mne.io.constants import FIFF

    rr, nn, _ = _read_helmet()
    if n_locations > len(rr):
        raise ValueError(
            f"'n_locations' must be at most {len(rr)} (the vertices of the Neuromag helmet "
            f"surface) for geometry='helmet', got {n_locations}."
        )
    idx = np.sort(_farthest_point_order(rr, n_locations, start=int(np.argmax(rr[:, 2]))))
    ez = nn[idx]
    pos = rr[idx] + _HELMET_STANDOFF * ez
    ex, ey = _tangent_frame(ez)
    names, locs, coil_types = [], [], []
    for k in range(n_locations):
        base = f"MEG{k + 1:03d}"
        # Like real Vectorview: the second gradiometer's frame is the first one rotated by 90
        # degrees about the normal (ex -> ey, ey -> -ex), so they measure orthogonal gradients.
        for suffix, (a, b) in (("2", (ex[k], ey[k])), ("3", (ey[k], -ex[k])), ("1", (ex[k], ey[k]))):
            names.append(base + suffix)
            locs.append(np.r_[pos[k], a, b, ez[k]])
            coil_types.append(
                FIFF.FIFFV_COIL_VV_MAG_T3 if suffix == "1" else FIFF.FIFFV_COIL_VV_PLANAR_T1
            )
    return names, np.array(locs), np.array(coil_types, int)


def _as_dev_head_t(dev_head_t, name: str = "dev_head_t"):
    """Validate a device-to-head transform; return an ``mne.transforms.Transform``."""
    from mne.transforms import Transform, invert_transform

    if isinstance(dev_head_t, Transform):
        frames = (dev_head_t.from_str, dev_head_t.to_str)
        if frames == ("head", "MEG device"):
            logger.debug("'%s' maps head to device coordinates; using its inverse.", name)
            dev_head_t = invert_transform(dev_head_t)
        elif frames != ("MEG device", "head"):
            raise ValueError(
                f"'{name}' must map MEG device to head coordinates, got a transform from "
                f"'{frames[0]}' to '{frames[1]}'."
            )
        trans = np.array(dev_head_t["trans"], float)
    else:
        try:
            trans = np.array(dev_head_t, float)
        except (TypeError, ValueError):
            raise TypeError(
                f"'{name}' must be a 4x4 array or an mne.transforms.Transform, got "
                f"{type(dev_head_t).__name__}."
            ) from None
    if trans.shape != (4, 4):
        raise ValueError(f"'{name}' must have shape (4, 4), got shape {trans.shape}.")
    _check_finite(name, trans, how_to_fix="Pass a finite rigid transform.")
    if not np.allclose(trans[3], [0, 0, 0, 1], atol=1e-9):
        raise ValueError(f"The last row of '{name}' must be [0, 0, 0, 1], got {trans[3].tolist()}.")
    rot = trans[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-5) or np.linalg.det(rot) < 0:
        raise ValueError(
            f"The upper-left 3x3 block of '{name}' must be a rotation matrix (orthonormal, "
            f"determinant +1), got determinant {np.linalg.det(rot):.4g} and "
            f"max |R R^T - I| = {np.abs(rot @ rot.T - np.eye(3)).max():.3g}."
        )
    shift = float(np.linalg.norm(trans[:3, 3]))
    if shift > _MAX_TRANSLATION:
        raise ValueError(
            f"The translation of '{name}' is {shift:.3g} m, more than {_MAX_TRANSLATION} m: "
            "real head positions are within a few cm of the device origin. Is it in "
            "millimetres? Divide the translation by 1000."
        )
    return Transform("meg", "head", trans)


def _check_head_clearance(info, head_center=(0.0, 0.0, 0.04), head_radius=0.09):
    """Warn when a typical head sphere would intersect the MEG sensors."""
    import mne
    from mne.transforms import apply_trans

    picks = mne.pick_types(info, meg=True, ref_meg=False, exclude=())
    if len(picks) == 0 or info["dev_head_t"] is None:
        return
    pos = apply_trans(info["dev_head_t"], np.array([info["chs"][p]["loc"][:3] for p in picks]))
    gap = np.linalg.norm(pos - np.asarray(head_center), axis=1).min() - head_radius
    if gap < 0.01:
        logger.warning(
            "With this dev_head_t a %.0f mm sphere centred at %s mm in head coordinates comes "
            "within %.1f mm of (or crosses) the MEG sensors: the head would not fit in the helmet. "
            "Check the translation (metres, device -> head).",
            head_radius * 1e3,
            tuple(round(c * 1e3, 1) for c in head_center),
            gap * 1e3,
        )


@verbose
def make_meg_info(
    sfreq: float = 50.0,
    *,
    n_locations: int = _N_VECTORVIEW,
    geometry: str = "vectorview",
    dev_head_t=None,
    verbose=None,
):
    """Make the measurement info of a 306-channel MEGIN/Elekta (Neuromag Vectorview/TRIUX) MEG.

    Each of the 102 sensor locations holds one magnetometer (name ending in 1, coil type
    ``FIFFV_COIL_VV_MAG_T3``, unit T) and two orthogonal planar gradiometers (names ending in
    2 and 3, ``FIFFV_COIL_VV_PLANAR_T1``, unit T/m).

    Parameters
    ----------
    sfreq : float
        Sampling frequency in Hz.
    n_locations : int
        Number of sensor locations (triplets). 102 gives the full array. Fewer picks a subset
        spread evenly over the helmet (greedy farthest-point sampling starting at the top),
        handy for fast tests; each location still has one magnetometer and two gradiometers.
    geometry : ``'vectorview'`` | ``'helmet'``
        ``'vectorview'`` (default) uses the real Vectorview coil positions, orientations and
        channel names that MNE-Python (>= 1.12) ships in
        ``mne/channels/data/canonical_meg/neuromag306.csv``. ``'helmet'`` places synthetic
        triplets on vertices of MNE's Neuromag helmet surface (``mne/data/helmets/306m.fif.gz``),
        2 mm outside it, with names ``MEG0011, MEG0012, ...``; it allows up to 304 locations.
    dev_head_t : array, shape (4, 4) | mne.transforms.Transform | None
        Device-to-head transform (metres). ``None`` uses :data:`DEFAULT_DEV_HEAD_T`
        (identity rotation, device origin at (0, -0.005, 0.06) m in head coordinates).
    verbose : bool | str | int | None
        Log level for this call (see :func:`neurofuse.set_log_level`).

    Returns
    -------
    info : mne.Info
        ``3 * n_locations`` MEG channels (306 by default), ``loc`` in device coordinates:
        ``loc[:3]`` the coil position and ``loc[3:6]``, ``loc[6:9]``, ``loc[9:12]`` the unit
        vectors ex, ey, ez of the coil frame; ez is the outward helmet normal (away from the
        head) and the two gradiometers of a triplet measure along orthogonal tangents.

    Notes
    -----
    ``info['dig']`` is empty, so ``mne.make_sphere_model('auto', 'auto', info)`` cannot fit a
    head shape; use a fixed sphere such as ``mne.make_sphere_model(r0=(0., 0., 0.04),
    head_radius=None)`` or a BEM.
    """
    import mne
    from mne.io.constants import FIFF

    sfreq = _check_positive("sfreq", sfreq)
    _check_option("geometry", geometry, ("vectorview", "helmet"))
    n_locations = _check_int("n_locations", n_locations, minimum=1)
    if geometry == "vectorview":
        if n_locations > _N_VECTORVIEW:
            raise ValueError(
                f"'n_locations' must be at most {_N_VECTORVIEW} for geometry='vectorview' (the "
                f"real array has {_N_VECTORVIEW} sensor locations), got {n_locations}. Use "
                "geometry='helmet' for a denser synthetic array."
            )
        names, locs, coil_types = _read_vectorview_geometry()
        if n_locations < _N_VECTORVIEW:
            location_of = np.array([name[:-1] for name in names])
            _, first = np.unique(location_of, return_index=True)
            first = np.sort(first)  # one channel per location, in file order
            centres = locs[first, :3]
            keep = _farthest_point_order(centres, n_locations, start=int(np.argmax(centres[:, 2])))
            keep_loc = set(location_of[first[keep]])
            sel = np.array([loc in keep_loc for loc in location_of])
            names = [n for n, s in zip(names, sel) if s]
            locs, coil_types = locs[sel], coil_types[sel]
    else:
        names, locs, coil_types = _helmet_geometry(n_locations)

    ch_types = ["mag" if c == FIFF.FIFFV_COIL_VV_MAG_T3 else "grad" for c in coil_types]
    info = mne.create_info(names, sfreq, ch_types)
    for ch, loc, coil in zip(info["chs"], locs, coil_types):
        ch["loc"][:] = loc
        ch["coil_type"] = int(coil)
        ch["kind"] = FIFF.FIFFV_MEG_CH
        ch["unit"] = FIFF.FIFF_UNIT_T if coil == FIFF.FIFFV_COIL_VV_MAG_T3 else FIFF.FIFF_UNIT_T_M
        ch["coord_frame"] = FIFF.FIFFV_COORD_DEVICE
        digits = "".join(c for c in ch["ch_name"] if c.isdigit())
        ch["logno"] = int(digits)
    info["dev_head_t"] = _as_dev_head_t(DEFAULT_DEV_HEAD_T if dev_head_t is None else dev_head_t)
    _check_head_clearance(info)
    logger.debug(
        "Made a %d-channel MEG info (%d magnetometers, %d gradiometers, geometry=%r).",
        len(names),
        ch_types.count("mag"),
        ch_types.count("grad"),
        geometry,
    )
    return info


def apply_head_position(info, dev_head_t):
    """Return a copy of ``info`` with the subject's head at a different position in the helmet.

    Parameters
    ----------
    info : mne.Info
        Measurement info with MEG channels (positions in device coordinates, unchanged).
    dev_head_t : array, shape (4, 4) | mne.transforms.Transform
        New device-to-head transform, metres (``r_head = R @ r_dev + t``). A head-to-device
        ``Transform`` is inverted.

    Returns
    -------
    info : mne.Info
        A copy with ``info['dev_head_t']`` replaced. A warning is logged when a 9 cm head
        sphere centred at (0, 0, 0.04) m in head coordinates would not fit inside the sensors.
    """
    import mne

    if not isinstance(info, mne.Info):
        raise TypeError(f"'info' must be an mne.Info, got {type(info).__name__}.")
    trans = _as_dev_head_t(dev_head_t)
    info = info.copy()
    info["dev_head_t"] = trans
    _check_head_clearance(info)
    return info
