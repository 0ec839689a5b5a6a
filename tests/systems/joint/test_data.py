"""Training pieces, repeatability, loss weights and the piece loader."""

from types import SimpleNamespace

import numpy as np
import pytest

from neurofuse.systems.joint.data import (
    PieceLoader,
    loss_weights,
    make_pieces,
    repeatability,
)


class _Lengths(SimpleNamespace):
    """The part of a Dataset that make_pieces reads: sfreq, tr, n_times(story) and whether a
    subject has fMRI (one MEG and one fMRI subject unless ``meg_only``)."""

    subjects = ["M", "F"]

    def n_times(self, story):
        return self.lengths[story]

    def modalities(self, subject):
        return ["meg"] if subject == "M" or getattr(self, "meg_only", False) else ["fmri"]


@pytest.mark.parametrize("sfreq, tr, piece, loss", [(50.0, 2.0, 40.0, 20.0), (50.0, 2.0, 8.0, 4.0),
                                                     (50.0, 2.0, 8.0, 6.0), (10.0, 1.5, 6.0, 6.0)])
def test_make_pieces_loss_windows_tile_each_story(sfreq, tr, piece, loss):
    spt = int(round(sfreq * tr))
    n_piece, n_loss = int(round(piece * sfreq)), int(round(loss * sfreq))
    lengths = {"exact": n_piece, "tail": n_piece + 3 * n_loss + spt,  # last step is partial
               "whole": n_piece + 4 * n_loss, "ragged": 5 * n_piece + 7 * spt + spt // 2 + 1,
               "short": n_piece - spt}
    ds = _Lengths(sfreq=sfreq, tr=tr, lengths=lengths)
    pieces = make_pieces(ds, list(lengths), piece_seconds=piece, loss_seconds=loss)
    assert "short" not in {p.story for p in pieces}  # shorter than one piece: skipped
    for story, n in lengths.items():
        if story == "short":
            continue
        n_whole = n // spt * spt  # only whole TRs are used
        mine = [p for p in pieces if p.story == story]
        hits = np.zeros(n, int)
        for p in mine:
            assert p.n_times == n_piece
            assert p.start % spt == 0 and p.loss_start % spt == 0  # aligned to TRs
            assert 0 <= p.start and p.start + p.n_times <= n_whole
            assert n_piece - n_loss <= p.loss_start < n_piece  # >= piece - loss s of context
            hits[p.start + p.loss_start:p.start + p.n_times] += 1
        # Every sample after the first (piece - loss) s is scored exactly once (no overlap).
        np.testing.assert_array_equal(hits[:n_piece - n_loss], 0)
        np.testing.assert_array_equal(hits[n_piece - n_loss:n_whole], 1)
        np.testing.assert_array_equal(hits[n_whole:], 0)
    assert len([p for p in pieces if p.story == "whole"]) == 5


def test_make_pieces_warns_for_short_stories(catch_logs):
    ds = _Lengths(sfreq=50.0, tr=2.0, lengths={"s": 300, "t": 40})
    with catch_logs("warning") as log:
        assert make_pieces(ds, ["s", "t"], piece_seconds=8.0, loss_seconds=4.0) == []
    assert "shorter than one piece" in log.text
    # the story's own length is named, not its whole TRs only (0.8 s is 0 TRs of 2 s)
    assert "Story s (6.00 s, 3 whole TRs of 2 s)" in log.text
    assert "Story t (0.80 s, 0 whole TRs of 2 s)" in log.text


@pytest.mark.parametrize("kwargs, match", [
    (dict(piece_seconds=41.0, loss_seconds=20.0), "'piece_seconds' must be a whole number of TRs"),
    (dict(piece_seconds=40.0, loss_seconds=19.5), "'loss_seconds' must be a whole number of TRs"),
    (dict(piece_seconds=20.0, loss_seconds=40.0), "must not exceed piece_seconds"),
    (dict(piece_seconds=0.0, loss_seconds=0.0), "piece_seconds"),
])
def test_make_pieces_errors(kwargs, match):
    ds = _Lengths(sfreq=50.0, tr=2.0, lengths={"s": 5000})
    with pytest.raises(ValueError, match=match):
        make_pieces(ds, ["s"], **kwargs)


def test_make_pieces_of_a_meg_only_store_need_whole_samples_not_trs():
    """Without fMRI nothing is per TR: 7.5-s pieces scored on their last 3.3 s tile a story."""
    ds = _Lengths(sfreq=50.0, tr=2.0, lengths={"s": 1201}, meg_only=True)
    pieces = make_pieces(ds, ["s"], piece_seconds=7.5, loss_seconds=3.3)
    hits = np.zeros(1201, int)
    for p in pieces:
        assert p.n_times == 375 and p.start + p.n_times <= 1201
        hits[p.start + p.loss_start:p.start + p.n_times] += 1
    np.testing.assert_array_equal(hits[375 - 165:], 1)  # every sample after the context once
    with pytest.raises(ValueError, match=r"'piece_seconds' must be a whole number of samples "
                                         r"\(0.02 s\), got 7.51 s"):
        make_pieces(ds, ["s"], piece_seconds=7.51, loss_seconds=3.3)
    ds.meg_only = False  # with an fMRI subject the same pieces are refused
    with pytest.raises(ValueError, match="'piece_seconds' must be a whole number of TRs"):
        make_pieces(ds, ["s"], piece_seconds=7.5, loss_seconds=3.3)


@pytest.mark.parametrize("cnr", [0.3, 1.0, 3.0])
def test_repeatability_matches_analytic_expectation(cnr):
    """Signal + independent noise at CNR c: E[r] between repeats = c^2 / (1 + c^2)."""
    rng = np.random.default_rng(0)
    n_rep, n_targets, n_times = 3, 20, 20_000
    signal = rng.standard_normal((n_targets, n_times)) * rng.uniform(0.5, 2, (n_targets, 1))
    sigma = signal.std(1, keepdims=True) / cnr
    data = signal + sigma * rng.standard_normal((n_rep, n_targets, n_times))
    r = repeatability(data)
    assert r.shape == (n_targets,)
    # Each r has a standard error below 1 / sqrt(n_times) = 0.007.
    np.testing.assert_allclose(r, cnr**2 / (1 + cnr**2), atol=0.03)
    assert abs(r.mean() - cnr**2 / (1 + cnr**2)) < 0.01


def test_repeatability_clips_at_zero_and_needs_two_repeats():
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((2, 200, 100))
    r = repeatability(noise)
    assert r.min() == 0.0 and np.all(r < 0.5)  # some pairs correlate negatively by chance
    tesla = repeatability(noise * 1e-13)  # scale-free
    np.testing.assert_allclose(tesla, r, atol=1e-9)
    with pytest.raises(ValueError, match=">= 2 repeats"):
        repeatability(noise[:1])


def test_loss_weights_use_val_not_test(store_factory):
    # CNR 3 on channel 0 and 0.2 on channel 4 in the val story; the reverse in the test story.
    val_noise, test_noise = np.array([1 / 3, 1, 1, 1, 5]), np.array([5, 1, 1, 1, 1 / 3])
    ds = store_factory(meg_noise={"val": val_noise, "test": test_noise})
    w = loss_weights(ds, "M1", "meg")
    assert w.shape == (5,) and np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    expected = repeatability(ds.meg("M1", "val-0"))
    np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-12)
    assert w[0] > 5 * w[4]  # the repeatable channel dominates, as in the val story
    from_test = loss_weights(ds, "M1", "meg", stories=["test-0"])
    assert from_test[4] > 5 * from_test[0]  # what using the test story would have given
    # fMRI likewise sums to 1; 'uniform' is uniform.
    assert loss_weights(ds, "F1", "fmri").sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(loss_weights(ds, "M1", "meg", mode="uniform"), np.full(5, 0.2))


def test_loss_weights_without_repeated_val_story_are_uniform(store_factory, catch_logs):
    # Only the test story is repeated: it must not be used, so the weights fall back to uniform.
    ds = store_factory(n_repeats={"val": 1, "test": 4},
                       meg_noise={"test": np.array([0.1, 1, 1, 1, 10])})
    with catch_logs("warning") as log:
        w = loss_weights(ds, "M1", "meg")
    np.testing.assert_array_equal(w, np.full(5, 0.2))
    assert "uniform" in log.text
    with pytest.raises(ValueError, match="mode"):
        loss_weights(ds, "M1", "meg", mode="repeatibility")


def _loader(ds, pieces, **kwargs):
    return PieceLoader(ds, pieces, meg_subjects=["M1"], fmri_subjects=["F1"], **kwargs)


def test_piece_loader_batches_hold_the_right_data(small_store):
    ds = small_store
    spt = int(ds.tr * ds.sfreq)
    pieces = make_pieces(ds, ds.splits["train"] + ds.splits["val"], piece_seconds=40.0,
                         loss_seconds=20.0)
    loader = _loader(ds, pieces, batch_size=5, shuffle=True, seed=3)
    assert len(loader) == -(-len(pieces) // 5)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader)
    batch = batches[0]
    order = np.arange(len(pieces))
    np.random.default_rng([3, 0]).shuffle(order)
    first = [pieces[i] for i in order[:5]]
    meg_scale = 1 / np.std(ds.meg("M1", ds.subject_stories("M1", "meg")[0])[0])
    fmri_scale = 1 / np.std(ds.fmri("F1", ds.subject_stories("F1", "fmri")[0])[0])
    assert batch["features"].shape == (5, first[0].n_times, ds.n_features)
    assert batch["n_real"] == 5 and batch["weight"] == 1.0
    np.testing.assert_array_equal(batch["loss_start"], [p.loss_start for p in first])
    meg, rows = batch["meg"]["M1"]
    fmri, _ = batch["fmri"]["F1"]
    np.testing.assert_array_equal(rows, np.arange(5))
    assert fmri.shape == (5, first[0].n_times // spt, 8)
    for i, p in enumerate(first):
        np.testing.assert_allclose(batch["features"][i], ds.features(p.story)[p.start:p.start + p.n_times])
        avg = ds.meg("M1", p.story, average=True)[:, p.start:p.start + p.n_times].T
        np.testing.assert_allclose(meg[i], avg * meg_scale, rtol=1e-5, atol=1e-6)
        tr0 = p.start // spt
        avg = ds.fmri("F1", p.story, average=True)[:, tr0:tr0 + p.n_times // spt].T
        np.testing.assert_allclose(fmri[i], avg * fmri_scale, rtol=1e-5, atol=1e-6)
    # Each epoch is a permutation of all pieces; (seed, epoch) fixes the order.
    def keys(batches):
        return [(s, st) for b in batches for s, st in zip(*_ids(b, ds))]
    assert sorted(keys(batches)) == sorted((p.story, p.start) for p in pieces)
    assert keys(loader.epoch(1)) != keys(batches)
    assert keys(_loader(ds, pieces, batch_size=5, seed=3).epoch(1)) == keys(loader.epoch(1))


def _ids(batch, ds):
    """(story, start) of each piece of a batch, recovered from its features."""
    stories, starts = [], []
    for feats in batch["features"]:
        for story in ds.stories:
            f = np.asarray(ds.features(story))
            hit = np.flatnonzero(np.all(f[:len(f) - len(feats) + 1, None] == feats[0], axis=-1)[:, 0])
            if len(hit):
                stories.append(story)
                starts.append(int(hit[0]))
                break
    return stories, starts


@pytest.mark.parametrize("n_pieces", [12, 13, 15])
def test_piece_loader_splits_global_batches_across_ranks(small_store, n_pieces):
    ds = small_store
    pieces = make_pieces(ds, ds.stories, piece_seconds=40.0, loss_seconds=20.0)[:n_pieces]
    assert len(pieces) == n_pieces
    single = list(_loader(ds, pieces, batch_size=4, seed=1).epoch(2))
    ranks = [list(_loader(ds, pieces, batch_size=4, seed=1, rank=r, world_size=2).epoch(2))
             for r in range(2)]
    # Every rank yields every batch (DDP needs the same number of backward passes).
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for one, b0, b1 in zip(single, *ranks):
        n_global = one["n_real"]
        assert b0["n_real"] + b1["n_real"] == n_global
        # Weighted means over ranks equal the mean over the global batch.
        assert b0["weight"] + b1["weight"] == pytest.approx(2.0)
        for b in (b0, b1):
            assert b["weight"] == pytest.approx(b["n_real"] * 2 / n_global)
        real = [b for b in (b0, b1) if b["n_real"]]
        np.testing.assert_array_equal(
            np.sort(np.concatenate([b["features"][:, 0, 0] for b in real])),
            np.sort(one["features"][:, 0, 0]))
        for b in (b0, b1):
            if not b["n_real"]:  # a stand-in piece, so the rank can still take part
                assert len(b["features"]) == 1
    with pytest.raises(ValueError, match="divisible"):
        _loader(ds, pieces, batch_size=5, world_size=2)


def test_denoised_fmri_targets_replace_training_data(small_store):
    """Footnote 2: replacement targets are used for the given stories only, shapes checked."""
    from neurofuse.data.store import read_dataset
    from neurofuse.systems.joint.data import PieceLoader, make_pieces

    ds = read_dataset(small_store) if not hasattr(small_store, "splits") else small_store
    sub = next(s for s in ds.subjects if "fmri" in ds.modalities(s))
    story = ds.splits["train"][0]
    shape = ds.fmri(sub, story).shape[1:]
    fake = np.arange(np.prod(shape), dtype=float).reshape(shape)
    pieces = [p for p in make_pieces(ds, [story])][:1]
    plain = PieceLoader(ds, pieces, batch_size=1, shuffle=False, fmri_subjects=[sub])
    swapped = PieceLoader(ds, pieces, batch_size=1, shuffle=False, fmri_subjects=[sub],
                          fmri_targets={sub: {story: fake}})
    a = plain.load(pieces)["fmri"][sub][0][0]
    b = swapped.load(pieces)["fmri"][sub][0][0]
    n = int(round(ds.tr * ds.sfreq))
    expected = fake[:, pieces[0].start // n: pieces[0].start // n + pieces[0].n_times // n].T
    np.testing.assert_allclose(b / swapped.scales[("fmri", sub)], expected, rtol=1e-5)
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="must have shape"):
        PieceLoader(ds, pieces, fmri_subjects=[sub], fmri_targets={sub: {story: fake[:, :-1]}})
