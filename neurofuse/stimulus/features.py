"""The stimulus features of a story (paper §2.2): word, phoneme and spectrogram streams.

:func:`extract_features` turns an audio file and its forced alignment (a Praat TextGrid, as
LeBel et al. provide) into the ``(n_times, d_stim)`` matrix the model reads, at 50 Hz:

====================  ========================  ============================================
stream                columns (GPT-2)           what
====================  ========================  ============================================
``"word"``            ``[0, 768)``              hidden layer 7 of GPT-2, 20 tokens of context
``"phoneme"``         ``[768, 812)``            44-dim one-hot (39 ARPAbet + 5 non-speech)
``"spectrogram"``     ``[812, 852)``            log power in 40 mel bands, 0-10 kHz
====================  ========================  ============================================

:func:`features_from_alignment` does the same from word and phone intervals given directly
(MEG stories, the Podcast transcript), with ``phones=None`` allowed (zeros, with a warning).

Timing
------
A story has ``n_times = floor(audio duration * sfreq)`` frames; frame ``k`` covers
``[k / sfreq, (k + 1) / sfreq)``, and a word or phone owns the frames whose centre it holds
(see :mod:`neurofuse.stimulus.textgrid`). The alignment and the audio must agree: a
TextGrid's time domain must match the audio duration within ``tolerance`` (default one frame,
20 ms at 50 Hz) at both ends, and no word or phone may end more than ``tolerance`` after the
audio. Beyond that something is mismatched (wrong file, wrong sampling rate, trimmed audio)
and the functions stop with an error instead of guessing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._checks import _check_option, _check_positive, _check_type
from .._logging import logger, verbose
from .audio import _to_float_mono, mel_spectrogram, read_audio
from .language_model import as_language_model, is_speech_word, word_embedding_features
from .phonemes import PHONEMES, find_unknown_phonemes, phoneme_onehot
from .textgrid import TextGrid, check_intervals, get_word_phone_tiers, read_textgrid

__all__ = ["STREAM_NAMES", "StoryFeatures", "extract_features", "features_from_alignment"]

STREAM_NAMES = ("word", "phoneme", "spectrogram")


@dataclass
class StoryFeatures:
    """Stimulus features of one story.

    Attributes
    ----------
    data : array, shape (n_times, d_stim), float32
        The streams side by side (852 columns with GPT-2).
    streams : dict of str to (int, int)
        Column range ``[start, stop)`` of ``"word"``, ``"phoneme"`` and ``"spectrogram"``, in
        that order — the ``feature_streams`` of :class:`neurofuse.data.store.DatasetWriter`.
    sfreq : float
        Frame rate in Hz.
    n_times : int
        Number of frames, ``floor(audio duration * sfreq)``.
    metadata : dict
        JSON-serialisable provenance: language model, layer, context, mel settings, counts of
        words and of unknown phone labels, audio rate and duration.
    """

    data: np.ndarray
    streams: dict
    sfreq: float
    n_times: int
    metadata: dict = field(default_factory=dict)

    @property
    def d_stim(self) -> int:
        return int(self.data.shape[1])

    def stream(self, name) -> np.ndarray:
        """The columns of one stream, shape (n_times, stop - start) (a view)."""
        _check_option("name", name, list(self.streams))
        start, stop = self.streams[name]
        return self.data[:, start:stop]


def _load_audio(audio):
    """(waveform, audio_sfreq, description) from a path or a (waveform, sfreq) pair."""
    if isinstance(audio, (str, os.PathLike)):
        waveform, audio_sfreq = read_audio(audio)
        return waveform, audio_sfreq, f"'{Path(audio)}'"
    if isinstance(audio, (tuple, list)) and len(audio) == 2:
        waveform, audio_sfreq = audio
        if not isinstance(audio_sfreq, (int, float, np.integer, np.floating)) \
                or isinstance(audio_sfreq, bool):
            raise TypeError(f"'audio' as a pair must be (waveform, sampling rate in Hz), got a "
                            f"{type(audio_sfreq).__name__} as the rate.")
        return _to_float_mono(waveform, "audio"), float(audio_sfreq), "the audio array"
    raise TypeError("'audio' must be a WAV file path or a (waveform, sampling rate) pair, got "
                    f"{type(audio).__name__}.")


def _check_rates(audio_sfreq, sfreq, fmax, what):
    if not np.isfinite(audio_sfreq) or audio_sfreq <= 0:
        raise ValueError(f"Wrong sampling rate for 'audio' ({what}): {audio_sfreq!r} Hz.")
    if audio_sfreq < 2 * fmax:
        raise ValueError(
            f"Wrong sampling rate for 'audio' ({what}): {audio_sfreq:g} Hz cannot hold the mel "
            f"bands up to 'fmax' = {fmax:g} Hz (it needs >= {2 * fmax:g} Hz). Use the original "
            "recording rather than a downsampled copy, or lower 'fmax'.")
    if audio_sfreq < 4 * sfreq:
        raise ValueError(f"Wrong sampling rate: the audio ({audio_sfreq:g} Hz) must be sampled "
                         f"much faster than the feature rate 'sfreq' ({sfreq:g} Hz).")


def _check_intervals(name, intervals, duration, tol, what):
    return [(start, end, str(text)) for start, end, text in
            check_intervals(name, intervals, duration=duration, tol=tol, what=what)]


@verbose
def features_from_alignment(audio, words, phones=None, *, language_model="gpt2", layer=7,
                            context_tokens=20, sfreq=50.0, n_mels=40, fmax=10000.0,
                            on_unknown_phoneme="warn", phoneme_aliases=None, tolerance=None,
                            batch_size=32, device=None, verbose=None) -> StoryFeatures:
    """Stimulus features from audio and word/phone intervals given directly.

    Parameters
    ----------
    audio : path-like | (array, float)
        A WAV file, or ``(waveform, sampling rate in Hz)`` with waveform (n_samples,) or
        (n_samples, n_channels).
    words : sequence of (start, end, word)
        Word intervals in s from the audio start (a transcript with onsets and offsets, or a
        TextGrid word tier). Non-words (``sp``, ``{LG}``...) get zeros.
    phones : sequence of (start, end, label) | None
        Phone intervals in s; None gives a phoneme stream of zeros (with a warning).
    language_model : str | path-like | LanguageModel | (model, tokenizer)
        Name or folder (loaded offline), or an already loaded model — load it once with
        :func:`neurofuse.stimulus.language_model.load_language_model` for many stories.
    layer, context_tokens : int
        Hidden layer and tokens of context (paper: 7 and 20).
    sfreq : float
        Feature rate in Hz (50).
    n_mels : int
        Mel bands (40).
    fmax : float
        Top of the mel bands in Hz (10 kHz); the audio must be sampled at >= 2 * fmax.
    on_unknown_phoneme : "warn" | "raise" | "ignore"
        What to do with phone labels outside the 44 (see :mod:`neurofuse.stimulus.phonemes`).
    phoneme_aliases : dict | None
        Extra phone label -> phoneme column mappings, e.g. ``{"{CG}": "{NS}"}``.
    tolerance : float | None
        How far (s) intervals may run past the audio; default one frame, ``1 / sfreq``.
    batch_size : int
        Language-model windows per forward pass.
    device : str | torch.device | None
        Where to run the language model.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    features : StoryFeatures
    """
    waveform, audio_sfreq, what = _load_audio(audio)
    return _from_waveform(
        waveform, audio_sfreq, what, words, phones, language_model=language_model, layer=layer,
        context_tokens=context_tokens, sfreq=sfreq, n_mels=n_mels, fmax=fmax,
        on_unknown_phoneme=on_unknown_phoneme, phoneme_aliases=phoneme_aliases,
        tolerance=tolerance, batch_size=batch_size, device=device)


def _from_waveform(waveform, audio_sfreq, what, words, phones, *, language_model, layer,
                   context_tokens, sfreq, n_mels, fmax, on_unknown_phoneme, phoneme_aliases,
                   tolerance, batch_size, device) -> StoryFeatures:
    sfreq = _check_positive("sfreq", sfreq)
    fmax = _check_positive("fmax", fmax)
    _check_option("on_unknown_phoneme", on_unknown_phoneme, ("warn", "raise", "ignore"))
    tol = 1.0 / sfreq if tolerance is None else _check_positive("tolerance", tolerance,
                                                                allow_zero=True)
    _check_rates(audio_sfreq, sfreq, fmax, what)
    duration = waveform.size / audio_sfreq
    n_times = math.floor(duration * sfreq + 1e-9)
    if n_times < 1:
        raise ValueError(f"'audio' ({what}) lasts {duration:.4f} s, shorter than one frame at "
                         f"{sfreq:g} Hz.")
    words = _check_intervals("words", words, duration, tol, what)
    if phones is not None:
        phones = _check_intervals("phones", phones, duration, tol, what)
        unknown = find_unknown_phonemes(phones, aliases=phoneme_aliases)
        if unknown and on_unknown_phoneme == "raise":  # before the expensive part
            phoneme_onehot(phones, 0, sfreq=sfreq, on_unknown="raise", aliases=phoneme_aliases)
    else:
        unknown = {}
    lm = as_language_model(language_model, device=device)

    word_feats = word_embedding_features(words, n_times, lm, sfreq=sfreq, layer=layer,
                                         context_tokens=context_tokens, batch_size=batch_size)
    if phones is None:
        logger.warning("No phone alignment given ('phones' is None): the phoneme stream is "
                       "all zeros.")
        phone_feats = np.zeros((n_times, len(PHONEMES)), dtype=np.float32)
    else:
        phone_feats = phoneme_onehot(phones, n_times, sfreq=sfreq, on_unknown=on_unknown_phoneme,
                                     aliases=phoneme_aliases)
    mel = mel_spectrogram(waveform, audio_sfreq, sfreq=sfreq, n_mels=n_mels, fmax=fmax,
                          n_times=n_times)

    blocks = {"word": word_feats, "phoneme": phone_feats, "spectrogram": mel}
    streams, start = {}, 0
    for name in STREAM_NAMES:
        streams[name] = (start, start + blocks[name].shape[1])
        start += blocks[name].shape[1]
    data = np.concatenate([blocks[name] for name in STREAM_NAMES], axis=1).astype(np.float32)
    metadata = {
        "language_model": lm.name, "layer": int(layer), "context_tokens": int(context_tokens),
        "n_words": sum(is_speech_word(w) for _, _, w in words),
        "n_phones": None if phones is None else len(phones),
        "unknown_phonemes": unknown, "phonemes": list(PHONEMES),
        "mel": {"n_mels": int(n_mels), "fmin": 0.0, "fmax": fmax, "scale": "htk",
                "norm": None, "log": "natural, floor 1e-10"},
        "audio_sfreq": audio_sfreq, "audio_duration": duration,
    }
    logger.info("Stimulus features: %d frames x %d (%s) from %s.", n_times, data.shape[1],
                ", ".join(f"{k} {v[1] - v[0]}" for k, v in streams.items()), what)
    return StoryFeatures(data=data, streams=streams, sfreq=sfreq, n_times=n_times,
                         metadata=metadata)


@verbose
def extract_features(audio, textgrid, *, language_model="gpt2", layer=7, context_tokens=20,
                     sfreq=50.0, n_mels=40, fmax=10000.0, on_unknown_phoneme="warn",
                     phoneme_aliases=None, word_tier=None, phone_tier=None, tolerance=None,
                     batch_size=32, device=None, verbose=None) -> StoryFeatures:
    """Stimulus features of a story from its audio and its TextGrid alignment.

    Parameters
    ----------
    audio : path-like | (array, float)
        The story's WAV file, or ``(waveform, sampling rate in Hz)``.
    textgrid : path-like | TextGrid
        Its forced alignment with a word and a phone tier (LeBel's
        ``derivative/TextGrids/<story>.TextGrid``).
    language_model : str | path-like | LanguageModel | (model, tokenizer)
        Default ``"gpt2"`` from the local cache; see :func:`features_from_alignment`.
    layer, context_tokens, sfreq, n_mels, fmax, on_unknown_phoneme, phoneme_aliases
        See :func:`features_from_alignment`.
    word_tier, phone_tier : str | int | None
        Tier names or indices; None finds ``word(s)`` and ``phone(s)``.
    tolerance : float | None
        Allowed mismatch (s) between the TextGrid's time domain and the audio duration, at
        each end; default one frame (``1 / sfreq``).
    batch_size, device, verbose
        See :func:`features_from_alignment`.

    Returns
    -------
    features : StoryFeatures
        ``data`` (n_times, d_stim) float32 with streams ``word``, ``phoneme``, ``spectrogram``.

    Raises
    ------
    FileNotFoundError
        A missing audio or TextGrid file, or a language model not available offline
        (:class:`~neurofuse.stimulus.language_model.LanguageModelNotFoundError`).
    ValueError
        A TextGrid that does not cover the audio (or runs past it), a wrong audio sampling
        rate, unknown phone labels with ``on_unknown_phoneme="raise"``, a layer out of range.
    """
    sfreq = _check_positive("sfreq", sfreq)
    tol = 1.0 / sfreq if tolerance is None else _check_positive("tolerance", tolerance,
                                                                allow_zero=True)
    if not isinstance(textgrid, TextGrid):
        _check_type("textgrid", textgrid, (str, os.PathLike), "a TextGrid file or TextGrid")
        textgrid = read_textgrid(textgrid)
    words, phones = get_word_phone_tiers(textgrid, word_tier=word_tier, phone_tier=phone_tier)
    waveform, audio_sfreq, what = _load_audio(audio)
    duration = waveform.size / audio_sfreq
    where = textgrid._where()
    if abs(textgrid.xmin) > tol or textgrid.xmax < duration - tol:
        raise ValueError(
            f"{where} does not cover the audio: it spans {textgrid.xmin:.3f} to "
            f"{textgrid.xmax:.3f} s but the audio ({what}) lasts {duration:.3f} s (tolerance "
            f"{tol:g} s = 1 frame). Check that they belong to the same story, that the audio was "
            "not padded, or pass a larger 'tolerance' if the mismatch is known and harmless.")
    if textgrid.xmax > duration + tol:
        raise ValueError(
            f"{where} runs to {textgrid.xmax:.3f} s, past the end of the audio ({what}, "
            f"{duration:.3f} s; tolerance {tol:g} s = 1 frame). Check that they belong to the "
            "same story and that the audio was not trimmed, or pass a larger 'tolerance'.")
    return _from_waveform(
        waveform, audio_sfreq, what, words, phones, language_model=language_model, layer=layer,
        context_tokens=context_tokens, sfreq=sfreq, n_mels=n_mels, fmax=fmax,
        on_unknown_phoneme=on_unknown_phoneme, phoneme_aliases=phoneme_aliases, tolerance=tol,
        batch_size=batch_size, device=device)
