"""Worlds: how a simulated brain departs from the default linear, 15-mm, canonical-HRF one.

A :class:`WorldConfig` names the departures; :data:`WORLDS` holds the named presets that
``StudyConfig(world=...)`` and ``neurofuse simulate study --world NAME`` select:

==============  =========================================================================
``linear15``    the default: linear responses, tuning fields of 15-mm length scale, the
                canonical HRF everywhere, no spontaneous activity (studies made before
                worlds existed)
``short5``      tuning fields of 5-mm length scale (``short10``: 10 mm)
``long20``      tuning fields of 20-mm length scale
``patches``     piecewise-constant tuning over random parcels about 20 mm across
``nonlinear``   a response type per region: saturating (auditory, angular), rectifying
                (STG, IFG), gain-modulated (anterior temporal, precuneus), linear elsewhere
``saturating``  ``c tanh(x / c)`` on every source (``rectifying``: ``max(x, 0)``; ``gain``:
                ``g(t) x``)
``spontaneous`` stimulus-independent 1/f source activity with the driven activity's power
``hrf_vary``    an HRF per region (time to peak drawn in 4.5-7 s) and an extra latency per
                region of the neural response (drawn in 0-100 ms)
==============  =========================================================================

:class:`~neurofuse.simulation.encoding.source_world.SourceWorld` draws and applies them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..._checks import _check_int, _check_keys, _check_option, _check_positive
from .spatial import REGIONS

#: Response types of :attr:`WorldConfig.nonlinearity`.
NONLINEARITIES = ("linear", "saturating", "rectifying", "gain")
#: Spectra of the spontaneous activity.
SPECTRA = ("pink", "ar1")

_NONLINEAR_MIX = {
    "auditory": "saturating", "stg": "rectifying", "anterior_temporal": "gain",
    "ifg": "rectifying", "angular": "saturating", "precuneus": "gain",
}

#: Named worlds: overrides of the :class:`WorldConfig` defaults.
WORLDS = {
    "linear15": {},
    "short5": dict(field_length_mm=5.0),
    "short10": dict(field_length_mm=10.0),
    "long20": dict(field_length_mm=20.0),
    "patches": dict(patches=True, field_length_mm=20.0),
    "nonlinear": dict(nonlinearity=dict(_NONLINEAR_MIX)),
    "saturating": dict(nonlinearity="saturating"),
    "rectifying": dict(nonlinearity="rectifying"),
    "gain": dict(nonlinearity="gain"),
    "spontaneous": dict(spontaneous_ratio=1.0),
    "hrf_vary": dict(hrf_peak_range=(4.5, 7.0), latency_range=(0.0, 0.1)),
}
DEFAULT_WORLD = "linear15"


@dataclass(frozen=True)
class WorldConfig:
    """How the simulated brain responds: spatial scale, nonlinearity, spontaneous activity, HRFs.

    The defaults are the ``linear15`` world. Every random draw (parcels, delays, HRFs,
    spontaneous fields and time courses, gain signals) derives from the study's seed.

    Parameters
    ----------
    name : str
        The preset this world started from (a label for reports).
    field_length_mm : float
        Length scale ``l`` (mm) of the smooth random tuning fields (Gaussian processes of
        covariance ``exp(-d^2 / (2 l^2))``), and of the spontaneous fields; with ``patches``,
        the smallest distance between parcel seeds.
    patches : bool
        Tuning (and spontaneous fields) piecewise constant over random parcels of about
        ``field_length_mm`` to twice that across, instead of smooth.
    nonlinearity : str | dict of str -> str
        Response type, one of :data:`NONLINEARITIES`, of all sources, or per region: keys
        among the names of :data:`~neurofuse.simulation.encoding.REGIONS` (both
        hemispheres), ``"<region>-lh"`` / ``"<region>-rh"`` and ``"background"`` (regions not
        named are linear). A source's region is where that region's profile is largest and
        at least 0.5 (:func:`~neurofuse.simulation.encoding.spatial.region_labels`). With
        ``x`` the linear drive of a source: saturating ``c tanh(x / c)`` with
        ``c = saturation * sd(x)``; rectifying ``max(x, 0)`` (0 is the drive's baseline,
        its calibration mean); gain-modulated ``g(t) x`` with
        ``g = exp(gain_depth * eta(t) - gain_depth^2 / 2)``, ``eta`` a unit-variance AR(1)
        of time constant ``gain_tau``, one per region and story.
    saturation : float
        Saturation level in units of each source's linear s.d.
    gain_depth : float
        s.d. of the log gain.
    gain_tau : float
        Time constant (s) of the gain signal.
    spontaneous_ratio : float
        Power of the stimulus-independent activity over the power of the driven activity
        (both the mean over sources of the variance; the driven one measured on the
        calibration features, after the nonlinearity); 0: none.
    spontaneous_spectrum : str
        ``"pink"`` (1/f power) or ``"ar1"`` (AR(1) of time constant ``spontaneous_tau``).
    spontaneous_tau : float
        Time constant (s) of the AR(1) spectrum.
    spontaneous_components : int
        Independent spatial fields (each a random field as the tuning's, over the whole
        cortex) of the spontaneous activity.
    hrf_peak_range : tuple of 2 float | None
        With a range, each region (and the background) gets its own HRF whose time to peak
        is drawn uniformly in it (s); None: the canonical HRF (peak near 5 s) everywhere.
    latency_range : tuple of 2 float | None
        With a range, the responses of each region (and the background) are delayed by a
        latency drawn uniformly in it (s, >= 0, rounded to samples); None: no delays.
    """

    name: str = DEFAULT_WORLD
    field_length_mm: float = 15.0
    patches: bool = False
    nonlinearity: str | dict = "linear"
    saturation: float = 1.0
    gain_depth: float = 0.5
    gain_tau: float = 5.0
    spontaneous_ratio: float = 0.0
    spontaneous_spectrum: str = "pink"
    spontaneous_tau: float = 0.1
    spontaneous_components: int = 16
    hrf_peak_range: tuple | None = None
    latency_range: tuple | None = None

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"WorldConfig.name must be a str, got {type(self.name).__name__}.")
        for name in ("field_length_mm", "saturation", "gain_tau", "spontaneous_tau"):
            object.__setattr__(self, name, _check_positive(f"WorldConfig.{name}",
                                                           getattr(self, name)))
        for name in ("gain_depth", "spontaneous_ratio"):
            object.__setattr__(self, name, _check_positive(f"WorldConfig.{name}",
                                                           getattr(self, name), allow_zero=True))
        if self.field_length_mm > 200:
            raise ValueError(f"WorldConfig.field_length_mm must be in mm (< 200), got "
                             f"{self.field_length_mm:g}.")
        if not isinstance(self.patches, bool):
            raise TypeError(f"WorldConfig.patches must be True or False, got {self.patches!r}.")
        _check_option("WorldConfig.spontaneous_spectrum", self.spontaneous_spectrum, SPECTRA)
        object.__setattr__(self, "spontaneous_components", _check_int(
            "WorldConfig.spontaneous_components", self.spontaneous_components, 1))
        object.__setattr__(self, "nonlinearity", _check_nonlinearity(self.nonlinearity))
        object.__setattr__(self, "hrf_peak_range", _check_range(
            "hrf_peak_range", self.hrf_peak_range, 1.0, 20.0))
        object.__setattr__(self, "latency_range", _check_range(
            "latency_range", self.latency_range, 0.0, 1.0))

    def to_dict(self) -> dict:
        """JSON-serialisable dict (tuples as lists); :func:`resolve_world` reads it back."""
        out = dataclasses.asdict(self)
        for key in ("hrf_peak_range", "latency_range"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @property
    def is_default(self) -> bool:
        """Whether this is the default (``linear15``) world, whatever its name."""
        return dataclasses.replace(self, name=DEFAULT_WORLD) == WorldConfig()

    def kind_of(self, region: str) -> str:
        """Response type of a labelled region (``"<region>-lh"`` or ``"background"``)."""
        if isinstance(self.nonlinearity, str):
            return self.nonlinearity
        base = region.rsplit("-", 1)[0] if region != "background" else region
        return self.nonlinearity.get(region, self.nonlinearity.get(base, "linear"))


def resolve_world(world) -> WorldConfig:
    """A :class:`WorldConfig` from a preset name, a dict or a WorldConfig.

    A dict names an optional ``"name"`` (the preset it starts from, default ``linear15``) and
    fields that override it, e.g. ``{"name": "nonlinear", "saturation": 0.5}``.

    Parameters
    ----------
    world : str | dict | WorldConfig
        The world.

    Returns
    -------
    world : WorldConfig
    """
    if isinstance(world, WorldConfig):
        return world
    if isinstance(world, str):
        _check_option("world", world, list(WORLDS))
        return WorldConfig(name=world, **WORLDS[world])
    if isinstance(world, dict):
        values = dict(world)
        name = values.pop("name", DEFAULT_WORLD)
        _check_option("world['name']", name, list(WORLDS))
        _check_keys("world", values, [f.name for f in dataclasses.fields(WorldConfig)])
        return WorldConfig(name=name, **{**WORLDS[name], **values})
    raise TypeError(f"'world' must be a preset name ({', '.join(WORLDS)}), a dict or a "
                    f"WorldConfig, got {type(world).__name__}.")


def _check_nonlinearity(value):
    if isinstance(value, str):
        return _check_option("WorldConfig.nonlinearity", value, NONLINEARITIES)
    if not isinstance(value, dict):
        raise TypeError("WorldConfig.nonlinearity must be a response type "
                        f"({', '.join(NONLINEARITIES)}) or a dict region -> type, got "
                        f"{type(value).__name__}.")
    regions = [*REGIONS, *(f"{r}-{h}" for r in REGIONS for h in ("lh", "rh")), "background"]
    _check_keys("WorldConfig.nonlinearity", value, regions)
    for region, kind in value.items():
        _check_option(f"WorldConfig.nonlinearity[{region!r}]", kind, NONLINEARITIES)
    return dict(value)


def _check_range(name, value, low, high):
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"WorldConfig.{name} must be None or two numbers (low, high), got "
                         f"{value!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and low <= lo <= hi <= high):
        raise ValueError(f"WorldConfig.{name} must satisfy {low:g} <= low <= high <= {high:g} "
                         f"(s), got {value!r}.")
    return (lo, hi)
