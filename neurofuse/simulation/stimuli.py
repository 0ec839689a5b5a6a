"""Synthetic naturalistic stories: word embeddings, phonemes and a mel spectrogram.

The three feature streams of the MEG-fMRI encoding model (paper §2.2) are generated from a
simple generative story model, so that simulations have the statistics that matter for
source estimation (durations, autocorrelation, covariance structure) without any language
model or audio:

- **words** last a few hundred ms (gamma-distributed, clipped to [120, 900] ms), follow a
  Zipf law, and are separated by occasional pauses;
- **word embeddings** (768-d by default) are contextual: each token's vector mixes its
  vocabulary vector with an exponentially decaying context of the preceding tokens. The
  vocabulary vectors have a power-law (low-rank-ish) covariance spectrum and a common mean,
  like real language-model embeddings;
- **phonemes** (44-d one-hot by default): each vocabulary word has a fixed sequence of 2-7
  speech phonemes whose durations (40-150 ms) tile the word exactly; pauses hold a
  non-speech label (mostly silence);
- **spectrogram** (40 mel bands, log-power-like): each phoneme label has a spectral
  template; per-word loudness and sample noise are added and the stream is smoothed with a
  25 ms Gaussian. Silence is ~4 units (log power) below speech.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter

from .._checks import _check_int, _check_positive, _check_random_state, _check_type
from .._logging import logger

__all__ = ["STREAM_NAMES", "StimulusGenerator", "Story"]

#: Names of the feature streams, in the order they are concatenated in ``Story.features``.
STREAM_NAMES = ("word", "phoneme", "spectrogram")

# Durations (s).
_WORD_MIN, _WORD_MAX, _WORD_MEAN_PER_PHONEME, _WORD_SHAPE = 0.12, 0.90, 0.08, 8.0
_PHON_MIN, _PHON_MAX, _N_PHON_MIN, _N_PHON_MAX = 0.04, 0.15, 2, 7
_PAUSE_PROB, _PAUSE_MEAN, _PAUSE_MIN, _PAUSE_MAX = 0.12, 0.4, 0.1, 2.0
_LEAD_MIN, _LEAD_MAX = 0.3, 1.0
_SILENCE_PROB = 0.7  # pauses labelled "silence"; the rest get another non-speech label
# Embeddings.
_CONTEXT_DECAY, _CONTEXT_MIX, _MEAN_NORM_RATIO = 0.8, 0.5, 0.5
# Spectrogram.
_SMOOTH_S, _WORD_GAIN_SD, _SPEC_NOISE_SD, _SILENCE_LEVEL, _NONSPEECH_LEVEL = (
    0.025,
    0.3,
    0.3,
    -4.0,
    -2.0,
)
_MIN_DURATION = 1.0


def _nonspeech_count(n_phoneme_dims):
    """44 labels -> 39 speech phonemes (CMU) + 5 non-speech; scaled for other sizes."""
    return max(1, int(round(5 * n_phoneme_dims / 44)))


@dataclass(frozen=True, eq=False)
class Story:
    """A synthetic story: its feature streams and its word/phoneme alignment.

    Time ``t`` in s corresponds to sample ``t * sfreq``; sample ``i`` holds the word and
    phoneme whose interval ``[onset, offset)`` contains ``i / sfreq``.

    Attributes
    ----------
    features : array, shape (n_times, n_features), float32
        The concatenated streams (``n_features = sum(dims)``); see ``stream_slices``.
        The word stream is 0 during pauses.
    word_onsets, word_offsets : array, shape (n_words,)
        Word intervals in s.
    word_ids : array, shape (n_words,), int
        Vocabulary index of each word (0 is the most frequent word).
    word_embeddings : array, shape (n_words, n_word_dims), float32
        The contextual embedding of each word (what the word stream holds during it).
    phoneme_onsets, phoneme_offsets : array, shape (n_phonemes,)
        Intervals in s. They tile ``[0, duration]``: pauses (and the leading/trailing
        silence) are intervals too, with a non-speech label.
    phoneme_ids : array, shape (n_phonemes,), int
        Label of each interval: ``0 .. n_speech - 1`` speech phonemes, then non-speech
        labels (the first of which, ``n_speech``, is silence).
    phoneme_word_index : array, shape (n_phonemes,), int
        Index into the word arrays of the word each phoneme belongs to, -1 for pauses.
    sfreq : float
        Sampling rate of ``features`` in Hz.
    duration : float
        Length of the story in s.
    stream_slices : dict of str -> slice
        Columns of ``features`` for ``"word"``, ``"phoneme"`` and ``"spectrogram"``.
    """

    features: np.ndarray = field(repr=False)
    word_onsets: np.ndarray = field(repr=False)
    word_offsets: np.ndarray = field(repr=False)
    word_ids: np.ndarray = field(repr=False)
    word_embeddings: np.ndarray = field(repr=False)
    phoneme_onsets: np.ndarray = field(repr=False)
    phoneme_offsets: np.ndarray = field(repr=False)
    phoneme_ids: np.ndarray = field(repr=False)
    phoneme_word_index: np.ndarray = field(repr=False)
    sfreq: float
    duration: float
    stream_slices: dict = field(compare=False)

    @property
    def n_times(self):
        """Number of samples."""
        return self.features.shape[0]

    @property
    def times(self):
        """Sample times in s, shape (n_times,)."""
        return np.arange(self.n_times) / self.sfreq

    def stream(self, name):
        """The columns of one stream, shape (n_times, n_dims) (a view)."""
        if name not in self.stream_slices:
            raise ValueError(
                f"Invalid value for the 'name' parameter: expected one of "
                f"{list(self.stream_slices)}, got {name!r}."
            )
        return self.features[:, self.stream_slices[name]]


class StimulusGenerator:
    """Generator of synthetic stories with a fixed vocabulary and phoneme inventory.

    Parameters
    ----------
    dims : tuple of 3 int
        ``(n_word_dims, n_phoneme_dims, n_mels)``; the paper's (768, 44, 40) by default.
        ``n_phoneme_dims`` >= 2 (at least one speech and one non-speech label).
    sfreq : float
        Sampling rate of the features in Hz; >= 25 Hz so that every phoneme (>= 40 ms)
        covers at least one sample.
    seed : int
        Fixes the vocabulary (embeddings, frequencies, pronunciations) and the spectral
        templates. Stories are drawn with their own seed in :meth:`make_story`.
    n_vocabulary : int
        Number of distinct words (>= 10).

    Attributes
    ----------
    vocabulary : array, shape (n_vocabulary, n_word_dims)
        Context-free vector of each word (rank order: word 0 is the most frequent).
    word_probabilities : array, shape (n_vocabulary,)
        Zipf-Mandelbrot word frequencies, ``p(r) ∝ 1 / (r + 2.7)``.
    pronunciations : list of array of int
        Speech-phoneme sequence (2-7 labels) of each vocabulary word; frequent words are
        shorter.
    spectral_templates : array, shape (n_phoneme_dims, n_mels)
        Mean log-power spectrum of each phoneme label (before noise and smoothing).
    n_speech_phonemes : int
        Labels ``0 .. n_speech_phonemes - 1`` are speech; the rest are non-speech, the
        first of them (``silence_id``) silence.
    """

    def __init__(self, dims=(768, 44, 40), sfreq=50.0, seed=0, n_vocabulary=2000):
        _check_type("dims", dims, (tuple, list), "a tuple of 3 ints")
        if len(dims) != 3:
            raise ValueError(
                f"'dims' must be (n_word_dims, n_phoneme_dims, n_mels), 3 ints, got {dims!r}."
            )
        n_word = _check_int("dims[0] (n_word_dims)", dims[0], 1)
        n_phon = _check_int("dims[1] (n_phoneme_dims)", dims[1], 2)
        n_mels = _check_int("dims[2] (n_mels)", dims[2], 1)
        sfreq = _check_positive("sfreq", sfreq)
        if sfreq < 1.0 / _PHON_MIN:
            raise ValueError(
                f"'sfreq' must be >= {1 / _PHON_MIN:g} Hz so that every phoneme "
                f"(>= {_PHON_MIN * 1e3:g} ms) covers a sample, got {sfreq:g} Hz."
            )
        seed = _check_int("seed", seed, 0, how_to_fix="The seed fixes the vocabulary.")
        self.dims = (n_word, n_phon, n_mels)
        self.sfreq = sfreq
        self.seed = int(seed)
        self.n_vocabulary = _check_int("n_vocabulary", n_vocabulary, 10)
        self.n_speech_phonemes = n_phon - _nonspeech_count(n_phon)
        self.silence_id = self.n_speech_phonemes
        rng = np.random.default_rng(self.seed)
        self._make_vocabulary(rng)
        self._make_pronunciations(rng)
        self._make_templates(rng)

    def __repr__(self):
        return (
            f"StimulusGenerator(dims={self.dims}, sfreq={self.sfreq:g}, seed={self.seed}, "
            f"n_vocabulary={self.n_vocabulary})"
        )

    @property
    def stream_slices(self):
        """dict of str -> slice: columns of each stream in the features."""
        edges = np.concatenate([[0], np.cumsum(self.dims)])
        return {
            name: slice(int(edges[i]), int(edges[i + 1])) for i, name in enumerate(STREAM_NAMES)
        }

    @property
    def n_features(self):
        """Total number of feature columns."""
        return int(sum(self.dims))

    # ---------------------------------------------------------------- fixed by seed
    def _make_vocabulary(self, rng):
        d = self.dims[0]
        # Power-law covariance spectrum in a random orthonormal basis; total variance d.
        eigvals = 1.0 / np.arange(1, d + 1)
        eigvals *= d / eigvals.sum()
        basis, _ = np.linalg.qr(rng.standard_normal((d, d)))  # (d, d) orthonormal
        z = rng.standard_normal((self.n_vocabulary, d)) * np.sqrt(eigvals)
        mean = rng.standard_normal(d)
        mean *= _MEAN_NORM_RATIO * math.sqrt(d) / np.linalg.norm(mean)
        self.embedding_mean = mean
        self.vocabulary = z @ basis.T + mean  # (n_vocabulary, d)
        rank = np.arange(self.n_vocabulary)
        p = 1.0 / (rank + 2.7)
        self.word_probabilities = p / p.sum()

    def _make_pronunciations(self, rng):
        n_speech = self.n_speech_phonemes
        # Phoneme frequencies: Zipf-like over a random order of the speech labels.
        pf = 1.0 / (np.arange(n_speech) + 3.0)
        pf = pf[rng.permutation(n_speech)]
        pf /= pf.sum()
        self.phoneme_probabilities = pf
        # Frequent words are shorter (Zipf's law of abbreviation).
        lam = 0.6 + 0.3 * np.log1p(np.arange(self.n_vocabulary))
        n_phon = np.clip(_N_PHON_MIN + rng.poisson(lam), _N_PHON_MIN, _N_PHON_MAX)
        self.pronunciations = [rng.choice(n_speech, size=int(k), p=pf) for k in n_phon]
        self._n_phonemes = n_phon.astype(np.int64)  # (n_vocabulary,)
        # Padded (n_vocabulary, 7) table for vectorised lookups; -1 = no phoneme.
        table = np.full((self.n_vocabulary, _N_PHON_MAX), -1, dtype=np.int64)
        for i, pron in enumerate(self.pronunciations):
            table[i, : pron.size] = pron
        self._pron_table = table

    def _make_templates(self, rng):
        n_phon, n_mels = self.dims[1], self.dims[2]
        sigma = max(n_mels / 20.0, 0.5)
        bands = np.linspace(0.0, 1.0, n_mels)
        tilt = -1.0 * bands  # speech has less power at high frequencies
        shapes = gaussian_filter1d(
            rng.standard_normal((n_phon, n_mels)), sigma, axis=1, mode="nearest"
        )
        shapes /= shapes.std(axis=1, keepdims=True) + 1e-12
        templates = tilt + shapes  # (n_phon, n_mels)
        templates[self.n_speech_phonemes :] = (
            _NONSPEECH_LEVEL + 0.5 * shapes[self.n_speech_phonemes :]
        )
        templates[self.silence_id] = _SILENCE_LEVEL + 0.1 * shapes[self.silence_id]
        self.spectral_templates = templates

    # --------------------------------------------------------------------- stories
    def make_story(self, duration, seed):
        """Draw one story.

        Parameters
        ----------
        duration : float
            Length in s (>= 1 s). ``n_times = floor(duration * sfreq)``.
        seed : int | numpy.random.Generator | None
            Seed of the story (independent of the generator's vocabulary seed). The same
            ``seed`` gives the same story.

        Returns
        -------
        story : Story
            ``features`` has shape (n_times, sum(dims)), float32.
        """
        duration = _check_positive("duration", duration)
        if duration < _MIN_DURATION:
            raise ValueError(f"'duration' must be >= {_MIN_DURATION:g} s, got {duration:g} s.")
        rng = _check_random_state(seed)
        n_times = int(math.floor(duration * self.sfreq + 1e-9))
        words = self._draw_words(rng, duration)
        ph_on, ph_off, ph_id, ph_word = self._draw_phonemes(rng, words, duration)
        emb = self._contextual_embeddings(words["ids"])  # (n_words, d)
        # Sample -> interval (the one whose [onset, offset) holds i / sfreq).
        t = np.arange(n_times) / self.sfreq
        interval = np.searchsorted(ph_on, t, side="right") - 1  # (n_times,)
        label = ph_id[interval]
        word_of_sample = ph_word[interval]
        sl = self.stream_slices
        feats = np.zeros((n_times, self.n_features), dtype=np.float32)
        in_word = word_of_sample >= 0
        feats[in_word, sl["word"]] = emb[word_of_sample[in_word]]
        feats[np.arange(n_times), sl["phoneme"].start + label] = 1.0
        feats[:, sl["spectrogram"]] = self._spectrogram(
            rng, label, word_of_sample, words["ids"].size
        )
        logger.debug(
            f"Story of {duration:g} s: {words['ids'].size} words, {ph_id.size} phoneme "
            f"intervals, {n_times} samples x {self.n_features} features"
        )
        return Story(
            features=feats,
            word_onsets=words["onsets"],
            word_offsets=words["offsets"],
            word_ids=words["ids"],
            word_embeddings=emb,
            phoneme_onsets=ph_on,
            phoneme_offsets=ph_off,
            phoneme_ids=ph_id,
            phoneme_word_index=ph_word,
            sfreq=self.sfreq,
            duration=duration,
            stream_slices=self.stream_slices,
        )

    def _draw_words(self, rng, duration):
        lead = rng.uniform(_LEAD_MIN, _LEAD_MAX)
        n_guess = int(duration / 0.25) + 20
        while True:
            ids = rng.choice(self.n_vocabulary, size=n_guess, p=self.word_probabilities)
            n_ph = self._n_phonemes[ids]
            lo = np.maximum(_WORD_MIN, _PHON_MIN * n_ph)
            hi = np.minimum(_WORD_MAX, _PHON_MAX * n_ph)
            mean = _WORD_MEAN_PER_PHONEME * n_ph
            dur = np.clip(rng.gamma(_WORD_SHAPE, mean / _WORD_SHAPE), lo, hi)
            pause = rng.random(n_guess) < _PAUSE_PROB
            pause[0] = False  # the leading silence plays that role
            gaps = np.where(
                pause,
                np.clip(rng.gamma(2.0, _PAUSE_MEAN / 2.0, n_guess), _PAUSE_MIN, _PAUSE_MAX),
                0.0,
            )
            offsets = lead + np.cumsum(gaps + dur)
            # Chain exactly: a word without a pause starts where the previous one ends.
            onsets = np.concatenate([[lead], offsets[:-1]]) + gaps
            n_fit = int(np.searchsorted(offsets, duration, side="right"))
            if n_fit < n_guess:
                break
            n_guess *= 2
        if n_fit == 0:
            raise ValueError(f"'duration' ({duration:g} s) is too short to hold a word.")
        offsets, onsets, gaps = offsets[:n_fit], onsets[:n_fit], gaps[:n_fit]
        return {"ids": ids[:n_fit], "onsets": onsets, "offsets": offsets, "gaps": gaps}

    def _draw_phonemes(self, rng, words, duration):
        ids, on, off = words["ids"], words["onsets"], words["offsets"]
        n_words = ids.size
        n_ph = self._n_phonemes[ids]  # (n_words,)
        valid = np.arange(_N_PHON_MAX) < n_ph[:, None]  # (n_words, 7)
        dur = off - on
        # Split each word into its phonemes: lo + Dirichlet share of the slack, then move
        # whatever exceeds hi to the phonemes with room left, in proportion to their room
        # (one step suffices because the word duration is <= n * hi).
        share = np.where(valid, rng.gamma(3.0, 1.0, valid.shape), 0.0)
        share /= share.sum(axis=1, keepdims=True)
        x = _PHON_MIN + (dur - _PHON_MIN * n_ph)[:, None] * share
        x = np.where(valid, x, 0.0)
        excess = np.maximum(x - _PHON_MAX, 0.0).sum(axis=1)
        x = np.minimum(x, _PHON_MAX)
        room = np.where(valid, _PHON_MAX - x, 0.0)
        room_sum = room.sum(axis=1, keepdims=True)
        x += (
            np.divide(room, room_sum, out=np.zeros_like(room), where=room_sum > 0) * excess[:, None]
        )
        ph_off = on[:, None] + np.cumsum(x, axis=1)  # (n_words, 7)
        ph_off[np.arange(n_words), n_ph - 1] = off  # the last phoneme ends with the word
        ph_on = np.concatenate([on[:, None], ph_off[:, :-1]], axis=1)
        # Add the pauses: the leading silence, the gaps, and the trailing silence.
        pause_before = np.flatnonzero(words["gaps"] > 0)
        n_nonspeech = self.dims[1] - self.n_speech_phonemes
        labels = np.where(
            rng.random(pause_before.size) < _SILENCE_PROB,
            self.silence_id,
            self.silence_id + rng.integers(0, n_nonspeech, pause_before.size),
        )
        ph_on_v, ph_off_v = ph_on[valid], ph_off[valid]
        ph_id_v = self._pron_table[ids][valid]
        ph_word_v = np.broadcast_to(np.arange(n_words)[:, None], valid.shape)[valid]
        all_on = np.concatenate([[0.0], ph_on_v, off[pause_before - 1], [off[-1]]])
        all_off = np.concatenate([[on[0]], ph_off_v, on[pause_before], [duration]])
        all_id = np.concatenate([[self.silence_id], ph_id_v, labels, [self.silence_id]])
        all_word = np.concatenate([[-1], ph_word_v, np.full(pause_before.size + 1, -1)])
        order = np.argsort(all_on, kind="stable")
        all_on, all_off = all_on[order], all_off[order]
        all_id = all_id[order].astype(np.int64)
        all_word = all_word[order].astype(np.int64)
        # A trailing interval of zero length (last word ending at `duration`) is dropped.
        keep = all_off > all_on
        return all_on[keep], all_off[keep], all_id[keep], all_word[keep]

    def _contextual_embeddings(self, ids):
        """e_k = m + sqrt(1 - mix) (v_k - m) + sqrt(mix) c_k, with the context
        c_k = decay c_{k-1} + sqrt(1 - decay^2) (v_{k-1} - m) (stationary variance)."""
        centred = self.vocabulary[ids] - self.embedding_mean  # (n_words, d)
        rho = _CONTEXT_DECAY
        context = lfilter([0.0, math.sqrt(1 - rho**2)], [1.0, -rho], centred, axis=0)
        emb = (
            self.embedding_mean
            + math.sqrt(1 - _CONTEXT_MIX) * centred
            + math.sqrt(_CONTEXT_MIX) * context
        )
        return emb.astype(np.float32)

    def _spectrogram(self, rng, label, word_of_sample, n_words):
        n_times, n_mels = label.size, self.dims[2]
        spec = self.spectral_templates[label].copy()  # (n_times, n_mels)
        gains = rng.normal(0.0, _WORD_GAIN_SD, n_words)  # per-word loudness (log domain)
        speech = word_of_sample >= 0
        spec[speech] += gains[word_of_sample[speech]][:, None]
        noise_sd = np.where(label == self.silence_id, 0.3 * _SPEC_NOISE_SD, _SPEC_NOISE_SD)
        spec += noise_sd[:, None] * rng.standard_normal((n_times, n_mels))
        sigma = _SMOOTH_S * self.sfreq  # samples
        spec = gaussian_filter1d(spec, sigma, axis=0, mode="nearest")
        return spec.astype(np.float32)
