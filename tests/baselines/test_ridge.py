"""Tests for the ridge ceilings (neurofuse.baselines.ridge)."""

import numpy as np
import pytest

pytest.importorskip("himalaya")
sklearn_linear = pytest.importorskip("sklearn.linear_model")

from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neurofuse.baselines.ridge import (
    BandedRidge,
    StackedRidge,
    fit_fmri_ceiling,
    fit_meg_ceiling,
    ridge_fit,
    solve_ridge_cv_batched,
    solve_ridge_cv_by_groups,
    solve_simplex_lstsq,
    use_ridge_backend,
)
from neurofuse.baselines.ridge.solver import _ArraySource
from neurofuse.data.store import read_dataset
from neurofuse.stimulus.delays import make_delayed, resample_to_tr

ALPHAS = np.logspace(-1, 5, 13)


def _problem(n=240, p=12, t=4, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * rng.uniform(0.2, 5.0, p) + rng.uniform(-3, 3, p)
    Y = X @ rng.standard_normal((p, t)) + noise * rng.standard_normal((n, t)) + 2.0
    return X, Y


def _sklearn_cv(X, Y, groups, folds, alphas):
    """Brute force: SSE over folds of make_pipeline(StandardScaler(), Ridge(alpha))."""
    sse = np.zeros((len(alphas), Y.shape[1]))
    for val_groups in folds:
        val = np.isin(groups, val_groups)
        for i, alpha in enumerate(alphas):
            pipe = make_pipeline(StandardScaler(), sklearn_linear.Ridge(alpha=alpha))
            pred = pipe.fit(X[~val], Y[~val]).predict(X[val])
            sse[i] += ((Y[val] - pred) ** 2).sum(0)
    return sse


@pytest.mark.parametrize("fit_intercept, standardize", [(True, True), (True, False),
                                                        (False, False)])
def test_ridge_fit_equals_sklearn(fit_intercept, standardize):
    X, Y = _problem()
    alpha = np.array([0.1, 3.0, 100.0, 1e4])  # one per target, as sklearn's Ridge allows
    coef, intercept = ridge_fit(X, Y, alpha, fit_intercept=fit_intercept,
                                standardize=standardize)
    ref = sklearn_linear.Ridge(alpha=alpha, fit_intercept=fit_intercept)
    if standardize:
        ref = make_pipeline(StandardScaler(), ref)
    expected = ref.fit(X, Y).predict(X)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(X @ coef + intercept, expected, atol=1e-9 * scale)
    # scalar alpha, batching over targets and a constant column change nothing
    Xc = np.column_stack([X, np.full(len(X), 7.0)])
    coef2, intercept2 = ridge_fit(Xc, Y, 3.0, n_targets_batch=3, fit_intercept=fit_intercept,
                                  standardize=standardize)
    ref = sklearn_linear.Ridge(alpha=3.0, fit_intercept=fit_intercept)
    if standardize:
        ref = make_pipeline(StandardScaler(), ref)
    np.testing.assert_allclose(Xc @ coef2 + intercept2, ref.fit(Xc, Y).predict(Xc),
                               atol=1e-9 * scale)


def test_torch_cpu_backend_equals_numpy_and_restores_backend():
    pytest.importorskip("torch")
    from himalaya.backend import get_backend, set_backend

    X, Y = _problem(seed=1)
    groups = np.repeat(np.arange(4), 60)
    previous = get_backend()
    set_backend("numpy")
    try:
        ref = StackedRidge(ALPHAS, backend="numpy").fit([X[:, :6], X[:, 6:]], Y, groups)
        got = StackedRidge(ALPHAS, backend="torch").fit([X[:, :6], X[:, 6:]], Y, groups)
        assert get_backend().name == "numpy"  # restored after the fit
    finally:
        set_backend(previous)
    np.testing.assert_allclose(got.predict([X[:, :6], X[:, 6:]]),
                               ref.predict([X[:, :6], X[:, 6:]]), rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(got.alphas_, ref.alphas_)


@pytest.mark.gpu
def test_torch_cuda_backend_equals_numpy():
    X, Y = _problem(seed=1)
    groups = np.repeat(np.arange(4), 60)
    ref = StackedRidge(ALPHAS, backend="numpy").fit([X[:, :6], X[:, 6:]], Y, groups)
    got = StackedRidge(ALPHAS, backend="torch_cuda").fit([X[:, :6], X[:, 6:]], Y, groups)
    np.testing.assert_allclose(got.predict([X[:, :6], X[:, 6:]]),
                               ref.predict([X[:, :6], X[:, 6:]]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scoring", ["gram", "direct"])
def test_cv_by_groups_equals_brute_force_sklearn(scoring):
    X, Y = _problem(n=200, p=15, t=5, seed=2, noise=3.0)
    groups = np.repeat(["a", "b", "c", "d", "e"], 40)
    folds = [["a", "d"], ["b", "e"], ["c"]]  # round-robin assignment of cv=3
    sse = _sklearn_cv(X, Y, groups, folds, ALPHAS)
    model = StackedRidge(ALPHAS, cv=3)
    model.fit_source(_ArraySource([X], Y, groups), 1, scoring=scoring)
    np.testing.assert_array_equal(model.alphas_[0], ALPHAS[np.argmin(sse, axis=0)])
    sst = np.zeros(Y.shape[1])
    for val_groups in folds:  # R^2 uses the training mean of each fold
        val = np.isin(groups, val_groups)
        sst += ((Y[val] - Y[~val].mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(model.cv_scores_[0], 1 - sse / sst, rtol=1e-8)
    # the final model is the full-data ridge at the chosen alphas
    coef, intercept, best, _ = solve_ridge_cv_by_groups(X, Y, groups, alphas=ALPHAS, cv=3)
    np.testing.assert_array_equal(best, model.alphas_[0])
    pipe = make_pipeline(StandardScaler(), sklearn_linear.Ridge(alpha=best)).fit(X, Y)
    np.testing.assert_allclose(X @ coef + intercept, pipe.predict(X), rtol=1e-7, atol=1e-7)


def test_solve_ridge_cv_batched_matches_sklearn():
    """Many small problems (one design each), alpha by leave-one-group-out, vs scikit-learn."""
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

    rng = np.random.default_rng(11)
    E, n, k = 4, 300, 5
    X = rng.standard_normal((E, n, k)) * rng.uniform(0.5, 3, (1, 1, k)) + 2.0
    X[1, :, 3] = X[1, :, 2]  # a rank-deficient design
    X[2, :, 4] = 7.0  # a constant column
    y = np.einsum("enk,ek->en", X, rng.standard_normal((E, k))) + 3 * rng.standard_normal((E, n))
    groups = np.arange(n) * 3 // n
    alphas = np.logspace(-2, 4, 7)
    coef, icpt, best = solve_ridge_cv_batched(X, y, groups, alphas)
    for e in range(E):
        sse = [((y[e] - cross_val_predict(
            make_pipeline(StandardScaler(), sklearn_linear.Ridge(alpha=a)), X[e], y[e],
            groups=groups, cv=LeaveOneGroupOut())) ** 2).sum() for a in alphas]
        assert best[e] == alphas[int(np.argmin(sse))]
        ref = make_pipeline(StandardScaler(), sklearn_linear.Ridge(alpha=best[e])).fit(X[e], y[e])
        np.testing.assert_allclose(X[e] @ coef[e] + icpt[e], ref.predict(X[e]), rtol=1e-8,
                                   atol=1e-8)
    # Each problem equals the single-design solver on it.
    c1, b1, a1, _ = solve_ridge_cv_by_groups(X[0], y[0], groups, alphas=alphas, cv="stories")
    np.testing.assert_allclose(coef[0], c1[:, 0], rtol=1e-12)
    assert a1[0] == best[0] and np.isclose(icpt[0], b1[0], rtol=1e-12)
    with pytest.raises(ValueError, match="n_problems"):
        solve_ridge_cv_batched(X[0], y[0], groups, alphas)


def test_cv_alpha_larger_for_noisier_target():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 30))
    signal = X @ rng.standard_normal(30)
    Y = np.column_stack([signal + 0.1 * rng.standard_normal(400),
                         signal + 10.0 * rng.standard_normal(400)])
    _, _, best, _ = solve_ridge_cv_by_groups(X, Y, np.repeat(np.arange(8), 50),
                                             alphas=np.logspace(-2, 6, 33), cv="stories")
    assert best[1] > 30 * best[0], best


def test_simplex_lstsq_is_exact():
    from scipy.optimize import minimize

    rng = np.random.default_rng(4)
    t, K, n = 40, 3, 30
    P = rng.standard_normal((t, n, K))
    P[:5, :, 2] = P[:5, :, 1]  # singular H for a few targets
    y = rng.standard_normal((t, n)) + 2 * P[:, :, 0]
    H = np.einsum("tnk,tnl->tkl", P, P)
    g = np.einsum("tnk,tn->tk", P, y)
    w = solve_simplex_lstsq(H, g)
    assert np.all(w >= 0) and np.allclose(w.sum(1), 1.0)
    for i in range(t):
        f = lambda v, i=i: np.sum((y[i] - P[i] @ v) ** 2)
        ref = minimize(f, np.full(K, 1 / K), method="SLSQP", bounds=[(0, 1)] * K,
                       constraints={"type": "eq", "fun": lambda v: v.sum() - 1},
                       options={"ftol": 1e-14, "maxiter": 500})
        assert f(w[i]) <= ref.fun + 1e-8 * abs(ref.fun)
    with pytest.raises(ValueError, match="at most 10 feature spaces"):
        solve_simplex_lstsq(np.zeros((1, 11, 11)), np.zeros((1, 11)))


def _spaces_problem(seed=5, n_groups=6, n=80):
    rng = np.random.default_rng(seed)
    Xs = [rng.standard_normal((n_groups * n, p)) for p in (8, 10, 6)]
    Y = Xs[1] @ rng.standard_normal((10, 7)) + 0.7 * rng.standard_normal((n_groups * n, 7))
    return Xs, Y, np.repeat(np.arange(n_groups), n)


def test_stacking_weights_convex_and_on_the_informative_space():
    Xs, Y, groups = _spaces_problem()
    model = StackedRidge(ALPHAS, cv="stories").fit(Xs, Y, groups)
    assert model.weights_.shape == (7, 3) and model.alphas_.shape == (3, 7)
    assert np.all(model.weights_ >= 0)
    np.testing.assert_allclose(model.weights_.sum(1), 1.0, rtol=1e-12)
    assert np.all(model.weights_[:, 1] > 0.9), model.weights_
    # predict is the convex combination of the per-space full-data predictions
    per_space = model.predict_spaces(Xs)
    np.testing.assert_allclose(model.predict(Xs),
                               np.einsum("knt,tk->nt", per_space, model.weights_), rtol=1e-10)


def test_stacking_weights_match_lin_et_al_brute_force():
    """Weights = argmin over the simplex of the error of the CV predictions (sklearn)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(6)
    Xs = [rng.standard_normal((300, p)) for p in (6, 5)]
    Y = Xs[0] @ rng.standard_normal((6, 3)) + Xs[1] @ rng.standard_normal((5, 3)) \
        + 2 * rng.standard_normal((300, 3))
    groups = np.repeat(np.arange(5), 60)
    model = StackedRidge(ALPHAS, cv="stories").fit(Xs, Y, groups)
    P = np.zeros((2, 300, 3))
    for g in range(5):
        val = groups == g
        for k, X in enumerate(Xs):
            for j in range(3):
                pipe = make_pipeline(StandardScaler(),
                                     sklearn_linear.Ridge(alpha=model.alphas_[k, j]))
                P[k, val, j] = pipe.fit(X[~val], Y[~val, j]).predict(X[val])
    for j in range(3):
        f = lambda w, j=j: np.sum((Y[:, j] - P[:, :, j].T @ w) ** 2)
        ref = minimize(f, [0.5, 0.5], method="SLSQP", bounds=[(0, 1)] * 2,
                       constraints={"type": "eq", "fun": lambda w: w.sum() - 1},
                       options={"ftol": 1e-15})
        np.testing.assert_allclose(model.weights_[j], ref.x, atol=1e-4)


def test_banded_ridge_runs_and_predicts():
    Xs, Y, groups = _spaces_problem(n_groups=4, n=60)
    model = BandedRidge(np.logspace(-1, 4, 6), n_iter=5, random_state=0).fit(Xs, Y, groups)
    assert model.deltas_.shape == (3, 7)
    pred = model.predict(Xs)
    assert pred.shape == Y.shape
    r = [np.corrcoef(pred[:, j], Y[:, j])[0, 1] for j in range(7)]
    assert min(r) > 0.8
    with pytest.raises(ValueError, match="Use StackedRidge"):
        BandedRidge(max_gib=1e-6).fit(Xs, Y, groups)


def test_input_errors():
    Xs, Y, groups = _spaces_problem(n_groups=3, n=20)
    model = StackedRidge(ALPHAS)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict(Xs)
    with pytest.raises(TypeError, match="list of per-feature-space designs"):
        model.fit(Xs[0], Y, groups)
    with pytest.raises(ValueError, match=r"same n_samples as Y \(60\), but X_list\[1\] has 59"):
        model.fit([Xs[0], Xs[1][:-1]], Y, groups)
    with pytest.raises(ValueError, match=r"X_list\[0\] must have shape \(n_samples, p_k\)"):
        model.fit([Xs[0][:, 0]], Y, groups)
    with pytest.raises(ValueError, match="'groups' must have shape"):
        model.fit(Xs, Y, groups[:-1])
    with pytest.raises(ValueError, match="between 2 and the number of groups"):
        StackedRidge(ALPHAS, cv=4).fit(Xs, Y, groups)
    with pytest.raises(ValueError, match="at least 2 groups"):
        StackedRidge(ALPHAS).fit(Xs, Y, np.zeros(60))
    with pytest.raises(ValueError, match="'alphas' must be"):
        StackedRidge([0.0, 1.0]).fit(Xs, Y, groups)
    with pytest.raises(ValueError, match="contains 1 NaN"):
        Y_bad = Y.copy()
        Y_bad[3, 2] = np.nan
        model.fit(Xs, Y_bad, groups)
    model.fit(Xs, Y, groups)
    with pytest.raises(ValueError, match="widths"):
        model.predict(Xs[:2])
    with pytest.raises(ValueError, match="same n_samples"):
        ridge_fit(Xs[0], Y[:-1], 1.0)
    with pytest.raises(ValueError, match=r"'alpha' must be a scalar or have shape \(n_targets,\)"):
        ridge_fit(Xs[0], Y, [1.0, 2.0])
    with pytest.raises(ValueError, match="'n_targets_batch' must be an int >= 1, got 0"):
        ridge_fit(Xs[0], Y, 1.0, n_targets_batch=0)
    with pytest.raises(TypeError, match="'n_targets_batch' must be an int, got float"):
        ridge_fit(Xs[0], Y, 1.0, n_targets_batch=2.0)
    with pytest.raises(ValueError, match="Invalid value for the 'backend' parameter"), \
            use_ridge_backend("jax"):
        pass


# ------------------------------------------------------------------------------------------
# ceilings on the tiny simulated study
# ------------------------------------------------------------------------------------------
MEG_DELAYS = np.arange(0, 0.601, 0.06)  # every 3rd paper delay: keeps the test fast


@pytest.fixture(scope="module")
def tiny_ds(tiny_study):
    return read_dataset(tiny_study)


@pytest.fixture(scope="module")
def meg_ceiling(tiny_ds):
    return fit_meg_ceiling(tiny_ds, "S01", delays_s=MEG_DELAYS)


def test_meg_ceiling_predicts_held_out_story(tiny_ds, meg_ceiling):
    ds, ceil = tiny_ds, meg_ceiling
    assert ceil.stories == ds.splits["train"] + ds.splits["val"]
    assert ceil.feature_spaces == [["word"], ["phoneme"], ["spectrogram"]]
    w = ceil.model.weights_
    assert w.shape == (306, 3) and np.all(w >= 0) and np.allclose(w.sum(1), 1)
    (test_story,) = ds.splits["test"]
    pred = ceil.predict_story(ds, test_story)
    assert pred.shape == (306, ds.n_times(test_story))
    # exact: the stacked model applied to per-story delayed designs built by hand
    feats = np.asarray(ds.features(test_story))
    Xs = [make_delayed(feats[:, a:b], ceil.delays) for a, b in ds.feature_streams.values()]
    np.testing.assert_allclose(pred, ceil.model.predict(Xs).T, rtol=1e-10, atol=1e-12)
    # The tiny study has CNR 1 and 2 test repeats, so a perfect model reaches
    # r = 1 / sqrt(1 + 1/2) = 0.82 and chance is |r| < ~0.06 over 1200 samples; the ridge
    # gets r ~ 0.6 on most sensors (0.64 median at the time of writing).
    r = ceil.evaluate(ds)
    assert r.shape == (306,)
    assert np.median(r) > 0.4 and np.percentile(r, 10) > 0.3, np.percentile(r, [10, 50])
    np.testing.assert_allclose(ceil.evaluate_story(ds, test_story), r, rtol=1e-10)


def test_fmri_ceiling_predict_story_is_exact(tiny_ds):
    ds = tiny_ds
    ceil = fit_fmri_ceiling(ds, "S02")
    np.testing.assert_array_equal(ceil.delays, [1, 2, 3, 4])  # 2, 4, 6, 8 s at TR 2 s
    assert ceil.feature_spaces == [["word", "phoneme", "spectrogram"]]
    assert ceil.model.alphas_.shape == (1, 8196)
    story = ds.splits["train"][0]  # training stories: the denoising use of the ceiling
    pred = ceil.predict_story(ds, story)
    n_trs = ds.fmri("S02", story).shape[-1]
    assert pred.shape == (8196, n_trs)
    binned = resample_to_tr(np.asarray(ds.features(story)), ds.sfreq, ds.tr)
    np.testing.assert_allclose(pred, ceil.model.predict([make_delayed(binned, [1, 2, 3, 4])]).T,
                               rtol=1e-10, atol=1e-12)
    r = ceil.evaluate(ds)
    assert r.shape == (8196,) and np.all(np.isfinite(r))
    # 36 training TRs at CNR 0.3: weak, but the average held-out r must be positive
    # (about 0.25 at the time of writing; misaligned TRs or delays give ~0).
    assert np.mean(r) > 0.05


def test_ceiling_errors_and_banded_option(tiny_ds):
    ds = tiny_ds
    with pytest.raises(ValueError, match="has no meg data"):
        fit_meg_ceiling(ds, "S02")
    with pytest.raises(ValueError, match="whole numbers of samples"):
        fit_meg_ceiling(ds, "S01", delays_s=[0.0, 0.01])
    with pytest.raises(ValueError, match="whole numbers of samples"):
        fit_fmri_ceiling(ds, "S02", delays_s=[1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 training stories"):
        fit_meg_ceiling(ds, "S01", stories=ds.splits["train"][:1])
    # A bool is no number of components (it used to be taken as n_components=1).
    with pytest.raises(TypeError, match="'n_components' must be an int, got bool"):
        fit_meg_ceiling(ds, "S01", n_components=True)
    with pytest.raises(ValueError, match="'n_components' must be an int >= 1.*Pass None"):
        fit_meg_ceiling(ds, "S01", n_components=0)
    ceil = fit_meg_ceiling(ds, "S01", streams=["spectrogram", "phoneme"], banded=True,
                           stories=ds.splits["train"], delays_s=[0.0, 0.1, 0.2], n_iter=2,
                           alphas=np.logspace(1, 4, 4))
    assert ceil.model.deltas_.shape == (2, 306)
    r = ceil.evaluate(ds)
    assert r.shape == (306,) and np.median(r) > 0.1
