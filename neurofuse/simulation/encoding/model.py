"""The ground-truth linear encoding model: stimulus features -> fsaverage source activity.

Paper §4: synthetic source activity comes from "a linear model whose weights are randomly
sampled according to the empirical feature covariance, with different lags applied to word
embeddings, phonemes, and spectrograms to mimic hierarchical processing in the brain".

For each stream ``s`` (``"word"``, ``"phoneme"``, ``"spectrogram"``) with features
``x_s(t)`` (n_times, d_s) the source activity is::

    sources(t) = sum_s  W_s @ (h_s * (x_s - mu_s))(t)          (n_sources,)
    W_s = A_s @ B_s      A_s (n_sources, R_s K), B_s (R_s K, d_s)

- ``h_s`` is a causal biphasic temporal kernel peaking at the stream's lag (50 / 100 /
  350 ms by default), ``mu_s`` the calibration mean of the stream;
- the rows of ``B_s`` are drawn from ``N(0, Sigma_s)``, ``Sigma_s`` the empirical
  covariance of the stream on the calibration features: ``K = n_components`` weight
  vectors per (region, hemisphere) that prefers this stream, plus ``K`` for a weak
  whole-cortex background;
- ``A_s`` are spatial loadings: a Gaussian profile around the region centre (in
  fsaverage/MNI305 coordinates) times ``K`` smooth random fields (Gaussian-kernel Gaussian
  processes of length scale 15 mm, via random Fourier features), so that neighbouring
  sources have similar, but not identical, tuning.

The model is low rank: ``A`` is (n_sources, n_latent) with n_latent = 184 by default, and
activity is computed block by block, never materialising more than
(n_sources, block) at once in :meth:`SourceEncodingModel.iter_transform`.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

import numpy as np

from ..._checks import (
    _check_finite,
    _check_int,
    _check_ndim,
    _check_positive,
    _check_random_state,
    _check_type,
)
from ..._io import atomic_dir, save_npy, write_json
from ..._logging import logger, verbose

__all__ = [
    "DEFAULT_LAGS",
    "REGIONS",
    "STREAM_TUNING",
    "SourceEncodingModel",
    "make_encoding_model",
    "response_kernel",
]

#: Named cortical regions: centre (x, y, z) in fsaverage/MNI305 mm for the *right*
#: hemisphere (the left one mirrors x) and the s.d. of the Gaussian spatial profile in mm.
REGIONS = {
    "auditory": ((45.0, -22.0, 8.0), 15.0),  # early auditory cortex / Heschl's gyrus
    "stg": ((56.0, -30.0, 2.0), 20.0),  # superior temporal gyrus / sulcus
    "anterior_temporal": ((55.0, -5.0, -20.0), 20.0),
    "ifg": ((48.0, 22.0, 10.0), 20.0),  # inferior frontal gyrus
    "angular": ((45.0, -62.0, 30.0), 20.0),
    "precuneus": ((6.0, -58.0, 36.0), 18.0),  # precuneus / posterior cingulate
}

#: Gain of each stream in its preferred regions (1 = strongest).
STREAM_TUNING = {
    "spectrogram": {"auditory": 1.0, "stg": 0.6},
    "phoneme": {"auditory": 0.4, "stg": 1.0, "anterior_temporal": 0.2},
    "word": {"stg": 0.5, "anterior_temporal": 1.0, "ifg": 0.9, "angular": 0.8, "precuneus": 0.7},
}
#: (left, right) multipliers: language streams are left-lateralised.
_LATERALITY = {"spectrogram": (1.0, 1.0), "phoneme": (1.0, 0.8), "word": (1.0, 0.7)}
_BACKGROUND_GAIN = 0.1

#: Default peak latency of each stream's temporal response kernel, in s.
DEFAULT_LAGS = {"spectrogram": 0.05, "phoneme": 0.10, "word": 0.35}

_FIELD_LENGTH = 0.015  # m, length scale of the smooth random fields
_N_FOURIER = 256  # random Fourier features per field basis
_RIDGE = 1e-6  # relative ridge added to the feature covariance eigenvalues
_KERNEL_SHAPE, _KERNEL_NEG, _KERNEL_NEG_STRETCH, _KERNEL_TAIL = 6.0, 0.35, 2.0, 1e-3
_SCALE_PERCENTILE = 95.0
_BLOCK = 256  # samples per canonical block (see SourceEncodingModel._iter_latent)
_FORMAT = "neurofuse-source-encoding-model"
_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- kernels
def _phi(u):
    """Unit-lag biphasic shape: gamma-like bump minus a wider, weaker one."""
    u = np.asarray(u, dtype=float)
    a = _KERNEL_SHAPE

    def bump(v):
        out = np.zeros_like(v)
        pos = v > 0
        out[pos] = np.exp(a * (np.log(v[pos]) + 1.0 - v[pos]))  # (v e^{1-v})^a, max 1 at v=1
        return out

    return bump(u) - _KERNEL_NEG * bump(u / _KERNEL_NEG_STRETCH)


def _phi_peak():
    grid = np.linspace(0.3, 1.5, 120001)
    return float(grid[np.argmax(_phi(grid))])


def response_kernel(lag, sfreq):
    """Causal biphasic temporal response kernel peaking at ``lag`` seconds.

    ``h(t) = b(t / c) - 0.35 b(t / (2 c))`` with ``b(v) = (v e^{1-v})^6`` (a gamma-like bump
    of unit height at ``v = 1``), ``c`` chosen so that ``h`` peaks exactly at ``lag``; the
    width grows with the lag (later responses are broader). Sampled at ``k / sfreq``,
    truncated once ``|h|`` stays below 1e-3 of its peak, scaled to unit peak.

    Parameters
    ----------
    lag : float
        Peak latency in s (>= one sample period).
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    kernel : array, shape (n_lags,)
        ``kernel[k]`` weighs the feature ``k`` samples in the past (``kernel[0] == 0``).
    """
    lag = _check_positive("lag", lag)
    sfreq = _check_positive("sfreq", sfreq)
    scale = lag / _phi_peak()
    n_max = int(math.ceil(12 * _KERNEL_NEG_STRETCH * scale * sfreq)) + 2
    h = _phi(np.arange(n_max) / (sfreq * scale))
    peak = np.abs(h).max()
    big = np.flatnonzero(np.abs(h) >= _KERNEL_TAIL * peak)
    return h[: big[-1] + 1] / h.max()


# ----------------------------------------------------------------------- spatial parts
def _region_profiles(src_pos, hemi, regions):
    """dict name -> (n_sources,) Gaussian profiles, per hemisphere, plus 'background'."""
    out = {}
    for name, (centre, sigma) in regions.items():
        c = np.asarray(centre) * 1e-3
        s = sigma * 1e-3
        for h, sign in (("lh", -1.0), ("rh", 1.0)):
            ch = c * np.array([sign, 1.0, 1.0])
            d2 = ((src_pos - ch) ** 2).sum(axis=1)
            prof = np.exp(-0.5 * d2 / s**2)
            prof[hemi != (0 if h == "lh" else 1)] = 0.0
            out[f"{name}-{h}"] = prof
    out["background"] = np.ones(src_pos.shape[0])
    return out


def _fourier_basis(src_pos, rng):
    """(n_sources, M) random Fourier features of a Gaussian kernel (length 15 mm).

    ``f = basis @ a`` with ``a ~ N(0, I_M)`` is approximately a Gaussian process with
    covariance ``exp(-|x - y|^2 / (2 l^2))`` (unit variance).
    """
    omega = rng.standard_normal((3, _N_FOURIER)) / _FIELD_LENGTH
    phase = rng.uniform(0.0, 2 * np.pi, _N_FOURIER)
    return math.sqrt(2.0 / _N_FOURIER) * np.cos(src_pos @ omega + phase)


# ---------------------------------------------------------------------------- checks
def _check_stream_slices(stream_slices, n_features):
    _check_type("stream_slices", stream_slices, dict, "a dict of stream name -> slice")
    if not stream_slices:
        raise ValueError("'stream_slices' is empty: give at least one stream.")
    out = {}
    used = np.zeros(n_features, bool)
    for name, sl in stream_slices.items():
        if name not in STREAM_TUNING:
            raise ValueError(
                f"Invalid stream name {name!r} in 'stream_slices': expected names among "
                f"{list(STREAM_TUNING)} (they choose the regions each stream drives)."
            )
        if not isinstance(sl, slice) or sl.step not in (None, 1):
            raise TypeError(f"'stream_slices[{name!r}]' must be a slice with step 1, got {sl!r}.")
        start, stop, _ = sl.indices(n_features)
        if sl.stop is None or sl.stop > n_features or stop <= start:
            raise ValueError(
                f"'stream_slices[{name!r}]' = {sl!r} does not select a non-empty range of the "
                f"{n_features} feature columns."
            )
        if used[start:stop].any():
            raise ValueError(f"'stream_slices[{name!r}]' overlaps another stream's columns.")
        used[start:stop] = True
        out[name] = slice(start, stop)
    return out


def _check_features(name, features, n_features=None):
    features = _check_ndim(name, features, 2, "(n_times, n_features)")
    _check_finite(name, features)
    if n_features is not None and features.shape[1] != n_features:
        raise ValueError(
            f"'{name}' must have {n_features} feature columns (as the features the model was "
            f"made with), got shape {features.shape}. Pass (n_times, n_features) arrays, "
            "e.g. Story.features."
        )
    return features


def _check_hemi(hemi, src_pos):
    if hemi is None:
        return (src_pos[:, 0] >= 0).astype(np.int8)
    hemi = np.asarray(hemi)
    if hemi.shape != (src_pos.shape[0],) or not np.isin(hemi, (0, 1)).all():
        raise ValueError(
            f"'hemi' must be None or an array of 0 (left) / 1 (right), shape "
            f"({src_pos.shape[0]},), got shape {hemi.shape} with values "
            f"{np.unique(hemi)[:5].tolist()}."
        )
    return hemi.astype(np.int8)


def _check_chunk(chunk_size):
    _check_int("chunk_size", chunk_size, 1)
    return int(chunk_size)


# ------------------------------------------------------------------------------ model
class SourceEncodingModel:
    """A fixed linear encoding model from feature streams to source activity.

    Made by :func:`make_encoding_model` or read by :meth:`load`; see the module docstring
    for the model. All arrays are float64 except the outputs of :meth:`transform`.

    Attributes
    ----------
    spatial_loadings : array, shape (n_sources, n_latent)
        ``A``: the columns of all streams side by side (see ``latent_slices``), in A·m per
        unit of the (unit-variance) latent time courses.
    mixing : dict of str -> array, shape (n_latent_s, d_s)
        ``B_s``: the weight vectors (drawn from the empirical feature covariance).
    kernels : dict of str -> array, shape (n_lags_s,)
        Causal temporal kernels (``kernel[k]`` weighs the features ``k`` samples back).
    lags : dict of str -> float
        Peak latency of each kernel in s.
    latent_regions : dict of str -> list of str
        Region (``"<name>-lh"``, ``"<name>-rh"`` or ``"background"``) of each block of
        ``n_components`` latent columns of each stream.
    stream_slices : dict of str -> slice
        Feature columns of each stream.
    feature_mean : array, shape (n_features,)
        Calibration mean, removed before the kernels.
    src_pos : array, shape (n_sources, 3)
        Source positions in m (fsaverage surface RAS).
    hemi : array, shape (n_sources,)
        0 for left-hemisphere sources, 1 for right.
    """

    def __init__(
        self,
        *,
        spatial_loadings,
        mixing,
        kernels,
        lags,
        latent_regions,
        stream_slices,
        feature_mean,
        src_pos,
        hemi,
        sfreq,
        amplitude,
        n_components,
        seed=None,
    ):
        self.spatial_loadings = np.asarray(spatial_loadings, dtype=np.float64)
        self.mixing = {k: np.asarray(v, dtype=np.float64) for k, v in mixing.items()}
        self.kernels = {k: np.asarray(v, dtype=np.float64) for k, v in kernels.items()}
        self.lags = {k: float(v) for k, v in lags.items()}
        self.latent_regions = {k: list(v) for k, v in latent_regions.items()}
        self.stream_slices = dict(stream_slices)
        self.feature_mean = np.asarray(feature_mean, dtype=np.float64)
        self.src_pos = np.asarray(src_pos, dtype=np.float64)
        self.hemi = np.asarray(hemi, dtype=np.int8)
        self.sfreq = float(sfreq)
        self.amplitude = float(amplitude)
        self.n_components = int(n_components)
        self.seed = seed
        self.stream_names = tuple(self.stream_slices)
        starts = np.cumsum([0] + [self.mixing[s].shape[0] for s in self.stream_names])
        self.latent_slices = {
            s: slice(int(starts[i]), int(starts[i + 1])) for i, s in enumerate(self.stream_names)
        }
        n_src, n_lat = self.spatial_loadings.shape
        if n_lat != starts[-1] or self.src_pos.shape != (n_src, 3) or self.hemi.shape != (n_src,):
            raise ValueError(
                f"Inconsistent encoding model: spatial_loadings {self.spatial_loadings.shape}, "
                f"{starts[-1]} latent rows in 'mixing', src_pos {self.src_pos.shape}, "
                f"hemi {self.hemi.shape}."
            )
        self._a32 = None

    def __repr__(self):
        streams = ", ".join(
            f"{s}: {self.mixing[s].shape[1]}-d @ {self.lags[s] * 1e3:g} ms"
            for s in self.stream_names
        )
        return f"<SourceEncodingModel | {self.n_sources} sources, {streams}>"

    @property
    def n_sources(self):
        """Number of sources."""
        return self.spatial_loadings.shape[0]

    @property
    def n_features(self):
        """Number of feature columns expected by :meth:`transform`."""
        return self.feature_mean.shape[0]

    @property
    def n_latent(self):
        """Total number of latent time courses (columns of ``spatial_loadings``)."""
        return self.spatial_loadings.shape[1]

    def weights(self, stream):
        """Full source weights of one stream, ``W_s = A_s @ B_s``.

        They apply to the kernel-filtered, mean-removed features:
        ``sources = sum_s W_s @ (h_s * (x_s - mu_s))``.

        Parameters
        ----------
        stream : str
            One of ``stream_names``.

        Returns
        -------
        weights : array, shape (n_sources, d_s)
            In A·m per feature unit.
        """
        if stream not in self.stream_slices:
            raise ValueError(
                f"Invalid value for the 'stream' parameter: expected one of "
                f"{list(self.stream_names)}, got {stream!r}."
            )
        return self.spatial_loadings[:, self.latent_slices[stream]] @ self.mixing[stream]

    def region_map(self):
        """Gaussian spatial profile of each region on the sources.

        Returns
        -------
        profiles : dict of str -> array, shape (n_sources,)
            Keys ``"<region>-lh"`` / ``"<region>-rh"`` for each entry of :data:`REGIONS`
            (values in [0, 1], 0 in the other hemisphere) and ``"background"`` (all ones).
        """
        return _region_profiles(self.src_pos, self.hemi, REGIONS)

    # ----------------------------------------------------------------- computation
    def _iter_latent(self, features):
        """Yield ``(b0, b1, U)`` for canonical blocks ``[b0, b1)`` of ``_BLOCK`` samples.

        ``U`` (``_BLOCK``, n_latent) holds the kernel-filtered latent time courses
        ``(h_s * ((x_s - mu_s) @ B_s.T))`` of the block (rows past ``b1 - b0`` are padding).
        Every block is computed with the same array shapes whatever the caller's chunking,
        and each output row depends on past and present rows only, so results are bitwise
        identical for any ``chunk_size`` and exactly causal.
        """
        n_times = features.shape[0]
        hist = {s: self.kernels[s].size - 1 for s in self.stream_names}
        taps = {s: np.flatnonzero(self.kernels[s]) for s in self.stream_names}
        past = {s: np.zeros((hist[s], self.mixing[s].shape[0])) for s in self.stream_names}
        x = np.zeros((_BLOCK, self.n_features))
        for b0 in range(0, n_times, _BLOCK):
            b1 = min(b0 + _BLOCK, n_times)
            x[: b1 - b0] = features[b0:b1]
            x[: b1 - b0] -= self.feature_mean
            x[b1 - b0 :] = 0.0
            u = np.empty((_BLOCK, self.n_latent))
            for s in self.stream_names:
                p = x[:, self.stream_slices[s]] @ self.mixing[s].T  # (S, n_lat_s)
                stacked = np.concatenate([past[s], p], axis=0)  # (hist + S, n_lat_s)
                # Direct causal FIR, u[t] = sum_k h[k] p[t - k], summed in a fixed order
                # (elementwise, no FFT/BLAS): exact causality and chunk invariance.
                h, n_hist = self.kernels[s], hist[s]
                acc = np.zeros_like(p)
                for k in taps[s]:
                    acc += h[k] * stacked[n_hist - k : n_hist - k + _BLOCK]
                u[:, self.latent_slices[s]] = acc
                if hist[s]:
                    past[s] = stacked[-hist[s] :]
            yield b0, b1, u

    def _loadings32(self):
        if self._a32 is None:
            self._a32 = np.ascontiguousarray(self.spatial_loadings, dtype=np.float32)
        return self._a32

    def iter_transform(self, features, chunk_size=2048):
        """Source activity, chunk by chunk along time.

        Parameters
        ----------
        features : array, shape (n_times, n_features)
            Feature streams at ``sfreq`` (e.g. ``Story.features``).
        chunk_size : int
            Samples per yielded block. Memory is about ``n_sources * (chunk_size + 256)``
            float32 values plus the caller's features.

        Yields
        ------
        start, stop : int
            Sample range of the block.
        block : array, shape (n_sources, stop - start), float32
            A new array each time; equal, bit for bit, to ``transform(features)[:, start:stop]``.
        """
        features = _check_features("features", features, self.n_features)
        chunk_size = _check_chunk(chunk_size)
        n_times = features.shape[0]
        a32 = self._loadings32()
        start, filled = 0, 0
        size = min(chunk_size, n_times)
        buf = np.empty((self.n_sources, size), dtype=np.float32)
        for b0, b1, u in self._iter_latent(features):
            blk = a32 @ u.astype(np.float32).T  # (n_sources, S), same shape for every block
            pos, n_blk = 0, b1 - b0
            while pos < n_blk:
                take = min(n_blk - pos, size - filled)
                buf[:, filled : filled + take] = blk[:, pos : pos + take]
                filled += take
                pos += take
                if filled == size:
                    yield start, start + size, buf
                    start += size
                    size = min(chunk_size, n_times - start)
                    filled = 0
                    if size > 0:
                        buf = np.empty((self.n_sources, size), dtype=np.float32)

    def transform(self, features, *, chunk_size=None):
        """Source activity for a feature time series.

        Causal (the activity at ``t`` depends on features at ``t`` and before only) and
        deterministic.

        Parameters
        ----------
        features : array, shape (n_times, n_features)
            Feature streams at ``sfreq`` (e.g. ``Story.features``).
        chunk_size : int | None
            Samples computed at once (None: 2048). Only changes the intermediate memory;
            the result is bitwise identical for any value.

        Returns
        -------
        sources : array, shape (n_sources, n_times), float32
            Source activity in A·m. For 8196 sources this is 33 kB per sample (1.2 GB for
            12 min at 50 Hz): use :meth:`iter_transform` to stream it instead.
        """
        features = _check_features("features", features, self.n_features)
        chunk_size = 2048 if chunk_size is None else _check_chunk(chunk_size)
        out = np.empty((self.n_sources, features.shape[0]), dtype=np.float32)
        for start, stop, block in self.iter_transform(features, chunk_size):
            out[:, start:stop] = block
        return out

    # ------------------------------------------------------------------------- I/O
    def save(self, dirpath, *, overwrite=False):
        """Write the model to a folder: ``.npy`` arrays (no pickle) and ``model.json``.

        Parameters
        ----------
        dirpath : path-like
            Folder to create.
        overwrite : bool
            Replace an existing folder (only once the new one is complete).
        """
        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "sfreq": self.sfreq,
            "amplitude": self.amplitude,
            "n_components": self.n_components,
            "seed": self.seed if isinstance(self.seed, (int, type(None))) else None,
            "n_sources": self.n_sources,
            "n_features": self.n_features,
            "streams": {
                s: {
                    "start": self.stream_slices[s].start,
                    "stop": self.stream_slices[s].stop,
                    "lag": self.lags[s],
                    "latent_regions": self.latent_regions[s],
                }
                for s in self.stream_names
            },
            "regions": {
                k: {"center_mm_rh": list(c), "sigma_mm": sg} for k, (c, sg) in REGIONS.items()
            },
        }
        with atomic_dir(dirpath, overwrite=overwrite, what="encoding model") as tmp:
            save_npy(tmp / "spatial_loadings.npy", self.spatial_loadings)
            save_npy(tmp / "feature_mean.npy", self.feature_mean)
            save_npy(tmp / "src_pos.npy", self.src_pos)
            save_npy(tmp / "hemi.npy", self.hemi)
            for s in self.stream_names:
                save_npy(tmp / f"mixing-{s}.npy", self.mixing[s])
                save_npy(tmp / f"kernel-{s}.npy", self.kernels[s])
            write_json(tmp / "model.json", meta)

    @classmethod
    def load(cls, dirpath):
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        dirpath : path-like
            The folder.

        Returns
        -------
        model : SourceEncodingModel
        """
        dirpath = Path(dirpath).expanduser()
        meta_path = dirpath / "model.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"No encoding model in '{dirpath}': 'model.json' is missing. Pass the folder "
                "written by SourceEncodingModel.save()."
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != _FORMAT or meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"'{meta_path}' is not a {_FORMAT} v{_FORMAT_VERSION} file (format "
                f"{meta.get('format')!r} v{meta.get('format_version')!r})."
            )

        def arr(name):
            return np.load(dirpath / name, allow_pickle=False)

        streams = meta["streams"]
        return cls(
            spatial_loadings=arr("spatial_loadings.npy"),
            mixing={s: arr(f"mixing-{s}.npy") for s in streams},
            kernels={s: arr(f"kernel-{s}.npy") for s in streams},
            lags={s: v["lag"] for s, v in streams.items()},
            latent_regions={s: v["latent_regions"] for s, v in streams.items()},
            stream_slices={s: slice(v["start"], v["stop"]) for s, v in streams.items()},
            feature_mean=arr("feature_mean.npy"),
            src_pos=arr("src_pos.npy"),
            hemi=arr("hemi.npy"),
            sfreq=meta["sfreq"],
            amplitude=meta["amplitude"],
            n_components=meta["n_components"],
            seed=meta["seed"],
        )


# ---------------------------------------------------------------------------- factory
def _covariance_factor(x):
    """F (d, d) with F @ F.T = cov(x) + ridge: w = F @ z, z ~ N(0, I) has that covariance."""
    n = x.shape[0]
    xc = x - x.mean(axis=0)
    cov = (xc.T @ xc) / max(n - 1, 1)  # (d, d)
    evals, evecs = np.linalg.eigh(cov)
    evals = np.clip(evals, 0.0, None)
    ridge = _RIDGE * max(evals.mean(), np.finfo(float).tiny)
    return evecs * np.sqrt(evals + ridge)


@verbose
def make_encoding_model(
    src_pos,
    features,
    *,
    stream_slices,
    sfreq=50.0,
    seed=0,
    stream_lags=None,
    n_components=8,
    amplitude=1e-9,
    hemi=None,
    verbose=None,
):
    """Draw a ground-truth linear encoding model from features to fsaverage sources.

    Parameters
    ----------
    src_pos : array, shape (n_sources, 3)
        Source positions in **m**, fsaverage surface RAS (≈ MNI305: x right, y anterior,
        z superior), e.g. ``src[i]['rr'][src[i]['vertno']]`` of an fsaverage source space.
    features : array, shape (n_times, n_features)
        Calibration features (e.g. a few stories concatenated) at ``sfreq``: their
        per-stream empirical covariance is the covariance of the weight vectors, their mean
        is removed before the kernels, and they set the output scale.
    stream_slices : dict of str -> slice
        Columns of each stream in ``features``; names among ``"word"``, ``"phoneme"``,
        ``"spectrogram"`` (e.g. ``Story.stream_slices``).
    sfreq : float
        Sampling rate of the features in Hz.
    seed : int | numpy.random.Generator | None
        Random seed of the weights and spatial fields.
    stream_lags : dict of str -> float | None
        Peak latency (s) of each stream's temporal kernel, overriding :data:`DEFAULT_LAGS`
        (spectrogram 50 ms, phoneme 100 ms, word 350 ms) for the streams named.
    n_components : int
        Weight vectors per (stream, region, hemisphere); more gives more spatial variety of
        tuning within a region.
    amplitude : float
        Target source s.d. in A·m: the 95th percentile over sources of the activity s.d. on
        the calibration features equals ``amplitude``.
    hemi : array, shape (n_sources,) | None
        0 for left-hemisphere sources, 1 for right; None uses the sign of x (x < 0: left),
        which misplaces a few medial-wall vertices on fsaverage.
    verbose : bool | str | int | None
        Log level.

    Returns
    -------
    model : SourceEncodingModel
    """
    src_pos = _check_ndim("src_pos", src_pos, 2, "(n_sources, 3)").astype(np.float64)
    if src_pos.shape[1] != 3 or src_pos.shape[0] < 1:
        raise ValueError(f"'src_pos' must have shape (n_sources, 3), got {src_pos.shape}.")
    _check_finite("src_pos", src_pos)
    if np.abs(src_pos).max() > 0.5:
        raise ValueError(
            f"'src_pos' must be in metres, but its largest coordinate is "
            f"{np.abs(src_pos).max():g} (a brain is ~0.15 m across): it looks like mm, "
            "divide by 1000."
        )
    hemi = _check_hemi(hemi, src_pos)
    features = _check_features("features", features)
    if features.shape[0] < 2:
        raise ValueError(
            f"'features' needs at least 2 samples to estimate a covariance, got shape {features.shape}."
        )
    n_features = features.shape[1]
    slices = _check_stream_slices(stream_slices, n_features)
    sfreq = _check_positive("sfreq", sfreq)
    amplitude = _check_positive("amplitude", amplitude)
    _check_int("n_components", n_components, 1)
    lags = {s: DEFAULT_LAGS[s] for s in slices}
    if stream_lags is not None:
        _check_type("stream_lags", stream_lags, dict, "a dict of stream name -> seconds, or None")
        for s, lag in stream_lags.items():
            if s not in slices:
                raise ValueError(
                    f"Invalid stream name {s!r} in 'stream_lags': expected names among {list(slices)}."
                )
            lag = _check_positive(f"stream_lags[{s!r}]", lag)
            if lag < 1.0 / sfreq:
                raise ValueError(
                    f"'stream_lags[{s!r}]' must be at least one sample (1/sfreq = "
                    f"{1 / sfreq:g} s), got {lag:g} s."
                )
            lags[s] = lag
    seed_json = (
        int(seed) if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) else None
    )
    rng = _check_random_state(seed)
    n_sources = src_pos.shape[0]
    logger.info(
        f"Encoding model: {n_sources} sources, streams "
        + ", ".join(
            f"{s} ({slices[s].stop - slices[s].start}-d, {lags[s] * 1e3:g} ms)" for s in slices
        )
    )
    profiles = _region_profiles(src_pos, hemi, REGIONS)
    basis = _fourier_basis(src_pos, rng)  # (n_sources, M)
    k = int(n_components)
    loadings, mixing, kernels, latent_regions = [], {}, {}, {}
    for s, sl in slices.items():
        factor = _covariance_factor(features[:, sl].astype(np.float64))  # (d_s, d_s)
        lat, regions = [], []
        left, right = _LATERALITY[s]
        gains = [
            (f"{r}-{h}", g * m)
            for r, g in STREAM_TUNING[s].items()
            for h, m in (("lh", left), ("rh", right))
        ]
        gains.append(("background", _BACKGROUND_GAIN))
        for name, gain in gains:
            fields = basis @ rng.standard_normal((basis.shape[1], k))  # (n_sources, K)
            lat.append(gain * profiles[name][:, None] * fields / math.sqrt(k))
            regions.append(name)
        loadings.append(np.concatenate(lat, axis=1))  # (n_sources, R_s K)
        mixing[s] = rng.standard_normal((len(regions) * k, factor.shape[0])) @ factor.T
        kernels[s] = response_kernel(lags[s], sfreq)
        latent_regions[s] = regions
    model = SourceEncodingModel(
        spatial_loadings=np.concatenate(loadings, axis=1),
        mixing=mixing,
        kernels=kernels,
        lags=lags,
        latent_regions=latent_regions,
        stream_slices=slices,
        feature_mean=features.mean(axis=0),
        src_pos=src_pos,
        hemi=hemi,
        sfreq=sfreq,
        amplitude=amplitude,
        n_components=k,
        seed=seed_json,
    )
    # Scale: (1) each stream's latent time courses to unit mean variance on the calibration
    # features, so that the region gains compare streams; (2) the loadings so that the 95th
    # percentile of the source s.d. equals `amplitude`.
    cov = _latent_covariance(model, features)
    for s in model.stream_names:
        ls = model.latent_slices[s]
        v = float(np.mean(np.diag(cov)[ls]))
        if v <= 0:
            raise ValueError(
                f"The '{s}' stream is constant over the calibration 'features': pass features "
                "with variance in every stream (e.g. a few concatenated stories)."
            )
        model.mixing[s] /= math.sqrt(v)
        cov[ls, :] /= math.sqrt(v)
        cov[:, ls] /= math.sqrt(v)
    a = model.spatial_loadings
    std = np.sqrt(np.maximum(np.einsum("ij,ij->i", a @ cov, a), 0.0))
    model.spatial_loadings *= amplitude / np.percentile(std, _SCALE_PERCENTILE)
    model._a32 = None
    return model


def _latent_covariance(model, features):
    """Covariance (n_latent, n_latent) of the filtered latent time courses over ``features``."""
    n_lat = model.n_latent
    s1 = np.zeros(n_lat)
    s2 = np.zeros((n_lat, n_lat))
    n = features.shape[0]
    for b0, b1, u in model._iter_latent(features):
        u = u[: b1 - b0]
        s1 += u.sum(axis=0)
        s2 += u.T @ u
    mean = s1 / n
    return (s2 - n * np.outer(mean, mean)) / max(n - 1, 1)
