"""Sensor arrays: a 306-channel MEGIN/Elekta MEG, EEG montages, and ECoG grids and strips.

Coordinate frames and units (SI throughout):

- MEG channel ``loc`` values are in **MEG device** coordinates (metres); ``info['dev_head_t']``
  maps device to head coordinates (``r_head = R @ r_dev + t``), as in real Neuromag files.
- EEG positions are in **head** coordinates (Neuromag convention: x towards RPA, y towards the
  nasion, z up), derived from the montage's fiducials.
- ECoG electrodes are placed on a cortical surface given in **MRI (surface RAS)** coordinates
  (metres); :func:`make_ecog_info` converts them to head coordinates with fiducials (by default
  the fsaverage fiducials that MNE ships, consistent with ``fsaverage-trans.fif``).
"""

from __future__ import annotations

import csv
import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._checks import (
    _check_finite,
    _check_ndim,
    _check_option,
    _check_positive,
    _check_random_state,
)
from ..._logging import logger, verbose
from ..surfaces import fit_sphere

__all__ = [
    "DEFAULT_DEV_HEAD_T",
    "ElectrodeArray",
    "apply_head_position",
    "make_ecog_electrodes",
    "make_ecog_info",
    "make_eeg_info",
    "make_meg_info",
]

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
_MAX_CENTER_DISTANCE = 0.03  # m: ECoG centre farther than this from the surface is an error


def _mne_data_dir() -> Path:
    import mne

    return Path(mne.__file__).parent


# ---------------------------------------------------------------------------------------------
# MEG
# ---------------------------------------------------------------------------------------------


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
    if not isinstance(n_locations, numbers.Integral) or isinstance(n_locations, bool):
        raise TypeError(f"'n_locations' must be an int, got {type(n_locations).__name__}.")
    if n_locations < 1:
        raise ValueError(f"'n_locations' must be >= 1, got {n_locations}.")
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


# ---------------------------------------------------------------------------------------------
# EEG
# ---------------------------------------------------------------------------------------------

# MNE 1.13 renamed the 'standard_*' montages (the Colin27 head, with the fsaverage fiducials)
# to 'colin27_*' and will drop the old names in 1.14; map either name to what is installed.
_MONTAGE_ALIASES = {
    f"standard_{s}": f"colin27_{s}"
    for s in ("1005", "1020", "alphabetic", "postfixed", "prefixed", "primed")
}


def _resolve_montage_name(name: str) -> str:
    import mne

    builtin = list(mne.channels.get_builtin_montages())
    if name in builtin:
        return name
    reverse = {v: k for k, v in _MONTAGE_ALIASES.items()}
    for table in (_MONTAGE_ALIASES, reverse):
        if table.get(name) in builtin:
            return table[name]
    raise ValueError(
        f"Invalid value for the 'montage' parameter: {name!r} is not a built-in MNE montage. "
        f"Valid names include {builtin[:6]}...; list all {len(builtin)} with "
        "mne.channels.get_builtin_montages(), or pass an mne.channels.DigMontage."
    )


@verbose
def make_eeg_info(montage="colin27_1020", sfreq: float = 50.0, *, verbose=None):
    """Make the measurement info of an EEG cap from an MNE built-in montage.

    Parameters
    ----------
    montage : str | mne.channels.DigMontage
        Name of a built-in montage (see ``mne.channels.get_builtin_montages()``), e.g.
        ``'colin27_1020'`` (94 extended 10-20 positions; the default), ``'fsaverage_1010'``
        (70 positions on the fsaverage head), ``'biosemi64'``, ``'GSN-HydroCel-129'``; the
        deprecated ``'standard_1020'``/``'standard_1005'`` names are accepted as aliases of
        ``'colin27_1020'``/``'colin27_1005'``. A ``DigMontage`` with fiducials is used as is.
    sfreq : float
        Sampling frequency in Hz.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    info : mne.Info
        One ``'eeg'`` channel per montage electrode, positions in head coordinates (metres)
        computed from the montage's fiducials. The ``colin27_*`` and ``fsaverage_*`` montages
        carry the fsaverage fiducials (or close to them), so they line up with the fsaverage
        head (``trans='fsaverage'``) within a few mm; spherical montages (``biosemi*``,
        ``easycap-*``, ``spherical_*``) do not.

    Notes
    -----
    The channels are left **unreferenced**: no reference channel position and no average
    reference projector are set. Before inverse modelling call
    ``mne.set_eeg_reference(inst, projection=True)`` (MNE's inverse requires it); for
    simulation, apply the reference of the system you mimic to the simulated data.
    """
    import mne

    sfreq = _check_positive("sfreq", sfreq)
    if isinstance(montage, str):
        name = _resolve_montage_name(montage)
        if name != montage:
            logger.debug("Montage %r is called %r in this mne version; using it.", montage, name)
        mon = mne.channels.make_standard_montage(name)
        if name.startswith("artinis"):
            raise ValueError(
                f"Invalid value for the 'montage' parameter: {montage!r} is an fNIRS optode "
                "montage, not EEG. Choose an EEG montage such as 'colin27_1020'."
            )
    elif isinstance(montage, mne.channels.DigMontage):
        mon, name = montage, "custom DigMontage"
    else:
        raise TypeError(
            f"'montage' must be a montage name (str) or an mne.channels.DigMontage, got "
            f"{type(montage).__name__}."
        )
    if len(mon.ch_names) == 0:
        raise ValueError("'montage' has no electrode positions.")
    info = mne.create_info(list(mon.ch_names), sfreq, "eeg")
    info.set_montage(mon, verbose=False)
    logger.debug("Made a %d-channel EEG info from %s (head coordinates).", len(mon.ch_names), name)
    return info


# ---------------------------------------------------------------------------------------------
# ECoG
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ElectrodeArray:
    """An ECoG grid or strip placed on a cortical surface.

    Attributes
    ----------
    names : tuple of str, length n_electrodes
        Electrode names, row-major (``'G1'``, ``'G2'``, ...).
    pos : array, shape (n_electrodes, 3)
        Electrode centres in the surface's coordinates (MRI surface RAS), metres.
    normals : array, shape (n_electrodes, 3)
        Unit outward surface normals at the contact points.
    kind : ``'grid'`` | ``'strip'``
    shape : tuple of int, (n_rows, n_cols)
    spacing : float
        Requested centre-to-centre spacing, metres.
    vertices : array of int, shape (n_electrodes,)
        Index of the surface vertex nearest to each electrode.
    """

    names: tuple
    pos: np.ndarray
    normals: np.ndarray
    kind: str
    shape: tuple
    spacing: float
    vertices: np.ndarray

    def __post_init__(self):
        n = len(self.names)
        for attr, arr in (("pos", self.pos), ("normals", self.normals)):
            arr = np.array(arr, float)
            if arr.shape != (n, 3):
                raise ValueError(
                    f"'{attr}' must have shape (n_electrodes, 3) = ({n}, 3), got {arr.shape}."
                )
            arr.setflags(write=False)
            object.__setattr__(self, attr, arr)
        vert = np.array(self.vertices, int)
        if vert.shape != (n,):
            raise ValueError(f"'vertices' must have shape ({n},), got {vert.shape}.")
        vert.setflags(write=False)
        object.__setattr__(self, "vertices", vert)
        object.__setattr__(self, "names", tuple(self.names))

    def __len__(self) -> int:
        return len(self.names)


def _vertex_normals(rr: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals; zeros for vertices in no triangle."""
    face = np.cross(rr[tris[:, 1]] - rr[tris[:, 0]], rr[tris[:, 2]] - rr[tris[:, 0]])  # (F, 3)
    nn = np.zeros_like(rr)
    for k in range(3):
        np.add.at(nn, tris[:, k], face)
    norm = np.linalg.norm(nn, axis=1, keepdims=True)
    return np.divide(nn, norm, out=np.zeros_like(nn), where=norm > 0)


def _closest_on_triangles(p, a, b, c):
    """Closest points to ``p`` on triangles (a, b, c); all arrays shape (m, 3).

    Returns the points, shape (m, 3), and barycentric weights, shape (m, 3).
    """
    ab, ac, ap = b - a, c - a, p - a
    d00 = np.einsum("ij,ij->i", ab, ab)
    d01 = np.einsum("ij,ij->i", ab, ac)
    d11 = np.einsum("ij,ij->i", ac, ac)
    d20 = np.einsum("ij,ij->i", ap, ab)
    d21 = np.einsum("ij,ij->i", ap, ac)
    den = d00 * d11 - d01**2
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (d11 * d20 - d01 * d21) / den
        w = (d00 * d21 - d01 * d20) / den
    u = 1.0 - v - w
    inside = (den > 0) & (u >= 0) & (v >= 0) & (w >= 0)
    bary = np.where(inside[:, None], np.c_[u, v, w], np.nan)
    best = np.where(inside[:, None], a + v[:, None] * ab + w[:, None] * ac, np.nan)
    best_d = np.where(inside, np.linalg.norm(p - best, axis=1), np.inf)
    # Outside the triangle (or degenerate): the closest point is on one of the edges.
    for (s, e), (i, j) in (((a, b), (0, 1)), ((b, c), (1, 2)), ((c, a), (2, 0))):
        se = e - s
        len2 = np.einsum("ij,ij->i", se, se)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.clip(np.einsum("ij,ij->i", p - s, se) / len2, 0.0, 1.0)
        t = np.where(len2 > 0, t, 0.0)
        q = s + t[:, None] * se
        d = np.linalg.norm(p - q, axis=1)
        better = ~inside & (d < best_d)
        best[better], best_d[better] = q[better], d[better]
        wts = np.zeros((len(p), 3))
        wts[:, i], wts[:, j] = 1.0 - t, t
        bary[better] = wts[better]
    return best, bary


def _check_grid_shape(kind: str, shape):
    if shape is None:
        return (8, 8) if kind == "grid" else (1, 8)
    ok = (
        isinstance(shape, (tuple, list))
        and len(shape) == 2
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in shape)
    )
    if not ok:
        raise ValueError(
            f"'shape' must be two positive ints (n_rows, n_cols), got {shape!r}. "
            "Example: shape=(8, 8) for a grid, shape=(1, 8) for a strip."
        )
    shape = (int(shape[0]), int(shape[1]))
    if kind == "strip" and shape[0] != 1:
        raise ValueError(
            f"A 'strip' has a single row: 'shape' must be (1, n_electrodes), got {shape}. "
            f"Use shape=(1, {shape[0] * shape[1]}) or kind='grid'."
        )
    return shape


class _Mesh:
    """A triangle mesh with exact closest-point queries and unit vertex normals."""

    def __init__(self, rr: np.ndarray, tris: np.ndarray):
        from scipy.spatial import cKDTree

        self.rr, self.tris = rr, tris
        self.nn = _vertex_normals(rr, tris)
        self.used = np.unique(tris)  # vertices that belong to a triangle
        self.tree = cKDTree(rr[self.used])
        corners = rr[tris]  # (F, 3, 3)
        self.centroids = corners.mean(axis=1)
        self.radii = np.linalg.norm(corners - self.centroids[:, None], axis=2).max(axis=1)
        self.centroid_tree = cKDTree(self.centroids)

    def nearest_vertex(self, points):
        dist, idx = self.tree.query(points)
        return dist, self.used[idx]

    def project(self, points):
        """Closest points of the mesh to ``points`` (n, 3), and unit normals there.

        Exact: a triangle can only hold a point closer than the nearest vertex if its
        bounding sphere (centroid, radius) does, so only those triangles are tested.

        Returns
        -------
        closest : array, shape (n, 3)
        normals : array, shape (n, 3)
            Vertex normals interpolated with the barycentric weights of the closest point.
        """
        points = np.atleast_2d(np.asarray(points, float))
        d_vert, _ = self.tree.query(points)
        cand = self.centroid_tree.query_ball_point(points, d_vert + self.radii.max() + 1e-12)
        pt_idx = np.repeat(np.arange(len(points)), [len(c) for c in cand])
        tri_idx = np.concatenate([np.asarray(c, int) for c in cand])
        keep = (
            np.linalg.norm(points[pt_idx] - self.centroids[tri_idx], axis=1) - self.radii[tri_idx]
            <= d_vert[pt_idx] + 1e-12
        )
        pt_idx, tri_idx = pt_idx[keep], tri_idx[keep]
        tri = self.tris[tri_idx]
        corners = [self.rr[tri[:, k]] for k in range(3)]
        q, bary = _closest_on_triangles(points[pt_idx], *corners)
        dist = np.linalg.norm(q - points[pt_idx], axis=1)
        order = np.lexsort((dist, pt_idx))  # by point, then by distance
        first = order[np.searchsorted(pt_idx[order], np.arange(len(points)))]
        closest = q[first]
        normals = np.einsum("ij,ijk->ik", bary[first], self.nn[tri[first]])
        norm = np.linalg.norm(normals, axis=1, keepdims=True)
        return closest, normals / np.where(norm > 0, norm, 1.0)


def _convex_envelope(rr: np.ndarray, used: np.ndarray) -> _Mesh:
    """The convex hull of the surface, triangles oriented outwards: where a grid rests."""
    from scipy.spatial import ConvexHull

    hull = ConvexHull(rr[used])
    tris = used[hull.simplices]
    inner = rr[used[hull.vertices]].mean(axis=0)
    face = np.cross(rr[tris[:, 1]] - rr[tris[:, 0]], rr[tris[:, 2]] - rr[tris[:, 0]])
    flip = np.einsum("ij,ij->i", face, rr[tris[:, 0]] - inner) < 0
    tris[flip] = tris[flip][:, ::-1]
    return _Mesh(rr, tris)


def _walk_on_mesh(mesh: _Mesh, p0, directions, lengths, step):
    """Walk from ``p0`` along each tangent direction for a given length on the mesh surface.

    A discrete exponential map: small steps, each re-projected onto the mesh, with the heading
    kept tangent, so that each end point is ``length`` away from ``p0`` along the surface.

    Parameters
    ----------
    p0 : array, shape (3,)
        Start point on the mesh.
    directions : array, shape (n, 3)
        Unit headings in the tangent plane at ``p0``.
    lengths : array, shape (n,)
        Path lengths, metres.
    step : float
        Step length, metres.

    Returns
    -------
    points : array, shape (n, 3)
    """
    n = len(lengths)
    p = np.tile(p0, (n, 1))
    heading = directions.copy()
    remaining = lengths.astype(float).copy()
    for _ in range(int(np.ceil(lengths.max() / step)) * 4 + 1):
        todo = remaining > 1e-6
        if not todo.any():
            break
        h = np.minimum(step, remaining[todo])
        q, nrm = mesh.project(p[todo] + h[:, None] * heading[todo])
        disp = q - p[todo]
        moved = np.linalg.norm(disp, axis=1)
        # On a convex surface re-projection shortens the step: walk on the shortfall next time.
        remaining[todo] -= np.maximum(moved, 0.25 * h)
        tangent = disp - np.einsum("ij,ij->i", disp, nrm)[:, None] * nrm
        tnorm = np.linalg.norm(tangent, axis=1, keepdims=True)
        unit = tangent / np.where(tnorm > 0, tnorm, 1.0)
        heading[todo] = np.where(tnorm > 1e-12, unit, heading[todo])
        p[todo] = q
    return p


@verbose
def make_ecog_electrodes(
    surface_rr,
    surface_tris,
    *,
    center,
    kind: str = "grid",
    shape=None,
    spacing: float = 0.01,
    angle: float = 0.0,
    snap: str = "surface",
    offset: float = 0.001,
    jitter: float = 0.0,
    prefix: str | None = None,
    seed=None,
    verbose=None,
) -> ElectrodeArray:
    """Place an ECoG grid or strip on a cortical surface.

    A grid is a sheet that rests on the brain's convex envelope (the dura), not on the folded
    cortex, so the layout is built there: ``center`` is snapped to the nearest surface vertex
    and then to the convex hull of the surface; the rows x cols layout is drawn in the
    tangent plane there (plane normal: the mean envelope normal under the array) and wrapped
    onto the envelope by walking along it (distances from the centre are preserved along
    the surface). With ``snap='surface'`` each electrode then moves to the closest point of
    the given surface and ``offset`` outwards along its normal, so the contacts touch the
    cortex; with ``snap='envelope'`` they stay on the envelope.

    Parameters
    ----------
    surface_rr : array, shape (n_vertices, 3)
        Surface vertices (e.g. a pial surface), metres.
    surface_tris : array of int, shape (n_triangles, 3)
        Triangles (vertex indices). Normals are taken to point out of the brain, and flipped
        (logged) if most of them point inwards.
    center : array, shape (3,)
        Array centre in the surface's coordinates, metres; snapped to the nearest vertex,
        which must be within 3 cm.
    kind : ``'grid'`` | ``'strip'``
        Array kind; a strip has one row.
    shape : tuple of int (n_rows, n_cols) | None
        Layout; ``None`` gives (8, 8) for a grid and (1, 8) for a strip.
    spacing : float
        Centre-to-centre spacing of the layout, metres (1 cm for clinical grids).
    angle : float
        Rotation of the layout about the normal, degrees. At 0 the columns (a strip's long
        axis) run along the superior direction (+z) projected onto the tangent plane (+y where
        the normal is nearly vertical).
    snap : ``'surface'`` | ``'envelope'``
        ``'surface'`` (default): electrodes on the given surface (plus ``offset``). On folded
        cortex neighbouring contacts then land on the nearest gyral crowns or sulcal lips, so
        individual spacings vary (typically 0.5-1.5 times ``spacing``, median close to it), as
        for real electrodes projected onto a pial surface. ``'envelope'``: electrodes stay on
        the convex envelope (plus ``offset``), spacings stay within ~15 % of ``spacing``, and
        the distance to the cortex varies (a few mm over sulci, more over fissures).
    offset : float
        Distance of each electrode from the surface (or envelope) along its normal, metres.
    jitter : float
        Standard deviation, metres, of a random displacement of each electrode in the layout
        plane (placement/localisation error); 0 gives a deterministic array.
    prefix : str | None
        Name prefix; ``None`` gives ``'G'`` for grids and ``'S'`` for strips.
    seed : None | int | numpy.random.Generator
        Random state for ``jitter``.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    electrodes : ElectrodeArray
        Names ``prefix + '1'`` ... row-major, positions (n, 3) m, unit outward normals (n, 3),
        nearest surface vertices (n,).
    """
    rr = _check_ndim("surface_rr", surface_rr, 2, "(n_vertices, 3)")
    rr = _check_finite("surface_rr", rr).astype(float)
    if rr.shape[1] != 3 or len(rr) < 4:
        raise ValueError(f"'surface_rr' must have shape (n_vertices >= 4, 3), got {rr.shape}.")
    tris = _check_ndim("surface_tris", surface_tris, 2, "(n_triangles, 3)")
    if tris.shape[1] != 3 or len(tris) == 0 or not np.issubdtype(tris.dtype, np.integer):
        raise ValueError(
            f"'surface_tris' must be an integer array of shape (n_triangles, 3), got shape "
            f"{tris.shape} and dtype {tris.dtype}."
        )
    if tris.min() < 0 or tris.max() >= len(rr):
        raise ValueError(
            f"'surface_tris' indexes vertices {tris.min()}..{tris.max()} but 'surface_rr' has "
            f"{len(rr)} vertices (valid 0..{len(rr) - 1})."
        )
    extent = float(np.ptp(rr, axis=0).max())
    if extent > 1.0:
        raise ValueError(
            f"'surface_rr' spans {extent:.4g} units: it looks like millimetres, but metres are "
            "expected. Divide the vertices (and 'center') by 1000."
        )
    _check_option("kind", kind, ("grid", "strip"))
    _check_option("snap", snap, ("surface", "envelope"))
    shape = _check_grid_shape(kind, shape)
    spacing = _check_positive("spacing", spacing)
    offset = _check_positive("offset", offset, allow_zero=True)
    jitter = _check_positive("jitter", jitter, allow_zero=True)
    if not isinstance(angle, numbers.Real) or isinstance(angle, bool) or not np.isfinite(angle):
        raise ValueError(f"'angle' must be a finite number of degrees, got {angle!r}.")
    if prefix is None:
        prefix = "G" if kind == "grid" else "S"
    if not isinstance(prefix, str):
        raise TypeError(f"'prefix' must be a str, got {type(prefix).__name__}.")
    center = np.asarray(center, float)
    if center.shape != (3,):
        raise ValueError(f"'center' must have shape (3,) (x, y, z in metres), got shape {center.shape}.")
    _check_finite("center", center)
    rng = _check_random_state(seed)

    surf = _Mesh(rr, tris.astype(np.int64))
    used = surf.used
    if np.mean(np.einsum("ij,ij->i", surf.nn[used], rr[used] - rr[used].mean(axis=0))) < 0:
        logger.info("Most surface normals point inwards; flipping them (triangle order reversed).")
        surf.nn = -surf.nn
    dist, v0 = surf.nearest_vertex(center)
    if dist > _MAX_CENTER_DISTANCE:
        raise ValueError(
            f"'center' {np.round(center, 4).tolist()} m is {dist * 1e3:.1f} mm from the nearest "
            f"surface vertex ({np.round(rr[v0], 4).tolist()} m); it must be within "
            f"{_MAX_CENTER_DISTANCE * 1e3:.0f} mm. Check that 'center' is in metres and in the "
            "same coordinate frame (and hemisphere) as 'surface_rr'."
        )
    envelope = _convex_envelope(rr, used)
    p0, _ = envelope.project(rr[v0])
    p0 = p0[0]

    # Tangent plane at the centre: mean envelope normal under the array.
    n_rows, n_cols = shape
    half_extent = 0.5 * spacing * np.hypot(n_rows - 1, n_cols - 1)
    _, near = envelope.tree.query(p0, k=min(3, len(envelope.used)))
    within = envelope.tree.query_ball_point(p0, max(half_extent, spacing))
    patch = envelope.used[np.union1d(np.atleast_1d(near), within).astype(int)]
    normal = envelope.nn[patch].sum(axis=0)
    normal /= np.linalg.norm(normal)
    ref = np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = ref - (ref @ normal) * normal
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    a = np.deg2rad(angle)
    col_dir = np.cos(a) * u + np.sin(a) * v
    row_dir = np.cross(normal, col_dir)
    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    coord = np.c_[(rows.ravel() - (n_rows - 1) / 2), (cols.ravel() - (n_cols - 1) / 2)] * spacing
    if jitter > 0:
        coord = coord + rng.normal(scale=jitter, size=coord.shape)
    planar = coord[:, :1] * row_dir + coord[:, 1:] * col_dir  # (n, 3) offsets in the plane
    lengths = np.linalg.norm(planar, axis=1)
    directions = np.divide(
        planar, lengths[:, None], out=np.tile(col_dir, (len(planar), 1)), where=lengths[:, None] > 0
    )
    on_env = _walk_on_mesh(envelope, p0, directions, lengths, step=min(spacing, 0.002))

    if snap == "surface":
        contact, normals = surf.project(on_env)
    else:
        contact, normals = envelope.project(on_env)
    pos = contact + offset * normals
    _, vertices = surf.nearest_vertex(pos)

    if len(pos) > 1:
        from scipy.spatial import cKDTree

        d2, _ = cKDTree(pos).query(pos, k=2)
        if d2[:, 1].min() < 0.3 * spacing:
            logger.warning(
                "Two electrodes ended up %.1f mm apart (requested spacing %.1f mm): the cortex "
                "under the array is strongly curved or folded. Use a smaller array or spacing, "
                "another centre, or snap='envelope'.",
                d2[:, 1].min() * 1e3,
                spacing * 1e3,
            )
    names = [f"{prefix}{i + 1}" for i in range(len(pos))]
    logger.debug(
        "Placed a %d x %d ECoG %s (%d electrodes, %.1f mm spacing, snap=%r) around vertex %d.",
        n_rows, n_cols, kind, len(pos), spacing * 1e3, snap, v0,
    )
    return ElectrodeArray(
        names=tuple(names), pos=pos, normals=normals, kind=kind, shape=shape, spacing=spacing,
        vertices=vertices,
    )


def _fsaverage_fiducials() -> dict:
    import mne

    path = _mne_data_dir() / "data" / "fsaverage" / "fsaverage-fiducials.fif"
    fids, _ = mne.io.read_fiducials(path)
    names = {1: "lpa", 2: "nasion", 3: "rpa"}
    return {names[f["ident"]]: np.array(f["r"], float) for f in fids}


@verbose
def make_ecog_info(
    electrodes: ElectrodeArray, sfreq: float = 50.0, *, fiducials="fsaverage", verbose=None
):
    """Make the measurement info of an ECoG array.

    Parameters
    ----------
    electrodes : ElectrodeArray
        From :func:`make_ecog_electrodes`; positions in MRI (surface RAS) coordinates, metres.
    sfreq : float
        Sampling frequency in Hz.
    fiducials : ``'fsaverage'`` | dict | None
        Fiducials in the same MRI coordinates, used by MNE to express the electrodes in head
        coordinates: ``'fsaverage'`` (default) uses the fsaverage fiducials that MNE ships,
        consistent with ``trans='fsaverage'``; a dict needs keys ``'nasion'``, ``'lpa'``,
        ``'rpa'`` (each shape (3,), metres); ``None`` stores the MRI coordinates as head
        coordinates unchanged (an identity MRI -> head transform).
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    info : mne.Info
        One ``'ecog'`` channel per electrode; ``loc[:3]`` in head coordinates. The montage
        (``info.get_montage()``) is built with ``coord_frame='mri'`` from ``electrodes.pos``.
    """
    import mne

    if not isinstance(electrodes, ElectrodeArray):
        raise TypeError(
            f"'electrodes' must be an ElectrodeArray (from make_ecog_electrodes), got "
            f"{type(electrodes).__name__}."
        )
    sfreq = _check_positive("sfreq", sfreq)
    if isinstance(fiducials, str):
        _check_option("fiducials", fiducials, ("fsaverage",))
        fids = _fsaverage_fiducials()
    elif isinstance(fiducials, dict):
        missing = {"nasion", "lpa", "rpa"} - set(fiducials)
        if missing:
            raise ValueError(
                f"'fiducials' lacks keys {sorted(missing)}; it needs 'nasion', 'lpa' and 'rpa' "
                "(each shape (3,), metres, MRI coordinates)."
            )
        fids = {}
        for key in ("nasion", "lpa", "rpa"):
            arr = np.asarray(fiducials[key], float)
            if arr.shape != (3,):
                raise ValueError(f"'fiducials[{key!r}]' must have shape (3,), got {arr.shape}.")
            fids[key] = _check_finite(f"fiducials[{key!r}]", arr)
    elif fiducials is None:
        fids = {}
    else:
        raise TypeError(
            f"'fiducials' must be 'fsaverage', a dict or None, got {type(fiducials).__name__}."
        )
    montage = mne.channels.make_dig_montage(
        ch_pos=dict(zip(electrodes.names, np.asarray(electrodes.pos))), coord_frame="mri", **fids
    )
    info = mne.create_info(list(electrodes.names), sfreq, "ecog")
    with warnings.catch_warnings():
        if not fids:
            # MNE warns that it assumes an identity MRI -> head transform: that is what we document.
            warnings.filterwarnings("ignore", message="Fiducial point nasion not found")
        info.set_montage(montage, verbose=False)
    kind = "no" if fiducials is None else ("fsaverage" if isinstance(fiducials, str) else "custom")
    logger.debug("Made a %d-channel ECoG info (%s fiducials).", len(electrodes), kind)
    return info
