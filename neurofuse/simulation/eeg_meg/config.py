"""Configuration of the paired EEG + MEG world: one frozen dataclass and its presets.

:class:`EEGMEGWorldConfig` holds every size, rate and amplitude of a simulated world (issue
12, item 1): how many paired (EEG + MEG) and EEG-only subjects, which event-related tasks
each group performs, trials per class, the epoch window, the source space, the EEG cap, the
source amplitudes and the sensor CNR per modality. :meth:`EEGMEGWorldConfig.from_preset`
builds one from a size preset (:data:`PRESETS`: ``'tiny'`` for tests, ``'demo'``,
``'paper'``); the configuration is validated once and round-trips through JSON, which is
how a world's store records it (``metadata["world"]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..._checks import _check_int, _check_keys, _check_option, _check_positive
from .._config import JSONSettings
from ...physics.bands import BANDS  # noqa: F401 (re-exported)

__all__ = ["BANDS", "PRESETS", "EEGMEGWorldConfig"]

#: Task names (see :mod:`.tasks`): paired tasks and the EEG-only (cross-dataset) one.
TASK_NAMES = ("somatomotor", "faces", "motor_imagery")


@dataclass(frozen=True)
class EEGMEGWorldConfig(JSONSettings):
    """Every parameter of a simulated paired EEG + MEG world.

    Attributes
    ----------
    n_subjects : int
        Subjects recorded with EEG and MEG at once (``sub-01``, ``sub-02``, ...).
    n_eeg_only_subjects : int
        New subjects with EEG only (``sub-101``, ...), for the cross-dataset test; 0 for none.
    tasks : tuple of str
        Tasks of the paired subjects (``'somatomotor'``, ``'faces'``, ``'motor_imagery'``).
    eeg_only_tasks : tuple of str
        Tasks of the EEG-only subjects (default: the new ``'motor_imagery'`` task).
    n_trials : int
        Trials per class of each task and subject.
    sfreq : float
        Sampling rate of sources, EEG and MEG, Hz (>= 250 carries the gamma band to 100 Hz).
    tmin, tmax : float
        Epoch window around each event, s: samples at ``tmin + k / sfreq`` for
        ``k < (tmax - tmin) * sfreq`` (``tmax`` excluded, so the epoch length is a whole
        number of samples that cuts into equal patches).
    spacing : str
        Cortical source space (``'oct5'``: 2052 sources, the coarsest; ``'oct6'``: 8196).
    montage : str
        MNE built-in EEG montage; ``'fsaverage_1010'`` (70 electrodes on the fsaverage head)
        by default. The EEG is average-referenced.
    eeg_only_montage : str | None
        Cap of the EEG-only subjects (another data set may use another cap); ``None``: the
        same ``montage``.
    anatomy : 'simulated' | 'template'
        ``'simulated'``: every subject its own deformed anatomy and head position
        (:func:`neurofuse.anatomy.make_simulated_subject`); ``'template'``: all subjects on
        the fsaverage template (faster; no anatomical variability).
    anatomy_seed : int
        Seed of the simulated anatomies (kept apart from ``seed`` so that worlds with new
        activity reuse the cached forward models).
    moment_density : float
        Peak current-moment density of an evoked component at its region's centre,
        A·m per cm² of cortex (5e-8 = 50 nA·m/cm²); each source carries it times its share of
        the cortical area, so sensor amplitudes do not depend on ``spacing``.
    oscillation_amplitude : float
        r.m.s. of each ongoing oscillation at its region's centre, relative to
        ``moment_density``.
    background_amplitude : float
        r.m.s. of the spatially smooth 1/f background activity at every source, relative to
        ``moment_density``; it makes the sources full-rank (brain "noise").
    background_fwhm : float
        Spatial smoothness of the background, mm.
    latency_jitter : float
        s.d. of the per-trial latency shift of the evoked components, s (a shift common to
        the trial plus an independent one of half this size per component).
    amplitude_jitter : float
        Relative s.d. of the per-trial, per-component amplitude (lognormal, mean 1).
    cnr_eeg, cnr_meg : float
        Sensor contrast-to-noise ratio (sigma_signal / sigma_noise per channel, over all
        epochs of a subject's task; :func:`neurofuse.physics.measurement.add_noise`);
        ``inf`` for no sensor noise.
    soa : (float, float)
        Range of the uniform stimulus-onset asynchrony of the virtual run the event times
        are given in, s.
    chunk_trials : int
        Trials simulated at once (memory: ``chunk_trials * n_sources * n_times`` floats).
    save_sources : bool
        Save the ground-truth source epochs (``n_epochs * n_sources * n_times`` float32 per
        subject and task: the largest part of the store).
    seed : int
        Seed of the activity, the designs and the sensor noise.
    """

    _INF_FIELDS = ("cnr_eeg", "cnr_meg")

    n_subjects: int = 3
    n_eeg_only_subjects: int = 1
    tasks: tuple = ("somatomotor", "faces")
    eeg_only_tasks: tuple = ("motor_imagery",)
    n_trials: int = 30
    sfreq: float = 250.0
    tmin: float = -0.2
    tmax: float = 0.8
    spacing: str = "oct5"
    montage: str = "fsaverage_1010"
    eeg_only_montage: str | None = None
    anatomy: str = "simulated"
    anatomy_seed: int = 0
    moment_density: float = 5e-8
    oscillation_amplitude: float = 0.1
    background_amplitude: float = 0.05
    background_fwhm: float = 15.0
    latency_jitter: float = 0.006
    amplitude_jitter: float = 0.25
    cnr_eeg: float = 3.0
    cnr_meg: float = 3.0
    soa: tuple = (1.5, 2.5)
    chunk_trials: int = 32
    save_sources: bool = True
    seed: int = 0

    def __post_init__(self):
        for name in ("tasks", "eeg_only_tasks", "soa"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_int("n_subjects", self.n_subjects, 0)
        _check_int("n_eeg_only_subjects", self.n_eeg_only_subjects, 0)
        if self.n_subjects + self.n_eeg_only_subjects < 1:
            raise ValueError("A world needs at least one subject: n_subjects (paired EEG + "
                             "MEG) and n_eeg_only_subjects are both 0.")
        if not self.tasks:
            raise ValueError("'tasks' must name at least one task, got an empty tuple; "
                             f"choose from {list(TASK_NAMES)}.")
        if self.n_eeg_only_subjects and not self.eeg_only_tasks:
            raise ValueError("'eeg_only_tasks' is empty but 'n_eeg_only_subjects' > 0; name a "
                             "task (e.g. ('motor_imagery',)) or set n_eeg_only_subjects=0.")
        for group in ("tasks", "eeg_only_tasks"):
            tasks = getattr(self, group)
            if len(set(tasks)) != len(tasks):
                raise ValueError(f"'{group}' must not repeat a task, got {tasks}.")
            for task in tasks:
                _check_option(f"{group} entry", task, TASK_NAMES)
        _check_int("n_trials", self.n_trials, 1)
        _check_positive("sfreq", self.sfreq)
        if self.sfreq < 2 * BANDS["gamma"][1]:
            raise ValueError(f"'sfreq' must be >= {2 * BANDS['gamma'][1]:g} Hz so the gamma "
                             f"band (up to {BANDS['gamma'][1]:g} Hz) is sampled, got "
                             f"{self.sfreq:g} Hz; use 250 Hz or more.")
        if not self.tmin < 0 < self.tmax:
            raise ValueError(f"'tmin' and 'tmax' must satisfy tmin < 0 < tmax (a baseline and "
                             f"a response), got tmin={self.tmin}, tmax={self.tmax}.")
        n = (self.tmax - self.tmin) * self.sfreq
        if abs(n - round(n)) > 1e-6:
            raise ValueError(f"'(tmax - tmin) * sfreq' must be a whole number of samples, got "
                             f"({self.tmax} - {self.tmin}) * {self.sfreq:g} = {n:g}.")
        n0 = -self.tmin * self.sfreq
        if abs(n0 - round(n0)) > 1e-6:
            raise ValueError(f"'-tmin * sfreq' must be a whole number of samples (so the event "
                             f"falls on a sample), got {n0:g}.")
        _check_option("spacing", self.spacing, ["oct5", "oct6", "ico4", "ico5"])
        for name in ("montage", "eeg_only_montage"):
            value = getattr(self, name)
            if not isinstance(value, str) and not (name == "eeg_only_montage" and value is None):
                raise TypeError(f"'{name}' must be the name of an MNE built-in montage (str), "
                                f"got {type(value).__name__}.")
        _check_option("anatomy", self.anatomy, ["simulated", "template"])
        _check_int("anatomy_seed", self.anatomy_seed, 0)
        for name in ("moment_density", "background_fwhm"):
            _check_positive(name, getattr(self, name))
        for name in ("oscillation_amplitude", "background_amplitude", "latency_jitter",
                     "amplitude_jitter"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        for name in ("cnr_eeg", "cnr_meg"):
            _check_positive(name, getattr(self, name), allow_inf=True)
        if len(self.soa) != 2 or not 0 < self.soa[0] <= self.soa[1]:
            raise ValueError(f"'soa' must be (low, high) with 0 < low <= high, got {self.soa}.")
        if self.soa[0] < self.tmax - self.tmin:
            raise ValueError(f"'soa' low ({self.soa[0]} s) must be >= the epoch length "
                             f"tmax - tmin = {self.tmax - self.tmin:g} s so epochs do not "
                             "overlap in the virtual run.")
        _check_int("chunk_trials", self.chunk_trials, 1)
        if not isinstance(self.save_sources, bool):
            raise TypeError(f"'save_sources' must be a bool, got {self.save_sources!r}.")
        _check_int("seed", self.seed, 0)

    # -- derived sizes ----------------------------------------------------------------------
    @property
    def n_times(self) -> int:
        """Samples per epoch, ``(tmax - tmin) * sfreq``."""
        return int(round((self.tmax - self.tmin) * self.sfreq))

    @property
    def times(self):
        """Sample times relative to the event, s, array of shape (n_times,)."""
        import numpy as np

        return self.tmin + np.arange(self.n_times) / self.sfreq

    def subject_names(self) -> tuple:
        """(paired, eeg_only) subject names: ``sub-01``... and ``sub-101``..."""
        paired = tuple(f"sub-{i + 1:02d}" for i in range(self.n_subjects))
        eeg_only = tuple(f"sub-{101 + i}" for i in range(self.n_eeg_only_subjects))
        return paired, eeg_only

    # -- construction and JSON ------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset="demo", **overrides):
        """A configuration from a size preset (:data:`PRESETS`), with overrides.

        Parameters
        ----------
        preset : 'tiny' | 'demo' | 'paper'
            ``'tiny'``: one paired and one EEG-only subject, a few trials (tests, seconds);
            ``'demo'``: three paired subjects, one EEG-only, 30 trials per class on ``oct5``
            (about 50 s of CPU once the forward models are cached, ~10 s per new subject
            before; 1.2 GB, of which 1 GB ground-truth sources); ``'paper'``:
            ten paired and four EEG-only subjects, 100 trials per class on ``oct6``.
        **overrides
            Any field of :class:`EEGMEGWorldConfig`, applied last.

        Returns
        -------
        config : EEGMEGWorldConfig
        """
        _check_option("preset", preset, list(PRESETS))
        _check_keys("EEGMEGWorldConfig", overrides, [f.name for f in dataclasses.fields(cls)])
        return cls(**{**PRESETS[preset], **overrides})


#: Size presets (fields of :class:`EEGMEGWorldConfig`).
PRESETS = {
    "tiny": dict(n_subjects=1, n_eeg_only_subjects=1, n_trials=6, tmin=-0.1, tmax=0.5,
                 spacing="oct5", chunk_trials=8),
    "demo": dict(n_subjects=3, n_eeg_only_subjects=1, n_trials=30, spacing="oct5"),
    "paper": dict(n_subjects=10, n_eeg_only_subjects=4, n_trials=100, spacing="oct6",
                  tmin=-0.2, tmax=0.8, chunk_trials=16),
}
