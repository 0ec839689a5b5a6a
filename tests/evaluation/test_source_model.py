"""The source-model protocol: any stimulus -> fsaverage sources map plugs into the evaluations."""

import numpy as np
import pytest

from neurofuse.evaluation.source_model import (
    SourceModel,
    as_source_model,
    predict_source_rows,
)


class _LinearSourceModel:
    """A minimal user model: sources = W @ features, on a few fsaverage vertices."""

    sfreq = 50.0

    def __init__(self, rng, n_features=3):
        self.vertices = [np.array([0, 5, 9]), np.array([2, 4])]
        self.n_sources = 5
        self.n_features = n_features
        self.W = rng.standard_normal((self.n_sources, n_features)).astype(np.float32)

    def iter_sources(self, features, *, chunk_seconds=60.0):
        chunk = max(1, round(chunk_seconds * self.sfreq))
        for a in range(0, len(features), chunk):
            b = min(a + chunk, len(features))
            yield a, b, self.W @ np.asarray(features[a:b], np.float32).T


def test_any_object_with_the_protocol_is_a_source_model():
    rng = np.random.default_rng(0)
    model = _LinearSourceModel(rng)
    assert isinstance(model, SourceModel)
    assert as_source_model(model) is model
    features = rng.standard_normal((237, 3)).astype(np.float32)
    ref = model.W @ features.T
    np.testing.assert_allclose(predict_source_rows(model, features, chunk_seconds=0.3), ref,
                               rtol=1e-6)
    rows = np.array([4, 0])
    np.testing.assert_allclose(predict_source_rows(model, features, rows, sfreq=50.0), ref[rows],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="wrong dimension"):
        predict_source_rows(model, features[:, :2])
    with pytest.raises(ValueError, match="sfreq"):
        predict_source_rows(model, features, sfreq=100.0)


def test_objects_without_the_protocol_are_refused():
    class NoSources:
        sfreq, n_features, n_sources, vertices = 50.0, 3, 5, [np.arange(3), np.arange(2)]

    assert not isinstance(NoSources(), SourceModel)
    with pytest.raises(TypeError, match="source model"):
        as_source_model(NoSources())
    with pytest.raises(FileNotFoundError, match="no model.json"):
        as_source_model("/nonexistent/folder")


def test_encoder_adapter_equals_the_encoder(tiny_study):
    from neurofuse.data.store import read_dataset
    from neurofuse.simulation.encoding import SourceEncodingModel

    encoder = SourceEncodingModel.load(tiny_study / "ground_truth" / "encoding")
    model = as_source_model(encoder)
    assert isinstance(model, SourceModel) and model.n_sources == encoder.n_sources
    ds = read_dataset(tiny_study)
    features = np.asarray(ds.features(ds.stories[0])[:300])
    np.testing.assert_array_equal(predict_source_rows(model, features, chunk_seconds=1.1),
                                  encoder.transform(features))
