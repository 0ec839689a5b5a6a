"""Source recovery of the inverses with the joint model's prediction as prior mean
(``"neurofuse+MNE"``, ``"neurofuse+fMNE"``) and their ``+smooth`` variants (the update
smoothed, the mean kept)."""

import numpy as np
import pytest

from neurofuse.data.store import read_dataset
from neurofuse.evaluation.metrics import spatial_r, temporal_r
from neurofuse.evaluation.recovery import posterior_methods, source_recovery
from neurofuse.evaluation.smoothing import resolve_smoother, smooth_estimate, smooth_update

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENCODER = dict(d_model=8, n_layers=1, n_heads=2, d_ff=16, window=10, source_fwhm=12.0)


@pytest.fixture(scope="module")
def ds(tiny_study):
    return read_dataset(tiny_study)


@pytest.fixture(scope="module")
def model(ds):
    import torch

    from neurofuse.systems.joint.model import JointModel

    torch.manual_seed(0)
    return JointModel.from_dataset(ds, encoder_kwargs=ENCODER)


def test_posterior_method_names(model):
    assert posterior_methods(("fMNE", "MNE", "dSPM"), model) == ["neurofuse+fMNE",
                                                                 "neurofuse+MNE"]
    assert posterior_methods(("dSPM", "sLORETA", "eLORETA"), model) == []
    assert posterior_methods(("MNE",), None) == []


def test_smooth_update_smooths_only_the_update(ds):
    _, k = resolve_smoother(12.0, vertices=ds.metadata["template"]["vertices"])
    rng = np.random.default_rng(0)
    m = rng.standard_normal((k.shape[0], 30))
    u = rng.standard_normal((k.shape[0], 30))
    ours = smooth_update((m + u).astype(np.float32), m, k, chunk_size=7)
    np.testing.assert_allclose(ours, m + k @ u, rtol=1e-5, atol=1e-5)
    scaled = smooth_update((3 * m + u).astype(np.float32), m, k, prior_scale=3.0)
    np.testing.assert_allclose(scaled, 3 * m + k @ u, rtol=1e-5, atol=1e-5)
    zero = np.zeros_like(m)
    np.testing.assert_allclose(smooth_update(u, zero, k), smooth_estimate(u, k), rtol=1e-6,
                               atol=1e-7)
    with pytest.raises(ValueError, match="'prior_mean' must have the estimate's shape"):
        smooth_update(u, m[:, :3], k)
    for bad in (float("nan"), -1.0):  # NaN gave an all-NaN estimate, -1 a wrong one
        with pytest.raises(ValueError, match="'prior_scale' must be"):
            smooth_update(u, m, k, prior_scale=bad)


@pytest.mark.slow  # two full-source-space MNE operators on a busy 2-core machine (~35 s)
def test_source_recovery_scores_the_posterior(ds, tiny_study):
    """With the simulation's own encoder as the model (its prediction is the truth up to
    the world's noise-free response), the rows appear after the inverses; their scores are
    those of a m + K(y − a G m) from run_inverses and of a m + S K(y − a G m); and a prior
    mean that knows the sources beats the inverse alone."""
    from neurofuse.baselines.inverse import run_inverses
    from neurofuse.evaluation.source_model import predict_source_rows, read_source_model

    model = read_source_model(tiny_study / "ground_truth" / "encoding")
    story = ds.splits["test"][0]
    scores, kept = source_recovery(ds, model=model, methods=("MNE",), smooth_fwhm=12.0,
                                   keep={"story": story, "subject": "S01",
                                         "sources": [0, 5], "seconds": 1.0})
    assert list(scores) == ["neurofuse", "MNE", "neurofuse+MNE", "MNE+smooth",
                            "neurofuse+MNE+smooth"]
    assert {"neurofuse+MNE", "neurofuse+MNE+smooth"} <= set(kept)
    truth = np.asarray(ds.ground_truth(f"sources/{story}"), np.float32)
    m = predict_source_rows(model, ds.features(story), sfreq=ds.sfreq)
    fitted = {}
    est = run_inverses(ds, "S01", story, methods=("MNE",), prior_mean=m, fitted_scale=fitted)
    post = np.asarray(est["prior+MNE"])
    assert fitted["prior"] > 0
    assert np.abs(post - fitted["prior"] * m).max() > 1e-3 * np.abs(post).max()  # an update
    _, k = resolve_smoother(12.0, vertices=ds.metadata["template"]["vertices"])
    smooth = smooth_update(post, m, k, prior_scale=fitted["prior"])
    for name, e in (("neurofuse+MNE", post), ("neurofuse+MNE+smooth", smooth)):
        assert scores[name]["temporal_r"] == pytest.approx(
            float(np.nanmean(temporal_r(e, truth))), rel=1e-4), name
        assert scores[name]["spatial_r"] == pytest.approx(
            float(np.nanmean(spatial_r(e, truth))), rel=1e-4), name
    for metric in ("temporal_r", "spatial_r"):
        assert scores["neurofuse+MNE"][metric] > scores["MNE"][metric] + 0.1, metric


def test_bars_and_summary_show_the_posterior():
    from neurofuse.evaluation.demo import summary_line
    from neurofuse.viz import plot_recovery_bars

    names = ["neurofuse", "MNE", "neurofuse+MNE", "MNE+smooth", "neurofuse+MNE+smooth"]
    rows = [{"method": m, "meg_cnr": 1.0, "fmri_cnr": 0.3, "temporal_r": 0.1 * i,
             "spatial_r": 0.1} for i, m in enumerate(names)]
    fig = plot_recovery_bars(rows)
    bars = {p.get_label(): p.patches[0] for p in fig.axes[0].containers}
    colour = {m: tuple(bars[m].get_facecolor()) for m in bars}
    assert len({colour["neurofuse"], colour["MNE"], colour["neurofuse+MNE"]}) == 3
    assert colour["neurofuse+MNE+smooth"] == colour["neurofuse+MNE"]
    assert bars["neurofuse+MNE+smooth"].get_hatch() and not bars["neurofuse+MNE"].get_hatch()
    line = summary_line({"source_recovery": [
        {"method": "neurofuse+fMNE", "temporal_r": 0.4, "spatial_r": 0.3}]})
    assert "neurofuse+fMNE temporal r 0.400 / spatial r 0.300" in line
