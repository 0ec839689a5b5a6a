"""Forward models with MNE-Python: source spaces, BEMs, fixed-orientation lead fields, morphs.

Everything expensive is cached under ``<cache>/forward/`` with a key derived from its inputs
(surface file contents, sensor geometry, head position, transform, conductivities, MNE
version), and written atomically, so a second call with the same inputs loads from disk and
an interrupted computation never leaves a corrupt cache entry.

Conventions
-----------
* Lead fields are fixed-orientation (surface normal) gain matrices of shape
  (n_channels, n_sources), in T/(A·m) (magnetometers), T/m/(A·m) (gradiometers) and
  V/(A·m) (EEG): ``mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True,
  use_cps=True)``.
* Morphs are ``scipy.sparse.csr_array`` of shape (n_sources_subject, n_sources_fsaverage)
  from ``mne.compute_source_morph``; ``M @ s`` takes fsaverage source activity ``s``
  (n_sources_fsaverage, n_times) to the subject's source space.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse

from .._checks import _check_option
from .._io import atomic_path, get_cache_dir, hash_arrays, hash_file
from .._logging import logger, verbose
from .subjects import Subject, check_spacing
from .surfaces import fit_sphere
from .template import TEMPLATE_SUBJECT

#: Bumped when the way cached objects are computed changes.
CACHE_VERSION = 1
MEG_CONDUCTIVITY = (0.3,)
EEG_CONDUCTIVITY = (0.3, 0.006, 0.3)


def _mne_version():
    import mne

    return mne.__version__


def _cache_file(kind: str, key: str, suffix: str) -> Path:
    return get_cache_dir() / "forward" / kind / f"{key}{suffix}"


def _surface_key(subject: Subject, files) -> str:
    """Hash of the named surface files of a subject (their contents, not their paths)."""
    base = Path(subject.subjects_dir) / subject.name
    return hash_arrays([hash_file(base / f) for f in files])


# --------------------------------------------------------------------------------------
# Source spaces


@verbose
def get_source_space(subject: Subject, spacing="oct6", *, verbose=None):
    """The subject's cortical source space (cached).

    Parameters
    ----------
    subject : Subject
    spacing : 'oct6' | 'oct5' | 'ico4' | 'ico5'
        ``oct6`` gives 4098 sources per hemisphere on the embedded template (8196 in all).

    Returns
    -------
    src : mne.SourceSpaces
        Two surface source spaces (lh, rh) in MRI coordinates, without distances.
    """
    import mne

    spacing = check_spacing(spacing)
    files = [f"surf/{h}.{s}" for h in ("lh", "rh") for s in ("white", "sphere")]
    key = hash_arrays("src", CACHE_VERSION, _mne_version(), spacing, _surface_key(subject, files))
    fname = _cache_file("src", key, "-src.fif")
    if fname.is_file():
        return mne.read_source_spaces(fname, verbose="error")
    logger.info("Setting up the %s source space of %s", spacing, subject.name)
    src = mne.setup_source_space(
        subject.name, spacing, subjects_dir=subject.subjects_dir, add_dist=False, verbose="error"
    )
    with atomic_path(fname, what="source space") as tmp:
        mne.write_source_spaces(tmp, src, overwrite=True, verbose="error")
    # FIF stores float32: return what a warm call returns, so cold == warm bit for bit.
    return mne.read_source_spaces(fname, verbose="error")


def source_positions(src) -> np.ndarray:
    """Positions of the used sources, lh then rh, shape (n_sources, 3), metres (MRI frame)."""
    return np.concatenate([s["rr"][s["vertno"]] for s in src])


def source_normals(src) -> np.ndarray:
    """Outward surface normals of the used sources, shape (n_sources, 3)."""
    return np.concatenate([s["nn"][s["vertno"]] for s in src])


# --------------------------------------------------------------------------------------
# BEM


@verbose
def get_bem_solution(subject: Subject, *, kind="meg", ico=None, verbose=None):
    """A boundary-element solution for ``subject`` (cached).

    Parameters
    ----------
    subject : Subject
        Must have FreeSurfer BEM surfaces in ``bem/`` (``inner_skull.surf``, and for EEG
        also ``outer_skull.surf`` and ``outer_skin.surf``), as the template and simulated
        subjects do and ``mne watershed_bem`` makes for real ones.
    kind : 'meg' | 'eeg'
        ``'meg'``: single shell (inner skull, 0.3 S/m), enough for MEG. ``'eeg'``: three
        layers (0.3, 0.006, 0.3 S/m).
    ico : int | None
        Icosahedral downsampling grade of the surfaces. Defaults to 4 (2562 vertices) for
        MEG and 3 (642 vertices per shell) for EEG, which solve in seconds on 2 cores.

    Returns
    -------
    bem : mne.bem.ConductorModel
    """
    import mne

    _check_option("kind", kind, ["meg", "eeg"])
    conductivity = MEG_CONDUCTIVITY if kind == "meg" else EEG_CONDUCTIVITY
    ico = (4 if kind == "meg" else 3) if ico is None else ico
    names = ["inner_skull"] if kind == "meg" else ["inner_skull", "outer_skull", "outer_skin"]
    files = [f"bem/{n}.surf" for n in names]
    for f in files:
        if not (Path(subject.subjects_dir) / subject.name / f).is_file():
            raise FileNotFoundError(
                f"Subject {subject.name!r} has no BEM surface {f}. Make the surfaces with "
                "'mne watershed_bem', or use bem='sphere' for a spherical head model."
            )
    key = hash_arrays(
        "bem", CACHE_VERSION, _mne_version(), kind, ico, conductivity, _surface_key(subject, files)
    )
    fname = _cache_file("bem", key, "-bem-sol.fif")
    if fname.is_file():
        return mne.read_bem_solution(fname, verbose="error")
    logger.info("Solving the %d-layer BEM of %s (ico %d)", len(conductivity), subject.name, ico)
    model = mne.make_bem_model(
        subject.name, ico=ico, conductivity=conductivity, subjects_dir=subject.subjects_dir,
        verbose="error",
    )
    bem = mne.make_bem_solution(model, verbose="error")
    with atomic_path(fname, what="BEM solution") as tmp:
        mne.write_bem_solution(tmp, bem, overwrite=True, verbose="error")
    return mne.read_bem_solution(fname, verbose="error")


def _sphere_model(subject: Subject, info, src, eeg):
    """Spherical conductor: fitted to the head digitisation if there is one, else to anatomy.

    Without digitisation the centre is fitted to the pial surfaces (or the inner skull when
    the subject has one) and the radius to the scalp surface when available. For MEG alone
    the conductivity profile does not matter (Sarvas), so no shells are used and no source is
    dropped; with EEG the shells are made large enough to contain every source.
    """
    import mne
    import nibabel as nib

    has_dig = info.get("dig") and any(
        d["kind"] in (mne.io.constants.FIFF.FIFFV_POINT_EXTRA, mne.io.constants.FIFF.FIFFV_POINT_EEG)
        for d in info["dig"]
    )
    if has_dig:
        radius, center, _ = mne.bem.fit_sphere_to_headshape(info, units="m", verbose="error")
    else:
        base = Path(subject.subjects_dir) / subject.name
        if (base / "bem" / "inner_skull.surf").is_file():
            pts = nib.freesurfer.read_geometry(base / "bem" / "inner_skull.surf")[0]
        else:
            pts = np.concatenate([nib.freesurfer.read_geometry(base / "surf" / f"{h}.pial")[0]
                                  for h in ("lh", "rh")])
        center, radius = fit_sphere(_mri_mm_to_head(pts, subject.trans))
        if (base / "bem" / "outer_skin.surf").is_file():
            skin = _mri_mm_to_head(nib.freesurfer.read_geometry(base / "bem" / "outer_skin.surf")[0],
                                   subject.trans)
            radius = float(np.median(np.linalg.norm(skin - center, axis=1)))
        else:
            radius += 0.015  # skull and scalp over the brain
    if not eeg:
        return mne.make_sphere_model(center, None, info, verbose="error")
    # MNE's default shells put the brain inside 90 % of the head radius. MNE (1.8-1.13) tests
    # sources against the sphere after mapping them head -> MRI while the sphere is in head
    # coordinates, so make the innermost shell contain the sources in both frames.
    src_mri = source_positions(src)
    src_head = _mri_mm_to_head(src_mri * 1e3, subject.trans)
    reach = max(np.linalg.norm(src_head - center, axis=1).max(),
                np.linalg.norm(src_mri - center, axis=1).max())
    radius = max(radius, reach / 0.88)
    return mne.make_sphere_model(center, radius, info, verbose="error")


def _mri_mm_to_head(rr_mm, trans):
    """MRI-frame points in mm -> head-frame points in metres."""
    mri_head = np.linalg.inv(np.asarray(trans["trans"]))
    return np.asarray(rr_mm) * 1e-3 @ mri_head[:3, :3].T + mri_head[:3, 3]


# --------------------------------------------------------------------------------------
# Forward / lead field


def _info_key(info):
    if info is None:
        return None
    locs = np.array([ch["loc"] for ch in info["chs"]])
    coils = np.array([ch["coil_type"] for ch in info["chs"]])
    dev_head = None if info["dev_head_t"] is None else np.asarray(info["dev_head_t"]["trans"])
    return [list(info["ch_names"]), locs, coils, dev_head]


def _sensor_info(subject: Subject, meg: bool, eeg: bool):
    from mne._fiff.meas_info import _merge_info  # mne.io.meas_info is gone in MNE >= 1.6

    infos = []
    if meg:
        if subject.meg_info is None:
            raise ValueError(f"meg=True but subject {subject.name!r} has no MEG channels (meg_info).")
        infos.append(subject.meg_info)
    if eeg:
        if subject.eeg_info is None:
            raise ValueError(
                f"eeg=True but subject {subject.name!r} has no EEG channels; create it with "
                "eeg='standard_1020' (or another built-in montage)."
            )
        infos.append(subject.eeg_info)
    if not infos:
        raise ValueError("At least one of 'meg' and 'eeg' must be True.")
    if len(infos) == 1:
        return infos[0]
    eeg_info = infos[1].copy()
    with eeg_info._unlock():
        eeg_info["dev_head_t"] = infos[0]["dev_head_t"]
    return _merge_info([infos[0], eeg_info], force_update_to_first=True)


def to_fixed(fwd):
    """Fixed-orientation (surface-normal) version of a forward solution, like MNE does it."""
    import mne

    return mne.convert_forward_solution(
        fwd, surf_ori=True, force_fixed=True, use_cps=True, copy=True, verbose="error"
    )


@verbose
def make_forward(
    subject: Subject,
    *,
    spacing="oct6",
    meg=True,
    eeg=False,
    bem="auto",
    mindist=0.0,
    n_jobs=None,
    verbose=None,
):
    """Fixed-orientation forward solution of ``subject`` (cached).

    Parameters
    ----------
    subject : Subject
    spacing : str
        Source space spacing (see :func:`get_source_space`).
    meg, eeg : bool
        Which sensors to include.
    bem : 'auto' | 'bem' | 'sphere'
        ``'bem'``: boundary elements (single shell for MEG alone, three layers when EEG is
        included); ``'sphere'``: a spherical conductor fitted to the head digitisation, the
        fallback when no BEM surfaces exist; ``'auto'``: ``'bem'`` when the surfaces exist.
    mindist : float
        Exclude sources closer than this to the inner skull (mm). 0 keeps all sources.
    n_jobs : int | None
        Parallel jobs for MNE.

    Returns
    -------
    fwd : mne.Forward
        Fixed orientation; ``fwd["sol"]["data"]`` is the lead field, shape
        (n_channels, n_sources).
    """
    import mne

    _check_option("bem", bem, ["auto", "bem", "sphere"])
    info = _sensor_info(subject, meg, eeg)
    src = get_source_space(subject, spacing)
    bem_dir = Path(subject.subjects_dir) / subject.name / "bem"
    if bem == "auto":
        needed = ["inner_skull"] + (["outer_skull", "outer_skin"] if eeg else [])
        bem = "bem" if all((bem_dir / f"{n}.surf").is_file() for n in needed) else "sphere"
    key = hash_arrays(
        "fwd", CACHE_VERSION, _mne_version(), spacing, meg, eeg, bem, float(mindist),
        _surface_key(subject, [f"surf/{h}.white" for h in ("lh", "rh")]),
        _surface_key(subject, [f"bem/{n}.surf" for n in ("inner_skull", "outer_skull", "outer_skin")
                               if (bem_dir / f"{n}.surf").is_file()]) if bem == "bem" else "sphere",
        np.asarray(subject.trans["trans"]), _info_key(info),
    )
    fname = _cache_file("fwd", key, "-fwd.fif")
    if fname.is_file():
        # FIF keeps the free-orientation solution; convert like the cold path does.
        return to_fixed(mne.read_forward_solution(fname, verbose="error"))
    if bem == "bem":
        conductor = get_bem_solution(subject, kind="eeg" if eeg else "meg")
    else:
        conductor = _sphere_model(subject, info, src, eeg)
    logger.info("Computing the %s lead field of %s", "+".join(
        [m for m, on in (("MEG", meg), ("EEG", eeg)) if on]), subject.name)
    fwd = mne.make_forward_solution(
        info, subject.trans, src, conductor, meg=meg, eeg=eeg, mindist=mindist,
        n_jobs=n_jobs, verbose="error",
    )
    n_src = sum(s["nuse"] for s in src)
    if fwd["nsource"] != n_src:
        logger.warning(
            "%d of %d sources of %s lie outside the inner skull or within %.1f mm of it and "
            "were dropped from the forward model.", n_src - fwd["nsource"], n_src, subject.name,
            mindist,
        )
    fwd = to_fixed(fwd)
    with atomic_path(fname, what="forward solution") as tmp:
        mne.write_forward_solution(tmp, fwd, overwrite=True, verbose="error")
    # Return what a warm call returns (FIF stores float32), so cold == warm bit for bit.
    return to_fixed(mne.read_forward_solution(fname, verbose="error"))


@verbose
def read_forward(fname, *, verbose=None):
    """Read a ``-fwd.fif`` file and convert it to fixed orientation.

    Parameters
    ----------
    fname : path-like
        Forward solution written by MNE-Python (free, loose or fixed orientation).

    Returns
    -------
    fwd : mne.Forward
        Fixed-orientation forward (surface normals), as :func:`make_forward` returns.
    """
    import mne

    fname = Path(fname).expanduser()
    if not fname.is_file():
        raise FileNotFoundError(f"Forward solution file not found: '{fname}'.")
    fwd = mne.read_forward_solution(fname, verbose="error")
    if fwd["src"].kind != "surface":
        raise ValueError(
            f"'{fname}' uses a {fwd['src'].kind} source space; neurofuse needs a cortical "
            "surface source space (mne.setup_source_space)."
        )
    return to_fixed(fwd)


def get_leadfield(fwd) -> np.ndarray:
    """The lead field of a fixed-orientation forward, shape (n_channels, n_sources)."""
    if not fwd["surf_ori"] or fwd["source_ori"] != 1:  # FIFFV_MNE_FIXED_ORI
        fwd = to_fixed(fwd)
    return fwd["sol"]["data"]


def check_leadfield(leadfield, info, *, name="leadfield"):
    """Raise a clear error if a lead field's rows do not match the channels of ``info``.

    Parameters
    ----------
    leadfield : array, shape (n_channels, n_sources)
    info : mne.Info
    """
    n_rows = np.shape(leadfield)[0]
    n_ch = len(info["ch_names"])
    if n_rows != n_ch:
        raise ValueError(
            f"Lead field vs channel count mismatch: '{name}' has {n_rows} rows but the "
            f"measurement info has {n_ch} channels. Compute the lead field for exactly these "
            "channels (e.g. mne.pick_channels_forward(fwd, info['ch_names'])) or pick the "
            "info's channels to match."
        )


# --------------------------------------------------------------------------------------
# Morph


@verbose
def make_morph(subject: Subject, *, spacing="oct6", src_to=None, smooth=None, verbose=None):
    """Sparse fsaverage -> subject morph matrix (cached).

    Parameters
    ----------
    subject : Subject
        Target subject (in the same subjects directory as the template).
    spacing : str
        Spacing of both source spaces.
    src_to : mne.SourceSpaces | None
        The subject's source space, e.g. ``fwd["src"]`` when the forward dropped sources.
        Defaults to :func:`get_source_space`.
    smooth : int | 'nearest' | None
        MNE smoothing steps on the fsaverage surface before interpolating at the subject's
        registered positions; ``None`` (MNE's default) uses just enough steps to fill the
        surface. Every row sums to 1. For the template itself the morph is the identity.

    Returns
    -------
    morph : scipy.sparse.csr_array, shape (n_sources_subject, n_sources_fsaverage)
    """
    import mne

    from .subjects import make_template_subject

    template = make_template_subject(meg=False)
    src_from = get_source_space(template, spacing)
    if src_to is None:
        src_to = get_source_space(subject, spacing)
    vert_from = [s["vertno"] for s in src_from]
    vert_to = [s["vertno"] for s in src_to]
    if subject.kind == "template" and all(np.array_equal(a, b) for a, b in zip(vert_from, vert_to)):
        # fsaverage -> fsaverage: MNE would return its smoothing operator; the truth is I.
        return scipy.sparse.eye_array(sum(len(v) for v in vert_to), format="csr")
    files = [f"surf/{h}.sphere.reg" for h in ("lh", "rh")] + [f"surf/{h}.white" for h in ("lh", "rh")]
    key = hash_arrays(
        "morph", CACHE_VERSION, _mne_version(), smooth, vert_from, vert_to,
        _surface_key(subject, files), _surface_key(template, files),
    )
    fname = _cache_file("morph", key, "-morph.npz")
    if fname.is_file():
        return scipy.sparse.csr_array(scipy.sparse.load_npz(fname))
    logger.info("Computing the fsaverage -> %s morph", subject.name)
    morph = mne.compute_source_morph(
        src_from, subject_from=TEMPLATE_SUBJECT, subject_to=subject.name, src_to=src_to,
        subjects_dir=subject.subjects_dir, smooth=smooth, warn=False, verbose="error",
    )
    mat = scipy.sparse.csr_array(morph.morph_mat, dtype=np.float64)
    mat.sum_duplicates()
    with atomic_path(fname, what="morph matrix") as tmp:
        with open(tmp, "wb") as fid:
            scipy.sparse.save_npz(fid, mat)
    return scipy.sparse.csr_array(scipy.sparse.load_npz(fname))


def check_morph(morph, n_sources_subject, n_sources_fsaverage, *, name="morph"):
    """Raise a clear error if a morph's shape does not match the two source spaces."""
    shape = tuple(np.shape(morph))
    expected = (n_sources_subject, n_sources_fsaverage)
    if shape != expected:
        raise ValueError(
            f"Morph vs source-space mismatch: '{name}' has shape {shape} but the subject's "
            f"source space has {n_sources_subject} sources and fsaverage's {n_sources_fsaverage} "
            f"(expected {expected}). Recompute the morph with make_morph(subject, "
            "src_to=fwd['src']) for the same spacing as the forward model."
        )
