"""The fsaverage source space as a cortical sheet: source positions and spatial smoothing."""

from __future__ import annotations

import math

import numpy as np

from .._checks import _check_option
from .template import read_template_surface

_HEMIS = ("lh", "rh")


def fsaverage_source_positions(vertices=None, *, spacing="oct6", surface="pial"):
    """Positions of fsaverage source vertices on an fsaverage surface.

    Parameters
    ----------
    vertices : [array, array] | None
        ``[lh_vertno, rh_vertno]`` vertex numbers of the fsaverage5 mesh (a model's
        ``vertices``); ``None``: the embedded fsaverage ``spacing`` source space.
    spacing : str
        Source space used when ``vertices`` is None.
    surface : 'pial' | 'white' | 'inflated'
        Surface the positions are taken on. ECoG electrodes lie on the pial surface.

    Returns
    -------
    pos : array, shape (n_sources, 3)
        Metres, fsaverage surface RAS (≈ MNI305), lh sources first.
    hemi : array of str, shape (n_sources,)
    """
    from .forward import get_source_space
    from .subjects import make_template_subject

    _check_option("surface", surface, ("pial", "white", "inflated"))
    if vertices is None:
        src = get_source_space(make_template_subject(meg=False), spacing)
        vertices = [s["vertno"] for s in src]
    if len(vertices) != 2:
        raise ValueError(f"'vertices' must be [lh_vertno, rh_vertno], got {len(vertices)} entries.")
    pos, hemi = [], []
    for h, vertno in zip(_HEMIS, vertices):
        rr, _ = read_template_surface(surface, h)
        vertno = np.asarray(vertno, dtype=np.int64)
        if vertno.size and (vertno.min() < 0 or vertno.max() >= len(rr)):
            raise ValueError(f"'vertices' ({h}) must index the fsaverage5 mesh (0..{len(rr) - 1}), "
                             f"got {vertno.min()}..{vertno.max()}.")
        pos.append(rr[vertno] * 1e-3)
        hemi.append(np.full(len(vertno), h))
    return np.concatenate(pos), np.concatenate(hemi)



def source_smoother(vertices, fwhm, *, surface="white", truncate=3.0):
    """Gaussian spatial smoother over fsaverage sources, within each hemisphere.

    ``K[i, j] ∝ exp(-d_ij² / 2σ²)`` for sources ``i, j`` of the same hemisphere closer than
    ``truncate σ`` (``d``: Euclidean distance on ``surface``; ``σ = fwhm / √(8 ln 2)``), each
    row scaled to sum to 1, so ``K s`` is a local weighted mean of ``s``.

    Parameters
    ----------
    vertices : [array, array]
        ``[lh_vertno, rh_vertno]`` fsaverage5 vertex numbers of the sources.
    fwhm : float
        Full width at half maximum in mm (> 0).
    surface : 'white' | 'pial' | 'inflated'
        Surface the distances are measured on (the source space lies on ``white``).
    truncate : float
        Cut-off in units of σ (> 0).

    Returns
    -------
    smoother : scipy.sparse.csr_array, shape (n_sources, n_sources)
    """
    import scipy.sparse
    from scipy.spatial import cKDTree

    from .._checks import _check_positive

    fwhm = _check_positive("fwhm", fwhm)
    truncate = _check_positive("truncate", truncate)
    pos, hemi = fsaverage_source_positions(vertices, surface=surface)
    sigma = fwhm * 1e-3 / math.sqrt(8.0 * math.log(2.0))  # m
    n = len(pos)
    rows, cols, vals = [], [], []
    for h in _HEMIS:
        idx = np.flatnonzero(hemi == h)
        if not idx.size:
            continue
        p = pos[idx]
        neighbours = cKDTree(p).query_ball_point(p, truncate * sigma)  # each includes itself
        r = np.repeat(np.arange(idx.size), [len(nb) for nb in neighbours])
        c = np.concatenate([np.asarray(nb, np.int64) for nb in neighbours])
        d2 = ((p[r] - p[c]) ** 2).sum(axis=1)
        rows.append(idx[r])
        cols.append(idx[c])
        vals.append(np.exp(-0.5 * d2 / sigma**2))
    mat = scipy.sparse.csr_array((np.concatenate(vals), (np.concatenate(rows),
                                                         np.concatenate(cols))), shape=(n, n))
    return scipy.sparse.csr_array(scipy.sparse.diags_array(1.0 / mat.sum(axis=1)) @ mat)


__all__ = ["fsaverage_source_positions", "source_smoother"]
