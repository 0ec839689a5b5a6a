"""``metadata["template"]`` of a prepared store: the fsaverage source space its morphs map from.

Every subject's morph maps the template's sources (fsaverage at a spacing, the columns of
``morph``) to the subject's; consumers that work on the template's sources themselves (the
joint model's smoothed source layer, ``source_fwhm``; cortical maps) need their vertex
numbers, which the morphs do not carry. :func:`template_metadata` writes them in the form
simulated stores use (``neurofuse.simulation.simulate_study``).
"""

from __future__ import annotations


def template_metadata(spacing) -> dict:
    """``{"subject": "fsaverage", "spacing", "vertices": [lh, rh]}`` of the template's sources.

    Parameters
    ----------
    spacing : str
        Source spacing of the morphs' columns (e.g. ``"oct6"``: 8196 sources).

    Returns
    -------
    template : dict
        JSON-ready; ``vertices`` are lists of vertex numbers as MNE numbers them.
    """
    from ...anatomy import get_source_space, make_template_subject

    src = get_source_space(make_template_subject(meg=False), spacing)
    return {"subject": "fsaverage", "spacing": spacing,
            "vertices": [[int(v) for v in s["vertno"]] for s in src]}
