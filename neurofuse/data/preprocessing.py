"""MEG preprocessing as in the paper (§2.4), as a reusable pipeline on ``mne.io.Raw``.

The steps, in order (all with MNE-Python):

1. **tSSS** — temporal signal-space separation (:func:`mne.preprocessing.maxwell_filter`),
   after automatic detection of noisy and flat channels
   (:func:`mne.preprocessing.find_bad_channels_maxwell`), optionally with the site's
   fine-calibration and cross-talk files and a common head position (``destination``);
2. **filters** — 1–150 Hz band-pass (zero-phase FIR) and a notch at the power-line frequency
   and its harmonics up to the band-pass's upper edge (60 and 120 Hz in the paper);
3. **ICA** — removal of the ocular (EOG channels, or frontal magnetometers as a proxy),
   cardiac (ECG channel, or MNE's synthetic ECG from the magnetometers) and audio-locked
   components (correlation with the stimulus audio, see :class:`MEGPreprocessing`);
4. **downsampling** to 50 Hz (:meth:`mne.io.Raw.resample`, which low-passes first).

:func:`preprocess_meg` runs them all and returns the cleaned recording and a report of what was
removed. :func:`find_story_onsets` finds story onsets from the trigger channel or from
annotations (BIDS ``events.tsv``), and :func:`epoch_stories` cuts each presentation of a
story to its exact length at 50 Hz; repeated presentations are kept as separate repeats (the
dataset store averages them on request and uses them for repeatability).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import (
    _check_int,
    _check_keys,
    _check_option,
    _check_positive,
    _check_type,
)
from .._logging import logger, verbose
from ..physics.envelope import envelope
from ..stats import pearson_r

__all__ = [
    "MEGPreprocessing",
    "apply_filters",
    "apply_ica",
    "apply_maxwell",
    "epoch_stories",
    "find_story_onsets",
    "line_noise_freqs",
    "preprocess_meg",
]

#: Used as the SSS expansion origin (head frame, m) when there is no head digitisation to fit.
DEFAULT_ORIGIN = (0.0, 0.0, 0.04)


@dataclass(frozen=True)
class MEGPreprocessing:
    """Settings of the paper's MEG preprocessing (§2.4); the defaults reproduce the paper.

    Parameters
    ----------
    maxwell : bool
        Apply (t)SSS. Needs a MEGIN/Elekta (or other MNE-supported) system with sensor
        geometry; switch off for data that were already Maxwell-filtered.
    st_duration : float | None
        tSSS buffer length in seconds (10 s, MEGIN's default); ``None`` gives plain SSS. The
        recording must be at least this long.
    st_correlation : float
        tSSS subspace correlation limit (0.98, MNE's default).
    origin : 'auto' | tuple of 3 float
        SSS expansion origin in head coordinates (m). ``'auto'`` fits a sphere to the head
        digitisation; without digitisation (fewer than 4 head points) it uses
        ``(0, 0, 0.04)`` m and logs a warning.
    int_order, ext_order : int
        Orders of the internal and external SSS expansions (8 and 3).
    calibration, cross_talk : path-like | None
        Fine-calibration (``sss_cal.dat``) and cross-talk (``ct_sparse.fif``) files of the
        MEG system. :func:`~neurofuse.data.bids_meg.prepare_meg_bids` uses the ones in the
        BIDS folder when these are ``None``.
    detect_bad_channels : bool
        Mark noisy and flat channels with :func:`mne.preprocessing.find_bad_channels_maxwell`
        before SSS (which then reconstructs them). Without SSS, bad channels are interpolated.
    l_freq, h_freq : float
        Band-pass edges in Hz (1 and 150).
    line_freq : float | 'auto'
        Power-line frequency in Hz. ``'auto'`` reads ``raw.info['line_freq']`` (BIDS's
        ``PowerLineFrequency``); the notch removes it and its harmonics up to ``h_freq``
        (60 and 120 Hz for 60 Hz mains, 50, 100 and 150 Hz for 50 Hz mains).
    ica : bool
        Run the ICA step.
    ica_n_components : int | float
        ICA components: an int, or a float in (0, 1) for the fraction of variance kept by
        the PCA before ICA.
    ica_method : 'fastica' | 'infomax' | 'picard'
        ICA algorithm (``'picard'`` needs python-picard).
    ica_decim : int | None
        Fit ICA on every ``ica_decim``-th sample (faster; the whole recording is cleaned).
    ica_random_state : int
        Seed of the ICA.
    eog_channels : tuple of str | None
        Channels that record eye movements and blinks. ``None``: the recording's EOG
        channels, or, if it has none, a proxy: the two magnetometers of the most anterior
        fifth whose 1–10 Hz signal has the largest kurtosis (blinks are rare, large, slow
        deflections).
    eog_threshold : float
        Components whose correlation with an EOG channel (both band-passed 1–10 Hz) has a
        z-score above this across components are ocular
        (:meth:`mne.preprocessing.ICA.find_bads_eog`).
        The z-score of one outlier among ``n`` components cannot exceed about
        ``(n - 1) / sqrt(n)`` (3.2 for 12), so use at least ~20 components with the default 3.
    ecg_channel : str | None
        The ECG channel. ``None``: the recording's first ECG channel, or, if it has none, the
        synthetic ECG that MNE builds from the magnetometers.
    ecg_method : 'ctps' | 'correlation'
        How cardiac components are scored (:meth:`mne.preprocessing.ICA.find_bads_ecg`).
    ecg_threshold : float | 'auto'
        Threshold for ``ecg_method`` (``'auto'``: MNE's choice for CTPS).
    audio_channel : str | None
        A channel that records the stimulus audio (e.g. ``'MISC001'``). Alternatively pass
        the audio to :func:`preprocess_meg` as an array.
    audio_reference : 'waveform' | 'envelope'
        What the audio-locked criterion correlates with. ``'waveform'`` (default): the
        audio itself band-passed like the MEG (``l_freq``–``h_freq``), against each component
        at zero lag — this catches the electromagnetic leak of the sound system into the
        sensors, which follows the waveform instantaneously, while cortical responses do not
        follow a 100-Hz waveform. ``'envelope'``: the Hilbert envelope of the band-passed
        audio, low-passed at 10 Hz, against each component low-passed at 10 Hz — beware that
        auditory cortex tracks the envelope too, so this may remove genuine responses.
    audio_threshold : float
        A component is audio-locked when the absolute Pearson correlation ``|r|`` with the
        audio reference, over the samples where the audio is defined, is at least this
        (0.3).
    max_components_per_artifact : int
        At most this many components are removed per artifact kind (the best scoring ones).
    sfreq : float
        Output sampling rate in Hz (50).
    n_jobs : int | None
        Parallel jobs for MNE's filtering and resampling.
    """

    maxwell: bool = True
    st_duration: float | None = 10.0
    st_correlation: float = 0.98
    origin: str | tuple = "auto"
    int_order: int = 8
    ext_order: int = 3
    calibration: str | None = None
    cross_talk: str | None = None
    detect_bad_channels: bool = True
    l_freq: float = 1.0
    h_freq: float = 150.0
    line_freq: float | str = "auto"
    ica: bool = True
    ica_n_components: int | float = 0.99
    ica_method: str = "fastica"
    ica_decim: int | None = None
    ica_random_state: int = 97
    eog_channels: tuple | None = None
    eog_threshold: float = 3.0
    ecg_channel: str | None = None
    ecg_method: str = "ctps"
    ecg_threshold: float | str = "auto"
    audio_channel: str | None = None
    audio_reference: str = "waveform"
    audio_threshold: float = 0.3
    max_components_per_artifact: int = 3
    sfreq: float = 50.0
    n_jobs: int | None = None

    def __post_init__(self):
        for name in ("maxwell", "detect_bad_channels", "ica"):
            _check_type(name, getattr(self, name), bool)
        if self.st_duration is not None:
            _check_positive("st_duration", self.st_duration)
        c = _check_positive("st_correlation", self.st_correlation)
        if not 0 < c <= 1:
            raise ValueError(f"'st_correlation' must be in (0, 1], got {c}.")
        if isinstance(self.origin, str):
            _check_option("origin", self.origin, ["auto"], extra="Or give (x, y, z) in metres.")
        else:
            origin = tuple(float(v) for v in self.origin)
            if len(origin) != 3 or max(abs(v) for v in origin) > 0.2:
                raise ValueError(f"'origin' must be 'auto' or (x, y, z) in metres in head "
                                 f"coordinates (a few cm from 0), got {self.origin!r}.")
            object.__setattr__(self, "origin", origin)
        _check_int("int_order", self.int_order)
        _check_int("ext_order", self.ext_order)
        for name in ("calibration", "cross_talk"):
            val = getattr(self, name)
            if val is not None:
                object.__setattr__(self, name, str(_check_type(name, val, (str, Path),
                                                               "a path or None")))
        lo, hi = _check_positive("l_freq", self.l_freq), _check_positive("h_freq", self.h_freq)
        if lo >= hi:
            raise ValueError(f"'l_freq' ({lo} Hz) must be below 'h_freq' ({hi} Hz).")
        if isinstance(self.line_freq, str):
            _check_option("line_freq", self.line_freq, ["auto"],
                          extra="Or give the mains frequency in Hz (50 or 60).")
        else:
            _check_positive("line_freq", self.line_freq)
        n = self.ica_n_components
        if isinstance(n, bool) or not isinstance(n, numbers.Real) or (
                isinstance(n, numbers.Integral) and n < 2) or (
                not isinstance(n, numbers.Integral) and not 0 < n < 1):
            raise ValueError("'ica_n_components' must be an int >= 2 or a float in (0, 1) "
                             f"(fraction of variance), got {n!r}.")
        _check_option("ica_method", self.ica_method, ["fastica", "infomax", "picard"])
        if self.ica_decim is not None:
            _check_int("ica_decim", self.ica_decim)
        _check_int("ica_random_state", self.ica_random_state, minimum=0)
        if self.eog_channels is not None:
            if isinstance(self.eog_channels, str):
                object.__setattr__(self, "eog_channels", (self.eog_channels,))
            object.__setattr__(self, "eog_channels", tuple(str(c) for c in self.eog_channels))
        _check_positive("eog_threshold", self.eog_threshold)
        if self.ecg_channel is not None:
            _check_type("ecg_channel", self.ecg_channel, str, "a channel name or None")
        _check_option("ecg_method", self.ecg_method, ["ctps", "correlation"])
        if isinstance(self.ecg_threshold, str):
            _check_option("ecg_threshold", self.ecg_threshold, ["auto"])
        else:
            _check_positive("ecg_threshold", self.ecg_threshold)
        if self.audio_channel is not None:
            _check_type("audio_channel", self.audio_channel, str, "a channel name or None")
        _check_option("audio_reference", self.audio_reference, ["waveform", "envelope"])
        t = _check_positive("audio_threshold", self.audio_threshold)
        if t > 1:
            raise ValueError(f"'audio_threshold' is a correlation in (0, 1], got {t}.")
        _check_int("max_components_per_artifact", self.max_components_per_artifact)
        _check_positive("sfreq", self.sfreq)
        if self.n_jobs is not None:
            _check_int("n_jobs", self.n_jobs, minimum=-1)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        """JSON-serialisable dict of the settings."""
        out = dataclasses.asdict(self)
        for key in ("origin", "eog_channels"):
            if isinstance(out[key], tuple):
                out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, values: dict) -> MEGPreprocessing:
        """Build from a dict, rejecting unknown keys (typos do not pass silently)."""
        _check_type("preprocessing", values, dict)
        _check_keys("MEGPreprocessing", values, [f.name for f in dataclasses.fields(cls)])
        values = dict(values)
        for key in ("origin", "eog_channels"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def from_file(cls, fname) -> MEGPreprocessing:
        """Read the settings from a JSON or TOML file (keys as the parameters)."""
        fname = Path(fname).expanduser()
        if not fname.is_file():
            raise FileNotFoundError(f"Preprocessing config file '{fname}' not found: pass the "
                                    "path of a .json or .toml file, or None for the defaults.")
        if fname.suffix.lower() == ".toml":
            import tomllib

            with open(fname, "rb") as fid:
                values = tomllib.load(fid)
        elif fname.suffix.lower() == ".json":
            with open(fname) as fid:
                values = json.load(fid)
        else:
            raise ValueError(f"Preprocessing config '{fname}' must end in .json or .toml.")
        return cls.from_dict(values)

    @classmethod
    def resolve(cls, config) -> MEGPreprocessing:
        """Settings from ``None`` (defaults), a dict, a file path or an instance."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if isinstance(config, dict):
            return cls.from_dict(config)
        if isinstance(config, (str, Path)):
            return cls.from_file(config)
        raise TypeError("'preprocessing' must be None, a MEGPreprocessing, a dict or the path "
                        f"of a .json/.toml file, got {type(config).__name__}.")

    def check_sfreq(self, sfreq: float, *, what: str = "the recording") -> float:
        """Raise a clear error if a recording's rate cannot go through this pipeline."""
        sfreq = _check_positive("sfreq", sfreq)
        need = max(2 * self.h_freq, self.sfreq)
        if sfreq <= need:
            raise ValueError(
                f"Wrong sampling rate for {what}: {sfreq:g} Hz, but the {self.l_freq:g}-"
                f"{self.h_freq:g} Hz band-pass and the downsampling to {self.sfreq:g} Hz need "
                f"more than {need:g} Hz. Use the raw recording (MEG is typically sampled at "
                "1 kHz), or lower h_freq in the preprocessing settings.")
        return sfreq


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------


def _check_raw(raw):
    import mne

    _check_type("raw", raw, mne.io.BaseRaw, "an mne.io.Raw")
    if len(mne.pick_types(raw.info, meg=True, ref_meg=False, exclude=())) == 0:
        raise ValueError("'raw' has no MEG channels: the MEG preprocessing needs "
                         "magnetometers and/or gradiometers.")
    return raw


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
        from ..anatomy.sensors.meg import _as_dev_head_t

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


def line_noise_freqs(line_freq: float, h_freq: float) -> list:
    """Power-line frequency and harmonics up to ``h_freq`` (60 Hz, 150 Hz -> [60, 120])."""
    line_freq = _check_positive("line_freq", line_freq)
    n = int(np.floor(h_freq / line_freq + 1e-9))
    return [line_freq * k for k in range(1, n + 1)]


def _filter_picks(raw):
    import mne

    return mne.pick_types(raw.info, meg=True, ref_meg=True, eeg=True, eog=True, ecg=True,
                          misc=True, stim=False, exclude=())


@verbose
def apply_filters(raw, config=None, *, verbose=None):
    """Band-pass and notch-filter MEG and auxiliary channels in place (step 2).

    The MEG, EOG, ECG and misc (audio) channels get the same zero-phase FIR filters, so an
    audio channel stays comparable with the MEG; the trigger channel is left untouched.

    Parameters
    ----------
    raw : mne.io.Raw
        Preloaded recording, modified in place.
    config : MEGPreprocessing | dict | None

    Returns
    -------
    raw : mne.io.Raw
        The same object.
    report : dict
        ``band_pass`` [l_freq, h_freq] and ``notch`` (list of Hz).
    """
    config = MEGPreprocessing.resolve(config)
    _check_raw(raw)
    if not raw.preload:
        raw.load_data(verbose="error")
    sfreq = config.check_sfreq(raw.info["sfreq"])
    line = config.line_freq
    if line == "auto":
        line = raw.info.get("line_freq")
        if line is None:
            raise ValueError(
                "The power-line frequency is unknown: raw.info['line_freq'] is not set (BIDS "
                "sidecars give it as PowerLineFrequency). Pass line_freq=60 (or 50) in the "
                "preprocessing settings.")
    notch = [f for f in line_noise_freqs(line, config.h_freq) if f < sfreq / 2]
    picks = _filter_picks(raw)
    raw.notch_filter(notch, picks=picks, n_jobs=config.n_jobs, verbose="error")
    raw.filter(config.l_freq, config.h_freq, picks=picks, n_jobs=config.n_jobs, verbose="error")
    logger.info("Band-pass %g-%g Hz, notch at %s Hz", config.l_freq, config.h_freq,
                ", ".join(f"{f:g}" for f in notch))
    return raw, {"band_pass": [config.l_freq, config.h_freq], "notch": notch,
                 "line_freq": float(line)}


def _frontal_magnetometers(raw, n=2):
    """The ``n`` frontal magnetometers that look most like blinks, an EOG proxy.

    Among the most anterior fifth of the magnetometers (head frame), those whose 1-10 Hz
    signal has the largest kurtosis: blinks and saccades are rare, large, slow deflections
    (heavy tails), cortical rhythms are not. Where they peak over the frontal sensors depends
    on the head position, hence the data-driven choice.
    """
    import mne
    from mne.filter import filter_data
    from mne.transforms import apply_trans
    from scipy.stats import kurtosis

    info = raw.info
    picks = mne.pick_types(info, meg="mag", exclude="bads")
    if len(picks) == 0:
        picks = mne.pick_types(info, meg=True, exclude="bads")
    pos = np.array([info["chs"][p]["loc"][:3] for p in picks])
    if info["dev_head_t"] is not None:
        pos = apply_trans(info["dev_head_t"], pos)
    front = picks[pos[:, 1] >= np.quantile(pos[:, 1], 0.8)]
    slow = filter_data(raw.get_data(picks=front), info["sfreq"], 1.0, 10.0, verbose="error")
    order = np.argsort(-kurtosis(slow, axis=1))
    return [info["ch_names"][front[k]] for k in order[:n]]


def _top(indices, scores, n):
    """The ``n`` best of ``indices`` by |score| (scores may be a list of arrays)."""
    if not len(indices):
        return []
    s = np.max(np.abs(np.atleast_2d(np.asarray(scores, float))), axis=0)
    return sorted(int(i) for i in sorted(indices, key=lambda i: -s[i])[:n])


def _audio_scores(sources, reference, sfreq, config):
    """|Pearson r| of each component with the audio reference where it is defined."""
    from mne.filter import filter_data

    ref = np.asarray(reference, float)
    mask = np.isfinite(ref)
    ref = np.where(mask, ref, 0.0)
    h_freq = min(config.h_freq, sfreq / 2 - 1.0)
    ref = filter_data(ref[None], sfreq, config.l_freq, h_freq, verbose="error")[0]
    if config.audio_reference == "envelope":
        ref = filter_data(envelope(ref)[None], sfreq, None, 10.0, verbose="error")[0]
        sources = filter_data(sources, sfreq, None, 10.0, verbose="error")
    a = sources[:, mask]  # (n_components, n_valid)
    r = pearson_r(a, np.broadcast_to(ref[mask], a.shape), axis=-1)
    return np.abs(np.nan_to_num(r, nan=0.0))  # a constant component or reference scores 0


@verbose
def apply_ica(raw, config=None, *, audio=None, verbose=None):
    """Remove ocular, cardiac and audio-locked independent components in place (step 3).

    Parameters
    ----------
    raw : mne.io.Raw
        Preloaded, band-passed recording, modified in place.
    config : MEGPreprocessing | dict | None
    audio : array, shape (n_times,) | str | None
        The stimulus audio aligned with ``raw`` (at ``raw.info['sfreq']``, NaN where no
        audio was playing), or the name of the channel that recorded it; ``None`` uses
        ``config.audio_channel`` if set, else skips the audio criterion (reported).

    Returns
    -------
    raw : mne.io.Raw
        The same object, without the excluded components.
    report : dict
        ``n_components``; the excluded component indices per artifact (``ocular``,
        ``cardiac``, ``audio``); the channels used; per artifact the best score; and
        ``explained_variance`` removed (fraction of MEG variance).
    """
    import mne

    config = MEGPreprocessing.resolve(config)
    _check_raw(raw)
    if not raw.preload:
        raw.load_data(verbose="error")
    ica = mne.preprocessing.ICA(
        n_components=config.ica_n_components, method=config.ica_method,
        random_state=config.ica_random_state, max_iter="auto", verbose="error")
    ica.fit(raw, picks="meg", decim=config.ica_decim, verbose="error")
    n_max = config.max_components_per_artifact
    report = {"n_components": int(ica.n_components_), "method": config.ica_method}

    # -- ocular
    types = dict(zip(raw.ch_names, raw.get_channel_types()))
    if config.eog_channels is not None:
        missing = [c for c in config.eog_channels if c not in types]
        if missing:
            raise ValueError(f"eog_channels {missing} are not in the recording; its EOG "
                             f"channels are {[c for c, t in types.items() if t == 'eog']}.")
        eog, proxy = list(config.eog_channels), False
    else:
        eog = [c for c, t in types.items() if t == "eog" and c not in raw.info["bads"]]
        proxy = not eog
        if proxy:
            eog = _frontal_magnetometers(raw)
            logger.info("No EOG channel: using the frontal magnetometers %s as a proxy.", eog)
    idx, scores = ica.find_bads_eog(raw, ch_name=eog, threshold=config.eog_threshold,
                                    verbose="error")
    report["ocular"] = _top(idx, scores, n_max)
    report["eog_channels"], report["eog_proxy"] = eog, proxy
    report["ocular_max_score"] = float(np.max(np.abs(scores))) if np.size(scores) else 0.0

    # -- cardiac
    ecg = config.ecg_channel
    if ecg is None:
        ecg = next((c for c, t in types.items() if t == "ecg" and c not in raw.info["bads"]),
                   None)
    elif ecg not in types:
        raise ValueError(f"ecg_channel {ecg!r} is not in the recording; its ECG channels are "
                         f"{[c for c, t in types.items() if t == 'ecg']}.")
    try:
        idx, scores = ica.find_bads_ecg(raw, ch_name=ecg, method=config.ecg_method,
                                        threshold=config.ecg_threshold, verbose="error")
    except (RuntimeError, ValueError) as exc:  # e.g. no heartbeat found in a short recording
        logger.warning("Cardiac components not searched: %s", exc)
        idx, scores = [], []
    report["cardiac"] = [i for i in _top(idx, scores, n_max) if i not in report["ocular"]]
    report["ecg_channel"] = ecg or "synthetic (magnetometers)"
    report["cardiac_max_score"] = float(np.max(np.abs(scores))) if np.size(scores) else 0.0

    # -- audio-locked
    if audio is None and config.audio_channel is not None:
        audio = config.audio_channel
    report["audio"], report["audio_reference"], report["audio_max_r"] = [], None, 0.0
    if audio is not None:
        if isinstance(audio, str):
            if audio not in types:
                misc = [c for c, t in types.items() if t == "misc"]
                raise ValueError(f"The audio channel {audio!r} is not in the recording (its "
                                 f"misc channels are {misc}).")
            report["audio_reference"] = audio
            audio = raw.get_data(picks=[audio])[0]
        else:
            report["audio_reference"] = "array"
            audio = np.asarray(audio, float)
            if audio.shape != (raw.n_times,):
                raise ValueError(f"'audio' must have shape (n_times,) = ({raw.n_times},), "
                                 f"aligned with raw at {raw.info['sfreq']:g} Hz, got "
                                 f"{audio.shape}.")
        if np.isfinite(audio).sum() < raw.info["sfreq"]:
            raise ValueError("'audio' is defined (finite) on less than one second of the "
                             "recording: cannot score audio-locked components.")
        sources = ica.get_sources(raw).get_data()
        r = _audio_scores(sources, audio, raw.info["sfreq"], config)
        hits = np.flatnonzero(r >= config.audio_threshold)
        report["audio"] = [i for i in _top(hits, r, n_max)
                           if i not in report["ocular"] + report["cardiac"]]
        report["audio_max_r"] = float(r.max())
    else:
        logger.info("No stimulus audio given: audio-locked components not searched.")

    exclude = sorted(set(report["ocular"] + report["cardiac"] + report["audio"]))
    kinds = {kind: mne.pick_types(raw.info, meg=kind, ref_meg=False, exclude=())
             for kind in ("mag", "grad")}

    def variance(picks):  # on every 10th sample: no full copy of a long recording
        return float(np.mean([np.var(raw._data[p, ::10]) for p in picks]))

    before = {kind: variance(picks) for kind, picks in kinds.items() if len(picks)}
    ica.exclude = exclude
    ica.apply(raw, verbose="error")
    # Variance removed, per channel type (mags and grads differ by ~1e2 in units).
    removed = [1.0 - variance(kinds[kind]) / max(v, 1e-300) for kind, v in before.items()]
    report["excluded"] = exclude
    report["explained_variance"] = float(np.mean(removed)) if removed else 0.0
    logger.info("ICA: %d components; removed ocular %s, cardiac %s, audio %s",
                report["n_components"], report["ocular"], report["cardiac"], report["audio"])
    return raw, report


@verbose
def preprocess_meg(raw, *, config=None, audio=None, destination=None, verbose=None):
    """Run the paper's MEG preprocessing: tSSS, filters, ICA, downsampling (§2.4).

    Parameters
    ----------
    raw : mne.io.Raw
        A recording with MEG channels (and ideally EOG, ECG, an audio channel and a trigger
        channel), at its acquisition rate. It is not modified.
    config : MEGPreprocessing | dict | path-like | None
        Settings; ``None`` uses the paper's.
    audio : array, shape (n_times,) | str | None
        Stimulus audio for the audio-locked ICA criterion: an array aligned with ``raw`` at
        its rate (NaN where no stimulus played) or a channel name; see :func:`apply_ica`.
    destination : array, shape (4, 4) | path-like | None
        Common head position for SSS (see :func:`apply_maxwell`).
    verbose : bool | str | int | None

    Returns
    -------
    raw : mne.io.Raw
        The cleaned recording at ``config.sfreq`` (50 Hz), all channels kept; annotations
        are carried over (their onsets are in seconds, unaffected by resampling).
    report : dict
        What each step did and removed: ``sfreq_in``, ``sfreq_out``, ``maxwell``
        (bad channels, origin), ``filters`` (band-pass, notch), ``ica`` (components removed
        per artifact and their scores). JSON-serialisable.

    Notes
    -----
    The recording is preloaded into memory (about 2.5 GB for 12 minutes at 1 kHz).
    """
    import mne

    config = MEGPreprocessing.resolve(config)
    _check_raw(raw)
    sfreq_in = config.check_sfreq(raw.info["sfreq"])
    report = {"config": config.to_dict(), "sfreq_in": sfreq_in, "n_times_in": int(raw.n_times)}
    if config.maxwell:
        raw, report["maxwell"] = apply_maxwell(raw, config, destination=destination)
    else:
        raw = raw.copy().load_data(verbose="error")
        bads = [c for c in raw.info["bads"] if c in raw.ch_names]
        if bads:
            meg_bads = [c for c in bads if c in set(np.array(raw.ch_names)[
                mne.pick_types(raw.info, meg=True, ref_meg=False, exclude=())])]
            if meg_bads:
                raw.interpolate_bads(reset_bads=True, verbose="error")
        report["maxwell"] = None
        report["interpolated"] = bads
    raw, report["filters"] = apply_filters(raw, config)
    if config.ica:
        raw, report["ica"] = apply_ica(raw, config, audio=audio)
    else:
        report["ica"] = None
    stim = mne.pick_types(raw.info, meg=False, stim=True, exclude=())
    if len(stim):  # triggers cannot be resampled faithfully; onsets are found beforehand
        raw.drop_channels([raw.ch_names[p] for p in stim])
    raw.resample(config.sfreq, n_jobs=config.n_jobs, verbose="error")
    report["sfreq_out"] = float(raw.info["sfreq"])
    report["n_times_out"] = int(raw.n_times)
    return raw, report


# ---------------------------------------------------------------------------------------------
# Story onsets and epochs
# ---------------------------------------------------------------------------------------------


def _story_of(description, stories):
    """The story an event names: its description, or its last '/'-separated part."""
    if description in stories:
        return description
    last = str(description).rsplit("/", 1)[-1]
    return last if last in stories else None


@verbose
def find_story_onsets(raw, stories, *, source="auto", event_id=None, stim_channel=None,
                      verbose=None):
    """Find when each story started, from annotations or from the trigger channel.

    Parameters
    ----------
    raw : mne.io.Raw
        The recording at its acquisition rate (before downsampling, for precise onsets).
    stories : list of str
        Story names. An annotation names a story when its description is the name or ends
        with ``/<name>`` (e.g. ``story/wheretheressmoke``).
    source : 'auto' | 'annotations' | 'stim'
        ``'annotations'``: ``raw.annotations`` (what ``mne_bids.read_raw_bids`` makes of
        ``events.tsv``). ``'stim'``: :func:`mne.find_events` on the trigger channel, with
        ``event_id`` mapping story names (or event descriptions naming a story) to trigger
        codes. ``'auto'``: annotations if any names a story, else the trigger channel.
    event_id : dict of str to int | None
        Trigger code of each story (needed for ``'stim'``).
    stim_channel : str | None
        Trigger channel; ``None`` lets MNE choose (``STI101``, ``STI 014``...).

    Returns
    -------
    onsets : list of (str, float)
        ``(story, onset)`` in presentation order; onset in seconds from the first sample of
        ``raw``. A story presented several times appears several times.
    """
    import mne

    _check_raw(raw)
    stories = list(stories)
    _check_option("source", source, ["auto", "annotations", "stim"])
    found = []
    ann = raw.annotations
    if source in ("auto", "annotations"):
        offset = raw.first_time if ann.orig_time is not None else 0.0
        for desc, onset in zip(ann.description, ann.onset):
            story = _story_of(desc, stories)
            if story is not None:
                found.append((story, float(onset - offset)))
        if found or source == "annotations":
            if not found:
                raise ValueError(
                    f"No annotation names any of the stories {stories}: the recording's "
                    f"annotations are {sorted(set(ann.description))[:10]}. Name events after the "
                    "stories (trial_type in events.tsv) or use source='stim' with event_id.")
            return sorted(found, key=lambda x: x[1])
    if event_id is None:
        raise ValueError(
            "Story onsets from the trigger channel need 'event_id', the trigger code of each "
            f"story, e.g. {{{stories[0]!r}: 1}}; or name the stories in the annotations "
            "(events.tsv trial_type).")
    codes = {}
    for name, code in dict(event_id).items():
        story = _story_of(name, stories)
        if story is not None:
            codes[int(code)] = story
    if not codes:
        raise ValueError(f"'event_id' {event_id} names none of the stories {stories}.")
    events = mne.find_events(raw, stim_channel=stim_channel, shortest_event=1,
                             initial_event=True, verbose="error")
    for sample, _, code in events:
        if int(code) in codes:
            found.append((codes[int(code)], float((sample - raw.first_samp) / raw.info["sfreq"])))
    if not found:
        seen = sorted({int(c) for c in events[:, 2]})
        raise ValueError(f"The trigger channel has no event with the story codes "
                         f"{sorted(codes)} (codes seen: {seen}). Check 'event_id'.")
    return sorted(found, key=lambda x: x[1])


def epoch_stories(raw, onsets, n_times, *, picks="meg"):
    """Cut each presentation of each story to its exact length.

    Parameters
    ----------
    raw : mne.io.Raw
        Preprocessed recording (e.g. at 50 Hz).
    onsets : list of (str, float)
        From :func:`find_story_onsets`: story and onset in seconds from the first sample.
    n_times : dict of str to int
        Length of each story in samples at ``raw.info['sfreq']``.
    picks : str | list
        Channels to keep (default: the MEG channels, bad ones included).

    Returns
    -------
    epochs : dict of str to array, shape (n_repeats, n_channels, n_times)
        float32, presentations in temporal order. The first sample of each is at
        ``round(onset * sfreq)``.
    """
    import mne

    _check_raw(raw)
    sfreq = raw.info["sfreq"]
    if isinstance(picks, str) and picks == "meg":
        picks = mne.pick_types(raw.info, meg=True, ref_meg=False, exclude=())
    out = {}
    for story, onset in onsets:
        if story not in n_times:
            raise ValueError(f"No length given for story {story!r} in 'n_times'.")
        n = int(n_times[story])
        start = round(onset * sfreq)
        if start < 0 or start + n > raw.n_times:
            raise ValueError(
                f"stories of inconsistent length: story {story!r} starts at {onset:.3f} s and "
                f"lasts {n / sfreq:.3f} s ({n} samples at {sfreq:g} Hz), but the recording has "
                f"{raw.n_times / sfreq:.3f} s. Check the story's audio against the recording "
                "(was the recording stopped early?).")
        data = raw.get_data(picks=picks, start=start, stop=start + n)
        out.setdefault(story, []).append(data.astype(np.float32))
    return {story: np.stack(reps) for story, reps in out.items()}
