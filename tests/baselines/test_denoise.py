"""Cross-fitted and in-sample fMRI denoising (neurofuse.baselines.ridge.denoise)."""

import numpy as np
import pytest

from neurofuse.baselines.ridge import (
    check_fmri_denoise,
    denoise_fmri,
    fit_fmri_ceiling,
    solve_ridge_crossfit,
    solve_ridge_cv_by_groups,
)
from neurofuse.baselines.ridge.solver import _ArraySource
from neurofuse.data.store import read_dataset

ALPHAS = np.logspace(-2, 4, 7)


def _problem(n_groups=6, n=60, p=8, t=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_groups * n, p))
    W = rng.standard_normal((p, t))
    Y = X @ W + 2.0 * rng.standard_normal((n_groups * n, t))
    groups = np.repeat([f"s{i}" for i in range(n_groups)], n)
    return X, Y, groups


def _crossfit(X, Y, groups, **kw):
    return solve_ridge_crossfit(_ArraySource([X], Y, groups), alphas=ALPHAS, **kw)


def test_crossfit_equals_ridge_cv_on_the_other_groups():
    X, Y, groups = _problem()
    preds, alphas = _crossfit(X, Y, groups, n_folds="stories", inner_cv=None)
    assert alphas.shape == (6, 5)
    for i, g in enumerate(dict.fromkeys(groups)):
        other = groups != g
        # reference: the (sklearn-tested) grouped ridge CV fitted without the group
        coef, b, best, _ = solve_ridge_cv_by_groups(X[other], Y[other], groups[other],
                                                    alphas=ALPHAS, cv=None)
        np.testing.assert_allclose(alphas[i], best)
        np.testing.assert_allclose(preds[g], X[groups == g] @ coef + b, rtol=1e-8, atol=1e-10)


def test_kernel_form_equals_statistics_form():
    # 5 groups x 12 rows < 80 features: the kernel form is the default there
    X, Y, groups = _problem(n_groups=5, n=12, p=80, t=3, seed=2)
    X[:, 7] = 1.5  # a constant column: no weight in either form
    dual, a_dual = _crossfit(X, Y, groups, n_folds="stories", _form="dual")
    primal, a_primal = _crossfit(X, Y, groups, n_folds="stories", _form="primal")
    auto, _ = _crossfit(X, Y, groups, n_folds="stories")
    np.testing.assert_array_equal(a_dual, a_primal)
    for g in dual:
        np.testing.assert_allclose(dual[g], primal[g], rtol=1e-7, atol=1e-9)
        np.testing.assert_array_equal(auto[g], dual[g])


@pytest.mark.parametrize("form", ["primal", "dual"])
@pytest.mark.parametrize("poison", [np.nan, 1e8])
def test_crossfit_never_uses_a_group_to_predict_itself(poison, form):
    X, Y, groups = _problem()
    clean, _ = _crossfit(X, Y, groups, n_folds=3, _form=form)
    Yp = Y.copy()
    Yp[groups == "s2"] = poison
    dirty, _ = _crossfit(X, Yp, groups, n_folds=3, _form=form)
    # the poisoned group's own prediction is bit-identical
    np.testing.assert_array_equal(dirty["s2"], clean["s2"])
    # ... while groups whose training part holds it change (folds are round-robin: s2 and
    # s5 share a fold, so s5 does not see it either)
    np.testing.assert_array_equal(dirty["s5"], clean["s5"])
    for g in ("s0", "s1", "s3", "s4"):
        assert not np.allclose(dirty[g], clean[g], equal_nan=False)


def test_check_fmri_denoise_aliases_and_errors():
    assert check_fmri_denoise(True) == "in-sample"
    assert check_fmri_denoise(False) == "none"
    assert check_fmri_denoise("cross-fitted") == "cross-fitted"
    with pytest.raises(ValueError, match="fmri_denoise"):
        check_fmri_denoise("crossfit")


class _Poisoned:
    """A dataset whose fMRI of one story is replaced by a huge constant offset + NaN row."""

    def __init__(self, ds, story, value):
        self._ds, self._story, self._value = ds, story, value

    def __getattr__(self, name):
        return getattr(self._ds, name)

    def fmri(self, subject, story, average=False):
        data = np.array(self._ds.fmri(subject, story, average=average), dtype=np.float64)
        if story == self._story:
            data[...] = self._value
        return data


def test_denoise_fmri_cross_fitted_on_a_store(tiny_study):
    ds = read_dataset(tiny_study)
    stories = ds.splits["train"] + ds.splits["val"]  # 3 stories (the tiny study has 2 train)
    assert len(stories) == 3
    kw = dict(stories=stories, ceiling_kwargs={"alphas": ALPHAS})
    clean = denoise_fmri(ds, "cross-fitted", **kw)["S02"]
    assert set(clean) == set(stories)
    n_trs = ds.fmri("S02", stories[0]).shape[-1]
    assert clean[stories[0]].shape == (8196, n_trs) and clean[stories[0]].dtype == np.float32
    victim = stories[1]
    for value in (np.nan, 1e6):
        dirty = denoise_fmri(_Poisoned(ds, victim, value), "cross-fitted", **kw)["S02"]
        np.testing.assert_array_equal(dirty[victim], clean[victim])
        assert not np.allclose(dirty[stories[0]], clean[stories[0]])
    # in-sample: the ceiling fitted on the story predicts it, so poisoning it changes it
    # (its default training stories, train + val, are these 3)
    ins = denoise_fmri(ds, "in-sample", stories=stories, ceiling_kwargs={"alphas": ALPHAS})
    ins = ins["S02"]
    ins_dirty = denoise_fmri(_Poisoned(ds, victim, 1e6), "in-sample", stories=stories,
                             ceiling_kwargs={"alphas": ALPHAS})["S02"]
    assert not np.allclose(ins_dirty[victim], ins[victim])
    # ... and equals the fMRI ceiling's own prediction
    ceiling = fit_fmri_ceiling(ds, "S02", alphas=ALPHAS)
    np.testing.assert_allclose(ins[victim], ceiling.predict_story(ds, victim), rtol=1e-5,
                               atol=1e-6 * np.abs(ins[victim]).max())
    assert denoise_fmri(ds, "none") == {}
    with pytest.raises(ValueError, match="at least 3"):
        denoise_fmri(ds, "cross-fitted")  # 2 training stories
    with pytest.raises(ValueError, match="auto"):
        denoise_fmri(ds, "auto")
