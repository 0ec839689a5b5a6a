"""Which fMRI sources the prediction tables average over when the held-out stories were not
repeated: the ridge ceiling's top quartile, or every source; never the model's own best."""

import numpy as np

from neurofuse.evaluation.metrics import top_quartile
from neurofuse.evaluation.prediction import _selection, ridge_selection


class _Store:
    """The one method ``_selection`` reads for fMRI: ``fmri(subject, story)``."""

    def __init__(self, n_repeats, n_sources=40, n_trs=30, seed=0):
        rng = np.random.default_rng(seed)
        self.data = {s: rng.standard_normal((n_repeats, n_sources, n_trs))
                     for s in ("a", "b")}

    def fmri(self, subject, story):
        return self.data[story]


def test_unrepeated_stories_take_the_ridge_quartile_or_every_source():
    ds = _Store(n_repeats=1)
    ridge_r = np.random.default_rng(1).uniform(-0.1, 0.6, 40)
    sel, what = _selection(ds, "S03", "fmri", ["a", "b"], ridge_r)
    np.testing.assert_array_equal(sel, top_quartile(ridge_r))
    assert sel.sum() == 10 and what == "top-quartile sources (ridge r)"
    sel, what = _selection(ds, "S03", "fmri", ["a", "b"], None)
    assert sel.all() and sel.shape == (40,) and what.startswith("all sources")


def test_repeated_stories_select_by_repeatability_whatever_ridge_says():
    ds = _Store(n_repeats=2)
    sel, what = _selection(ds, "S03", "fmri", ["a", "b"], np.arange(40.0))
    assert what == "top-quartile sources (repeatability)" and sel.sum() == 10
    assert not np.array_equal(sel, top_quartile(np.arange(40.0)))  # not the ridge's quartile


def test_ridge_selection_keeps_only_the_ridge_maps():
    r = np.arange(3.0)
    maps = {("S01", "meg", "ridge"): r, ("S01", "meg", "neurofuse"): r + 1,
            ("S03", "fmri", "ridge"): r + 2}
    out = ridge_selection(maps)
    assert set(out) == {("S01", "meg"), ("S03", "fmri")}
    np.testing.assert_array_equal(out[("S03", "fmri")], r + 2)
