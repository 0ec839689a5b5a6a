"""Fair baselines (issue 15, item 4): the classical inverses smoothed with the joint model's own
source smoother, at its width, on its sources; scored as ``"<inverse>+smooth"``."""

import math

import numpy as np
import pytest
import torch

from neurofuse.anatomy import fsaverage_source_positions
from neurofuse.data.store import read_dataset
from neurofuse.evaluation.metrics import spatial_r, temporal_r
from neurofuse.evaluation.pipeline import evaluate_study
from neurofuse.evaluation.smoothing import (
    model_source_fwhm,
    resolve_smoother,
    smooth_estimate,
    smoothed_name,
    source_adjacency_smoother,
)

ENCODER = dict(d_model=8, n_layers=1, n_heads=2, d_ff=16, window=10)
FIT = {"preset": "tiny", "train": {"max_epochs": 2, "meg_first_epochs": 1},
       "encoder": {"source_fwhm": 12.0}}


def _model(ds, fwhm):
    from neurofuse.systems.joint.model import JointModel

    return JointModel.from_dataset(ds, encoder_kwargs={**ENCODER, "source_fwhm": fwhm})


@pytest.fixture(scope="module")
def ds(tiny_study):
    return read_dataset(tiny_study)


@pytest.fixture(scope="module")
def mne_estimate(ds):
    from neurofuse.baselines.inverse import run_inverses

    return np.asarray(run_inverses(ds, "S01", "story-04", methods=["MNE"])["MNE"])


def test_smoothed_inverse_is_the_model_smoother_applied(ds, mne_estimate):
    """Smoothing an inverse at the model's width equals the model's own smoother matrix (the
    buffer its source layer multiplies by) applied to the estimate."""
    model = _model(ds, 12.0)
    fwhm, k = resolve_smoother("model", model=model)
    assert fwhm == model_source_fwhm(model) == 12.0
    est = mne_estimate[:, :300]
    ours = smooth_estimate(est, k, chunk_size=64)  # blocks of time: the same result
    np.testing.assert_array_equal(ours, smooth_estimate(est, k))
    buffer = model.encoder.source_layer.smoother  # torch sparse CSR, float32
    theirs = (buffer.to(torch.float64) @ torch.from_numpy(est.astype(np.float64))).numpy()
    scale = np.abs(est).max()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6 * scale)
    assert np.abs(ours - est).max() > 0.1 * scale  # it did smooth
    # a width given in mm on the dataset's template vertices: the same matrix
    fwhm2, k2 = resolve_smoother(12.0, vertices=ds.metadata["template"]["vertices"])
    assert fwhm2 == 12.0 and abs(k2 - k).max() == 0
    # a plain source layer has no prior to give the inverses
    assert resolve_smoother("model", model=_model(ds, None)) == (None, None)
    assert resolve_smoother("model") == (None, None)


def test_resolve_smoother_errors():
    with pytest.raises(ValueError, match="'smooth_fwhm' must be 'model'"):
        resolve_smoother("wide")
    with pytest.raises(ValueError, match="must be positive|must be > 0|positive"):
        resolve_smoother(-1.0, vertices=[[0], [0]])
    with pytest.raises(ValueError, match="metadata 'template' -> 'vertices'"):
        resolve_smoother(10.0)
    with pytest.raises(ValueError, match=r"must be \(n_sources, n_sources\) = \(5, 5\)"):
        smooth_estimate(np.zeros((5, 3)), np.eye(4))


@pytest.mark.parametrize("fwhm", [8.0, 15.0])
def test_point_source_spread(ds, fwhm):
    """A point source's smoothed estimate: a truncated Gaussian of the width asked for, in the
    point's hemisphere only. Its RMS distance from the point is about √2 σ (√1.9 σ for a flat
    sheet cut at 3σ; the folded cortex packs a few more sources near the cut), its
    half-maximum radius about FWHM / 2."""
    vertices = ds.metadata["template"]["vertices"]
    _, k = resolve_smoother(fwhm, vertices=vertices)
    pos, hemi = fsaverage_source_positions(vertices, surface="white")
    sigma = fwhm / math.sqrt(8 * math.log(2))
    js = np.random.default_rng(0).choice(len(pos), 20, replace=False)
    points = np.zeros((len(pos), len(js)))
    points[js, np.arange(len(js))] = 1.0
    smoothed = smooth_estimate(points, k)
    rms, half = [], []
    for c, j in enumerate(js):
        y = smoothed[:, c].astype(np.float64)
        d = np.linalg.norm(pos - pos[j], axis=1) * 1e3  # mm
        assert np.all(y[hemi != hemi[j]] == 0)
        assert d[y > 0].max() <= 3 * sigma * (1 + 1e-6)
        # rows are normalised, so the peak may sit on a nearby source in a sparser patch
        assert d[np.argmax(y)] < fwhm / 2
        rms.append(math.sqrt(np.sum(y * d**2) / y.sum()))
        half.append(d[y >= y.max() / 2].max())
    assert np.mean(rms) == pytest.approx(math.sqrt(2) * sigma, rel=0.15)
    assert np.mean(half) == pytest.approx(fwhm / 2, rel=0.25)


def test_adjacency_smoother_is_row_stochastic_and_local():
    from neurofuse.anatomy.forward import get_source_space
    from neurofuse.anatomy.subjects import make_template_subject

    src = get_source_space(make_template_subject(meg=False), "oct5")
    k1, k3 = source_adjacency_smoother(src, 1), source_adjacency_smoother(src, 3)
    n = sum(s["nuse"] for s in src)
    assert k1.shape == (n, n)
    np.testing.assert_allclose(k1.sum(axis=1), 1.0)
    np.testing.assert_allclose(k3.sum(axis=1), 1.0)
    assert k3.nnz > k1.nnz  # more steps reach further
    lh = src[0]["nuse"]
    assert k3[:lh, lh:].nnz == 0 and k3[lh:, :lh].nnz == 0  # hemispheres stay apart


# ------------------------------------------------------------------------- in the pipeline


@pytest.fixture(scope="module")
def evaluated(ds, tmp_path_factory):
    """The tiny study evaluated twice in one folder: without smoothed inverses, then with
    (the default: the model's width); the second run reuses the model and the ceilings."""
    out = tmp_path_factory.mktemp("fair")
    plain = evaluate_study(ds, out, fit_config=FIT, methods=("MNE",), smooth_fwhm=None)
    fair = evaluate_study(ds, out, fit_config=FIT, methods=("MNE",))
    return out, plain, fair


@pytest.mark.slow  # the module's evaluation: ridge, a 2-epoch fit, inverses (~40 s idle)
def test_smoothed_rows_in_evaluate_study(ds, evaluated, mne_estimate):
    out, plain, fair = evaluated
    assert [r["method"] for r in plain.source_recovery] == ["neurofuse", "MNE", "neurofuse+MNE"]
    assert [r["method"] for r in fair.source_recovery] == [
        "neurofuse", "MNE", "neurofuse+MNE", "MNE+smooth", "neurofuse+MNE+smooth"]
    assert fair.source_recovery[:3] == plain.source_recovery  # the same model and inverses
    row = fair.source_recovery[3]
    assert set(row) == {"method", "meg_cnr", "fmri_cnr", "temporal_r", "spatial_r"}
    assert (row["meg_cnr"], row["fmri_cnr"]) == (1.0, 0.3)
    # the score is that of the MNE estimate smoothed with the trained model's own smoother
    from neurofuse.systems.joint.model import JointModel

    model = JointModel.load(out / "fit" / "model")
    assert model.encoder.config.source_fwhm == 12.0
    _, k = resolve_smoother("model", model=model)
    truth = np.asarray(ds.ground_truth("sources/story-04"), np.float32)
    est = smooth_estimate(mne_estimate, k)
    assert row["temporal_r"] == pytest.approx(float(np.nanmean(temporal_r(est, truth))),
                                              rel=1e-5)
    assert row["spatial_r"] == pytest.approx(float(np.nanmean(spatial_r(est, truth))), rel=1e-5)
    assert smoothed_name("MNE") in fair.temporal_r_maps and "MNE+smooth" in fair.timecourses
    assert fair.smooth_fwhm == 12.0 and plain.smooth_fwhm is None
    assert not (out / "inverses").exists()  # the smoothed estimates were removed too


@pytest.mark.slow
def test_report_lists_the_smoothed_inverses(ds, evaluated, tmp_path):
    from neurofuse.evaluation.demo import make_study_report, summary_line

    _, _, fair = evaluated
    html = make_study_report(fair, ds, tmp_path / "report.html").read_text()
    assert "MNE+smooth" in html
    assert "smoothed with the joint model&#x27;s own source smoother (12 mm FWHM)" in html
    rows = [{"method": "neurofuse", "temporal_r": 0.3, "spatial_r": 0.2},
            {"method": "fMNE", "temporal_r": 0.1, "spatial_r": 0.15},
            {"method": "fMNE+smooth", "temporal_r": 0.25, "spatial_r": 0.35}]
    line = summary_line({"source_recovery": rows})
    assert "fMNE+smooth temporal r 0.250 / spatial r 0.350" in line


def test_recovery_bars_pair_an_inverse_with_its_smoothed_version():
    from neurofuse.viz import plot_recovery_bars

    rows = [{"method": m, "meg_cnr": 1.0, "fmri_cnr": 0.3, "temporal_r": 0.1 * i,
             "spatial_r": 0.1} for i, m in enumerate(["neurofuse", "MNE", "fMNE",
                                                       "MNE+smooth", "fMNE+smooth"])]
    fig = plot_recovery_bars(rows)
    bars = {p.get_label(): p for p in fig.axes[0].containers}
    colour = {m: tuple(bars[m].patches[0].get_facecolor()) for m in bars}
    assert colour["MNE+smooth"] == colour["MNE"] != colour["fMNE"] == colour["fMNE+smooth"]
    assert bars["MNE+smooth"].patches[0].get_hatch() and not bars["MNE"].patches[0].get_hatch()


def test_mixture_model_smooths_inverses_with_its_learned_mixture(ds):
    # a model whose prior is a learned mixture of widths: the +smooth inverses use that very
    # mixture (the trained smoother), reported by its mean width
    from neurofuse.systems.joint.model import JointModel

    model = JointModel.from_dataset(ds, encoder_kwargs={
        **ENCODER, "source_prior": "mixture", "source_widths": [0, 10, 20]})
    fwhm, smoother = resolve_smoother("model", model=model)
    prior = model.source_prior()
    assert prior["prior"] == "mixture" and fwhm == pytest.approx(prior["mean_fwhm"])
    expected = model.spatial_prior()
    assert (abs(smoother - expected)).max() == 0
    # equal initial weights: the mixture is the mean of identity, 10 mm and 20 mm smoothers
    vertices = model.vertices
    from neurofuse.anatomy.cortex import source_smoother

    mean = (source_smoother(vertices, 10.0) + source_smoother(vertices, 20.0)).toarray() / 3
    mean[np.diag_indices_from(mean)] += 1 / 3
    np.testing.assert_allclose(smoother.toarray(), mean, atol=1e-5)
