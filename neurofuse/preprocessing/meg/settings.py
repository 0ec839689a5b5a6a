"""Settings of the paper's MEG preprocessing (§2.4): :class:`MEGPreprocessing`.

One frozen dataclass holds every option of the four steps (tSSS, filters, ICA,
downsampling), validated once on construction and serialisable to JSON/TOML; the steps
(:mod:`.maxwell`, :mod:`.filters`, :mod:`.ica`) and the pipeline
(:func:`~neurofuse.preprocessing.meg.preprocess_meg`) take it as ``config``.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from pathlib import Path

from ..._checks import (
    _check_int,
    _check_keys,
    _check_option,
    _check_positive,
    _check_type,
)
from ..._io import read_config

__all__ = ["MEGPreprocessing"]


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
        MEG system. :func:`~neurofuse.data.datasets.bids_meg.prepare_meg_bids` uses the ones in the
        BIDS folder when these are ``None``.
    detect_bad_channels : bool
        Mark noisy and flat channels with :func:`mne.preprocessing.find_bad_channels_maxwell`
        before SSS (which then reconstructs them). Without SSS, bad channels are interpolated.
    l_freq, h_freq : float
        Band-pass edges in Hz (1 and 150).
    line_freq : float | 'auto' | None
        Power-line frequency in Hz. ``'auto'`` reads ``raw.info['line_freq']`` (BIDS's
        ``PowerLineFrequency``); the notch removes it and its harmonics up to ``h_freq``
        and below the recording's Nyquist frequency (60 and 120 Hz for 60 Hz mains, 50, 100
        and 150 Hz for 50 Hz mains; none when the mains lie above both, e.g. a 90-Hz
        recording low-passed at 40 Hz). ``None`` or ``0`` switches the notch off (TOML has no
        ``null``: write ``line_freq = 0``).
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
        the audio to :func:`~neurofuse.preprocessing.meg.preprocess_meg` as an array.
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
    line_freq: float | str | None = "auto"
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
                          extra="Or give the mains frequency in Hz (50 or 60), or None/0 for "
                                "no notch.")
        elif self.line_freq is not None and not (
                isinstance(self.line_freq, numbers.Real) and not isinstance(self.line_freq, bool)
                and self.line_freq == 0):
            _check_positive("line_freq", self.line_freq)
        if self.line_freq == 0:  # TOML has no null: 0 means off
            object.__setattr__(self, "line_freq", None)
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
        if fname.suffix.lower() in (".toml", ".json"):
            values = read_config(fname, what="preprocessing config", fix="correct its syntax")
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
        """Raise a clear error if a recording's rate cannot go through this pipeline.

        The band-pass runs at the recording's rate, so ``h_freq`` must lie below its Nyquist
        frequency; the downsampling needs a rate above ``sfreq``.
        """
        sfreq = _check_positive("sfreq", sfreq)
        if sfreq <= self.sfreq:
            raise ValueError(
                f"Wrong sampling rate for {what}: {sfreq:g} Hz, but the output rate "
                f"sfreq={self.sfreq:g} Hz of the preprocessing settings needs a recording "
                f"sampled above it. Use the raw recording (MEG is typically sampled at 1 kHz), "
                f"or lower sfreq in the preprocessing settings.")
        if sfreq <= 2 * self.h_freq:
            nyq = sfreq / 2
            hint = (f"set h_freq below {nyq:g} Hz (e.g. h_freq = {_below(nyq):g})"
                    if _below(nyq) > self.l_freq else "use the raw recording")
            raise ValueError(
                f"Wrong sampling rate for {what}: {sfreq:g} Hz, but the low-pass "
                f"h_freq={self.h_freq:g} Hz of the {self.l_freq:g}-{self.h_freq:g} Hz band-pass "
                f"is at or above its Nyquist frequency ({nyq:g} Hz). Use the raw recording (MEG "
                f"is typically sampled at 1 kHz), or {hint} in the preprocessing settings.")
        return sfreq


def _below(nyq):
    """A round low-pass edge safely below a Nyquist frequency (0.9 of it, to 5 Hz)."""
    return max(5.0 * int(0.9 * nyq // 5), 1.0)


def _check_raw(raw):
    """``raw`` if it is an ``mne.io.Raw`` with MEG channels, else a clear error (every step)."""
    import mne

    _check_type("raw", raw, mne.io.BaseRaw, "an mne.io.Raw")
    if len(mne.pick_types(raw.info, meg=True, ref_meg=False, exclude=())) == 0:
        raise ValueError("'raw' has no MEG channels: the MEG preprocessing needs "
                         "magnetometers and/or gradiometers.")
    return raw
