"""The event-related tasks of the EEG + MEG world: classes, evoked components, modulations.

Three tasks mimic the data sets of the paper (§III-A):

* ``somatomotor`` (2 classes, the Somatomotor data set): left vs right median-nerve
  stimulation. Contralateral S1 components like the N20m (tangential, area 3b), P35m
  (radial, crown of the postcentral gyrus) and N60m (mixed), a bilateral S2 response at
  ~90 ms that does **not** depend on the side, and beta (13–30 Hz) suppression over the
  contralateral S1/M1 followed by a rebound (weaker ipsilaterally).
* ``faces`` (3 classes, NOD-MEG-like): famous / unfamiliar / scrambled faces. An occipital
  ~100 ms component (larger for scrambled images), a fusiform ~170 ms component (smaller and
  later for scrambled, slightly later for unfamiliar faces; right-lateralised) and an
  anterior-fusiform ~250 ms familiarity component (famous > unfamiliar > scrambled).
* ``motor_imagery`` (2 classes, the EEG-only cross-dataset test): left vs right hand
  imagery, no evoked response; mu (8–13 Hz) and beta desynchronisation over the
  contralateral sensorimotor cortex from ~0.3 s.

Amplitudes are relative to :attr:`EEGMEGWorldConfig.moment_density`; latencies in seconds
from the event. Each trial draws a latency shift (common to the trial, plus one per
component) and a lognormal amplitude per component (:mod:`.sources`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TASKS", "Component", "Modulation", "Task"]


@dataclass(frozen=True)
class Component:
    """An evoked (phase-locked) component: a Gaussian bump in a region.

    Attributes
    ----------
    name : str
    region : str
        Key of :data:`~.regions.REGIONS`.
    hemisphere : 'contra' | 'ipsi' | 'both'
        ``'contra'``/``'ipsi'``: relative to the side of the trial's class (lateralised
        tasks); ``'both'``: both hemispheres with gains ``hemi_gain``.
    latency : float
        Peak latency, s.
    width : float
        s.d. of the Gaussian bump, s.
    amplitude : float
        Signed peak amplitude relative to the moment density (positive: current along the
        outward normal).
    jitter_scale : float
        Multiplies the configured latency jitter (early components are more stable).
    class_amplitude : dict of str to float
        Per-class amplitude multipliers (missing classes: 1).
    class_latency : dict of str to float
        Per-class latency shifts, s (missing classes: 0).
    hemi_gain : dict of str to float
        Gains of ``'lh'`` and ``'rh'`` for ``hemisphere='both'``.
    """

    name: str
    region: str
    hemisphere: str
    latency: float
    width: float
    amplitude: float
    jitter_scale: float = 1.0
    class_amplitude: dict = field(default_factory=dict)
    class_latency: dict = field(default_factory=dict)
    hemi_gain: dict = field(default_factory=lambda: {"lh": 1.0, "rh": 1.0})


@dataclass(frozen=True)
class Modulation:
    """A change of an ongoing oscillation's amplitude after the event (induced activity).

    Attributes
    ----------
    generator : str
        Name of an ongoing generator (:data:`~.sources.ONGOING`), e.g. ``'beta_sensorimotor'``.
    hemisphere : 'contra' | 'ipsi' | 'both'
    envelope : tuple of (float, float)
        ``(time, gain)`` points, linearly interpolated (gain 1 before the first and the last
        gain after the last point).
    """

    generator: str
    hemisphere: str
    envelope: tuple


@dataclass(frozen=True)
class Task:
    """An event-related task.

    Attributes
    ----------
    name : str
    event_id : dict of str to int
        Class names and their labels (as in MNE).
    contra : dict of str to str
        Hemisphere contralateral to each class's side (lateralised tasks); empty otherwise.
    components : tuple of Component
    modulations : dict of str to tuple of Modulation
        Per class.
    description : str
    """

    name: str
    event_id: dict
    contra: dict
    components: tuple
    modulations: dict
    description: str = ""

    @property
    def classes(self) -> tuple:
        """Class names in label order."""
        return tuple(sorted(self.event_id, key=self.event_id.get))

    def hemispheres(self, component, cls) -> dict:
        """``{hemi: gain}`` where ``component`` is active on a trial of class ``cls``."""
        if component.hemisphere == "both":
            return dict(component.hemi_gain)
        contra = self.contra[cls]
        ipsi = "lh" if contra == "rh" else "rh"
        return {contra if component.hemisphere == "contra" else ipsi: 1.0}

    def to_json(self) -> dict:
        """A JSON description (saved in the store's metadata)."""
        import dataclasses

        return {"event_id": dict(self.event_id), "contra": dict(self.contra),
                "components": [dataclasses.asdict(c) for c in self.components],
                "modulations": {k: [dataclasses.asdict(m) for m in v]
                                for k, v in self.modulations.items()},
                "description": self.description}


_BETA_CONTRA = ((0.05, 1.0), (0.15, 0.35), (0.35, 0.35), (0.5, 1.0), (0.6, 1.8), (0.8, 1.8))
_BETA_IPSI = ((0.05, 1.0), (0.15, 0.75), (0.35, 0.75), (0.5, 1.0), (0.6, 1.3), (0.8, 1.3))
_ERD_CONTRA = ((0.1, 1.0), (0.35, 0.35))
_ERD_IPSI = ((0.1, 1.0), (0.35, 0.85))


def _lateral_modulations(classes, pairs):
    return {cls: tuple(Modulation(gen, hemi, env) for gen, hemi, env in pairs)
            for cls in classes}


_SOMATOMOTOR = Task(
    name="somatomotor",
    event_id={"left": 1, "right": 2},
    contra={"left": "rh", "right": "lh"},
    components=(
        Component("n20", "s1_sulcal", "contra", 0.020, 0.004, 1.0, jitter_scale=0.2),
        Component("p35", "s1_crown", "contra", 0.035, 0.007, 1.0, jitter_scale=0.3),
        Component("n60", "s1", "contra", 0.060, 0.012, -0.8, jitter_scale=0.5),
        Component("s2", "s2", "both", 0.090, 0.020, 0.6),
    ),
    modulations=_lateral_modulations(("left", "right"), [
        ("beta_sensorimotor", "contra", _BETA_CONTRA),
        ("beta_sensorimotor", "ipsi", _BETA_IPSI)]),
    description="Median-nerve stimulation of the left or right wrist (Somatomotor-like).",
)

_FACES = Task(
    name="faces",
    event_id={"famous": 1, "unfamiliar": 2, "scrambled": 3},
    contra={},
    components=(
        Component("p100", "occipital", "both", 0.100, 0.015, 1.0,
                  class_amplitude={"scrambled": 1.3}),
        Component("n170", "fusiform", "both", 0.170, 0.018, -1.2,
                  class_amplitude={"scrambled": 0.35},
                  class_latency={"unfamiliar": 0.006, "scrambled": 0.012},
                  hemi_gain={"lh": 0.7, "rh": 1.0}),
        Component("n250", "anterior_fusiform", "both", 0.250, 0.040, -0.8,
                  class_amplitude={"unfamiliar": 0.45, "scrambled": 0.1},
                  hemi_gain={"lh": 0.8, "rh": 1.0}),
    ),
    modulations={},
    description="Famous, unfamiliar and scrambled faces (NOD-MEG / ds000117-like).",
)

_MOTOR_IMAGERY = Task(
    name="motor_imagery",
    event_id={"left_hand": 1, "right_hand": 2},
    contra={"left_hand": "rh", "right_hand": "lh"},
    components=(),
    modulations=_lateral_modulations(("left_hand", "right_hand"), [
        ("mu_sensorimotor", "contra", _ERD_CONTRA),
        ("mu_sensorimotor", "ipsi", _ERD_IPSI),
        ("beta_sensorimotor", "contra", _ERD_CONTRA),
        ("beta_sensorimotor", "ipsi", _ERD_IPSI)]),
    description="Left vs right hand motor imagery: contralateral mu/beta ERD, no evoked "
                "response (EEG-only, cross-dataset test).",
)

#: The world's tasks by name.
TASKS = {t.name: t for t in (_SOMATOMOTOR, _FACES, _MOTOR_IMAGERY)}
