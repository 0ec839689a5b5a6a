"""Cortical regions of the EEG + MEG world, placed by position on fsaverage.

No cortical parcellation ships offline (MNE's ``aparc`` annotation for fsaverage is not in
the embedded template, nilearn's fsaverage5 carries no atlas), so regions are Gaussian
profiles around centres in fsaverage / MNI305 coordinates, as System A's simulator places its
regions (:data:`neurofuse.simulation.encoding.REGIONS`). Each profile is computed on the
template's sources (white surface), carried to the subject's sources by the fsaverage ->
subject morph, and optionally weighted by the orientation of the subject's cortex:

* ``'radial'`` regions keep the sources whose normal points along the radius of the sphere
  fitted to the subject's inner skull (gyral crowns, sulcal fundi): MEG is nearly blind to
  them, EEG sees them best;
* ``'tangential'`` regions keep the sources whose normal is perpendicular to it (sulcal
  walls): MEG's favourite, EEG sees them less;
* ``'any'`` keeps all (a realistic mixture).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["REGIONS", "Region", "radiality", "region_profiles"]


@dataclass(frozen=True)
class Region:
    """A cortical region: a Gaussian profile around a centre, per hemisphere.

    Attributes
    ----------
    center : (float, float, float)
        Centre in fsaverage / MNI305 mm for the **right** hemisphere (the left mirrors x).
    sigma : float
        s.d. of the Gaussian profile, mm.
    orientation : 'any' | 'radial' | 'tangential'
        Orientation preference (see the module docstring).
    what : str
        Anatomical description.
    """

    center: tuple
    sigma: float
    orientation: str = "any"
    what: str = ""


#: The world's regions (right-hemisphere centres, mm).
REGIONS = {
    # somatomotor (hand area)
    "s1_sulcal": Region((38.0, -26.0, 52.0), 10.0, "tangential",
                        "S1 area 3b, posterior bank of the central sulcus"),
    "s1_crown": Region((44.0, -32.0, 58.0), 10.0, "radial",
                       "S1 areas 1/2, crown of the postcentral gyrus"),
    "s1": Region((40.0, -28.0, 55.0), 12.0, "any", "S1 hand area (postcentral)"),
    "s2": Region((48.0, -22.0, 18.0), 10.0, "any", "secondary somatosensory cortex"),
    "sensorimotor": Region((38.0, -22.0, 56.0), 16.0, "any", "S1/M1 hand area"),
    # visual
    "occipital": Region((16.0, -92.0, 4.0), 12.0, "any", "early visual cortex"),
    "fusiform": Region((40.0, -54.0, -18.0), 10.0, "any", "fusiform face area"),
    "anterior_fusiform": Region((36.0, -40.0, -24.0), 10.0, "any",
                                "anterior fusiform / inferior temporal"),
    "parieto_occipital": Region((20.0, -74.0, 32.0), 18.0, "any",
                                "parieto-occipital cortex (alpha)"),
    # frontal midline (theta), widespread delta patches, small gamma patches
    "frontal_midline": Region((6.0, 30.0, 38.0), 15.0, "any",
                              "medial frontal / anterior cingulate"),
    "frontal": Region((30.0, 30.0, 30.0), 25.0, "any", "lateral prefrontal"),
    "parietal": Region((35.0, -50.0, 45.0), 25.0, "any", "lateral parietal"),
    "temporal": Region((55.0, -20.0, -10.0), 25.0, "any", "lateral temporal"),
    "gamma_occipital": Region((14.0, -94.0, 2.0), 6.0, "any", "small patch of V1"),
    "gamma_sensorimotor": Region((40.0, -28.0, 56.0), 6.0, "any", "small patch of S1"),
    "gamma_temporal": Region((50.0, -50.0, -10.0), 6.0, "any",
                             "small patch of inferior temporal cortex"),
}


def radiality(pos, normals, center):
    """``|cos|`` of the angle between each source normal and the radius from ``center``.

    Parameters
    ----------
    pos : array, shape (n_sources, 3)
        Source positions (same frame and unit as ``center``).
    normals : array, shape (n_sources, 3)
        Unit surface normals.
    center : array, shape (3,)

    Returns
    -------
    cos : array, shape (n_sources,)
        1 for a radial source, 0 for a tangential one.
    """
    radial = np.asarray(pos, float) - np.asarray(center, float)
    radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-12)
    return np.abs((radial * np.asarray(normals, float)).sum(axis=1))


#: Orientation weights as functions of |cos|: sharp enough that a 'radial' region is mostly
#: crowns / fundi and a 'tangential' one mostly walls.
_ORIENTATION_WEIGHT = {
    "any": lambda c: np.ones_like(c),
    "radial": lambda c: c**4,
    "tangential": lambda c: (1.0 - c**2) ** 2,
}


def region_profiles(names, fs_pos, fs_hemi, *, morph=None, cos=None):
    """Gaussian profiles of named regions on a subject's sources, per hemisphere.

    Parameters
    ----------
    names : list of str
        Keys of :data:`REGIONS`.
    fs_pos : array, shape (n_sources_fsaverage, 3)
        Template source positions, metres (fsaverage surface RAS).
    fs_hemi : array of str, shape (n_sources_fsaverage,)
        ``'lh'`` / ``'rh'`` of each template source.
    morph : scipy.sparse array, shape (n_sources, n_sources_fsaverage) | None
        fsaverage -> subject morph (``None``: the subject is the template).
    cos : array, shape (n_sources,) | None
        :func:`radiality` of the subject's sources (needed for oriented regions).

    Returns
    -------
    profiles : dict of (str, str) to array, shape (n_sources,)
        ``profiles[name, hemi]``, each scaled to a maximum of 1.
    """
    out = {}
    for name in names:
        region = REGIONS[name]
        sigma = region.sigma * 1e-3
        for hemi, sign in (("lh", -1.0), ("rh", 1.0)):
            center = np.asarray(region.center) * 1e-3 * np.array([sign, 1.0, 1.0])
            prof = np.exp(-0.5 * ((fs_pos - center) ** 2).sum(axis=1) / sigma**2)
            prof[fs_hemi != hemi] = 0.0
            if morph is not None:
                prof = morph @ prof
            if region.orientation != "any":
                if cos is None:
                    raise ValueError(f"Region {name!r} is {region.orientation}: pass 'cos' "
                                     "(radiality of the subject's sources).")
                prof = prof * _ORIENTATION_WEIGHT[region.orientation](cos)
            out[name, hemi] = prof / max(prof.max(), 1e-300)
    return out
