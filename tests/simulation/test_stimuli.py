"""Tests for neurofuse.simulation.stimuli: the statistics the synthetic stories promise."""

import numpy as np
import pytest

from neurofuse.simulation.stimuli import StimulusGenerator, Story


@pytest.fixture(scope="module")
def gen():
    return StimulusGenerator()


@pytest.fixture(scope="module")
def story(gen):
    return gen.make_story(400.0, seed=5)


def _sample_interval(story):
    """Index of the phoneme interval holding each sample, by brute force."""
    t = story.times
    idx = np.full(t.size, -1)
    for i, (on, off) in enumerate(zip(story.phoneme_onsets, story.phoneme_offsets, strict=True)):
        idx[(t >= on) & (t < off)] = i
    return idx


def test_story_layout(gen, story):
    assert isinstance(story, Story)
    assert story.features.shape == (int(400.0 * 50), 768 + 44 + 40)
    assert story.features.dtype == np.float32
    assert story.sfreq == 50.0
    sl = story.stream_slices
    assert [sl[k] for k in ("word", "phoneme", "spectrogram")] == [
        slice(0, 768),
        slice(768, 812),
        slice(812, 852),
    ]
    assert story.stream("phoneme").shape == (story.n_times, 44)
    with pytest.raises(ValueError, match="'name'"):
        story.stream("audio")
    n_words = story.word_ids.size
    assert story.word_onsets.shape == story.word_offsets.shape == (n_words,)
    assert story.word_embeddings.shape == (n_words, 768)
    assert story.word_ids.min() >= 0 and story.word_ids.max() < gen.n_vocabulary


def test_word_durations_and_pauses(story):
    dur = story.word_offsets - story.word_onsets
    assert dur.min() >= 0.12 - 1e-9 and dur.max() <= 0.9 + 1e-9
    assert 0.22 < dur.mean() < 0.38  # a few hundred ms
    assert np.all(story.word_onsets[1:] >= story.word_offsets[:-1] - 1e-12)  # no overlap
    gaps = story.word_onsets[1:] - story.word_offsets[:-1]
    n_pauses = np.sum(gaps > 0.05)
    assert 0.03 * gaps.size < n_pauses < 0.3 * gaps.size  # occasional pauses
    assert story.word_offsets[-1] <= story.duration


def test_phonemes_tile_words(gen, story):
    on, off = story.phoneme_onsets, story.phoneme_offsets
    # The intervals tile [0, duration] exactly.
    assert on[0] == 0.0 and off[-1] == story.duration
    np.testing.assert_array_equal(on[1:], off[:-1])
    speech = story.phoneme_word_index >= 0
    assert np.all((story.phoneme_ids < gen.n_speech_phonemes) == speech)
    d = (off - on)[speech]
    assert d.min() >= 0.04 - 1e-9 and d.max() <= 0.15 + 1e-9
    counts = np.bincount(story.phoneme_word_index[speech], minlength=story.word_ids.size)
    assert counts.min() >= 2 and counts.max() <= 7
    # Each word's phonemes start with the word and end with it, exactly.
    wi = story.phoneme_word_index[speech]
    first = np.flatnonzero(speech)[np.r_[0, np.flatnonzero(np.diff(wi)) + 1]]
    last = np.flatnonzero(speech)[np.r_[np.flatnonzero(np.diff(wi)), wi.size - 1]]
    np.testing.assert_array_equal(on[first], story.word_onsets)
    np.testing.assert_array_equal(off[last], story.word_offsets)
    # Phoneme sequence of each word is its pronunciation.
    for w in range(0, story.word_ids.size, 97):
        pron = story.phoneme_ids[story.phoneme_word_index == w]
        np.testing.assert_array_equal(pron, gen.pronunciations[story.word_ids[w]])


def test_streams_follow_alignment(gen, story):
    idx = _sample_interval(story)
    assert idx.min() >= 0
    ph = story.stream("phoneme")
    assert set(np.unique(ph)) == {0.0, 1.0}
    np.testing.assert_array_equal(ph.sum(axis=1), 1.0)  # exactly one label per sample
    np.testing.assert_array_equal(ph.argmax(axis=1), story.phoneme_ids[idx])
    word = story.phoneme_word_index[idx]
    pause = word < 0
    assert pause.any()
    assert np.all(ph.argmax(axis=1)[pause] >= gen.n_speech_phonemes)  # non-speech labels
    np.testing.assert_array_equal(story.stream("word")[pause], 0.0)
    np.testing.assert_array_equal(story.stream("word")[~pause], story.word_embeddings[word[~pause]])


def test_embeddings_are_contextual_and_anisotropic(gen, story):
    emb = story.word_embeddings.astype(float)
    emb -= emb.mean(axis=0)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    consecutive = np.sum(emb[1:] * emb[:-1], axis=1).mean()
    perm = np.random.default_rng(0).permutation(emb.shape[0])
    random_pairs = np.sum(emb * emb[perm], axis=1).mean()
    assert consecutive > random_pairs + 0.3
    # Same word, different contexts -> different vectors.
    w = np.bincount(story.word_ids).argmax()
    same = story.word_embeddings[story.word_ids == w]
    assert not np.allclose(same[0], same[1])
    # Vocabulary covariance far from isotropic: the top 10% of the eigenvalues hold most
    # of the variance (an isotropic one gives ~10%).
    ev = np.linalg.eigvalsh(np.cov(gen.vocabulary.T))[::-1]
    assert ev[: ev.size // 10].sum() / ev.sum() > 0.5


def test_word_frequencies_are_zipf_like(gen):
    ids = gen.make_story(900.0, seed=11).word_ids
    counts = np.sort(np.bincount(ids))[::-1][:30]
    slope = np.polyfit(np.log(np.arange(1, 31) + 2.7), np.log(counts), 1)[0]
    assert -1.35 < slope < -0.7


def test_spectrogram_smooth_and_tied_to_phonemes(gen, story):
    spec = story.stream("spectrogram").astype(float)
    x = spec - spec.mean(axis=0)
    lag1 = np.sum(x[1:] * x[:-1], axis=0) / np.sum(x * x, axis=0)
    assert lag1.min() > 0.8
    label = story.stream("phoneme").argmax(axis=1)
    silence = label == gen.silence_id
    speech = label < gen.n_speech_phonemes
    assert spec[silence].mean() < spec[speech].mean() - 2.0  # low energy in silence
    # The mean spectrum per label recovers that label's template (chance: 1 / 44).
    ids = np.unique(label)
    hits = 0
    for i in ids:
        m = spec[label == i].mean(axis=0)
        r = [np.corrcoef(m, t)[0, 1] for t in gen.spectral_templates]
        hits += int(np.argmax(r) == i)
    assert hits >= 0.8 * ids.size


def test_reproducible_and_seed_dependent(gen):
    a = gen.make_story(20.0, seed=3)
    b = StimulusGenerator().make_story(20.0, seed=3)
    np.testing.assert_array_equal(a.features, b.features)
    for name in ("word_onsets", "word_ids", "phoneme_onsets", "phoneme_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = gen.make_story(20.0, seed=4)
    assert c.word_ids.size != a.word_ids.size or not np.array_equal(c.word_ids, a.word_ids)
    assert not np.array_equal(c.features[:500], a.features[:500])
    # The generator seed fixes the vocabulary.
    other = StimulusGenerator(seed=1)
    assert not np.allclose(other.vocabulary, gen.vocabulary)
    np.testing.assert_array_equal(StimulusGenerator(seed=1).vocabulary, other.vocabulary)


@pytest.mark.parametrize("dims", [(16, 44, 8), (4, 2, 3)])
def test_small_dims(dims):
    g = StimulusGenerator(dims=dims, n_vocabulary=50, sfreq=100.0)
    s = g.make_story(30.0, seed=0)
    assert s.features.shape == (3000, sum(dims))
    ph = s.stream("phoneme")
    np.testing.assert_array_equal(ph.sum(axis=1), 1.0)
    assert 1 <= g.n_speech_phonemes < dims[1]
    assert s.stream("spectrogram").shape[1] == dims[2]
    assert s.word_embeddings.shape[1] == dims[0]


def test_errors():
    with pytest.raises(ValueError, match="'dims'"):
        StimulusGenerator(dims=(768, 44))
    with pytest.raises(ValueError, match="n_phoneme_dims"):
        StimulusGenerator(dims=(768, 1, 40))
    with pytest.raises(ValueError, match="n_word_dims"):
        StimulusGenerator(dims=(0, 44, 40))
    with pytest.raises(TypeError, match="n_mels"):
        StimulusGenerator(dims=(768, 44, 40.5))
    with pytest.raises(ValueError, match="'sfreq'"):
        StimulusGenerator(sfreq=10.0)
    with pytest.raises(ValueError, match="'sfreq'"):
        StimulusGenerator(sfreq=-50.0)
    with pytest.raises(TypeError, match="'seed'"):
        StimulusGenerator(seed=1.5)
    with pytest.raises(ValueError, match="'seed' must be an int >= 0, got -1. The seed fixes"):
        StimulusGenerator(seed=-1)
    with pytest.raises(ValueError, match="'n_vocabulary'"):
        StimulusGenerator(n_vocabulary=3)
    g = StimulusGenerator(dims=(8, 44, 4), n_vocabulary=20)
    with pytest.raises(ValueError, match="'duration'"):
        g.make_story(0.0, seed=0)
    with pytest.raises(ValueError, match="'duration'"):
        g.make_story(float("nan"), seed=0)
    with pytest.raises(ValueError, match="'duration'"):
        g.make_story(0.5, seed=0)
    with pytest.raises(TypeError, match="'seed'"):
        g.make_story(10.0, seed="a")
