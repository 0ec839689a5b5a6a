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
from pathlib import Path

import numpy as np

from ..._checks import _check_finite, _check_int, _check_ndim
from ..._io import atomic_dir, save_npy, write_json
from .spatial import REGIONS, _region_profiles

_BLOCK = 256  # samples per canonical block (see SourceEncodingModel._iter_latent)
_FORMAT = "neurofuse-source-encoding-model"
_FORMAT_VERSION = 1


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


def _check_region_delays(region_delays, latent_regions, sfreq):
    if not region_delays:
        return {}
    if not isinstance(region_delays, dict):
        raise TypeError(f"'region_delays' must be a dict of region -> seconds or None, got "
                        f"{type(region_delays).__name__}.")
    known = sorted({r for regions in latent_regions.values() for r in regions})
    out = {}
    for region, delay in region_delays.items():
        if region not in known:
            raise ValueError(f"Invalid region {region!r} in 'region_delays': expected names "
                             f"among {known}.")
        delay = float(delay)
        if not np.isfinite(delay) or delay < 0:
            raise ValueError(f"'region_delays[{region!r}]' must be a finite delay >= 0 s, got "
                             f"{delay!r}.")
        out[region] = round(delay * sfreq) / sfreq  # whole samples
    return out


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
    region_delays : dict of str -> float
        Extra latency (s, a whole number of samples) of the latent responses of each region
        named: the kernel of its latent columns is ``kernel`` delayed by that much (empty:
        none, the default world).
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
        region_delays=None,
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
        self.region_delays = _check_region_delays(region_delays, self.latent_regions, self.sfreq)
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
        groups = {s: self._kernel_groups(s) for s in self.stream_names}
        hist = {s: max(h.size for _, h in groups[s]) - 1 for s in self.stream_names}
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
                n_hist = hist[s]
                acc = np.zeros_like(p)
                for cols, h in groups[s]:
                    if cols is None:  # one kernel for the whole stream
                        for k in np.flatnonzero(h):
                            acc += h[k] * stacked[n_hist - k : n_hist - k + _BLOCK]
                    else:
                        for k in np.flatnonzero(h):
                            acc[:, cols] += h[k] * stacked[n_hist - k : n_hist - k + _BLOCK, cols]
                u[:, self.latent_slices[s]] = acc
                if hist[s]:
                    past[s] = stacked[-hist[s] :]
            yield b0, b1, u

    def _kernel_groups(self, stream):
        """``[(cols, kernel)]``: the latent columns of ``stream`` sharing each kernel.

        ``cols`` is None (all columns) without region delays.
        """
        h = self.kernels[stream]
        if not self.region_delays:
            return [(None, h)]
        k = self.n_components
        out = []
        for i, region in enumerate(self.latent_regions[stream]):
            shift = int(round(self.region_delays.get(region, 0.0) * self.sfreq))
            out.append((slice(i * k, (i + 1) * k), np.concatenate([np.zeros(shift), h])))
        return out

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
            **({"region_delays": self.region_delays} if self.region_delays else {}),
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
            region_delays=meta.get("region_delays"),
        )
