"""Step 1 of the MEG preprocessing: bad-channel detection and (t)SSS (Maxwell filtering)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._logging import logger, verbose
from .settings import MEGPreprocessing, _check_raw

__all__ = ["apply_maxwell", "maxwell_history"]

#: Used as the SSS expansion origin (head frame, m) when there is no head digitisation to fit.
DEFAULT_ORIGIN = (0.0, 0.0, 0.04)


#: Steps of Maxwell filtering as ``info["proc_history"][i]["max_info"]`` records them.
_SSS_STEPS = (("SSS", "sss_info"), ("tSSS", "max_st"), ("fine calibration", "sss_cal"),
              ("cross-talk cancellation", "sss_ctc"))


def maxwell_history(info) -> dict | None:
    """What Maxwell filtering a recording has already been through (MaxFilter or MNE).

    MEGIN's MaxFilter and :func:`mne.preprocessing.maxwell_filter` record what they did in
    ``info["proc_history"]`` (``max_info``: ``sss_info``, ``max_st``, ``sss_cal``,
    ``sss_ctc``); MNE refuses to filter such data again ("SSS already applied").

    Parameters
    ----------
    info : mne.Info
        The recording's measurement info.

    Returns
    -------
    history : dict | None
        ``None`` when no SSS was applied; else ``steps`` (e.g. ``['SSS', 'tSSS',
        'fine calibration', 'cross-talk cancellation']``), ``creator`` (the software, e.g.
        ``'MaxFilter'``, or ``None``) and ``description`` (one line for messages).
    """
    steps, creators = [], []
    for ent in info.get("proc_history") or []:
        max_info = ent.get("max_info") or {}
        for name, key in _SSS_STEPS:
            if len(max_info.get(key) or ()) > 0 and name not in steps:
                steps.append(name)
        if ent.get("creator") and max_info.get("sss_info"):
            creators.append(str(ent["creator"]))
    if "SSS" not in steps:
        return None
    creator = ", ".join(dict.fromkeys(creators)) or None
    return {"steps": steps, "creator": creator,
            "description": f"{', '.join(steps)}{' by ' + creator if creator else ''}"}


def _head_points(info) -> int:
    from mne.io.constants import FIFF

    kinds = (FIFF.FIFFV_POINT_EXTRA, FIFF.FIFFV_POINT_EEG)
    return sum(1 for d in (info.get("dig") or []) if d["kind"] in kinds)


def _origin(raw, config):
    if config.origin != "auto":
        return np.array(config.origin, float), "config"
    if _head_points(raw.info) >= 4:
        import mne

        _, origin, _ = mne.bem.fit_sphere_to_headshape(raw.info, units="m", verbose="error")
        return np.asarray(origin, float), "fitted to the head digitisation"
    logger.warning("The recording has no head digitisation to fit the SSS origin to: using "
                   "(0, 0, 40) mm in head coordinates. Pass origin=(x, y, z) to choose it.")
    return np.array(DEFAULT_ORIGIN), "default (no digitisation)"


@verbose
def apply_maxwell(raw, config=None, *, destination=None, verbose=None):
    """Detect bad channels, then apply (t)SSS (step 1).

    Parameters
    ----------
    raw : mne.io.Raw
        The recording (not modified).
    config : MEGPreprocessing | dict | None
        Settings (``st_duration``, ``origin``, ``calibration``, ``cross_talk``...).
    destination : array, shape (4, 4) | path-like | None
        Head position (device → head transform, or a file holding one) to transform the
        data to, e.g. the first run's, so that all runs of a subject share one forward model.

    Returns
    -------
    raw : mne.io.Raw
        A new, Maxwell-filtered recording; bad channels are reconstructed and
        ``info['bads']`` no longer lists MEG channels.
    report : dict
        ``bad_channels`` (noisy, flat and previously marked), ``origin`` (m), ``st_duration``.
    """
    import mne

    config = MEGPreprocessing.resolve(config)
    _check_raw(raw)
    history = maxwell_history(raw.info)
    if history is not None:
        raise ValueError(
            f"'raw' was already Maxwell-filtered (raw.info['proc_history'] records "
            f"{history['description']}): SSS cannot be applied twice. Set maxwell = false in the "
            "preprocessing settings (preprocess_meg and prepare_meg_bids skip it by themselves "
            "with a note).")
    duration = raw.n_times / raw.info["sfreq"]
    if config.st_duration is not None and config.st_duration > duration:
        raise ValueError(
            f"The recording lasts {duration:.3g} s, shorter than the tSSS buffer "
            f"st_duration={config.st_duration:g} s: choose a shorter st_duration (or None for "
            "plain SSS).")
    for name in ("calibration", "cross_talk"):
        fname = getattr(config, name)
        if fname is not None and not Path(fname).expanduser().is_file():
            raise FileNotFoundError(f"The {name.replace('_', '-')} file '{fname}' does not "
                                    f"exist: fix the path or set {name}=None.")
    if destination is not None and not isinstance(destination, (str, Path)):
        from ...anatomy.sensors.meg import _as_dev_head_t

        destination = _as_dev_head_t(destination, "destination")  # 4x4 -> Transform
    origin, origin_how = _origin(raw, config)
    kw = {"origin": origin, "int_order": config.int_order, "ext_order": config.ext_order,
          "calibration": config.calibration, "cross_talk": config.cross_talk,
          "coord_frame": "head"}
    raw = raw.copy() if raw.preload else raw.copy().load_data(verbose="error")
    marked = [ch for ch in raw.info["bads"] if ch in raw.ch_names]
    noisy = flat = []
    if config.detect_bad_channels:
        noisy, flat = mne.preprocessing.find_bad_channels_maxwell(raw, **kw, verbose="error")
        raw.info["bads"] = sorted(set(marked) | set(noisy) | set(flat))
    if raw.info["bads"]:
        logger.info("Bad channels (reconstructed by SSS): %s", ", ".join(raw.info["bads"]))
    sss = mne.preprocessing.maxwell_filter(
        raw, **kw, st_duration=config.st_duration, st_correlation=config.st_correlation,
        destination=destination, verbose="error")
    report = {"bad_channels": {"marked": marked, "noisy": list(noisy), "flat": list(flat)},
              "origin": origin.tolist(), "origin_from": origin_how,
              "st_duration": config.st_duration,
              "destination": None if destination is None else (
                  str(destination) if isinstance(destination, (str, Path))
                  else np.asarray(destination["trans"]).tolist())}
    return sss, report
