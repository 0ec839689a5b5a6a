"""The embedded template anatomy: fsaverage5 from nilearn, head and skull from MNE-Python.

nilearn ships the fsaverage5 cortical surfaces (10242 vertices per hemisphere) inside its
wheel, and MNE-Python ships the fsaverage head surface, inner-skull surface, fiducials and
head<->MRI transform. :func:`get_template_subjects_dir` lays them out once as a
FreeSurfer-style subjects directory in the neurofuse cache::

    <cache>/subjects/fsaverage/
        surf/{lh,rh}.{white,pial,inflated,sphere,sphere.reg,sulc,curv}
        bem/{inner_skull,outer_skull,outer_skin}.surf     (icosahedral, see below)
        bem/fsaverage-{trans,head,fiducials}.fif

so every MNE-Python function that takes ``subject="fsaverage", subjects_dir=...`` works on it
offline. The vertex numbers of fsaverage5 are the first 10242 vertices of the full fsaverage
(ico7) mesh, at the same positions, so source estimates made here carry vertex numbers that
are valid on a full fsaverage too.

BEM shells: the packaged inner skull (10242 vertices) and head surface are resampled by ray
casting onto an icosahedral mesh (:func:`~neurofuse.anatomy.surfaces.resample_surface_radially`,
grade 4 = 2562 vertices), and the outer skull is placed between them (half the skull-scalp
gap, 2-6 mm thick) so the three shells are nested, as a three-layer EEG model needs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from .._io import atomic_dir, get_cache_dir, make_dir
from .._logging import logger, verbose
from .surfaces import make_ico_sphere, radial_distances

#: Name of the template subject inside the subjects directory.
TEMPLATE_SUBJECT = "fsaverage"
#: Bumped whenever the layout below changes, so stale caches are rebuilt.
TEMPLATE_LAYOUT_VERSION = 2
BEM_GRADE = 4
_SURFACES = {
    # FreeSurfer name -> nilearn fsaverage5 file stem
    "white": "white_{h}",
    "pial": "pial_{h}",
    "inflated": "infl_{h}",
    "sphere": "sphere_{h}",
}
_HEMIS = {"lh": "left", "rh": "right"}


def _nilearn_fsaverage5_dir() -> Path:
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
    if not path.is_dir():
        raise RuntimeError(
            f"nilearn's packaged fsaverage5 surfaces were not found in {path}. Reinstall "
            "nilearn (>= 0.10.3): pip install --force-reinstall nilearn"
        )
    return path


def _mne_fsaverage_dir() -> Path:
    import mne

    path = Path(mne.__file__).parent / "data" / "fsaverage"
    if not (path / "fsaverage-inner_skull-bem.fif").is_file():
        raise RuntimeError(
            f"MNE-Python's packaged fsaverage files were not found in {path}. Reinstall mne."
        )
    return path


def _read_gifti(fname):
    img = nib.load(fname)
    arrays = [d.data for d in img.darrays]
    return arrays


def read_template_surface(surface="white", hemi="lh"):
    """Read one embedded fsaverage5 surface.

    Parameters
    ----------
    surface : 'white' | 'pial' | 'inflated' | 'sphere'
    hemi : 'lh' | 'rh'

    Returns
    -------
    rr : array, shape (10242, 3)
        Vertex positions in mm, fsaverage MRI (surface RAS) coordinates.
    tris : array, shape (20480, 3)
    """
    from .._checks import _check_option

    _check_option("surface", surface, list(_SURFACES))
    _check_option("hemi", hemi, list(_HEMIS))
    fname = _nilearn_fsaverage5_dir() / (_SURFACES[surface].format(h=_HEMIS[hemi]) + ".gii.gz")
    rr, tris = _read_gifti(fname)[:2]
    return np.asarray(rr, float), np.asarray(tris, np.int32)


def make_bem_shells(inner_rr, inner_tris, head_rr, head_tris, *, grade=BEM_GRADE, center=None):
    """Nested inner-skull, outer-skull and scalp shells on one icosahedral mesh.

    Parameters
    ----------
    inner_rr, head_rr : array, shape (n_vertices, 3)
        Inner-skull and head (scalp) surfaces, same units.
    inner_tris, head_tris : array, shape (n_tris, 3)
    grade : int
        Icosahedral grade of the output meshes.
    center : array, shape (3,) | None
        Ray origin; defaults to the inner skull's vertex centroid.

    Returns
    -------
    shells : dict
        ``{"inner_skull": rr, "outer_skull": rr, "outer_skin": rr, "tris": tris}`` with
        ``rr`` of shape (n_ico_vertices, 3).
    """
    inner_rr = np.asarray(inner_rr, float)
    center = inner_rr.mean(0) if center is None else np.asarray(center, float)
    dirs, tris = make_ico_sphere(grade)
    r_in = radial_distances(inner_rr, inner_tris, dirs, center)
    r_head = radial_distances(head_rr, head_tris, dirs, center)
    scale = np.median(r_in)  # ~0.07 m or ~70 mm: express the 2-6 mm limits in input units
    mm = scale / 70.0
    gap = r_head - r_in
    if np.any(gap < 4 * mm):
        raise RuntimeError(
            "The head surface comes closer than 4 mm to the inner skull; cannot fit a skull "
            "layer between them."
        )
    thickness = np.clip(0.5 * gap, 2 * mm, 6 * mm)
    r_out = r_in + thickness
    return {
        "inner_skull": center + dirs * r_in[:, None],
        "outer_skull": center + dirs * r_out[:, None],
        "outer_skin": center + dirs * r_head[:, None],
        "tris": tris,
    }


def _write_template(subject_dir: Path):
    """Write the template subject's ``surf/`` and ``bem/`` folders into ``subject_dir``."""
    import mne

    src_dir = _nilearn_fsaverage5_dir()
    mne_dir = _mne_fsaverage_dir()
    surf_dir = subject_dir / "surf"
    bem_dir = subject_dir / "bem"
    surf_dir.mkdir(parents=True)
    bem_dir.mkdir()
    for hemi, side in _HEMIS.items():
        for fs_name, stem in _SURFACES.items():
            rr, tris = _read_gifti(src_dir / (stem.format(h=side) + ".gii.gz"))[:2]
            nib.freesurfer.write_geometry(
                surf_dir / f"{hemi}.{fs_name}", np.asarray(rr, float), np.asarray(tris, np.int32)
            )
        # fsaverage is its own registration target: sphere.reg is the sphere.
        shutil.copyfile(surf_dir / f"{hemi}.sphere", surf_dir / f"{hemi}.sphere.reg")
        for morph in ("sulc", "curv"):
            (values,) = _read_gifti(src_dir / f"{morph}_{side}.gii.gz")[:1]
            nib.freesurfer.write_morph_data(surf_dir / f"{hemi}.{morph}", np.asarray(values, "<f4"))
    inner = mne.read_bem_surfaces(mne_dir / "fsaverage-inner_skull-bem.fif", verbose="error")[0]
    head = mne.read_bem_surfaces(mne_dir / "fsaverage-head.fif", verbose="error")[0]
    shells = make_bem_shells(inner["rr"] * 1e3, inner["tris"], head["rr"] * 1e3, head["tris"])
    for name in ("inner_skull", "outer_skull", "outer_skin"):
        nib.freesurfer.write_geometry(bem_dir / f"{name}.surf", shells[name], shells["tris"])
    for name in ("trans", "head", "fiducials"):
        shutil.copyfile(mne_dir / f"fsaverage-{name}.fif", bem_dir / f"fsaverage-{name}.fif")
    (subject_dir / "neurofuse-template.json").write_text(
        json.dumps(
            {
                "layout_version": TEMPLATE_LAYOUT_VERSION,
                "surfaces": "fsaverage5 (nilearn)",
                "bem_grade": BEM_GRADE,
                "nilearn_dir": str(src_dir),
                "mne_dir": str(mne_dir),
            },
            indent=2,
        )
    )


def _template_ok(subjects_dir: Path) -> bool:
    marker = subjects_dir / TEMPLATE_SUBJECT / "neurofuse-template.json"
    try:
        return json.loads(marker.read_text())["layout_version"] == TEMPLATE_LAYOUT_VERSION
    except (OSError, ValueError, KeyError):
        return False


@verbose
def get_template_subjects_dir(*, verbose=None) -> Path:
    """Return the subjects directory holding the embedded fsaverage template, building it once.

    The directory is built in a temporary folder and renamed into place, so an interrupted
    build never leaves a broken template behind.

    Returns
    -------
    subjects_dir : Path
        Contains ``fsaverage/`` (see the module docstring for its layout).
    """
    subjects_dir = get_cache_dir() / "subjects"
    if _template_ok(subjects_dir):
        return subjects_dir
    logger.info("Building the embedded fsaverage5 template in %s", subjects_dir)
    make_dir(subjects_dir, what="template cache folder")
    target = subjects_dir / TEMPLATE_SUBJECT
    with atomic_dir(target, overwrite=True, what="template anatomy") as tmp:
        _write_template(tmp)
    return subjects_dir


def template_trans():
    """The fsaverage head -> MRI transform shipped with MNE-Python (an ``mne.Transform``)."""
    import mne

    return mne.read_trans(_mne_fsaverage_dir() / "fsaverage-trans.fif")
