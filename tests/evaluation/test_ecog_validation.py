"""ECoG validation: mapping, permutation and identification tests, leak-free CV, the whole run."""

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from neurofuse.evaluation.ecog import (
    circular_shift_test,
    fdr_significant,
    fsaverage_source_positions,
    identification_shift_test,
    make_cv_folds,
    nearest_sources,
    predict_fold,
    run_ecog_validation,
    segment_identification,
    training_subset,
)


def _smooth_noise(rng, shape, sigma=3.0):
    """Autocorrelated Gaussian noise along the last axis (unit variance)."""
    x = gaussian_filter1d(rng.standard_normal(shape), sigma, axis=-1, mode="wrap")
    return x / x.std(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------- mapping
def test_nearest_sources_matches_brute_force():
    rng = np.random.default_rng(0)
    src = rng.uniform(-0.07, 0.07, (500, 3))
    src_hemi = np.where(src[:, 0] < 0, "lh", "rh")
    pts = rng.uniform(-0.07, 0.07, (60, 3))
    pts_hemi = rng.choice(["lh", "rh"], 60)  # some points sit on the "wrong" side of x = 0
    idx, dist = nearest_sources(pts, src, k=4, points_hemi=pts_hemi, source_hemi=src_hemi)
    for i in range(len(pts)):
        cand = np.flatnonzero(src_hemi == pts_hemi[i])
        d = np.linalg.norm(src[cand] - pts[i], axis=1)
        order = np.argsort(d)[:4]
        np.testing.assert_array_equal(idx[i], cand[order])
        np.testing.assert_allclose(dist[i], d[order])
    # Without hemispheres: the global nearest neighbour.
    idx1, _ = nearest_sources(pts, src)
    brute = np.argmin(((pts[:, None] - src[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(idx1[:, 0], brute)


def test_fsaverage_source_positions_on_pial():
    from neurofuse.anatomy.template import read_template_surface

    pos, hemi = fsaverage_source_positions()
    assert pos.shape == (8196, 3) and (hemi == "lh").sum() == 4098
    lh_pial = read_template_surface("pial", "lh")[0] * 1e-3
    d = np.min(np.linalg.norm(pos[hemi == "lh"][:50, None] - lh_pial[None], axis=2), axis=1)
    assert d.max() < 1e-9  # source vertices are pial vertices
    assert (pos[hemi == "lh", 0] < 0.01).mean() > 0.99


# ---------------------------------------------------------------------------- statistics
def test_permutation_test_false_positive_rate_near_alpha():
    rng = np.random.default_rng(1)
    pred = _smooth_noise(rng, (2000, 1500))
    true = _smooth_noise(rng, (2000, 1500))  # independent of pred
    r, p = circular_shift_test(pred, true, n_permutations=400, seed=2)
    np.testing.assert_allclose(r[:5], [np.corrcoef(a, b)[0, 1] for a, b in zip(pred[:5], true[:5])],
                               atol=1e-10)
    # Uncorrected: ~alpha rejections (binomial sd 0.005 at n = 2000).
    assert 0.035 < np.mean(p < 0.05) < 0.065
    assert 0.004 < np.mean(p < 0.01) < 0.02
    # FDR under the complete null: almost never a discovery.
    assert fdr_significant(p, 0.05).sum() <= 2
    # One-sided: also ~alpha under the null.
    _, pg = circular_shift_test(pred, true, n_permutations=400, alternative="greater", seed=2)
    assert 0.035 < np.mean(pg < 0.05) < 0.065
    # A real effect is detected; an anti-correlated one only by the two-sided test.
    r2, p2 = circular_shift_test(pred[:50], pred[:50] + 2 * true[:50], n_permutations=400, seed=3)
    assert np.all(p2 < 0.01) and np.all(r2 > 0.3)
    _, p3 = circular_shift_test(pred[:50], -pred[:50] - 2 * true[:50], n_permutations=400, seed=3)
    _, p4 = circular_shift_test(pred[:50], -pred[:50] - 2 * true[:50], n_permutations=400,
                                alternative="greater", seed=3)
    assert np.all(p3 < 0.01) and np.all(p4 > 0.9)


def test_autocorrelation_is_respected():
    """A naive i.i.d. null flags smooth noise; the circular-shift null stays near alpha."""
    from scipy.stats import norm

    rng = np.random.default_rng(4)
    pred = _smooth_noise(rng, (2000, 1000), sigma=20.0)  # ~15 independent samples per row
    true = _smooth_noise(rng, (2000, 1000), sigma=20.0)
    r, p = circular_shift_test(pred, true, n_permutations=300, seed=5)
    naive_p = 2 * norm.sf(np.abs(r) * np.sqrt(1000))
    assert np.mean(naive_p < 0.05) > 0.3  # the naive test is badly anti-conservative
    assert 0.03 < np.mean(p < 0.05) < 0.075


def test_fdr_matches_benjamini_hochberg():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    # BH by hand: largest k with p_(k) <= k alpha / m, alpha = 0.05, m = 10 -> k = 2.
    np.testing.assert_array_equal(fdr_significant(p, 0.05), [True, True] + [False] * 8)


def test_identification_chance_on_noise_and_perfect_on_copy():
    rng = np.random.default_rng(6)
    true = _smooth_noise(rng, (300, 3000))
    noise = _smooth_noise(rng, (300, 3000))
    # The shift test: accuracy at chance, false positives near alpha.
    acc, p = identification_shift_test(noise, true, segment=500, step=25, n_null=100, seed=7)
    assert abs(acc.mean() - 0.5) < 0.01
    assert 0.02 < np.mean(p < 0.05) < 0.09
    acc1, p1 = identification_shift_test(true, true, segment=500, step=25, n_null=100, seed=7)
    assert np.all(acc1 == 1.0) and np.all(p1 == 1 / 101)
    assert fdr_significant(p1, 0.05).all()
    # The paper's trials: accuracy at chance on noise and perfect on a copy ...
    acc_t, p_t = segment_identification(noise, true, segment=500, n_trials=400, seed=7)
    assert abs(acc_t.mean() - 0.5) < 0.02
    assert np.corrcoef(acc_t, acc)[0, 1] > 0.8  # both estimate the same accuracy
    # ... but its binomial test treats overlapping trials as independent: far too liberal.
    assert np.mean(p_t < 0.05) > 0.15
    acc_t, p_t = segment_identification(true, true, segment=500, n_trials=400, seed=7)
    assert np.all(acc_t == 1.0) and np.all(p_t < 1e-50)
    # A moderately noisy prediction is identified most of the time.
    acc, _ = segment_identification(true[:50] + noise[:50], true[:50], segment=500, n_trials=400,
                                    seed=8)
    assert acc.mean() > 0.9


def test_identification_all_pairs_matches_brute_force():
    rng = np.random.default_rng(12)
    n, L, step = 400, 60, 20  # 20 grid starts, 3-step segments
    true = _smooth_noise(rng, (1, n))[0]
    pred = true + 1.5 * _smooth_noise(rng, (1, n))[0]
    acc, _ = identification_shift_test(pred[None], true[None], segment=L, step=step, n_null=5,
                                       seed=0)

    def seg(x, i):  # circular window starting at grid point i
        return np.take(x, np.arange(i * step, i * step + L), mode="wrap")

    n_g, m = n // step, L // step
    wins = []
    for i in range(n_g):
        r_true = abs(np.corrcoef(seg(pred, i), seg(true, i))[0, 1])
        others = [j for j in range(n_g) if min((j - i) % n_g, (i - j) % n_g) >= m]
        wins += [r_true > abs(np.corrcoef(seg(pred, i), seg(true, j))[0, 1]) for j in others]
    assert acc[0] == pytest.approx(np.mean(wins), abs=1e-12)


def test_identification_edge_length_and_errors():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 200))
    acc, _ = segment_identification(x, x, segment=100, n_trials=50, seed=0)  # only a = 0 or 100
    assert np.all(acc == 1.0)
    with pytest.raises(ValueError, match="two non-overlapping segments"):
        segment_identification(x, x, segment=101)


# ---------------------------------------------------------------------------- cross-validation
def test_cv_folds_never_let_test_minutes_into_training():
    n, gap, max_delay = 9000, 100, 30
    folds = make_cv_folds(n, n_folds=3, gap_samples=gap)
    tested = np.zeros(n, bool)
    for (s, e), train in folds:
        tested[s:e] = True
        assert not np.isin(np.arange(s, e), train).any()
        # Every training sample is more than `gap` samples away from the test block ...
        dist = np.minimum(np.abs(train - s), np.abs(train - (e - 1)))
        assert dist.min() > gap - 1 and not ((train >= s - gap) & (train < e + gap)).any()
        # ... so no delayed-feature window [t - max_delay, t] of a training sample reaches it.
        assert not ((train - max_delay < e) & (train >= s)).any()
        for f in (0.1, 0.25, 0.5, 1.0):
            sub = training_subset(train, f)
            assert np.isin(sub, train).all() and len(sub) == round(f * len(train))
        assert len(training_subset(train, 0.0)) == 0
    assert tested.all()  # the three 10-minute blocks tile a 30-minute story
    with pytest.raises(ValueError, match="do not fit"):
        make_cv_folds(100, n_folds=3, test_samples=40)


def test_predict_fold_reads_only_training_minutes():
    """ECoG outside the training samples (test block, gap, rest) cannot change predictions."""
    rng = np.random.default_rng(10)
    n, n_el = 1500, 5
    features = rng.standard_normal((n, 7)).astype(np.float32)
    streams = [(0, 4), (4, 7)]
    sources = _smooth_noise(rng, (12, n)).astype(np.float32)
    neighbors = np.arange(n_el * 2).reshape(n_el, 2)
    ecog = (sources[neighbors[:, 0]] + 0.5 * rng.standard_normal((n_el, n))).astype(np.float32)
    (test, train_all) = make_cv_folds(n, n_folds=3, gap_samples=10)[1]
    train = training_subset(train_all, 0.5)
    kw = {"test": test, "train": train, "delays": np.array([0, 2, 5]),
          "alphas": np.logspace(-1, 4, 6), "inner_folds": 3, "n_components": 3}
    ref = predict_fold(sources, neighbors, ecog, features, streams, **kw)
    leaky = ecog.copy()
    outside = np.ones(n, bool)
    outside[train] = False
    leaky[:, outside] = np.nan  # any use of these samples would poison the fit
    got = predict_fold(sources, neighbors, leaky, features, streams, **kw)
    for m in ("neurofuse", "ridge"):
        assert np.isfinite(got[m]).all()
        np.testing.assert_array_equal(got[m], ref[m])
    # Zero-shot = the nearest source itself.
    zero = predict_fold(sources, neighbors, ecog, features, streams, **{**kw, "train": []})
    np.testing.assert_array_equal(zero["neurofuse"], sources[neighbors[:, 0], test[0]:test[1]])
    with pytest.raises(ValueError, match="overlap the test block"):
        predict_fold(sources, neighbors, ecog, features, streams,
                     **{**kw, "train": np.arange(test[0], test[0] + 50)})


# ---------------------------------------------------------------------------- the whole run
SMALL_LAYOUT = (
    {"prefix": "G", "kind": "grid", "shape": (3, 4), "target_mm": (58.0, -22.0, 6.0)},
    {"prefix": "D", "kind": "strip", "shape": (1, 4), "target_mm": (32.0, -22.0, 64.0),
     "angle": 90.0},
)


@pytest.fixture(scope="module")
def ecog_data(tiny_study, tmp_path_factory):
    from neurofuse.simulation.ecog import simulate_ecog

    return simulate_ecog(tiny_study, tmp_path_factory.mktemp("ecog") / "ecog", n_subjects=1,
                         story_minutes=1.0, cnr=1.0, layout=SMALL_LAYOUT, seed=3)


def test_encoder_sources_are_located_on_fsaverage(tiny_study):
    from neurofuse.anatomy import get_source_space, make_template_subject
    from neurofuse.evaluation.source_model import SourceModel, as_source_model

    pred = as_source_model(tiny_study / "ground_truth" / "encoding")
    assert isinstance(pred, SourceModel)
    src = get_source_space(make_template_subject(meg=False), "oct6")
    for got, s in zip(pred.vertices, src):
        np.testing.assert_array_equal(got, s["vertno"])


def test_run_ecog_validation_with_the_ground_truth(tiny_study, ecog_data, tmp_path):
    out = tmp_path / "val"
    val = run_ecog_validation(
        tiny_study / "ground_truth" / "encoding", ecog_data, out, fractions=(0.0, 0.5, 1.0),
        delays_s=(0.0, 0.1, 0.2), n_permutations=200, n_trials=200, segment_seconds=15.0)
    results = json.loads((out / "results.json").read_text())
    assert results == val["results"]
    assert set(results) == {"zero_shot", "trained"}
    assert set(results["zero_shot"]) == {"n_electrodes", "n_significant",
                                         "n_identification_significant"}
    assert results["zero_shot"]["n_electrodes"] == 16
    rows = {(r["method"], r["train_fraction"]): r["top25_r"] for r in results["trained"]}
    assert set(rows) == {(m, f) for m in ("neurofuse", "ridge") for f in (0.0, 0.5, 1.0)}
    assert all(set(r) == {"method", "train_fraction", "top25_r"} for r in results["trained"])
    # The ground truth predicts its own world: most electrodes significant, far above the
    # untrained stimulus model.
    assert results["zero_shot"]["n_significant"] >= 12
    assert rows[("neurofuse", 0.0)] > 0.4 > abs(rows[("ridge", 0.0)])
    recs = json.loads((out / "electrodes.json").read_text())["electrodes"]
    assert len(recs) == 16 and sum(r["significant"] for r in recs) == \
        results["zero_shot"]["n_significant"]
    for name in ("zero_shot_r", "identification", "training_fraction", "trained_difference"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
        assert name in val["figures"]
    with pytest.raises(FileExistsError):
        run_ecog_validation(tiny_study / "ground_truth" / "encoding", ecog_data, out)


def test_joint_model_predictor_equals_predict_sources(tiny_study):
    import torch

    from neurofuse.data.store import read_dataset
    from neurofuse.evaluation.source_model import as_source_model, predict_source_rows
    from neurofuse.systems.joint.model import JointModel
    from neurofuse.systems.joint.predict import predict_sources

    torch.manual_seed(0)
    ds = read_dataset(tiny_study)
    encoder = {"d_model": 8, "n_layers": 2, "n_heads": 2, "d_ff": 16, "window": 20}
    model = JointModel.from_dataset(ds, encoder_kwargs=encoder)
    features = np.array(ds.features(ds.stories[0])[:400])
    rows = np.array([3, 100, 4097, 8000])
    source_model = as_source_model(model)
    got = predict_source_rows(source_model, features, rows, chunk_seconds=1.7)
    ref = predict_sources(model, features)
    np.testing.assert_allclose(got, ref[rows], rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    # With predict_sources' own chunks the blocks are its very computations (recovery scores
    # the joint model through this path: its numbers must not move).
    full = predict_source_rows(source_model, features, chunk_seconds=3.0, sfreq=ds.sfreq)
    np.testing.assert_array_equal(full, predict_sources(model, features, chunk_seconds=3.0))
