"""ECoG grids and strips placed on a cortical surface, and their measurement info.

Electrodes are placed on a surface given in **MRI (surface RAS)** coordinates (metres);
:func:`make_ecog_info` converts them to head coordinates with fiducials (by default the
fsaverage fiducials that MNE ships, consistent with ``fsaverage-trans.fif``).
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from ..._checks import (
    _check_finite,
    _check_int,
    _check_ndim,
    _check_option,
    _check_positive,
    _check_random_state,
)
from ..._logging import logger, verbose
from ..template import _mne_fsaverage_dir
from ._mesh import _convex_envelope, _Mesh, _walk_on_mesh

__all__ = ["ElectrodeArray", "make_ecog_electrodes", "make_ecog_info"]

_MAX_CENTER_DISTANCE = 0.03  # m: ECoG centre farther than this from the surface is an error


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


def _check_grid_shape(kind: str, shape):
    if shape is None:
        return (8, 8) if kind == "grid" else (1, 8)
    try:
        if not isinstance(shape, (tuple, list)) or len(shape) != 2:
            raise ValueError("not a pair")
        shape = tuple(_check_int(f"shape[{k}]", s, minimum=1) for k, s in enumerate(shape))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"'shape' must be two positive ints (n_rows, n_cols), got {shape!r}. "
            "Example: shape=(8, 8) for a grid, shape=(1, 8) for a strip."
        ) from err
    if kind == "strip" and shape[0] != 1:
        raise ValueError(
            f"A 'strip' has a single row: 'shape' must be (1, n_electrodes), got {shape}. "
            f"Use shape=(1, {shape[0] * shape[1]}) or kind='grid'."
        )
    return shape


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

    path = _mne_fsaverage_dir() / "fsaverage-fiducials.fif"
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
