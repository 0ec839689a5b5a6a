"""Subjects: anatomy (a FreeSurfer subject) + head position + sensors.

Three kinds:

* the **template** (:func:`make_template_subject`): the embedded fsaverage5 anatomy with the
  MEG array at its default position;
* **simulated** subjects (:func:`make_simulated_subject`), which genuinely differ from the
  template and from each other: the cortex and head are smoothly deformed, the spherical
  registration (``?h.sphere.reg``) is perturbed so the fsaverage -> subject morph is not the
  identity, and the head sits at a different position in the MEG helmet (``dev_head_t``);
* **real** subjects (:func:`read_subject`) from a FreeSurfer subjects directory, a head<->MRI
  ``trans`` file and an MNE ``Info``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._checks import _check_int, _check_option, _check_positive, _check_type
from .._io import atomic_dir, get_cache_dir, hash_arrays, make_dir
from .._logging import logger, verbose
from .template import TEMPLATE_SUBJECT, get_template_subjects_dir, template_trans

_SURF_FILES = ("white", "pial", "inflated", "sphere", "sulc", "curv")
SIMULATED_LAYOUT_VERSION = 1


@dataclass(frozen=True, eq=False)
class Subject:
    """A subject: which cortex, where the head is, which sensors.

    Parameters
    ----------
    name : str
        FreeSurfer subject name (folder inside ``subjects_dir``).
    subjects_dir : Path
        FreeSurfer subjects directory that also holds the ``fsaverage`` template, so that
        MNE-Python can morph between the two.
    trans : mne.Transform
        Head -> MRI (surface RAS) transform.
    meg_info : mne.Info | None
        MEG channels, with the head position in the helmet in ``meg_info["dev_head_t"]``.
    eeg_info : mne.Info | None
        EEG channels (positions in head coordinates).
    kind : 'template' | 'simulated' | 'freesurfer'
    params : dict
        JSON-serialisable description (for simulated subjects: seed and deformation sizes).
    """

    name: str
    subjects_dir: Path
    trans: object
    meg_info: object = None
    eeg_info: object = None
    kind: str = "freesurfer"
    params: dict = field(default_factory=dict)

    def surface_path(self, surface: str, hemi: str) -> Path:
        """Path of ``surf/{hemi}.{surface}`` for this subject."""
        return Path(self.subjects_dir) / self.name / "surf" / f"{hemi}.{surface}"

    def to_json(self) -> dict:
        """A JSON-serialisable reference to this subject (no arrays besides 4x4 transforms)."""
        out = {
            "name": self.name,
            "kind": self.kind,
            "subjects_dir": str(self.subjects_dir),
            "trans": np.asarray(self.trans["trans"]).tolist(),
            "params": self.params,
        }
        if self.meg_info is not None:
            out["dev_head_t"] = np.asarray(self.meg_info["dev_head_t"]["trans"]).tolist()
        return out

    def __repr__(self):
        sens = []
        if self.meg_info is not None:
            sens.append(f"{len(self.meg_info['ch_names'])} MEG")
        if self.eeg_info is not None:
            sens.append(f"{len(self.eeg_info['ch_names'])} EEG")
        return f"<Subject {self.name!r} ({self.kind}) | {', '.join(sens) or 'no sensors'}>"


def _default_sensors(meg, eeg, sfreq, dev_head_t=None):
    from .sensors import apply_head_position, make_eeg_info, make_meg_info

    meg_info = None
    if meg:
        meg_info = make_meg_info(sfreq=sfreq)
        if dev_head_t is not None:
            meg_info = apply_head_position(meg_info, dev_head_t)
    eeg_info = make_eeg_info(eeg, sfreq=sfreq) if eeg else None
    return meg_info, eeg_info


def make_template_subject(*, meg=True, eeg=None, sfreq=50.0) -> Subject:
    """The embedded fsaverage5 template with a 306-channel MEG array (and optionally EEG).

    Parameters
    ----------
    meg : bool
        Attach the 306-channel MEG array at its default head position.
    eeg : str | None
        Name of an MNE built-in montage (e.g. ``"standard_1020"``) to attach EEG channels.
    sfreq : float
        Sampling rate written into the ``Info`` objects (Hz).
    """
    subjects_dir = get_template_subjects_dir()
    meg_info, eeg_info = _default_sensors(meg, eeg, sfreq)
    return Subject(
        name=TEMPLATE_SUBJECT,
        subjects_dir=subjects_dir,
        trans=template_trans(),
        meg_info=meg_info,
        eeg_info=eeg_info,
        kind="template",
        params={},
    )


# --------------------------------------------------------------------------------------
# Simulated subjects


def _smooth_field(rng, n_centers, width, lo, hi):
    """A smooth random vector field: Gaussian radial basis functions with random weights."""
    centers = rng.uniform(lo, hi, size=(n_centers, 3))
    weights = rng.standard_normal((n_centers, 3))

    def field_at(x):
        d2 = ((x[:, None, :] - centers[None]) ** 2).sum(-1)  # (n, n_centers)
        return np.exp(-d2 / (2 * width**2)) @ weights  # (n, 3)

    return field_at


def make_deformation(rng, *, amplitude_mm=4.0, scale_sd=0.04, width_mm=40.0, n_centers=16):
    """A smooth, invertible deformation of head space (mm -> mm).

    ``x -> c + S (x - c) + u(x)`` with ``S`` a random anisotropic scaling (sd ``scale_sd``)
    around the brain's centre ``c`` and ``u`` a sum of Gaussian bumps whose largest
    displacement over the brain is ``amplitude_mm``. The displacement gradient stays well
    below 1 (amplitude / width ~ 0.1), so the map folds nothing and nested surfaces stay
    nested.

    Returns
    -------
    deform : callable
        ``deform(rr)`` maps an array of shape (n, 3) in mm to shape (n, 3) in mm.
    """
    scale = 1.0 + scale_sd * rng.standard_normal(3)
    field_at = _smooth_field(rng, n_centers, width_mm, -80.0, 80.0)
    grid = rng.uniform(-70, 70, size=(2000, 3))
    norm = amplitude_mm / max(np.linalg.norm(field_at(grid), axis=1).max(), 1e-12)
    center = np.array([0.0, -18.0, 8.0])  # centre of the fsaverage brain, mm

    def deform(rr):
        rr = np.asarray(rr, float)
        return center + (rr - center) * scale + norm * field_at(rr)

    return deform


def make_registration_perturbation(rng, *, angle_deg=4.0, width=0.5, n_centers=24):
    """A smooth, invertible warp of the registration sphere.

    Each point moves along the sphere by a smooth tangent field whose largest displacement is
    ``angle_deg`` degrees, then is put back on the sphere. The resulting ``sphere.reg`` makes
    MNE's fsaverage -> subject morph differ from the identity.

    Returns
    -------
    warp : callable
        ``warp(rr)`` for points of shape (n, 3) on a sphere centred at the origin.
    """
    field_at = _smooth_field(rng, n_centers, width, -1.0, 1.0)
    probe = rng.standard_normal((4000, 3))
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)

    def tangent(u):
        f = field_at(u)
        return f - (f * u).sum(1, keepdims=True) * u

    norm = np.deg2rad(angle_deg) / max(np.linalg.norm(tangent(probe), axis=1).max(), 1e-12)

    def warp(rr):
        rr = np.asarray(rr, float)
        radius = np.linalg.norm(rr, axis=1, keepdims=True)
        u = rr / radius
        moved = u + norm * tangent(u)
        return moved / np.linalg.norm(moved, axis=1, keepdims=True) * radius

    return warp


def make_head_position(rng, *, shift_mm=6.0, rotation_deg=5.0):
    """A random rigid displacement (4x4, metres) of the head inside the helmet."""
    from scipy.spatial.transform import Rotation

    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    rot = Rotation.from_rotvec(axis * np.deg2rad(rotation_deg) * rng.uniform(0.5, 1.0))
    shift = rng.standard_normal(3)
    shift = shift / np.linalg.norm(shift) * shift_mm * 1e-3 * rng.uniform(0.5, 1.0)
    mat = np.eye(4)
    mat[:3, :3] = rot.as_matrix()
    mat[:3, 3] = shift
    return mat


def _write_simulated(subject_dir: Path, template_dir: Path, rng, params: dict):
    import mne
    import nibabel as nib

    deform = make_deformation(rng, amplitude_mm=params["deformation_mm"])
    warp = make_registration_perturbation(rng, angle_deg=params["registration_deg"])
    surf_dir = subject_dir / "surf"
    bem_dir = subject_dir / "bem"
    surf_dir.mkdir(parents=True)
    bem_dir.mkdir()
    for hemi in ("lh", "rh"):
        for name in ("white", "pial"):
            rr, tris = nib.freesurfer.read_geometry(template_dir / "surf" / f"{hemi}.{name}")
            nib.freesurfer.write_geometry(surf_dir / f"{hemi}.{name}", deform(rr), tris)
        # The inflated surface and the sphere are display / parameterisation surfaces: keep
        # the template's (so the source space picks the same vertex numbers), but warp the
        # registration so that the same vertex number maps to a different fsaverage point.
        for name in ("inflated", "sphere", "sulc", "curv"):
            shutil.copyfile(template_dir / "surf" / f"{hemi}.{name}", surf_dir / f"{hemi}.{name}")
        rr, tris = nib.freesurfer.read_geometry(template_dir / "surf" / f"{hemi}.sphere.reg")
        nib.freesurfer.write_geometry(surf_dir / f"{hemi}.sphere.reg", warp(rr), tris)
    for name in ("inner_skull", "outer_skull", "outer_skin"):
        rr, tris = nib.freesurfer.read_geometry(template_dir / "bem" / f"{name}.surf")
        nib.freesurfer.write_geometry(bem_dir / f"{name}.surf", deform(rr), tris)
    head = mne.read_bem_surfaces(template_dir / "bem" / "fsaverage-head.fif", verbose="error")[0]
    head["rr"] = deform(head["rr"] * 1e3) * 1e-3
    mne.write_bem_surfaces(bem_dir / f"{subject_dir.name}-head.fif", [head], verbose="error")
    (subject_dir / "neurofuse-simulated.json").write_text(json.dumps(params, indent=2))


def _check_head_clearance(subject_dir: Path, trans, meg_info, *, min_mm=4.0):
    """Smallest distance (mm) between the scalp and any MEG sensor, head frame."""
    import mne

    head = mne.read_bem_surfaces(
        next((subject_dir / "bem").glob("*-head.fif")), verbose="error"
    )[0]
    mri_head = np.linalg.inv(trans["trans"])
    scalp = head["rr"] @ mri_head[:3, :3].T + mri_head[:3, 3]
    dev_head = meg_info["dev_head_t"]["trans"]
    sens = np.array([ch["loc"][:3] for ch in meg_info["chs"]])
    sens = sens @ dev_head[:3, :3].T + dev_head[:3, 3]
    from scipy.spatial import cKDTree

    return float(cKDTree(scalp).query(sens)[0].min() * 1e3)


@verbose
def make_simulated_subject(
    index,
    *,
    seed=0,
    deformation_mm=4.0,
    registration_deg=6.0,
    head_shift_mm=6.0,
    head_rotation_deg=5.0,
    meg=True,
    eeg=None,
    sfreq=50.0,
    verbose=None,
) -> Subject:
    """A simulated subject that differs from the template and from every other subject.

    The subject's FreeSurfer folder (``sim-<index>-<key>``) is written once into the
    template's subjects directory (so MNE-Python can morph between them) and reused after.

    Parameters
    ----------
    index : int
        Subject number (>= 0); together with ``seed`` it determines the anatomy.
    seed : int
        Study seed (>= 0).
    deformation_mm : float
        Largest smooth displacement of the cortex and head surfaces (mm), on top of a random
        anisotropic scaling of about 4 %.
    registration_deg : float
        Largest displacement (degrees on the sphere) of the spherical registration.
    head_shift_mm, head_rotation_deg : float
        Size of the random head displacement in the helmet.
    meg : bool
        Attach the 306-channel MEG array.
    eeg : str | None
        Built-in montage name for EEG channels.
    sfreq : float
        Sampling rate of the ``Info`` objects (Hz).
    verbose : bool | str | None
        Log level for this call (see :func:`neurofuse.set_log_level`).

    Returns
    -------
    subject : Subject
    """
    params = {
        "index": _check_int("index", index, minimum=0),  # SeedSequence needs both >= 0
        "seed": _check_int("seed", seed, minimum=0),
        "deformation_mm": _check_positive("deformation_mm", deformation_mm, allow_zero=True),
        "registration_deg": _check_positive("registration_deg", registration_deg, allow_zero=True),
        "head_shift_mm": _check_positive("head_shift_mm", head_shift_mm, allow_zero=True),
        "head_rotation_deg": _check_positive("head_rotation_deg", head_rotation_deg, allow_zero=True),
        "layout_version": SIMULATED_LAYOUT_VERSION,
    }
    subjects_dir = get_template_subjects_dir()
    key = hash_arrays(params)
    name = f"sim-{int(index):02d}-{key[:8]}"
    subject_dir = subjects_dir / name
    ss = np.random.SeedSequence([int(seed), int(index), 7919])
    anat_rng, pos_rng = (np.random.default_rng(s) for s in ss.spawn(2))
    if not (subject_dir / "neurofuse-simulated.json").is_file():
        logger.info("Simulating the anatomy of subject %s", name)
        with atomic_dir(subject_dir, overwrite=True, what="simulated subject") as tmp:
            _write_simulated(tmp, subjects_dir / TEMPLATE_SUBJECT, anat_rng, params)
    trans = template_trans()
    meg_info = eeg_info = None
    if meg:
        # Redraw (deterministically) smaller displacements until the scalp clears the helmet.
        for attempt in range(8):
            shrink = 0.7**attempt
            pos = make_head_position(
                pos_rng, shift_mm=head_shift_mm * shrink, rotation_deg=head_rotation_deg * shrink
            )
            meg_info, _ = _default_sensors(True, None, sfreq)
            pos = meg_info["dev_head_t"]["trans"] @ pos
            meg_info, _ = _default_sensors(True, None, sfreq, dev_head_t=pos)
            clearance = _check_head_clearance(subject_dir, trans, meg_info)
            if clearance >= 4.0:
                break
        else:
            raise RuntimeError(
                f"Could not place simulated subject {name} in the helmet with >= 4 mm of "
                f"clearance (best {clearance:.1f} mm). Lower deformation_mm or head_shift_mm."
            )
        params["scalp_sensor_clearance_mm"] = round(clearance, 2)
    if eeg:
        _, eeg_info = _default_sensors(False, eeg, sfreq)
    return Subject(
        name=name,
        subjects_dir=subjects_dir,
        trans=trans,
        meg_info=meg_info,
        eeg_info=eeg_info,
        kind="simulated",
        params=params,
    )


# --------------------------------------------------------------------------------------
# Real subjects


def _linked_subjects_dir(subject: str, subjects_dir: Path) -> Path:
    """A subjects dir with symlinks to the real subject and to our fsaverage template.

    MNE-Python morphs between two subjects of one subjects directory; the user's may hold a
    full-resolution fsaverage (or none), while neurofuse's source space lives on the embedded
    fsaverage5, so we link both into a private folder.
    """
    template_dir = get_template_subjects_dir() / TEMPLATE_SUBJECT
    real = (subjects_dir / subject).resolve()
    linked = get_cache_dir() / "linked-subjects" / hash_arrays(str(real))
    make_dir(linked, what="linked-subjects cache folder")
    for name, target in ((TEMPLATE_SUBJECT, template_dir), (subject, real)):
        link = linked / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        tmp = linked / f".tmp-{name}-{os.getpid()}"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)
    return linked


def read_subject(subject, subjects_dir, *, trans, info=None, eeg_info=None) -> Subject:
    """A real subject from FreeSurfer output, a head<->MRI transform and sensor info.

    Parameters
    ----------
    subject : str
        FreeSurfer subject name.
    subjects_dir : path-like
        FreeSurfer subjects directory containing ``subject``.
    trans : path-like | mne.Transform
        Head <-> MRI transform (``-trans.fif``), as made with ``mne coreg``.
    info : mne.Info | None
        Measurement info with MEG channels (and ``dev_head_t``), e.g. ``raw.info``.
    eeg_info : mne.Info | None
        Measurement info with EEG channels (defaults to the EEG channels of ``info``).

    Returns
    -------
    subject : Subject
    """
    import mne

    subjects_dir = Path(subjects_dir).expanduser()
    subject_dir = subjects_dir / subject
    if subject == TEMPLATE_SUBJECT:
        raise ValueError(
            f"'subject' must not be named {TEMPLATE_SUBJECT!r}: that name is reserved for the "
            "embedded template (use make_template_subject() for it)."
        )
    for hemi in ("lh", "rh"):
        for surf in ("white", "sphere", "sphere.reg"):
            fname = subject_dir / "surf" / f"{hemi}.{surf}"
            if not fname.is_file():
                raise FileNotFoundError(
                    f"Missing FreeSurfer file {fname} for subject {subject!r}. Run FreeSurfer's "
                    "recon-all for this subject, or check 'subjects_dir'."
                )
    if not isinstance(trans, mne.transforms.Transform):
        trans = mne.read_trans(trans)
    trans = mne.transforms._ensure_trans(trans, "head", "mri")
    meg_info = eeg = None
    if info is not None:
        _check_type("info", info, mne.Info, "an mne.Info")
        picks = mne.pick_types(info, meg=True, ref_meg=False, exclude=())
        if len(picks):
            meg_info = mne.pick_info(info, picks)
        if eeg_info is None:
            picks = mne.pick_types(info, meg=False, eeg=True, exclude=())
            if len(picks):
                eeg = mne.pick_info(info, picks)
    if eeg_info is not None:
        eeg = eeg_info
    return Subject(
        name=subject,
        subjects_dir=_linked_subjects_dir(subject, subjects_dir),
        trans=trans,
        meg_info=meg_info,
        eeg_info=eeg,
        kind="freesurfer",
        params={"source_subjects_dir": str(subjects_dir)},
    )


def check_spacing(spacing: str) -> str:
    """Validate a source-space spacing name."""
    return _check_option(
        "spacing",
        spacing,
        ["oct6", "oct5", "ico4", "ico5"],
        extra="oct6 (8196 sources) is the paper's source space.",
    )
