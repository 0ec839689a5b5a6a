"""Naturalistic MEG + fMRI studies with known ground truth (paper §4).

:class:`StudyConfig` describes a study (subjects, stories, noise levels); :func:`simulate_study`
generates it story by story and writes a dataset store (:mod:`neurofuse.data.store`):

1. synthetic stories with word / phoneme / spectrogram feature streams
   (:class:`~neurofuse.simulation.stimuli.StimulusGenerator`);
2. ground-truth fsaverage source activity ``s`` from a linear encoding model whose weights are
   drawn from the empirical feature covariance
   (:func:`~neurofuse.simulation.encoding.make_encoding_model`);
3. per MEG subject ``i``: ``MEG = L_i M_i s + noise`` with per-channel noise
   ``sigma_noise = sigma_signal / meg_cnr`` (paper footnote 3; ``inf`` = noiseless);
4. per fMRI subject: ``BOLD = HRF * envelope(M_i s)`` averaged over each TR, plus per-source
   noise at ``fmri_cnr``;
5. validation, test and anchor stories are presented several times with independent noise;
6. per *paired* subject (``n_paired_subjects``, system C's world): MEG as in 3. and EPI
   volumes of the same stories (``fmri-volume``), with word and sentence onsets per story
   (:mod:`neurofuse.simulation.paired_volume`);
7. per EEG subject (``n_eeg_subjects``): ``EEG = L_i M_i s + noise`` with the subject's
   three-layer-BEM EEG lead field, average-referenced (lead field, noise and ``Info``).

Memory: sources are produced in time chunks and staged in a memory-mapped file, so a
"paper" study (12-minute stories, 8196 sources) never holds more than one story's MEG and a
chunk of sources in memory.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._checks import _check_int, _check_keys, _check_option, _check_positive
from .._io import check_writable_dir, read_config
from .._logging import logger, progress_enabled, verbose

SPLITS = ("train", "val", "test", "anchor")


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a simulated study. Same config (and seed) => identical dataset.

    Parameters
    ----------
    seed : int
        Master seed: anatomy, stimuli, ground truth and noise all derive from it.
    n_meg_subjects, n_fmri_subjects : int
        Subjects with MEG only and fMRI only (the paper: 5 and 8).
    n_paired_subjects : int
        Subjects with both MEG and volumetric fMRI (``fmri-volume``) of every story, after
        the others (SMN4Lang: 12). With 0 (the default) the ``volume_*`` fields are unused
        and left out of :meth:`to_dict`, so such studies are written as before.
    n_train, n_val, n_test, n_anchor : int
        Stories per split (the paper: 21 / 1 / 4 / 1).
    story_duration : float
        Mean story length in seconds (the paper: ~720 s).
    story_duration_jitter : float
        Stories last ``story_duration * (1 ± jitter)`` (uniform); 0 makes them equal.
    n_repeats_val, n_repeats_test, n_repeats_anchor : int
        Presentations of each validation / test / anchor story (independent noise each).
    meg_cnr, fmri_cnr : float | 'inf'
        Contrast-to-noise ratio sigma_signal / sigma_noise per channel / per source.
    sfreq : float
        Feature and MEG sampling rate (Hz).
    tr : float
        fMRI repetition time (s); ``tr * sfreq`` must be a whole number of samples.
    feature_dims : tuple of 3 int
        Dimensions of the word, phoneme and spectrogram streams (the paper: 768, 44, 40).
    spacing : str
        Source space (``oct6``: 8196 sources).
    stream_lags : dict | None
        Peak response latency (s) per stream, e.g. ``{"spectrogram": 0.05, "phoneme": 0.1,
        "word": 0.35}``; None uses those defaults.
    n_components : int
        Latent weight vectors per region and stream in the ground-truth model.
    source_amplitude : float
        Typical source amplitude (A·m) of responsive sources.
    calibration_duration : float
        Seconds of extra stimulus used only to estimate the feature covariance.
    deformation_mm, registration_deg, head_shift_mm, head_rotation_deg : float
        How much simulated subjects differ from the template (see
        :func:`~neurofuse.anatomy.make_simulated_subject`).
    save_sources : 'test' | 'all' | 'none'
        For which stories the ground-truth fsaverage sources are saved.
    chunk_size : int
        Time samples per chunk when producing sources (memory control).
    volume_shape : tuple of 3 int
        EPI grid of the paired subjects (SMN4Lang: 106 × 106 × 72).
    volume_voxel_size : float
        Voxel edge, mm (SMN4Lang: 2).
    volume_center : tuple of 3 float
        MNI152 position (mm) of the grid's centre.
    volume_percent_change : float
        BOLD % change of the most responsive voxels (the 99th percentile of the per-voxel
        s.d. in a run; :mod:`neurofuse.physics.bold_volume`).
    volume_drift_percent, volume_drift_cutoff : float
        Slow drift s.d. (% of the baseline) and its highest frequency (Hz).
    volume_cnr : float | 'inf'
        σ_signal / σ_noise per voxel with signal.
    volume_fwhm : float | None
        Source → voxel kernel FWHM (mm); None: ``sqrt(voxel² + 3.5²)``.
    n_eeg_subjects : int
        Subjects with EEG only, after every other subject (0, the default: none; then the
        ``eeg_*`` fields are unused and left out of :meth:`to_dict`, so such studies are
        written as before).
    eeg_cnr : float | 'inf'
        Contrast-to-noise ratio per EEG electrode (average-referenced signal and noise).
    eeg_montage : str
        MNE built-in montage of the EEG cap (``'fsaverage_1010'``: 70 electrodes).
    world : str | dict
        How the simulated brain responds: a preset of
        :data:`~neurofuse.simulation.encoding.world.WORLDS` (``"linear15"``, the default,
        ``"short5"``, ``"short10"``, ``"long20"``, ``"patches"``, ``"nonlinear"``,
        ``"saturating"``, ``"rectifying"``, ``"gain"``, ``"spontaneous"``, ``"hrf_vary"``) or
        a dict ``{"name": preset, field: value, ...}`` of
        :class:`~neurofuse.simulation.encoding.world.WorldConfig` fields. Left out of
        :meth:`to_dict` when it is the default, so such studies are written as before.
    """

    seed: int = 0
    n_meg_subjects: int = 2
    n_fmri_subjects: int = 2
    n_train: int = 6
    n_val: int = 1
    n_test: int = 2
    n_anchor: int = 1
    story_duration: float = 120.0
    story_duration_jitter: float = 0.1
    n_repeats_val: int = 2
    n_repeats_test: int = 2
    n_repeats_anchor: int = 5
    meg_cnr: float = 1.0
    fmri_cnr: float = 0.3
    sfreq: float = 50.0
    tr: float = 2.0
    feature_dims: tuple = (768, 44, 40)
    spacing: str = "oct6"
    stream_lags: dict | None = None
    n_components: int = 8
    source_amplitude: float = 1e-9
    calibration_duration: float = 300.0
    deformation_mm: float = 4.0
    registration_deg: float = 6.0
    head_shift_mm: float = 6.0
    head_rotation_deg: float = 5.0
    save_sources: str = "test"
    chunk_size: int = 2048
    n_paired_subjects: int = 0
    volume_shape: tuple = (106, 106, 72)
    volume_voxel_size: float = 2.0
    volume_center: tuple = (0.0, -17.0, 10.0)
    volume_percent_change: float = 1.0
    volume_drift_percent: float = 1.0
    volume_drift_cutoff: float = 1 / 128
    volume_cnr: float = 0.3
    volume_fwhm: float | None = None
    world: str | dict = "linear15"
    n_eeg_subjects: int = 0
    eeg_cnr: float = 1.0
    eeg_montage: str = "fsaverage_1010"

    def __post_init__(self):
        def ints(name, minimum):
            object.__setattr__(self, name,
                               _check_int(f"StudyConfig.{name}", getattr(self, name), minimum))

        for name in ("n_meg_subjects", "n_fmri_subjects", "n_paired_subjects", "n_eeg_subjects",
                     "n_val", "n_test", "n_anchor"):
            ints(name, 0)
        for name in ("n_train", "n_repeats_val", "n_repeats_test", "n_repeats_anchor",
                     "n_components"):
            ints(name, 1)
        ints("chunk_size", 64)
        ints("seed", 0)
        if (self.n_meg_subjects + self.n_fmri_subjects + self.n_paired_subjects
                + self.n_eeg_subjects) == 0:
            raise ValueError("A study needs at least one subject: set n_meg_subjects, "
                             "n_fmri_subjects, n_paired_subjects or n_eeg_subjects > 0.")
        self._check_volume()
        for name in ("meg_cnr", "fmri_cnr", "volume_cnr", "eeg_cnr"):
            object.__setattr__(self, name, _check_positive(f"StudyConfig.{name}", getattr(self, name),
                                                           allow_inf=True))
        for name in ("story_duration", "sfreq", "tr", "source_amplitude", "calibration_duration"):
            _check_positive(f"StudyConfig.{name}", getattr(self, name))
        for name in ("deformation_mm", "registration_deg", "head_shift_mm", "head_rotation_deg"):
            _check_positive(f"StudyConfig.{name}", getattr(self, name), allow_zero=True)
        if not 0 <= self.story_duration_jitter < 1:
            raise ValueError("StudyConfig.story_duration_jitter must be in [0, 1), got "
                             f"{self.story_duration_jitter!r}.")
        dims = tuple(self.feature_dims)
        if len(dims) != 3:
            raise ValueError("StudyConfig.feature_dims must be 3 positive ints (word, phoneme, "
                             f"spectrogram), got {self.feature_dims!r}.")
        dims = tuple(_check_int(f"StudyConfig.feature_dims[{i}]", d, 1)
                     for i, d in enumerate(dims))
        object.__setattr__(self, "feature_dims", dims)
        n_tr = self.tr * self.sfreq
        if abs(n_tr - round(n_tr)) > 1e-9:
            raise ValueError(f"StudyConfig.tr * sfreq must be a whole number of samples, got "
                             f"{self.tr} s * {self.sfreq} Hz = {n_tr:g}.")
        if self.story_duration * (1 - self.story_duration_jitter) < 2 * self.tr:
            raise ValueError("StudyConfig.story_duration is shorter than two TRs; fMRI needs "
                             f"longer stories (got {self.story_duration} s, tr={self.tr} s).")
        _check_option("StudyConfig.save_sources", self.save_sources, ["test", "all", "none"])
        from .encoding.world import resolve_world

        if isinstance(self.world, dict):
            object.__setattr__(self, "world", resolve_world(self.world).to_dict())
        world = resolve_world(self.world)  # raises for an unknown preset
        if self.n_paired_subjects and world.hrf_peak_range is not None:
            raise ValueError(
                "StudyConfig.world has region HRFs (hrf_peak_range), which the EPI volumes of "
                "paired subjects do not use yet: set n_paired_subjects=0 or hrf_peak_range=None."
            )
        from ..anatomy.subjects import check_spacing

        check_spacing(self.spacing)

    def _check_volume(self):
        shape = tuple(self.volume_shape)
        if len(shape) != 3:
            raise ValueError("StudyConfig.volume_shape must be 3 positive ints (n_x, n_y, n_z), "
                             f"got {self.volume_shape!r}.")
        object.__setattr__(self, "volume_shape", tuple(
            _check_int(f"StudyConfig.volume_shape[{i}]", v, 1) for i, v in enumerate(shape)))
        center = tuple(float(v) for v in self.volume_center)
        if len(center) != 3 or not all(math.isfinite(v) for v in center):
            raise ValueError("StudyConfig.volume_center must be 3 finite numbers (MNI152 mm), "
                             f"got {self.volume_center!r}.")
        object.__setattr__(self, "volume_center", center)
        _check_positive("StudyConfig.volume_voxel_size", self.volume_voxel_size)
        _check_positive("StudyConfig.volume_drift_cutoff", self.volume_drift_cutoff)
        for name in ("volume_percent_change", "volume_drift_percent"):
            _check_positive(f"StudyConfig.{name}", getattr(self, name), allow_zero=True)
        if self.volume_fwhm is not None:
            _check_positive("StudyConfig.volume_fwhm", self.volume_fwhm)

    # ------------------------------------------------------------------ construction
    @classmethod
    def preset(cls, name: str, **overrides) -> StudyConfig:
        """A named configuration: ``"demo"``, ``"paper"`` or ``"tiny"`` (for tests); with
        paired MEG + volume subjects (system C): ``"meg2fmri"``, ``"meg2fmri-demo"``,
        ``"meg2fmri-tiny"`` (for tests)."""
        _check_option("preset", name, list(PRESETS))
        return cls.from_dict({**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values: dict) -> StudyConfig:
        """Build from a dict, rejecting keys that are not fields (typos do not pass silently)."""
        _check_keys("StudyConfig", values, [f.name for f in dataclasses.fields(cls)])
        return cls(**values)

    @classmethod
    def from_file(cls, fname) -> StudyConfig:
        """Read a TOML or JSON file. A ``preset = "demo"`` key starts from that preset."""
        fname = Path(fname).expanduser()
        if not fname.is_file():
            raise FileNotFoundError(
                f"Study config file '{fname}' not found. Pass a preset name ({', '.join(PRESETS)}) "
                "or the path of a .toml/.json file."
            )
        if fname.suffix.lower() in (".toml", ".json"):
            values = read_config(fname, what="study config", fix="correct its syntax")
        else:
            raise ValueError(f"Study config '{fname}' must end in .toml or .json, got "
                             f"'{fname.suffix}'.")
        preset = values.pop("preset", None)
        if preset is not None:
            return cls.preset(preset, **values)
        return cls.from_dict(values)

    @classmethod
    def resolve(cls, config) -> StudyConfig:
        """A StudyConfig from a StudyConfig, a preset name, a file path, or a dict.

        A dict names an optional ``"preset"`` (default ``"demo"``) and fields that override
        it, e.g. ``{"preset": "demo", "spacing": "oct5"}``.
        """
        if isinstance(config, cls):
            return config
        if isinstance(config, dict):
            config = dict(config)
            return cls.preset(config.pop("preset", "demo"), **config)
        if isinstance(config, str) and config in PRESETS:
            return cls.preset(config)
        return cls.from_file(config)

    def to_dict(self) -> dict:
        """JSON-serialisable dict (infinite CNRs as the string ``"inf"``).

        Without paired subjects, ``n_paired_subjects`` and the ``volume_*`` fields (unused)
        are left out (without EEG subjects, ``n_eeg_subjects`` and the ``eeg_*`` fields), so the dict of such a study is what it was before they existed; so is
        ``world`` when it is the default ``linear15``.
        """
        out = dataclasses.asdict(self)
        out["feature_dims"] = list(self.feature_dims)
        out["volume_shape"] = list(self.volume_shape)
        out["volume_center"] = list(self.volume_center)
        for key in ("meg_cnr", "fmri_cnr", "volume_cnr", "eeg_cnr"):
            if math.isinf(out[key]):
                out[key] = "inf"
        if not self.n_paired_subjects:
            out = {k: v for k, v in out.items()
                   if k != "n_paired_subjects" and not k.startswith("volume_")}
        if self.world_config().is_default:
            del out["world"]
        if not self.n_eeg_subjects:
            out = {k: v for k, v in out.items() if not k.startswith(("eeg_", "n_eeg_"))}
        return out

    def world_config(self):
        """The study's world as a :class:`~neurofuse.simulation.encoding.world.WorldConfig`.

        Returns
        -------
        world : WorldConfig
        """
        from .encoding.world import resolve_world

        return resolve_world(self.world)

    # ------------------------------------------------------------------ derived
    @property
    def n_stories(self) -> int:
        return self.n_train + self.n_val + self.n_test + self.n_anchor

    def story_plan(self):
        """List of ``(name, split, duration_s, n_repeats)`` for every story, in order."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 11]))
        plan, k = [], 0
        repeats = {"train": 1, "val": self.n_repeats_val, "test": self.n_repeats_test,
                   "anchor": self.n_repeats_anchor}
        for split in SPLITS:
            for _ in range(getattr(self, f"n_{split}")):
                k += 1
                jitter = rng.uniform(-1, 1) * self.story_duration_jitter
                # Whole TRs, so MEG and fMRI cover exactly the same stimulus.
                dur = round(self.story_duration * (1 + jitter) / self.tr) * self.tr
                plan.append((f"story-{k:02d}", split, float(dur), repeats[split]))
        return plan

    def subject_plan(self):
        """List of ``(name, index, modalities)``: MEG subjects first, like the paper's S1-S13,
        then fMRI subjects, then paired (MEG + ``fmri-volume``) subjects, then EEG subjects."""
        out = []
        n_single = self.n_meg_subjects + self.n_fmri_subjects
        n_before_eeg = n_single + self.n_paired_subjects
        for i in range(n_before_eeg + self.n_eeg_subjects):
            if i >= n_before_eeg:
                mod = ["eeg"]
            elif i >= n_single:
                mod = ["meg", "fmri-volume"]
            else:
                mod = ["meg"] if i < self.n_meg_subjects else ["fmri"]
            out.append((f"S{i + 1:02d}", i + 1, mod))
        return out


PRESETS = {
    # ~1 minute on 2 cores: 2 MEG + 2 fMRI subjects, 10 two-minute stories.
    "demo": {},
    # The paper's study: 5 MEG + 8 fMRI subjects, 27 stories of about 12 minutes.
    "paper": dict(n_meg_subjects=5, n_fmri_subjects=8, n_train=21, n_val=1, n_test=4, n_anchor=1,
                  story_duration=720.0, story_duration_jitter=0.15, calibration_duration=600.0),
    # Seconds: for tests.
    "tiny": dict(n_meg_subjects=1, n_fmri_subjects=1, n_train=2, n_val=1, n_test=1, n_anchor=0,
                 story_duration=24.0, story_duration_jitter=0.0, feature_dims=(32, 44, 16),
                 calibration_duration=60.0, n_components=4),
    # System C (MEG -> fMRI slices), SMN4Lang-like: 12 subjects with MEG and EPI volumes of
    # stories of 4-7 minutes, MEG at 100 Hz, TR 0.71 s, 106 x 106 x 72 voxels of 2 mm. The
    # native grid is large: ~1.5 GB of volumes per subject and story, ~220 GB for these 12
    # stories (raise n_train towards SMN4Lang's 60 stories if the disk allows).
    "meg2fmri": dict(n_meg_subjects=0, n_fmri_subjects=0, n_paired_subjects=12, n_train=10,
                     n_val=1, n_test=1, n_anchor=0, story_duration=330.0,
                     story_duration_jitter=0.27, n_repeats_val=1, n_repeats_test=1,
                     sfreq=100.0, tr=0.71, calibration_duration=600.0),
    # Its demo (< 1 GB): 6 subjects, four 60-s stories, 6 mm voxels; the sources of the test
    # story are saved (the physics baseline's noise covariance needs them), the BOLD change
    # ground truth of every subject and story is.
    "meg2fmri-demo": dict(n_meg_subjects=0, n_fmri_subjects=0, n_paired_subjects=6, n_train=2,
                          n_val=1, n_test=1, n_anchor=0, story_duration=60.0,
                          story_duration_jitter=0.0, n_repeats_val=1, n_repeats_test=1,
                          sfreq=100.0, tr=0.71, feature_dims=(256, 44, 40),
                          calibration_duration=120.0, volume_shape=(36, 36, 24),
                          volume_voxel_size=6.0),
    # Seconds: for tests. Stories of 84 volumes (64-volume windows after early events).
    "meg2fmri-tiny": dict(n_meg_subjects=0, n_fmri_subjects=0, n_paired_subjects=2, n_train=1,
                          n_val=0, n_test=1, n_anchor=0, story_duration=60.0,
                          story_duration_jitter=0.0, n_repeats_val=1, n_repeats_test=1,
                          sfreq=100.0, tr=0.71, feature_dims=(32, 44, 16),
                          calibration_duration=60.0, n_components=4, volume_shape=(18, 18, 12),
                          volume_voxel_size=12.0),
}


def _rng(config: StudyConfig, *keys) -> np.random.Generator:
    """An independent random stream per (purpose, story, subject, repeat), order-free."""
    return np.random.default_rng(np.random.SeedSequence([config.seed, *keys]))


@dataclass
class _SubjectModel:
    name: str
    index: int
    modalities: list
    subject: object
    morph: object  # csr (n_src_subject, n_src_fsaverage)
    gain: np.ndarray | None = None  # (n_channels, n_src_fsaverage) = L @ M
    extra: dict = field(default_factory=dict)


def simulated_study(config, out, *, n_jobs=None) -> Path:
    """The study in ``out``: reused when a complete one is there, else simulated (atomically).

    Parameters
    ----------
    config : str | path-like | dict | StudyConfig
        As :meth:`StudyConfig.resolve`; used only when there is nothing to reuse.
    out : path-like
        The study folder.
    n_jobs : int | None
        Parallel jobs for the forward models.

    Returns
    -------
    out : Path
    """
    out = Path(out).expanduser()
    if (out / "neurofuse-dataset.json").is_file():
        logger.info("Simulated study: reusing %s", out)
        return out
    return simulate_study(StudyConfig.resolve(config), out, overwrite=True, n_jobs=n_jobs)


@verbose
def simulate_study(config="demo", out=None, *, overwrite=False, n_jobs=None, verbose=None) -> Path:
    """Simulate a naturalistic MEG + fMRI study and write it as a dataset store.

    Parameters
    ----------
    config : StudyConfig | str | path-like
        A config, a preset name (``"demo"``, ``"paper"``, ``"tiny"``, ``"meg2fmri"``,
        ``"meg2fmri-demo"``, ``"meg2fmri-tiny"``) or a TOML/JSON file.
    out : path-like
        Folder to create. It appears only when the whole study is written (atomic); a failed
        or interrupted run leaves nothing behind and an existing dataset intact.
    overwrite : bool
        Replace an existing dataset at ``out`` (only once the new one is complete).
    n_jobs : int | None
        Parallel jobs for MNE's forward computation.
    verbose : bool | str | None
        ``True`` shows progress bars and timings.

    Returns
    -------
    out : Path
        The dataset folder; open it with :func:`neurofuse.data.store.read_dataset`.
    """
    import mne
    from tqdm.auto import tqdm

    from .. import __version__
    from ..anatomy import (
        get_leadfield,
        get_source_space,
        make_forward,
        make_morph,
        make_simulated_subject,
        make_template_subject,
    )
    from ..data.store import DatasetWriter, expected_n_trs
    from ..physics.measurement import add_noise, apply_gain, make_gain, measure_bold
    from .encoding import make_encoding_model
    from .eeg_subjects import eeg_subject, referenced_noise
    from .encoding.source_world import SourceWorld
    from .paired_volume import GT_DIR, VolumeRecorder, story_events
    from .stimuli import StimulusGenerator

    config = StudyConfig.resolve(config)
    if out is None:
        raise ValueError("'out' is required: the folder to write the dataset to.")
    out = Path(out).expanduser()
    if out.exists() and not overwrite:  # before any work, not after minutes of it
        raise FileExistsError(
            f"The output location '{out}' already exists. Choose a new folder or pass "
            "overwrite=True (--overwrite on the command line) to replace it."
        )
    out = check_writable_dir(out, name="out")
    t_start = time.perf_counter()
    bar = dict(disable=not progress_enabled(), leave=False)

    # ---------------------------------------------------------------- anatomy
    template = make_template_subject(meg=False, sfreq=config.sfreq)
    src = get_source_space(template, config.spacing)
    src_pos = np.concatenate([s["rr"][s["vertno"]] for s in src])
    hemi = np.concatenate([np.full(s["nuse"], k) for k, s in enumerate(src)])
    n_src = len(src_pos)
    subjects = []
    volumes = VolumeRecorder(config) if config.n_paired_subjects else None
    for name, index, mods in tqdm(config.subject_plan(), desc="subjects (anatomy, forward)", **bar):
        eeg = {"eeg": config.eeg_montage} if "eeg" in mods else {}
        sub = make_simulated_subject(
            index, seed=config.seed, deformation_mm=config.deformation_mm,
            registration_deg=config.registration_deg, head_shift_mm=config.head_shift_mm,
            head_rotation_deg=config.head_rotation_deg, meg="meg" in mods, sfreq=config.sfreq,
            **eeg,
        )
        sm = _SubjectModel(name, index, mods, sub, None)
        if "eeg" in mods:
            eeg_subject(sm, config, n_jobs)
        elif "meg" in mods:
            fwd = make_forward(sub, spacing=config.spacing, n_jobs=n_jobs)
            sm.morph = make_morph(sub, spacing=config.spacing, src_to=fwd["src"])
            sm.extra["leadfield"] = get_leadfield(fwd)
            sm.extra["forward"] = fwd
            sm.extra["vertices"] = [s["vertno"] for s in fwd["src"]]
            # Precompute the fsaverage -> sensor gain once: (n_channels, n_src) dense.
            sm.gain = make_gain(sm.extra["leadfield"], sm.morph)
            if "fmri-volume" in mods:
                volumes.add_subject(name, sub, sm.extra["vertices"], sm.morph,
                                    _rng(config, 6, index))
        else:
            sub_src = get_source_space(sub, config.spacing)
            sm.morph = make_morph(sub, spacing=config.spacing, src_to=sub_src)
            sm.extra["vertices"] = [s["vertno"] for s in sub_src]
        subjects.append(sm)
    logger.info("Anatomy and forward models ready (%.1f s)", time.perf_counter() - t_start)

    # ---------------------------------------------------------------- stimuli, ground truth
    gen = StimulusGenerator(dims=config.feature_dims, sfreq=config.sfreq, seed=config.seed)
    calib = gen.make_story(config.calibration_duration, seed=_seed(config, 1))
    world = config.world_config()
    # The default world adds nothing: its studies are bit-identical to those made before.
    world = None if world.is_default else SourceWorld(world, src_pos, hemi, sfreq=config.sfreq,
                                                      seed=_seed(config, 7))
    model = make_encoding_model(
        src_pos, calib.features, stream_slices=gen.stream_slices, sfreq=config.sfreq,
        seed=_seed(config, 2), stream_lags=config.stream_lags, n_components=config.n_components,
        amplitude=config.source_amplitude, hemi=hemi,
        **(world.model_kwargs() if world is not None else {}),
    )
    if world is not None:
        world.calibrate(model, calib.features)
        for sm in subjects:
            if "fmri" in sm.modalities:
                sm.extra["hrf_labels"] = world.hrf_labels(sm.morph)
    del calib
    streams = {k: [int(v.start), int(v.stop)] for k, v in gen.stream_slices.items()}
    metadata = {
        "generator": "neurofuse.simulation.simulate_study",
        "config": config.to_dict(),
        "versions": {"neurofuse": __version__, "mne": mne.__version__, "numpy": np.__version__},
        "units": {"meg": "T (magnetometers), T/m (gradiometers)", "fmri": "A·m (source envelope "
                  "convolved with the HRF, TR-averaged)", "sources": "A·m"},
        "template": {"subject": "fsaverage", "spacing": config.spacing,
                     "vertices": [s["vertno"].tolist() for s in src]},
    }
    if world is not None:
        metadata["world"] = world.summary()
    if config.n_eeg_subjects:
        metadata["units"]["eeg"] = "V (average reference)"
    if volumes is not None:
        metadata["units"]["fmri-volume"] = (
            "EPI intensity (a.u.): baseline * (1 + BOLD % change / 100) + drift + noise")

    plan = config.story_plan()
    cnrs = {"meg": config.meg_cnr, "fmri": config.fmri_cnr, "fmri-volume": config.volume_cnr,
            "eeg": config.eeg_cnr}
    with DatasetWriter(out, sfreq=config.sfreq, tr=config.tr, feature_streams=streams,
                       overwrite=overwrite, metadata=metadata) as writer:
        for sm in subjects:
            writer.add_subject(
                sm.name, modalities=sm.modalities,
                info=sm.extra.get("info", sm.subject.meg_info if "meg" in sm.modalities
                                  else None),
                leadfield=sm.extra.get("leadfield"), morph=sm.morph,
                vertices=sm.extra["vertices"], anatomy=sm.subject.to_json(),
                forward=sm.extra.get("forward"),
                cnr={m: cnrs[m] for m in sm.modalities},
            )
            if "fmri-volume" in sm.modalities:
                writer.add_grid(sm.name, "fmri-volume", affine=volumes.grid.affine,
                                shape=volumes.grid.shape)
        model.save(writer.ground_truth_dir("encoding"), overwrite=True)
        if world is not None:
            world_dir = writer.ground_truth_dir("world")
            world_dir.mkdir()
            world.save(world_dir)
        scratch = tempfile.TemporaryDirectory(prefix=".nf-scratch-", dir=out.parent)
        try:
            for k, (story, split, duration, n_rep) in enumerate(
                    tqdm(plan, desc="stories", **bar)):
                st = gen.make_story(duration, seed=_seed(config, 3, k))
                n_times = st.n_times
                writer.add_story(story, split=split, n_times=n_times)
                writer.write_features(story, st.features)
                if volumes is not None:
                    for ev_name, onsets in story_events(st).items():
                        writer.write_events(story, ev_name, onsets)
                keep = config.save_sources == "all" or (config.save_sources == "test"
                                                        and split == "test")
                if keep:
                    sources = writer.create_array(f"ground_truth/sources/{story}.npy",
                                                  (n_src, n_times))
                else:
                    sources = np.lib.format.open_memmap(
                        Path(scratch.name) / f"{story}.npy", mode="w+", dtype=np.float32,
                        shape=(n_src, n_times))
                meg_clean = {sm.name: np.empty((sm.gain.shape[0], n_times))
                             for sm in subjects if sm.gain is not None}
                if world is not None:
                    draw = world.draw_story(_rng(config, 8, k), n_times)
                    _save_world_draw(world_dir, story, world, draw)
                for a, b, block in model.iter_transform(st.features, chunk_size=config.chunk_size):
                    if world is not None:
                        block = world.apply(block, a, b, draw)
                    sources[:, a:b] = block
                    for sm in subjects:
                        if sm.gain is not None:
                            meg_clean[sm.name][:, a:b] = apply_gain(sm.gain, block)
                if hasattr(sources, "flush"):
                    sources.flush()
                for sm in subjects:
                    rng = _rng(config, 4, k, sm.index)
                    if "meg" in sm.modalities:
                        writer.write_meg(sm.name, story,
                                         add_noise(rng, meg_clean.pop(sm.name), config.meg_cnr,
                                                   n_repeats=n_rep))
                    if "eeg" in sm.modalities:
                        writer.write(sm.name, "eeg", story, referenced_noise(
                            rng, meg_clean.pop(sm.name), config.eeg_cnr, n_rep))
                    if "fmri" in sm.modalities:
                        hrf = {} if world is None or world.hrf_kwargs() is None else dict(
                            hrf_kwargs=world.hrf_kwargs(), hrf_labels=sm.extra["hrf_labels"])
                        bold = measure_bold(sources, config.sfreq, config.tr, morph=sm.morph,
                                            **hrf)
                        assert bold.shape[1] == expected_n_trs(n_times, config.sfreq, config.tr)
                        writer.write_fmri(sm.name, story,
                                          add_noise(rng, bold, config.fmri_cnr, n_repeats=n_rep))
                    if "fmri-volume" in sm.modalities:
                        volumes.record(writer, sm.name, story, sources, n_rep,
                                       _rng(config, 5, k, sm.index))
                del sources
                if not keep:
                    (Path(scratch.name) / f"{story}.npy").unlink()
        finally:
            scratch.cleanup()
        if volumes is not None:
            volumes.write_ground_truth(writer.ground_truth_dir(GT_DIR))
    logger.info("Simulated %d stories for %d subjects in %.1f s -> %s", len(plan), len(subjects),
                time.perf_counter() - t_start, out)
    return out


def _seed(config: StudyConfig, *keys) -> int:
    return int(np.random.SeedSequence([config.seed, *keys]).generate_state(1)[0])


def _save_world_draw(folder, story, world, draw):
    """The story's gain signals and spontaneous time courses, in ``ground_truth/world``."""
    from .._io import save_npy

    if world.gain_regions:
        save_npy(folder / f"gain-{story}.npy", draw["gain"].astype(np.float32))
    if draw["spontaneous"] is not None:
        save_npy(folder / f"spontaneous-{story}.npy", draw["spontaneous"].astype(np.float32))
