"""A model-agnostic source model: anything that maps a stimulus to fsaverage source activity.

The evaluations (source recovery, ECoG validation) need only this of a model: its sampling
rate, its stimulus width, its fsaverage source vertices, and source time courses for a
stimulus, computed chunk by chunk so that an hour of 8196 sources never has to be held at
once. :class:`SourceModel` states that as a :class:`typing.Protocol`; any object with these
attributes satisfies it (no base class to inherit). :func:`as_source_model` wraps the models
neurofuse has today in small adapters:

* a trained joint model (:class:`neurofuse.systems.joint.model.JointModel`) ->
  :class:`JointSourceModel`;
* a ground-truth encoder of a simulation
  (:class:`neurofuse.simulation.encoding.SourceEncodingModel`) -> :class:`EncoderSourceModel`
  (its vertices are found from its source positions on the fsaverage5 white surface).

:func:`read_source_model` reads either from a folder, and :func:`predict_source_rows` gives
the time courses of chosen sources as one array.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .._checks import _check_ndim, _check_sfreq


@runtime_checkable
class SourceModel(Protocol):
    """Anything that maps a stimulus ``(n_times, n_features)`` to fsaverage source activity.

    Attributes
    ----------
    sfreq : float
        Sampling rate of the stimulus features and of the source time courses, Hz.
    n_features : int
        Stimulus features per sample.
    n_sources : int
        Number of sources (``sum(len(v) for v in vertices)``).
    vertices : [array of int, array of int]
        fsaverage5 vertex numbers ``[lh, rh]`` of the sources, as MNE numbers them; rows of
        the source time courses are lh sources then rh sources in this order.
    """

    sfreq: float
    n_features: int
    n_sources: int
    vertices: list

    def iter_sources(self, features, *, chunk_seconds=60.0) -> Iterator:
        """Source activity for a stimulus, chunk by chunk along time.

        Parameters
        ----------
        features : array, shape (n_times, n_features)
            Stimulus features at ``sfreq``.
        chunk_seconds : float
            Approximate length of each block (memory control); the values do not depend on it.

        Yields
        ------
        start, stop : int
            Sample range of the block; blocks tile ``[0, n_times)`` in order.
        block : array, shape (n_sources, stop - start)
        """


class JointSourceModel:
    """:class:`SourceModel` adapter of a trained joint model (its stimulus -> source encoder).

    Parameters
    ----------
    model : neurofuse.systems.joint.model.JointModel
    """

    kind = "joint"

    def __init__(self, model):
        self.model = model
        self.sfreq = float(model.sfreq)
        self.n_features = int(model.encoder.config.d_stim)
        self.n_sources = int(model.encoder.config.d_src)
        self.vertices = model.vertices

    def iter_sources(self, features, *, chunk_seconds=60.0):
        """Blocks of :func:`neurofuse.systems.joint.predict.iter_sources` (bit-equal to
        :func:`~neurofuse.systems.joint.predict.predict_sources`)."""
        from ..systems.joint.predict import iter_sources

        yield from iter_sources(self.model, features, chunk_seconds=chunk_seconds)


class EncoderSourceModel:
    """:class:`SourceModel` adapter of a simulation's ground-truth encoder.

    Parameters
    ----------
    encoder : neurofuse.simulation.encoding.SourceEncodingModel
        Its sources must be vertices of the fsaverage5 white surface, lh then rh (any
        spacing).
    """

    kind = "encoder"

    def __init__(self, encoder):
        from ..anatomy.coordinates import fsaverage5_vertices

        self.encoder = encoder
        self.sfreq = float(encoder.sfreq)
        self.n_features = int(encoder.n_features)
        self.n_sources = int(encoder.n_sources)
        hemi = np.where(np.asarray(encoder.hemi) == 0, "lh", "rh")
        self.vertices = fsaverage5_vertices(encoder.src_pos, hemi, surface="white")

    def iter_sources(self, features, *, chunk_seconds=60.0):
        """Blocks of the encoder's ``iter_transform`` (bit-equal to ``transform``)."""
        chunk = max(1, round(chunk_seconds * self.sfreq))
        yield from self.encoder.iter_transform(features, chunk_size=chunk)


def as_source_model(model) -> SourceModel:
    """A :class:`SourceModel` for a model, its folder, or an object already satisfying it.

    Parameters
    ----------
    model : SourceModel | JointModel | SourceEncodingModel | path-like
        A path is read with :func:`read_source_model`.

    Returns
    -------
    source_model : SourceModel
        ``model`` itself when it satisfies the protocol, else an adapter.
    """
    if isinstance(model, (str, os.PathLike)):
        return read_source_model(model)
    if isinstance(model, SourceModel):
        return model
    from ..systems.joint.model import JointModel
    from ..simulation.encoding import SourceEncodingModel

    if isinstance(model, JointModel):
        return JointSourceModel(model)
    if isinstance(model, SourceEncodingModel):
        return EncoderSourceModel(model)
    raise TypeError(f"'model' must be a source model (sfreq, n_features, n_sources, vertices, "
                    f"iter_sources), a JointModel, a SourceEncodingModel or the folder of one, "
                    f"got {type(model).__name__}.")


def read_source_model(path) -> SourceModel:
    """Read a trained joint model or a ground-truth encoder from its folder.

    Parameters
    ----------
    path : path-like
        A joint model folder (or the output folder of ``neurofuse joint fit``, which holds it in
        ``model/``) or a ground-truth encoder folder (a simulated study's
        ``ground_truth/encoding``).

    Returns
    -------
    source_model : SourceModel
    """
    from ..systems.joint.model import JointModel
    from ..simulation.encoding import SourceEncodingModel

    path = Path(path).expanduser()
    if not (path / "model.json").is_file() and (path / "model" / "model.json").is_file():
        path = path / "model"  # the output folder of `neurofuse joint fit`
    cfg_file = path / "model.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"'{path}' holds no model (no model.json): pass a trained joint "
                                "model folder (the 'model/' of `neurofuse joint fit`) or a ground-truth "
                                "encoder folder (a simulated study's ground_truth/encoding).")
    fmt = json.loads(cfg_file.read_text()).get("format")
    if fmt == "neurofuse-source-encoding-model":
        return EncoderSourceModel(SourceEncodingModel.load(path))
    return JointSourceModel(JointModel.load(path))


def predict_source_rows(model, features, rows=None, *, sfreq=None, chunk_seconds=60.0):
    """Source time courses of chosen sources for a stimulus, as one array.

    Parameters
    ----------
    model : SourceModel
        E.g. from :func:`as_source_model`.
    features : array, shape (n_times, n_features)
        Stimulus features at the model's sampling rate.
    rows : array of int, shape (n_rows,) | None
        Sources (rows of the model's output) to keep; None: all of them.
    sfreq : float | None
        Sampling rate of ``features``; checked against the model's when given.
    chunk_seconds : float
        Block length of :meth:`SourceModel.iter_sources` (memory control).

    Returns
    -------
    sources : array, shape (n_rows, n_times), float32
    """
    features = _check_ndim("features", features, 2, "(n_times, n_features)")
    if sfreq is not None:
        _check_sfreq("sfreq", sfreq, model.sfreq, how_to_fix=(
            f"The model works at {model.sfreq:g} Hz: resample the features to that rate."))
    if features.shape[1] != model.n_features:
        raise ValueError(f"Features of the wrong dimension: the model expects "
                         f"{model.n_features} features per sample, got {features.shape[1]}.")
    rows = None if rows is None else np.asarray(rows, np.int64)
    out = np.empty((model.n_sources if rows is None else len(rows), len(features)), np.float32)
    for a, b, block in model.iter_sources(features, chunk_seconds=chunk_seconds):
        out[:, a:b] = block if rows is None else block[rows]
    return out


__all__ = [
    "EncoderSourceModel",
    "JointSourceModel",
    "SourceModel",
    "as_source_model",
    "predict_source_rows",
    "read_source_model",
]
