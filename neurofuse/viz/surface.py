"""Per-source maps on the inflated fsaverage5 surface, drawn with nilearn's matplotlib engine.

The fsaverage ``oct6`` source space holds 4098 sources per hemisphere, a subset of the 10242
vertices of the embedded fsaverage5 mesh (MNE vertex numbers index that mesh). To colour the
whole mesh, :func:`spread_to_mesh` gives every mesh vertex the value of its nearest source
vertex on the registration sphere (great-circle nearest neighbour, scipy ``cKDTree``), so each
source vertex keeps exactly its own value and the map is piecewise constant around it.

Everything here is pure matplotlib (no display, no 3-D rendering backend): figures are
``matplotlib.figure.Figure`` objects that are not registered with pyplot, so they need no
``plt.close`` and render with Agg wherever they are saved.
"""

from __future__ import annotations

import functools

import numpy as np

from .._checks import _check_ndim, _check_option, _check_positive

#: Number of vertices per hemisphere of the fsaverage5 mesh.
N_MESH_VERTICES = 10242
_HEMIS = ("lh", "rh")
_NILEARN_HEMI = {"lh": "left", "rh": "right"}
_VIEWS = ("lateral", "medial", "dorsal", "ventral", "anterior", "posterior")
_HEMI_LABEL = {"lh": "left", "rh": "right"}


@functools.lru_cache(maxsize=8)
def _surface(surface: str, hemi: str):
    """Read-only (rr, tris) of an embedded fsaverage5 surface (cached)."""
    from ..anatomy.template import read_template_surface

    rr, tris = read_template_surface(surface, hemi)
    rr.flags.writeable = False
    tris.flags.writeable = False
    return rr, tris


@functools.lru_cache(maxsize=2)
def _sulcal_depth(hemi: str) -> np.ndarray:
    """Sulcal depth of the fsaverage5 mesh (nilearn's packaged ``sulc_{left,right}.gii.gz``)."""
    import nibabel as nib

    from ..anatomy.template import _nilearn_fsaverage5_dir

    fname = _nilearn_fsaverage5_dir() / f"sulc_{_NILEARN_HEMI[hemi]}.gii.gz"
    sulc = np.asarray(nib.load(fname).darrays[0].data, float)
    sulc.flags.writeable = False
    return sulc


def _as_vertices(vertices) -> list[np.ndarray]:
    """[lh_vertno, rh_vertno] from a list of two arrays or an ``mne.SourceSpaces``."""
    if isinstance(vertices, (list, tuple)) and len(vertices) == 2:
        out = []
        for hemi, v in zip(_HEMIS, vertices):
            if isinstance(v, dict) and "vertno" in v:  # one mne source space
                v = v["vertno"]
            v = np.asarray(v)
            if v.ndim != 1 or (v.size and not np.issubdtype(v.dtype, np.integer)):
                raise ValueError(
                    f"'vertices' must be [lh_vertno, rh_vertno], two 1-D integer arrays; the "
                    f"{hemi} entry has shape {v.shape} and dtype {v.dtype}."
                )
            v = v.astype(np.int64)
            if v.size and (v.min() < 0 or v.max() >= N_MESH_VERTICES):
                raise ValueError(
                    f"'vertices' ({hemi}) must be vertex numbers of the fsaverage5 mesh, in "
                    f"[0, {N_MESH_VERTICES - 1}]; got values from {v.min()} to {v.max()}. Maps "
                    "on a full fsaverage (ico7) source space need morphing to fsaverage5 first."
                )
            if np.unique(v).size != v.size:
                raise ValueError(f"'vertices' ({hemi}) contains repeated vertex numbers.")
            out.append(v)
        return out
    raise TypeError(
        "'vertices' must be [lh_vertno, rh_vertno] (two integer arrays) or an "
        f"mne.SourceSpaces with two hemispheres, got {type(vertices).__name__}."
    )


def spread_to_mesh(values, vertices) -> list[np.ndarray]:
    """Spread per-source values to every vertex of the fsaverage5 mesh.

    Each mesh vertex takes the value of the nearest source vertex on the registration sphere
    (the same hemisphere). Source vertices keep their own value.

    Parameters
    ----------
    values : array, shape (n_sources,)
        One value per source, lh sources first then rh, in the order of ``vertices``.
    vertices : [array, array] | mne.SourceSpaces
        ``[lh_vertno, rh_vertno]``: vertex numbers into the fsaverage5 mesh (10242 per
        hemisphere), e.g. ``[s["vertno"] for s in src]`` for the fsaverage oct6 source space.

    Returns
    -------
    mesh_values : list of two arrays, shape (10242,)
        lh and rh values on the full mesh; all NaN for a hemisphere without sources.
    """
    from scipy.spatial import cKDTree

    vertices = _as_vertices(vertices)
    values = _check_ndim("values", values, 1, "(n_sources,)")
    if not np.issubdtype(values.dtype, np.number):
        raise TypeError(f"'values' must be numeric, got dtype {values.dtype}.")
    n_src = sum(len(v) for v in vertices)
    if values.shape[0] != n_src:
        raise ValueError(
            f"'values' must have one entry per source: the vertices hold {len(vertices[0])} lh "
            f"+ {len(vertices[1])} rh = {n_src} sources, got shape {values.shape}."
        )
    out, start = [], 0
    for hemi, vertno in zip(_HEMIS, vertices):
        vals = values[start:start + len(vertno)].astype(float)
        start += len(vertno)
        if not len(vertno):
            out.append(np.full(N_MESH_VERTICES, np.nan))
            continue
        sphere, _ = _surface("sphere", hemi)
        _, nearest = cKDTree(sphere[vertno]).query(sphere, k=1)
        mesh = vals[nearest]
        mesh[vertno] = vals  # exact, whatever ties the tree resolved
        out.append(mesh)
    return out


def _color_limits(values, vmin, vmax, cmap):
    """Colour limits and colormap: symmetric around 0 (RdBu_r) when values go negative."""
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    amax = float(np.abs(finite).max()) if finite.size else 1.0
    amax = amax if amax > 0 else 1.0
    signed = bool(finite.size and finite.min() < 0)
    if vmin is None and vmax is None:
        vmin, vmax = (-amax, amax) if signed else (0.0, amax)
    elif vmin is None:
        vmin = -abs(float(vmax)) if signed else min(0.0, float(vmax) - 1.0)
    elif vmax is None:
        vmax = amax if amax > vmin else float(vmin) + 1.0
    vmin, vmax = float(vmin), float(vmax)
    if not (np.isfinite(vmin) and np.isfinite(vmax) and vmin < vmax):
        raise ValueError(f"'vmin' must be smaller than 'vmax' (both finite), got {vmin} and {vmax}.")
    if cmap is None:
        cmap = "RdBu_r" if vmin < 0 else "YlOrRd"
    return vmin, vmax, cmap


def plot_source_map(
    values,
    vertices,
    *,
    hemi="both",
    views=("lateral", "medial"),
    title=None,
    cmap=None,
    vmin=None,
    vmax=None,
    threshold=None,
    colorbar=True,
    cbar_label=None,
    figsize=None,
    axes=None,
    dpi=100,
):
    """Draw a per-source map on the inflated fsaverage5 surface (sulcal depth underneath).

    Parameters
    ----------
    values : array, shape (n_sources,)
        One value per source (e.g. Pearson r per source), lh sources then rh.
    vertices : [array, array] | mne.SourceSpaces
        ``[lh_vertno, rh_vertno]`` vertex numbers into the fsaverage5 mesh (the fsaverage
        ``oct6`` source space: 4098 per hemisphere). See :func:`spread_to_mesh`.
    hemi : 'both' | 'lh' | 'rh'
        Hemispheres to draw, one row each.
    views : sequence of str
        One column per view: 'lateral', 'medial', 'dorsal', 'ventral', 'anterior',
        'posterior'.
    title : str | None
        Figure title.
    cmap : str | matplotlib colormap | None
        ``None``: 'RdBu_r' when the colour range includes negative values, else 'YlOrRd'.
    vmin, vmax : float | None
        Colour limits, shared by all panels. ``None``: symmetric ``±max|values|`` when any
        value is negative, else ``[0, max]``.
    threshold : float | None
        Values with ``|value| < threshold`` are not coloured (the sulcal background shows).
        NaN values are never coloured.
    colorbar : bool
        Add one colour bar for all panels.
    cbar_label : str | None
        Label of the colour bar.
    figsize : (float, float) | None
        Default: 3.2 inches per view by 2.6 inches per hemisphere (+ colour bar).
    axes : sequence of matplotlib 3-D axes | None
        ``n_hemis * n_views`` axes (``projection='3d'``), filled row by row (hemisphere by
        view) in an existing figure. ``None`` makes a new figure.
    dpi : float
        Resolution of a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Not registered with pyplot (no ``plt.close`` needed; saving uses Agg).

    Notes
    -----
    Drawing takes well under a second per panel; saving a 2 x 2 figure at 100 dpi about a
    second on one CPU core (matplotlib sorts the 20480 faces per panel).
    """
    import matplotlib as mpl
    from matplotlib.figure import Figure
    from nilearn import plotting

    _check_option("hemi", hemi, ("both", "lh", "rh"))
    if isinstance(views, str):
        views = (views,)
    views = tuple(views)
    if not views:
        raise ValueError("'views' must name at least one view, got an empty sequence.")
    for view in views:
        _check_option("views", view, _VIEWS)
    if threshold is not None:
        threshold = _check_positive("threshold", threshold, allow_zero=True)
    mesh_values = spread_to_mesh(values, vertices)
    hemis = _HEMIS if hemi == "both" else (hemi,)
    shown = np.concatenate([mesh_values[_HEMIS.index(h)] for h in hemis])
    vmin, vmax, cmap = _color_limits(shown, vmin, vmax, cmap)
    cmap = mpl.colormaps[cmap] if isinstance(cmap, str) else cmap

    n_rows, n_cols = len(hemis), len(views)
    own_axes = axes is None
    if own_axes:
        if figsize is None:
            figsize = (3.2 * n_cols + (1.1 if colorbar else 0.0), 2.6 * n_rows + (0.4 if title else 0))
        fig = Figure(figsize=figsize, dpi=dpi)
        axes = [fig.add_subplot(n_rows, n_cols, i + 1, projection="3d")
                for i in range(n_rows * n_cols)]
        right = 1.0 - (1.1 / figsize[0] if colorbar else 0.0)
        top = 1.0 - (0.4 / figsize[1] if title else 0.0)
        fig.subplots_adjust(left=0.0, right=right, bottom=0.0, top=top, wspace=0.0, hspace=0.0)
    else:
        axes = list(np.ravel(axes))
        if len(axes) != n_rows * n_cols:
            raise ValueError(
                f"'axes' must hold {n_rows * n_cols} 3-D axes ({n_rows} hemispheres x {n_cols} "
                f"views), got {len(axes)}."
            )
        fig = axes[0].get_figure()

    for r, h in enumerate(hemis):
        rr, tris = _surface("inflated", h)
        data = mesh_values[_HEMIS.index(h)]
        for c, view in enumerate(views):
            ax = axes[r * n_cols + c]
            plotting.plot_surf_stat_map(
                (np.array(rr), np.array(tris)), data, bg_map=np.array(_sulcal_depth(h)),
                hemi=_NILEARN_HEMI[h], view=view, engine="matplotlib", cmap=cmap,
                colorbar=False, threshold=threshold, vmin=vmin, vmax=vmax,
                symmetric_cbar=False, axes=ax, figure=fig,
            )
            ax.set_box_aspect(None, zoom=1.55)  # nilearn leaves a wide margin (zoom 1.3)
            ax.text2D(0.5, 0.02, f"{_HEMI_LABEL[h]} {view}", transform=ax.transAxes,
                      ha="center", va="bottom", fontsize=8, color="0.3")
    if colorbar:
        sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(vmin, vmax), cmap=cmap)
        if own_axes:
            width = fig.get_figwidth()
            cbar = fig.colorbar(sm, cax=fig.add_axes((1.0 - 0.95 / width, 0.2, 0.12 / width, 0.6)))
        else:
            cbar = fig.colorbar(sm, ax=axes, shrink=0.6)
        if cbar_label:
            cbar.set_label(cbar_label)
        if threshold:
            cbar.ax.axhspan(max(-threshold, vmin), min(threshold, vmax), color="0.8", zorder=3)
    if title:
        fig.suptitle(title)
    return fig
