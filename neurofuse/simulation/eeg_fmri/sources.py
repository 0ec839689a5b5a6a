"""Latent source activity of the EEG–fMRI simulator: regions, impulse trains, oscillations.

Paper §4.2: each source is "a train of impulse functions, corresponding to the transient
evoked brain responses", with "oscillatory activity on top of those evoked responses, across
various frequency ranges, to different areas of the brain". Here:

* **regions** (:func:`make_regions`): the sources are split into ``n_regions`` compact
  regions (k-means of their positions, seeded). Source ``j`` of region ``r`` has a weight
  ``w_j = exp(-d_j² / (2 σ_r²))`` (``d_j`` its distance to the region's centre, ``σ_r`` the
  region's r.m.s. radius), so activity is focal inside each region.
* **components** (:func:`make_components`), per run, one row each, at ``sfreq``:
  - ``evoked`` (one per region): impulses at the design's events of the region's condition,
    delayed by the region's latency, amplitude ``config.source_amplitude *
    lognormal(jitter)``, plus spontaneous impulses (Poisson, ``spontaneous_rate``);
  - ``oscillation`` (one per oscillatory region): Gaussian noise band-passed to the region's
    band (4th-order Butterworth, zero phase), r.m.s. ``oscillation_amplitude *
    config.source_amplitude``.
* **sources**: ``X[j] = w_j * sum of the components of region(j)`` (:func:`source_activity`),
  never held in full for a large grid: the writer stores the components and the weights.

Sources of oscillatory regions are "oscillatory", the others "sparse"; the split is saved
(``source_kind``) so an evaluation can score the two apart, as the paper's Fig. 4 ii-iii.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..._checks import _check_option

__all__ = ["Regions", "make_components", "make_events", "make_regions", "region_activity",
           "source_activity"]


@dataclass(frozen=True, eq=False)
class Regions:
    """Regions of the source space and their response properties.

    Attributes
    ----------
    label : array of int64, shape (n_sources,)
        Region of each source.
    weight : array, shape (n_sources,)
        Spatial weight of each source in its region (0-1], max 1 per region.
    kind : list of str, length n_regions
        ``'oscillatory'`` or ``'sparse'``.
    band : list of (float, float) | None, length n_regions
        Oscillation band (Hz) of oscillatory regions, None for sparse ones.
    condition : array of int64, shape (n_regions,)
        Event type each region responds to.
    latency : array, shape (n_regions,)
        Response latency after the event, s.
    center : array, shape (n_regions, 3)
        Region centre, same units as the positions given.
    """

    label: np.ndarray
    weight: np.ndarray
    kind: list
    band: list
    condition: np.ndarray
    latency: np.ndarray
    center: np.ndarray

    @property
    def n_regions(self) -> int:
        """Number of regions."""
        return len(self.kind)

    def source_kind(self) -> np.ndarray:
        """``'oscillatory'`` / ``'sparse'`` of each source, array of str, shape (n_sources,)."""
        return np.asarray(self.kind)[self.label]

    def to_json(self) -> dict:
        """Per-region properties, JSON-serialisable (labels and weights go to .npy)."""
        return {"kind": list(self.kind), "band": [None if b is None else list(b)
                                                   for b in self.band],
                "condition": self.condition.tolist(), "latency": self.latency.tolist(),
                "center": self.center.tolist()}


def make_regions(pos, config, rng):
    """Split sources into regions and give each its activity type (seeded).

    Parameters
    ----------
    pos : array, shape (n_sources, 3)
        Source positions (any unit).
    config : EEGfMRIConfig
        ``n_regions``, ``n_oscillatory``, ``bands``, ``n_conditions``, ``latency``.
    rng : numpy.random.Generator

    Returns
    -------
    regions : Regions
        The first ``n_oscillatory`` region numbers are oscillatory (bands in order, cycled).
    """
    from scipy.cluster.vq import kmeans2

    pos = np.asarray(pos, float)
    n_regions = config.n_regions
    if len(pos) < n_regions:
        raise ValueError(f"'n_regions' ({n_regions}) exceeds the number of sources "
                         f"({len(pos)}); lower 'n_regions' or use a finer grid.")
    init = pos[rng.choice(len(pos), n_regions, replace=False)]
    center, label = kmeans2(pos, init, minit="matrix", seed=rng)
    # empty clusters (rare): give each the source farthest from its own centre
    for r in range(n_regions):
        if not np.any(label == r):
            far = np.argmax(np.linalg.norm(pos - center[label], axis=1))
            label[far] = r
    center = np.stack([pos[label == r].mean(0) for r in range(n_regions)])
    dist = np.linalg.norm(pos - center[label], axis=1)
    radius = np.sqrt(np.bincount(label, dist**2, n_regions) / np.bincount(label, None, n_regions))
    sigma = np.maximum(radius[label], 1e-12)
    weight = np.exp(-0.5 * (dist / sigma) ** 2)
    weight /= np.array([weight[label == r].max() for r in range(n_regions)])[label]
    kind = ["oscillatory" if r < config.n_oscillatory else "sparse" for r in range(n_regions)]
    band = [config.bands[r % len(config.bands)] if r < config.n_oscillatory else None
            for r in range(n_regions)]
    condition = rng.integers(0, config.n_conditions, n_regions)
    latency = rng.uniform(*config.latency, n_regions)
    return Regions(label.astype(np.int64), weight, kind, band, condition.astype(np.int64),
                   latency, center)


def make_events(config, rng):
    """An event-related design: onsets with uniform jittered intervals, random conditions.

    Parameters
    ----------
    config : EEGfMRIConfig
        ``isi``, ``duration``, ``n_conditions``.
    rng : numpy.random.Generator

    Returns
    -------
    onset : array, shape (n_events,)
        Seconds from the run's start, increasing, all < ``duration``.
    condition : array of int64, shape (n_events,)
    """
    onsets, t = [], rng.uniform(*config.isi)
    while t < config.duration:
        onsets.append(t)
        t += rng.uniform(*config.isi)
    onset = np.asarray(onsets, float)
    return onset, rng.integers(0, config.n_conditions, len(onset)).astype(np.int64)


def make_components(regions, onset, condition, config, rng):
    """The per-region time courses of one run (impulse trains and oscillations).

    Parameters
    ----------
    regions : Regions
    onset, condition : array, shape (n_events,)
        From :func:`make_events`.
    config : EEGfMRIConfig
    rng : numpy.random.Generator

    Returns
    -------
    components : array, shape (n_components, n_times), float64
        A·m at ``config.sfreq``.
    comp_region : array of int64, shape (n_components,)
        Region of each component.
    comp_kind : list of str
        ``'evoked'`` or ``'oscillation'`` per component: the evoked ones first (one per
        region, in region order), then the oscillations (one per oscillatory region).
    """
    from scipy import signal

    n_times, sfreq = config.n_times, config.sfreq
    amp = config.source_amplitude
    rows, comp_region, comp_kind = [], [], []
    sigma_log = np.sqrt(np.log1p(config.amplitude_jitter**2))  # lognormal with that rel. s.d.
    for r in range(regions.n_regions):
        train = np.zeros(n_times)
        times = onset[condition == regions.condition[r]] + regions.latency[r]
        n_spont = rng.poisson(config.spontaneous_rate * config.duration)
        times = np.concatenate([times, rng.uniform(0, config.duration, n_spont)])
        idx = np.round(times * sfreq).astype(np.int64)
        idx = idx[idx < n_times]
        gains = rng.lognormal(-0.5 * sigma_log**2, sigma_log, len(idx))  # mean 1
        np.add.at(train, idx, amp * gains)
        rows.append(train)
        comp_region.append(r)
        comp_kind.append("evoked")
    for r in range(regions.n_regions):
        if regions.kind[r] != "oscillatory":
            continue
        lo, hi = regions.band[r]
        sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sfreq, output="sos")
        pad = int(round(2 * sfreq / lo))  # discard the filter's edge transient
        osc = signal.sosfiltfilt(sos, rng.standard_normal(n_times + 2 * pad))[pad:pad + n_times]
        osc *= config.oscillation_amplitude * amp / max(np.sqrt(np.mean(osc**2)), 1e-300)
        rows.append(osc)
        comp_region.append(r)
        comp_kind.append("oscillation")
    return np.stack(rows), np.asarray(comp_region, np.int64), comp_kind


def region_activity(components, comp_region, n_regions, *, kind=None, comp_kind=None):
    """Sum of the components of each region.

    Parameters
    ----------
    components : array, shape (n_components, n_times)
    comp_region : array of int, shape (n_components,)
    n_regions : int
    kind : None | 'evoked' | 'oscillation'
        Only the components of this kind (needs ``comp_kind``); None: all.
    comp_kind : list of str | None

    Returns
    -------
    activity : array, shape (n_regions, n_times)
    """
    components = np.asarray(components)
    use = np.ones(len(comp_region), bool)
    if kind is not None:
        _check_option("kind", kind, ["evoked", "oscillation"])
        use = np.asarray(comp_kind) == kind
    out = np.zeros((n_regions, components.shape[1]), components.dtype)
    np.add.at(out, np.asarray(comp_region)[use], components[use])
    return out


def source_activity(components, comp_region, label, weight, *, sources=None, kind=None,
                    comp_kind=None):
    """Source time courses ``X[j] = w_j * sum of region(j)'s components``.

    Parameters
    ----------
    components : array, shape (n_components, n_times)
        The run's components (any time slice of them).
    comp_region : array of int, shape (n_components,)
    label : array of int, shape (n_sources,)
        Region of each source.
    weight : array, shape (n_sources,)
        Spatial weight of each source.
    sources : array of int | None
        Only these sources (indices); None: all (mind the memory for a large grid).
    kind : None | 'evoked' | 'oscillation'
        Only this kind of component.
    comp_kind : list of str | None
        Kinds of the components (needed with ``kind``).

    Returns
    -------
    X : array, shape (n_selected, n_times)
        A·m, in the dtype of ``components``.
    """
    label, weight = np.asarray(label), np.asarray(weight)
    if sources is not None:
        label, weight = label[sources], weight[sources]
    n_regions = int(max(np.max(comp_region), np.max(label, initial=0))) + 1
    act = region_activity(components, comp_region, n_regions, kind=kind, comp_kind=comp_kind)
    return (weight[:, None] * act[label]).astype(act.dtype, copy=False)
