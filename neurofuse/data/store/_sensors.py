"""Validation of what describes a subject's modalities before anything is written.

Sensor modalities (channel info, lead field, forward, electrodes), the subject source space
(morph, vertices, declared size), volume grids (affine) and epochs (event times, labels).
Each function only checks and converts; :class:`~.writer.DatasetWriter` writes.
"""

from __future__ import annotations

import json

import numpy as np

from ..._checks import _check_finite, _check_sfreq, _check_type
from ..._io import _json_default
from .manifest import FORWARD_FILE, INFO_FILE, LEADFIELD_FILE, MORPH_FILE, VERTICES_FILE
from .modalities import get_modality


def check_sensors(subject, modality, sfreq, n_sources, *, info=None, leadfield=None,
                  forward=None, electrodes=None, units=None, signal=None, n_channels=None):
    """Check the description of one sensor modality of ``subject``.

    Returns
    -------
    sensors : dict
        ``modality``, ``n_channels`` and ``n_sources`` (None when not fixed by the inputs),
        ``files`` (``{key: (object, file name)}``) and ``extra`` (manifest entries).
    """
    mod = get_modality(modality)
    if mod.kind.name != "sensor":
        raise ValueError(f"{modality!r} is a {mod.kind.name} modality, not a sensor one: "
                         "info, lead fields and electrodes describe sensor modalities.")
    files, extra = {}, {}
    if info is not None:
        import mne

        _check_type("info", info, mne.Info, "mne.Info")
        _check_sfreq(f"info['sfreq'] of subject {subject!r}", info["sfreq"], sfreq,
                     how_to_fix=f"Resample the recording to the dataset's {sfreq:g} Hz "
                     "(raw.resample) and update the info before adding it.")
        bad = [ch for ch, t in zip(info["ch_names"], info.get_channel_types())
               if t not in mod.ch_types]
        if bad:
            raise ValueError(f"'info' must hold {mod.label} channels only (types "
                             f"{list(mod.ch_types)}), got {len(bad)} others ({bad[:3]}...). "
                             f"Use info = mne.pick_info(info, mne.pick_types(info, "
                             f"{mod.ch_types[0] if modality != 'meg' else 'meg'}=True)).")
        if n_channels is not None and len(info["ch_names"]) != n_channels:
            raise ValueError(f"'info' of {subject!r} has {len(info['ch_names'])} channels but "
                             f"its {modality} data have {n_channels}.")
        n_channels = len(info["ch_names"])
        files["info"] = (info, INFO_FILE.format(modality))
    n_src = None
    if leadfield is not None:
        leadfield = np.asarray(leadfield, dtype=np.float32)
        if leadfield.ndim != 2:
            raise ValueError("'leadfield' must have shape (n_channels, n_sources), got "
                             f"shape {leadfield.shape}.")
        _check_finite("leadfield", leadfield)
        if n_channels is not None and leadfield.shape[0] != n_channels:
            raise ValueError(
                f"lead field vs channel count mismatch for subject {subject!r}: the leadfield "
                f"has {leadfield.shape[0]} rows but info has {n_channels} {mod.label} "
                "channels. Compute the lead field with the same info.")
        n_channels, n_src = leadfield.shape
        files["leadfield"] = (leadfield, LEADFIELD_FILE.format(modality))
    if forward is not None:
        import mne

        _check_type("forward", forward, mne.Forward, "mne.Forward")
        if n_channels is not None and forward["nchan"] != n_channels:
            raise ValueError(
                f"lead field vs channel count mismatch for subject {subject!r}: the forward "
                f"has {forward['nchan']} channels but info has {n_channels}.")
        files["forward"] = (forward, FORWARD_FILE.format(modality))
    if electrodes is not None:
        _check_type("electrodes", electrodes, dict)
        names = electrodes.get("names")
        if not isinstance(names, list) or (n_channels is not None and len(names) != n_channels):
            raise ValueError(f"'electrodes' must name one electrode per channel "
                             f"({n_channels}), got {names if names is None else len(names)}.")
        if info is not None and names != list(info["ch_names"]):
            raise ValueError("'electrodes' names must be the info's channel names, in order.")
        n_channels = len(names)
        extra["electrodes"] = electrodes
    for key, val in (("units", units), ("signal", signal)):
        if val is not None:
            extra[key] = str(_check_type(key, val, str))
    try:
        json.dumps(extra, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"'electrodes' must be JSON-serialisable: {exc}.") from None
    out = {"modality": modality, "n_channels": n_channels, "n_sources": n_src,
           "files": files, "extra": extra}
    if forward is not None:
        out["forward_sources"] = int(forward["nsource"])
    if n_sources is not None:
        for what, size in (("leadfield columns", n_src), ("forward sources",
                                                         out.get("forward_sources"))):
            if size is not None and size != n_sources:
                raise ValueError(f"source-space mismatch for subject {subject!r}: its "
                                 f"n_sources = {n_sources} but {what} = {size}. Build them "
                                 "from the same subject source space.")
    return out


def check_anatomy_sizes(subject, n_sources, morph, vertices, sensors):
    """Check the subject source space: declared size, lead field, morph, vertices, forward.

    Returns
    -------
    files : dict
        ``{"morph": (csr, file name), "vertices": (lists, file name)}`` for those given.
    sizes : list of (str, int)
        What fixes ``n_sources``, first the reference.
    """
    sizes, files = [], {}
    if n_sources is not None:
        if not isinstance(n_sources, (int, np.integer)) or n_sources < 1:
            raise ValueError(f"'n_sources' must be a positive integer, got {n_sources!r}.")
        sizes.append(("the declared n_sources", int(n_sources)))
    if sensors is not None and sensors["n_sources"] is not None:
        sizes.append(("leadfield columns", sensors["n_sources"]))
    if morph is not None:
        import scipy.sparse

        if not scipy.sparse.issparse(morph):
            raise TypeError("'morph' must be a scipy.sparse matrix (n_sources, "
                            f"n_sources_fsaverage), got {type(morph).__name__}; a dense "
                            "morph wastes memory — pass scipy.sparse.csr_matrix(morph).")
        morph = scipy.sparse.csr_matrix(morph, dtype=np.float32)
        _check_finite("morph", morph.data)
        sizes.append(("morph rows", morph.shape[0]))
        files["morph"] = (morph, MORPH_FILE)
    if vertices is not None:
        if not isinstance(vertices, (list, tuple)) or len(vertices) != 2:
            raise ValueError("'vertices' must be [lh, rh], two arrays of vertex numbers.")
        vertices = [np.asarray(v) for v in vertices]
        for hemi, v in zip(("lh", "rh"), vertices):
            if v.ndim != 1 or (v.size and (not np.issubdtype(v.dtype, np.integer)
                                           or v.min() < 0 or np.any(np.diff(v) <= 0))):
                raise ValueError(f"vertices[{hemi}] must be strictly increasing "
                                 "non-negative integers (as MNE numbers them).")
        sizes.append(("vertices (lh + rh)", int(sum(v.size for v in vertices))))
        files["vertices"] = ([v.tolist() for v in vertices], VERTICES_FILE)
    if sensors is not None and "forward_sources" in sensors:
        sizes.append(("forward sources", sensors["forward_sources"]))
    for what, size in sizes[1:]:
        if size != sizes[0][1]:
            kind = "morph vs source-space" if "morph" in what + sizes[0][0] else "source-space"
            raise ValueError(
                f"{kind} mismatch for subject {subject!r}: {sizes[0][0]} = {sizes[0][1]} but "
                f"{what} = {size}. Build them from the same subject source space (a "
                "forward computed with mindist > 0 drops sources: keep every source, or morph "
                "fsaverage onto the forward's own sources).")
    return files, sizes


def check_grid(modality, affine, shape, known):
    """Check a volume grid: a (4, 4) voxel → RAS affine and an optional (n_x, n_y, n_z) shape."""
    if get_modality(modality).kind.name != "volume":
        raise ValueError(f"{modality!r} is not a volume modality: only volumes have a grid.")
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"'affine' must have shape (4, 4), got {affine.shape}.")
    _check_finite("affine", affine)
    if not np.allclose(affine[3], [0, 0, 0, 1]) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("'affine' must be an invertible voxel → RAS affine with last row "
                         f"[0, 0, 0, 1], got\n{affine}.")
    if shape is not None:
        shape = [int(s) for s in shape]
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"'shape' must be (n_x, n_y, n_z) positive integers, got {shape}.")
        if known is not None and shape != list(known):
            raise ValueError(f"'shape' {tuple(shape)} differs from the {modality} data written "
                             f"({tuple(known)}).")
    return affine.tolist(), shape


def check_epochs(where, n_epochs, events, labels, event_id, tmin, story, duration):
    """Check epoch event times (s), labels and label names; return them and the manifest entry."""
    events = np.asarray(events, dtype=np.float64)
    if events.shape != (n_epochs,):
        raise ValueError(f"'events' of epochs {where} must have shape (n_epochs,) = "
                         f"({n_epochs},): one event time (s) per epoch, got {events.shape}.")
    _check_finite(f"events of epochs {where}", events)
    if duration is not None and (events.min() < 0 or events.max() >= duration):
        raise ValueError(f"'events' of epochs {where} must lie in story {story!r} "
                         f"([0, {duration:g}) s), got [{events.min():g}, {events.max():g}].")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n_epochs,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"'labels' of epochs {where} must be integers of shape "
                             f"({n_epochs},), got {labels.dtype} {labels.shape}.")
        labels = labels.astype(np.int64)
    if event_id is not None:
        _check_type("event_id", event_id, dict)
        if labels is None:
            raise ValueError("'event_id' names labels: pass 'labels' too.")
        bad = sorted(set(labels.tolist()) - {int(v) for v in event_id.values()})
        if bad or not all(isinstance(k, str) for k in event_id):
            raise ValueError(f"'event_id' must map label names (str) to every label used; "
                             f"labels {bad[:5]} have no name.")
        event_id = {k: int(v) for k, v in event_id.items()}
    if not isinstance(tmin, (int, float, np.floating)) or not np.isfinite(tmin):
        raise ValueError(f"'tmin' must be a finite number of seconds, got {tmin!r}.")
    entry = {"tmin": float(tmin), "event_id": event_id, "story": story,
             "labels": labels is not None}
    return events, labels, entry
