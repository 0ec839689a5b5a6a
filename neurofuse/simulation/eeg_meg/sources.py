"""Source activity of the EEG + MEG world: evoked components, oscillations, background.

Each trial's source activity on a subject's cortical source space (A·m, fixed normal
orientation) is

``s(t) = scale * (P @ c(t)) + b(t)``

* ``P`` (n_sources, n_columns): the profiles of the regions used (one column per region and
  hemisphere, :func:`~.regions.region_profiles`), max 1;
* ``c`` (n_columns, n_times): the trial's region time courses: the task's evoked components
  (Gaussian bumps with per-trial latency and amplitude jitter; :mod:`.tasks`) plus the
  ongoing oscillations of :data:`ONGOING` (Gaussian noise band-limited to one band of
  :data:`~.config.BANDS`, amplitude-modulated by the task's induced modulations);
* ``scale = moment_density * area_per_source`` (A·m): the current moment of a source at a
  region's centre, independent of the source spacing;
* ``b``: spatially smooth (Gaussian kernel, ``background_fwhm``) 1/f activity at every source
  (0.5–100 Hz), so the sources have full rank, as real brain "noise" does.

Band-limited and 1/f noise are synthesised in the frequency domain over a 4-s circular
segment (0.25 Hz resolution) and the epoch's first ``n_times`` samples kept. Every random
draw of a trial comes from the trial's own generator in a fixed order, so a world does not
depend on how trials are chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import BANDS
from .regions import region_profiles

__all__ = ["ONGOING", "Ongoing", "SourceModel", "band_noise", "make_smoother",
           "simulate_trials"]


@dataclass(frozen=True)
class Ongoing:
    """An ongoing oscillation: band-limited noise in a region of each hemisphere.

    Attributes
    ----------
    name : str
    region : str
        Key of :data:`~.regions.REGIONS`.
    band : str
        Key of :data:`~.config.BANDS`.
    amplitude : float
        r.m.s. at the region's centre relative to ``oscillation_amplitude``.
    shared : bool
        One time course for both hemispheres (a midline generator) instead of two
        independent ones.
    """

    name: str
    region: str
    band: str
    amplitude: float
    shared: bool = False


#: Ongoing oscillations in every band, in plausible regions.
ONGOING = (
    Ongoing("delta_frontal", "frontal", "delta", 1.0),
    Ongoing("delta_parietal", "parietal", "delta", 1.0),
    Ongoing("delta_temporal", "temporal", "delta", 0.8),
    Ongoing("theta_frontal_midline", "frontal_midline", "theta", 1.0, shared=True),
    Ongoing("alpha_parieto_occipital", "parieto_occipital", "alpha", 1.5),
    Ongoing("mu_sensorimotor", "sensorimotor", "alpha", 0.8),
    Ongoing("beta_sensorimotor", "sensorimotor", "beta", 0.8),
    Ongoing("gamma_occipital", "gamma_occipital", "gamma", 0.6),
    Ongoing("gamma_sensorimotor", "gamma_sensorimotor", "gamma", 0.6),
    Ongoing("gamma_temporal", "gamma_temporal", "gamma", 0.6),
)

_SEGMENT_S = 4.0  # length of the circular synthesis segment of the oscillations, s
_BACKGROUND_SEGMENT_S = 2.0  # ... of the background (0.5 Hz resolution, cheaper)


def _segment_length(sfreq, n_times, segment=_SEGMENT_S):
    n = max(int(round(segment * sfreq)), n_times)
    return n + n % 2


def _spectral_mask(n_seg, sfreq, band, *, pink=False):
    """rfft-bin weights of a band (flat or 1/f power), scaled for unit output variance."""
    freqs = np.fft.rfftfreq(n_seg, 1.0 / sfreq)
    inside = (freqs >= band[0]) & (freqs <= band[1]) & (freqs > 0) & (freqs < sfreq / 2)
    mask = np.where(inside, 1.0 / np.sqrt(np.where(freqs > 0, freqs, 1.0)) if pink else 1.0,
                    0.0)
    # irfft of complex N(0, n) coefficients (no DC / Nyquist): var = 2 / n * sum(mask^2)
    return mask / np.sqrt(2.0 / n_seg * np.sum(mask**2))


def band_noise(rng, n_rows, n_times, sfreq, band, *, pink=False, segment=_SEGMENT_S):
    """Gaussian noise with a flat (or 1/f) power spectrum inside ``band``, unit variance.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws one ``standard_normal((n_rows, n_freqs, 2))`` (float32 when ``pink``).
    n_rows, n_times : int
    sfreq : float
        Hz.
    band : (float, float)
        Pass band, Hz (both edges inside ``(0, sfreq / 2)``).
    pink : bool
        1/f power inside the band instead of flat.
    segment : float
        Length of the circular realisation, s (its inverse is the frequency resolution);
        at least ``n_times`` samples are used.

    Returns
    -------
    noise : array, shape (n_rows, n_times)
        Expected variance 1 per row (stationary: a window of a circular realisation).
    """
    n_seg = _segment_length(sfreq, n_times, segment)
    mask = _spectral_mask(n_seg, sfreq, band, pink=pink)
    dtype = np.float32 if pink else np.float64
    z = rng.standard_normal((n_rows, mask.size, 2), dtype=dtype)
    spec = (z[..., 0] + 1j * z[..., 1]) * (np.sqrt(n_seg / 2.0) * mask).astype(dtype)
    import scipy.fft

    return scipy.fft.irfft(spec, n=n_seg, axis=-1)[:, :n_times]  # float32 stays float32


def make_smoother(pos, hemi, fwhm):
    """Sparse Gaussian spatial kernel within each hemisphere, rows of unit l2 norm.

    Parameters
    ----------
    pos : array, shape (n_sources, 3)
        Source positions, metres.
    hemi : array of str, shape (n_sources,)
    fwhm : float
        mm.

    Returns
    -------
    smoother : scipy.sparse.csr_array, shape (n_sources, n_sources)
        ``K @ z`` of white ``z`` has unit variance per source and correlation falling off
        with distance.
    """
    import scipy.sparse
    from scipy.spatial import cKDTree

    sigma = fwhm * 1e-3 / np.sqrt(8.0 * np.log(2.0))
    rows, cols, vals = [], [], []
    for h in np.unique(hemi):
        idx = np.flatnonzero(hemi == h)
        p = pos[idx]
        pairs = cKDTree(p).query_pairs(3.0 * sigma, output_type="ndarray")
        r = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(idx.size)])
        c = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(idx.size)])
        d2 = ((p[r] - p[c]) ** 2).sum(axis=1)
        rows.append(idx[r])
        cols.append(idx[c])
        vals.append(np.exp(-0.5 * d2 / sigma**2))
    n = len(pos)
    mat = scipy.sparse.csr_array((np.concatenate(vals), (np.concatenate(rows),
                                                         np.concatenate(cols))), shape=(n, n))
    norm = np.sqrt(np.asarray(mat.multiply(mat).sum(axis=1)).ravel())
    return scipy.sparse.csr_array(scipy.sparse.diags_array(1.0 / norm) @ mat)


@dataclass(frozen=True, eq=False)
class SourceModel:
    """What a subject's trials are made of.

    Attributes
    ----------
    profiles : array, shape (n_sources, n_columns)
        Region profiles (max 1), one column per ``columns`` entry.
    columns : list of (str, str)
        ``(region, hemi)`` of each column.
    scale : float
        Current moment (A·m) of a source at a region's centre per unit amplitude:
        ``moment_density * area_per_source``.
    smoother : scipy.sparse.csr_array, shape (n_sources, n_sources)
        Spatial kernel of the background (:func:`make_smoother`).
    """

    profiles: np.ndarray
    columns: list
    scale: float
    smoother: object

    @property
    def n_sources(self) -> int:
        """Number of sources."""
        return self.profiles.shape[0]

    def column(self, region, hemi) -> int:
        """Index of the ``(region, hemi)`` column."""
        return self.columns.index((region, hemi))


def make_source_model(config, tasks, *, fs_pos, fs_hemi, morph, pos, hemi, cos, area_cm2):
    """The :class:`SourceModel` of one subject.

    Parameters
    ----------
    config : EEGMEGWorldConfig
    tasks : list of Task
        Tasks the subject performs (their components' regions are included).
    fs_pos, fs_hemi : array
        Template source positions (m) and hemispheres, (n_sources_fsaverage, 3) and
        (n_sources_fsaverage,).
    morph : scipy.sparse array, shape (n_sources, n_sources_fsaverage) | None
        fsaverage -> subject morph (None: template subject).
    pos : array, shape (n_sources, 3)
        Subject source positions, m.
    hemi : array of str, shape (n_sources,)
    cos : array, shape (n_sources,)
        Radiality of the subject's sources (:func:`~.regions.radiality`).
    area_cm2 : float
        Cortical area of the subject's source surface, cm².

    Returns
    -------
    model : SourceModel
    """
    names = []
    for task in tasks:
        names += [c.region for c in task.components]
    names += [g.region for g in ONGOING]
    names = list(dict.fromkeys(names))
    profiles = region_profiles(names, fs_pos, fs_hemi, morph=morph, cos=cos)
    columns = list(profiles)
    mat = np.stack([profiles[c] for c in columns], axis=1)
    scale = config.moment_density * area_cm2 / len(pos)
    return SourceModel(mat, columns, scale, make_smoother(pos, hemi, config.background_fwhm))


def _bump(times, latency, width):
    return np.exp(-0.5 * ((times - latency) / width) ** 2)


def _envelope(times, points):
    t, g = [p[0] for p in points], [p[1] for p in points]
    return np.interp(times, t, g, left=1.0, right=g[-1])


def simulate_trials(model, task, classes, rngs, config):
    """Source activity of a block of trials.

    Parameters
    ----------
    model : SourceModel
    task : Task
    classes : list of str
        Class name of each trial.
    rngs : list of numpy.random.Generator
        One per trial (all of a trial's draws, in a fixed order).
    config : EEGMEGWorldConfig

    Returns
    -------
    sources : array, shape (n_trials, n_sources, n_times), float32
        A·m.
    latency : array, shape (n_trials, n_components)
        Realised peak latency of each evoked component, s.
    amplitude : array, shape (n_trials, n_components)
        Realised signed peak amplitude (relative to ``moment_density``).
    """
    times, sfreq, n_times = config.times, config.sfreq, config.n_times
    n_comp = len(task.components)
    sources = np.empty((len(classes), model.n_sources, n_times), np.float32)
    latency = np.zeros((len(classes), n_comp))
    amplitude = np.zeros((len(classes), n_comp))
    sigma_log = np.sqrt(np.log1p(config.amplitude_jitter**2))  # lognormal, relative s.d.
    if config.background_amplitude > 0:
        background = np.empty((model.n_sources, len(classes), n_times), np.float32)
    for i, (cls, rng) in enumerate(zip(classes, rngs)):
        course = np.zeros((len(model.columns), n_times))
        common = rng.normal(0.0, config.latency_jitter)
        own = rng.normal(0.0, config.latency_jitter / 2, n_comp)
        gains = rng.lognormal(-0.5 * sigma_log**2, sigma_log, n_comp)
        for k, comp in enumerate(task.components):
            lat = (comp.latency + comp.class_latency.get(cls, 0.0)
                   + comp.jitter_scale * (common + own[k]))
            amp = comp.amplitude * comp.class_amplitude.get(cls, 1.0) * gains[k]
            latency[i, k], amplitude[i, k] = lat, amp
            wave = amp * _bump(times, lat, comp.width)
            for h, g in task.hemispheres(comp, cls).items():
                course[model.column(comp.region, h)] += g * wave
        env = {}
        for mod in task.modulations.get(cls, ()):
            hemis = ["lh", "rh"] if mod.hemisphere == "both" else \
                [h for h in ("lh", "rh") if (h == task.contra[cls]) == (mod.hemisphere == "contra")]
            for h in hemis:
                env[mod.generator, h] = _envelope(times, mod.envelope)
        for gen in ONGOING:
            rows = band_noise(rng, 1 if gen.shared else 2, n_times, sfreq, BANDS[gen.band])
            rows *= gen.amplitude * config.oscillation_amplitude
            for j, h in enumerate(("lh", "rh")):
                row = rows[0 if gen.shared else j]
                course[model.column(gen.region, h)] += row * env.get((gen.name, h), 1.0)
        sources[i] = model.scale * (model.profiles @ course)  # (n_sources, n_times)
        if config.background_amplitude > 0:
            background[:, i] = band_noise(rng, model.n_sources, n_times, sfreq, (0.5, 100.0),
                                          pink=True, segment=_BACKGROUND_SEGMENT_S)
    if config.background_amplitude > 0:  # one sparse product for the block
        smooth = model.smoother.astype(np.float32) @ background.reshape(model.n_sources, -1)
        smooth = smooth.reshape(model.n_sources, len(classes), n_times).transpose(1, 0, 2)
        sources += (model.scale * config.background_amplitude) * smooth
    return sources, latency, amplitude
