"""Drawing and applying a world (:class:`SourceWorld`) around the linear encoding model.

The sources of a story in a world are::

    s_i(t) = f_r(i)(x_i(t)) + sum_k a_ik z_k(t)

with ``x = model.transform(features)`` the linear drive (its tuning fields at the world's
length scale or parcels, its region responses delayed by the region latencies), ``f_r`` the
response type of the source's region (:class:`~.world.WorldConfig`), ``a`` (n_sources, K)
the spontaneous fields and ``z`` (K, n_times) their unit-variance time courses, drawn per
story independently of the stimulus. The fMRI of a source uses its region's HRF.
"""

from __future__ import annotations

import math

import numpy as np

from ..._io import save_npy, write_json
from ..._logging import logger
from .factory import _latent_covariance
from .spatial import _fourier_basis, make_parcels, region_labels
from .world import resolve_world


def hrf_for_peak(time_to_peak):
    """Keyword arguments of :func:`~neurofuse.physics.hrf.spm_hrf` peaking at ``time_to_peak``.

    The response gamma (dispersion 1 s) has its mode at ``peak - 1``, so ``peak`` is the time
    to peak plus 1 s; the undershoot moves with it, its mode 10 s after the peak as in the
    canonical HRF (``peak=6``, ``undershoot=16``: modes at 5 and 15 s).

    Parameters
    ----------
    time_to_peak : float
        Seconds from the impulse to the maximum of the response.

    Returns
    -------
    hrf_kwargs : dict
        ``{"peak": ..., "undershoot": ...}``.
    """
    return {"peak": float(time_to_peak) + 1.0, "undershoot": float(time_to_peak) + 11.0}


def _ar1(rng, n_series, n_times, tau, sfreq):
    """Unit-variance stationary AR(1) series (n_series, n_times) of time constant ``tau`` s."""
    from scipy import signal

    rho = math.exp(-1.0 / (tau * sfreq))
    e = rng.standard_normal((n_series, n_times)) * math.sqrt(1 - rho**2)
    x0 = rng.standard_normal(n_series)
    out, _ = signal.lfilter([1.0], [1.0, -rho], e, axis=-1, zi=(rho * x0)[:, None])
    return out


def _pink(rng, n_series, n_times):
    """Series (n_series, n_times) of 1/f power (DC removed)."""
    spec = np.fft.rfft(rng.standard_normal((n_series, n_times)), axis=-1)
    f = np.arange(spec.shape[-1], dtype=float)
    f[0] = np.inf  # no DC
    return np.fft.irfft(spec / np.sqrt(f), n=n_times, axis=-1)


class SourceWorld:
    """One drawn world: its region labels, HRFs and delays, nonlinearities and spontaneous fields.

    Parameters
    ----------
    world : str | dict | WorldConfig
        The world (:func:`~neurofuse.simulation.encoding.world.resolve_world`).
    src_pos : array, shape (n_sources, 3)
        Source positions in m.
    hemi : array, shape (n_sources,)
        0 for left-hemisphere sources, 1 for right.
    sfreq : float
        Sampling rate in Hz.
    seed : int
        Seed of the world's structure (parcels, delays, HRFs, spontaneous fields).

    Attributes
    ----------
    labels : array of int, shape (n_sources,)
        Region of each source, an index into ``region_names``.
    region_names : list of str
        ``"<region>-lh"``, ``"<region>-rh"``, ..., ``"background"``.
    parcels : array of int, shape (n_sources,) | None
        The parcels of a ``patches`` world.
    region_delays : dict of str -> float
        Latency (s) of each region's responses (empty without ``latency_range``).
    hrf_peaks : dict of str -> float
        Time to peak (s) of each region's HRF (empty without ``hrf_peak_range``).
    """

    def __init__(self, world, src_pos, hemi, *, sfreq, seed):
        self.world = resolve_world(world)
        self.src_pos = np.asarray(src_pos, float)
        self.hemi = np.asarray(hemi)
        self.sfreq = float(sfreq)
        self.seed = int(seed)
        w = self.world
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0]))
        self.labels, self.region_names = region_labels(self.src_pos, self.hemi)
        self.parcels = (make_parcels(self.src_pos, self.hemi, w.field_length_mm * 1e-3, rng)
                        if w.patches else None)
        self.region_delays = {}
        if w.latency_range is not None:
            lo, hi = w.latency_range
            self.region_delays = {
                r: round(float(rng.uniform(lo, hi)) * self.sfreq) / self.sfreq
                for r in self.region_names
            }
        self.hrf_peaks = {}
        if w.hrf_peak_range is not None:
            lo, hi = w.hrf_peak_range
            self.hrf_peaks = {r: float(rng.uniform(lo, hi)) for r in self.region_names}
        self.kinds = {r: w.kind_of(r) for r in self.region_names}
        self._rows = {}  # kind -> rows, or (kind, region) -> rows for gain
        for i, r in enumerate(self.region_names):
            rows = np.flatnonzero(self.labels == i)
            if self.kinds[r] == "gain":
                self._rows[("gain", r)] = rows
            elif self.kinds[r] != "linear" and rows.size:
                self._rows[self.kinds[r]] = np.concatenate(
                    [self._rows.get(self.kinds[r], np.zeros(0, np.int64)), rows])
        self.gain_regions = [r for r in self.region_names if self.kinds[r] == "gain"]
        self.scale = None  # (n_sources,) linear s.d., set by calibrate
        self.spontaneous_loadings = None  # (n_sources, K)
        self.driven_power = None

    # --------------------------------------------------------------------- drawing
    def model_kwargs(self):
        """Keyword arguments for :func:`make_encoding_model` that realise this world.

        Returns
        -------
        kwargs : dict
            ``field_length``, ``parcels`` and ``region_delays`` where they differ from the
            defaults (empty for the default world, so its model is drawn exactly as before).
        """
        out = {}
        if self.world.field_length_mm != 15.0:
            out["field_length"] = self.world.field_length_mm * 1e-3
        if self.parcels is not None:
            out["parcels"] = self.parcels
        if self.region_delays:
            out["region_delays"] = self.region_delays
        return out

    def calibrate(self, model, features):
        """Scale the saturation and the spontaneous fields on the calibration features.

        Parameters
        ----------
        model : SourceEncodingModel
            The linear drive (made with :meth:`model_kwargs`).
        features : array, shape (n_times, n_features)
            Calibration features (those the model was drawn from).
        """
        cov = _latent_covariance(model, features)
        a = model.spatial_loadings
        self.scale = np.sqrt(np.maximum(np.einsum("ij,ij->i", a @ cov, a), 0.0))  # (n_src,)
        w = self.world
        if w.spontaneous_ratio <= 0:
            return
        # Driven power after the nonlinearity, on the calibration features.
        draw = self.draw_story(np.random.default_rng(np.random.SeedSequence([self.seed, 1])),
                               features.shape[0], spontaneous=False)
        s1 = np.zeros(model.n_sources)
        s2 = np.zeros(model.n_sources)
        for a0, b0, block in model.iter_transform(features):
            block = self.apply(block, a0, b0, draw).astype(np.float64)
            s1 += block.sum(axis=1)
            s2 += (block**2).sum(axis=1)
        n = features.shape[0]
        self.driven_power = float(np.mean(s2 / n - (s1 / n) ** 2))
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2]))
        k = w.spontaneous_components
        if self.parcels is None:
            basis = _fourier_basis(self.src_pos, rng, w.field_length_mm * 1e-3)
            fields = basis @ rng.standard_normal((basis.shape[1], k))  # (n_src, K)
        else:
            fields = rng.standard_normal((int(self.parcels.max()) + 1, k))[self.parcels]
        power = np.mean((fields**2).sum(axis=1))  # with unit-variance, uncorrelated z
        self.spontaneous_loadings = fields * math.sqrt(
            w.spontaneous_ratio * self.driven_power / power)
        logger.info(f"World {w.name}: spontaneous activity at {w.spontaneous_ratio:g} x the "
                    f"driven power ({self.driven_power:.3g} (A·m)^2)")

    def draw_story(self, rng, n_times, *, spontaneous=True):
        """The per-story random signals: gain signals and spontaneous time courses.

        Parameters
        ----------
        rng : numpy.random.Generator
            The story's stream (independent of its stimulus).
        n_times : int
            Samples in the story.
        spontaneous : bool
            Draw the spontaneous time courses (when the world has them).

        Returns
        -------
        draw : dict
            ``"gain"``: array, shape (n_gain_regions, n_times) (regions in
            ``gain_regions``); ``"spontaneous"``: array, shape (K, n_times), zero-mean rows
            with identity covariance over the story, or None.
        """
        w = self.world
        gain = np.zeros((len(self.gain_regions), n_times))
        if self.gain_regions:
            eta = _ar1(rng, len(self.gain_regions), n_times, w.gain_tau, self.sfreq)
            gain = np.exp(w.gain_depth * eta - w.gain_depth**2 / 2)
        z = None
        if spontaneous and w.spontaneous_ratio > 0:
            k = w.spontaneous_components
            if w.spontaneous_spectrum == "pink":
                z = _pink(rng, k, n_times)
            else:
                z = _ar1(rng, k, n_times, w.spontaneous_tau, self.sfreq)
            z -= z.mean(axis=1, keepdims=True)
            # Symmetric whitening: exactly uncorrelated, unit-variance rows, so the story's
            # spontaneous power is exactly the calibrated one (mixing series of one spectrum
            # keeps that spectrum).
            evals, evecs = np.linalg.eigh(z @ z.T / n_times)
            z = (evecs / np.sqrt(np.maximum(evals, np.finfo(float).tiny))) @ evecs.T @ z
        return {"gain": gain, "spontaneous": z}

    # -------------------------------------------------------------------- applying
    def apply(self, block, start, stop, draw):
        """The world's sources from a block of the linear drive.

        Parameters
        ----------
        block : array, shape (n_sources, stop - start)
            Linear drive (e.g. from :meth:`SourceEncodingModel.iter_transform`); changed in
            place.
        start, stop : int
            Its samples in the story.
        draw : dict
            The story's :meth:`draw_story`.

        Returns
        -------
        block : array, shape (n_sources, stop - start)
            Same array and dtype.
        """
        rows = self._rows.get("saturating")
        if rows is not None:
            c = (self.world.saturation * self.scale[rows])[:, None].astype(block.dtype)
            c = np.maximum(c, np.finfo(block.dtype).tiny)
            block[rows] = c * np.tanh(block[rows] / c)
        rows = self._rows.get("rectifying")
        if rows is not None:
            block[rows] = np.maximum(block[rows], 0)
        for j, r in enumerate(self.gain_regions):
            rows = self._rows[("gain", r)]
            block[rows] *= draw["gain"][j, start:stop].astype(block.dtype)
        if draw.get("spontaneous") is not None and self.spontaneous_loadings is not None:
            block += (self.spontaneous_loadings @ draw["spontaneous"][:, start:stop]).astype(
                block.dtype)
        return block

    # --------------------------------------------------------------------- the fMRI
    def hrf_labels(self, morph=None):
        """HRF (region) index of each source of a subject, or None with one HRF for all.

        Parameters
        ----------
        morph : scipy.sparse array, shape (n_sources_subject, n_sources) | None
            fsaverage -> subject morph; a subject source takes the region that weighs most
            in its morph row. None: the fsaverage sources.

        Returns
        -------
        labels : array of int, shape (n_sources_subject,) | None
            Indices into :meth:`hrf_kwargs`.
        """
        if not self.hrf_peaks:
            return None
        if morph is None:
            return self.labels.copy()
        import scipy.sparse as sp

        onehot = sp.csr_array((np.ones(self.labels.size), (np.arange(self.labels.size),
                                                           self.labels)),
                              shape=(self.labels.size, len(self.region_names)))
        weights = (morph @ onehot).toarray()  # (n_subject, n_regions)
        return weights.argmax(axis=1)

    def hrf_kwargs(self):
        """``spm_hrf`` keyword arguments per region (list, by region index), or None."""
        if not self.hrf_peaks:
            return None
        return [hrf_for_peak(self.hrf_peaks[r]) for r in self.region_names]

    # ------------------------------------------------------------------------ I/O
    def summary(self):
        """JSON-serialisable description of the drawn world (for the study's metadata).

        Returns
        -------
        summary : dict
        """
        out = {"config": self.world.to_dict(), "seed": self.seed, "sfreq": self.sfreq,
               "regions": self.region_names,
               "region_threshold": "a region's profile is largest and >= 0.5",
               "response_types": self.kinds}
        if self.region_delays:
            out["region_delays"] = self.region_delays
        if self.hrf_peaks:
            out["hrf_time_to_peak"] = self.hrf_peaks
            out["hrf_kwargs"] = dict(zip(self.region_names, self.hrf_kwargs()))
        if self.parcels is not None:
            out["n_parcels"] = int(self.parcels.max()) + 1
        if self.driven_power is not None:
            out["driven_power"] = self.driven_power
        return out

    def save(self, dirpath):
        """Write the drawn world to a folder: ``world.json`` and ``.npy`` arrays.

        Parameters
        ----------
        dirpath : path-like
            An existing folder (e.g. the study's ``ground_truth/world``).
        """
        from pathlib import Path

        dirpath = Path(dirpath)
        write_json(dirpath / "world.json", self.summary())
        save_npy(dirpath / "region_labels.npy", self.labels)
        save_npy(dirpath / "linear_sd.npy", self.scale)
        if self.parcels is not None:
            save_npy(dirpath / "parcels.npy", self.parcels)
        if self.spontaneous_loadings is not None:
            save_npy(dirpath / "spontaneous_loadings.npy", self.spontaneous_loadings)

    @classmethod
    def load(cls, dirpath, src_pos, hemi):
        """Read a world written by :meth:`save` (its structure is redrawn from its seed).

        Parameters
        ----------
        dirpath : path-like
            The folder (a study's ``ground_truth/world``).
        src_pos : array, shape (n_sources, 3)
            The source positions it was drawn on (m).
        hemi : array, shape (n_sources,)
            Their hemispheres.

        Returns
        -------
        world : SourceWorld
        """
        import json
        from pathlib import Path

        dirpath = Path(dirpath)
        info = json.loads((dirpath / "world.json").read_text())
        sw = cls(info["config"], src_pos, hemi, sfreq=info["sfreq"], seed=info["seed"])
        labels = np.load(dirpath / "region_labels.npy", allow_pickle=False)
        if not np.array_equal(labels, sw.labels) or sw.summary()["config"] != info["config"]:
            raise ValueError(f"The world in '{dirpath}' was drawn on other source positions than "
                             "the 'src_pos' given: pass the study's fsaverage source positions.")
        sw.scale = np.load(dirpath / "linear_sd.npy", allow_pickle=False)
        if (dirpath / "spontaneous_loadings.npy").is_file():
            sw.spontaneous_loadings = np.load(dirpath / "spontaneous_loadings.npy",
                                              allow_pickle=False)
        sw.driven_power = info.get("driven_power")
        return sw
