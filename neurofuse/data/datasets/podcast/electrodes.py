"""Electrode positions of a ds005574 recording, and their place on the fsaverage brain.

Positions. ``EcogElectrodes.pos_fsaverage`` holds fsaverage surface RAS = MNI305 coordinates in
metres. Positions in an MNI152 space (``MNI152NLin2009aSym`` by default, ``MNI152*``) are
mapped with FreeSurfer's affine MNI152 -> MNI305
(:data:`~neurofuse.anatomy.coordinates.MNI152_TO_MNI305`, from
``$FREESURFER_HOME/average/mni152.register.dat``, FreeSurfer wiki "CoordinateSystems" 8b). It
was made for FSL's MNI152 (NLin6Asym); the nonlinear 2009 templates differ from it by about a
millimetre, less than electrode localisation error. ``fsaverage``/``MNI305`` positions are used
as they are; other spaces are refused. Electrodes are not moved onto the cortex (the
zero-shot mapping takes the nearest source); their distance to the fsaverage pial surface is
reported. The hemisphere is the sign of x. There is no FreeSurfer reconstruction of the
subjects, so ``pos_mri`` is ``None``; the positions as given (mm, in ``space``) are kept in the
subject's ``anatomy``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ...._logging import logger
from .._bids import read_table, to_float
from .layout import DEFAULT_SPACE

_UNITS = {"m": 1.0, "cm": 1e-2, "mm": 1e-3}


def _space_to_fsaverage_mm(pos_mm, space):
    from ....anatomy.coordinates import mni152_to_mni305

    key = space.lower()
    if key.startswith("mni152"):
        return mni152_to_mni305(pos_mm), "MNI152 -> MNI305 (FreeSurfer affine)"
    if key in ("fsaverage", "mni305"):
        return np.asarray(pos_mm, float), "identity (already fsaverage/MNI305)"
    raise ValueError(f"Electrode positions in space {space!r} cannot be placed on fsaverage: "
                     "neurofuse maps MNI152* and fsaverage/MNI305 positions only. Use the "
                     "dataset's space-MNI152NLin2009aSym files (space='MNI152NLin2009aSym').")


def _electrode_files(bids_path, space):
    ieeg_dir = Path(bids_path.fpath).parent
    sub = f"sub-{bids_path.subject}"
    ses = f"_ses-{bids_path.session}" if bids_path.session else ""
    tsv = sorted(ieeg_dir.glob(f"{sub}{ses}*_space-{space}_electrodes.tsv"))
    js = sorted(ieeg_dir.glob(f"{sub}{ses}*_space-{space}_coordsystem.json"))
    if len(tsv) != 1:
        others = sorted(p.name for p in ieeg_dir.glob(f"{sub}*_electrodes.tsv"))
        raise FileNotFoundError(
            f"{'No' if not tsv else 'Several'} electrode file(s) of space {space!r} for {sub} in "
            f"'{ieeg_dir}' ({[p.name for p in tsv] or others or 'none there'}). ds005574 has "
            f"{sub}_space-MNI152NLin2009aSym_electrodes.tsv; pass 'space' to choose another.")
    return tsv[0], (js[0] if len(js) == 1 else None)


def read_podcast_electrodes(bids_path, *, space=DEFAULT_SPACE) -> dict:
    """Read a recording's electrode positions in ``space`` (BIDS ``electrodes.tsv``).

    Parameters
    ----------
    bids_path : mne_bids.BIDSPath
        The iEEG recording (its folder holds ``sub-XX_space-<space>_electrodes.tsv`` and
        ``..._coordsystem.json``).
    space : str
        BIDS ``space`` entity (``"MNI152NLin2009aSym"`` in ds005574).

    Returns
    -------
    electrodes : dict
        ``"names"`` (list of str), ``"pos_mm"`` (array (n, 3), mm in ``space``, NaN where
        the file has ``n/a``), ``"group"`` (list of str | None), ``"units"`` (as declared or
        inferred), ``"file"`` (the tsv's name), ``"coordsystem"`` (the json, or ``{}``).
    """
    tsv, coord = _electrode_files(bids_path, space)
    fields, rows = read_table(tsv)
    if not {"name", "x", "y", "z"} <= set(fields):
        raise ValueError(f"'{tsv}' must have the columns name, x, y, z; got {fields}.")
    names = [r["name"].strip() for r in rows]
    pos = np.array([[to_float(r[c]) for c in "xyz"] for r in rows], float).reshape(-1, 3)
    meta = {}
    if coord is not None:
        try:
            meta = json.loads(coord.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"'{coord}' is not valid JSON ({err}).") from None
    units = str(meta.get("iEEGCoordinateUnits", "n/a")).strip().lower()
    if units not in _UNITS:
        finite = np.abs(pos[np.isfinite(pos)])
        inferred = "mm" if finite.size and finite.max() > 0.5 else "m"
        logger.warning("%s: iEEGCoordinateUnits is %r; the coordinates (max |value| %.3g) are "
                       "taken as %s.", tsv.name, units, finite.max() if finite.size else 0.0,
                       inferred)
        units = inferred
    group = [r.get("group") or None for r in rows] if "group" in fields else None
    return {"names": names, "pos_mm": pos * (_UNITS[units] * 1e3), "group": group,
            "units": units, "file": tsv.name, "coordsystem": meta}


def _group_of(name) -> str:
    """Electrode array from a name: the label without its trailing number (``LGA12`` -> LGA)."""
    stem = re.sub(r"\d+$", "", name).rstrip("_- ")
    return stem or name


def _pial_distance_mm(pos_m, hemi):
    """Distance of each point to the fsaverage5 pial surface of its hemisphere, mm."""
    from scipy.spatial import cKDTree

    from ....anatomy.template import read_template_surface

    out = np.empty(len(pos_m))
    for h in ("lh", "rh"):
        sel = np.flatnonzero(np.asarray(hemi) == h)
        if len(sel):
            rr, _ = read_template_surface("pial", h)  # mm
            out[sel] = cKDTree(rr).query(pos_m[sel] * 1e3)[0]
    return out
