"""Tests for the story feature matrix (neurofuse.stimulus.features): shapes, timing, errors."""

import math

import numpy as np
import pytest
from scipy.io import wavfile

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from neurofuse.stimulus import (
    PHONEMES,
    STREAM_NAMES,
    LanguageModelNotFoundError,
    extract_features,
    features_from_alignment,
    is_speech_word,
    make_random_language_model,
    mel_frequencies,
    normalize_phoneme,
    phoneme_onehot,
    write_textgrid,
)

FS = 22050
DURATION = 6.0
SFREQ = 50.0
# A LeBel-style alignment: word tier with silences and a laugh; phone tier with P2FA labels.
WORDS = [
    (0.0, 0.62, "sp"), (0.62, 0.81, "i"), (0.81, 1.13, "was"), (1.13, 1.27, "in"),
    (1.27, 1.41, "the"), (1.41, 1.93, "car"), (1.93, 2.55, "{LG}"), (2.55, 2.83, "when"),
    (2.83, 3.02, "my"), (3.02, 3.61, "friend"), (3.61, 4.17, "unbelievably"),
    (4.17, 4.6, "sp"), (4.6, 5.31, "home"), (5.31, 6.0, "sp"),
]
PRONUNCIATION = {
    "i": ["AY1"], "was": ["W", "AH0", "Z"], "in": ["IH0", "N"], "the": ["DH", "AH0"],
    "car": ["K", "AA1", "R"], "when": ["W", "EH1", "N"], "my": ["M", "AY1"],
    "friend": ["F", "R", "EH1", "N", "D"],
    "unbelievably": ["AH2", "N", "B", "AH0", "L", "IY1", "V", "AH0", "B", "L", "IY0"],
    "home": ["HH", "OW1", "M"], "sp": ["sp"], "{LG}": ["{LG}"],
}
VOCAB = ["i", "was", "in", "the", "car", "when", "my", "friend", "home"]
TONES = {"car": 2000.0, "home": 5000.0}  # a tone during these words, for the mel stream


def _phones(words=WORDS):
    out = []
    for a, b, w in words:
        labels = PRONUNCIATION[w]
        edges = np.linspace(a, b, len(labels) + 1)
        out += [(float(x), float(y), p) for x, y, p in zip(edges[:-1], edges[1:], labels)]
    return out


def _audio(duration=DURATION, fs=FS):
    rng = np.random.default_rng(0)
    x = 1e-3 * rng.standard_normal(round(duration * fs))
    for a, b, w in WORDS:
        if w in TONES:
            i0, i1 = round(a * fs), round(b * fs)
            x[i0:i1] += 0.3 * np.sin(2 * np.pi * TONES[w] * np.arange(i1 - i0) / fs)
    return x


def _write_story(folder, *, duration=DURATION, fs=FS, grid_xmax=DURATION, phones=None):
    wav = folder / "story.wav"
    wavfile.write(wav, fs, (_audio(duration, fs) * 32767).astype(np.int16))
    grid = write_textgrid(folder / "story.TextGrid",
                          {"phone": _phones() if phones is None else phones, "word": WORDS},
                          xmax=grid_xmax)
    return wav, grid


@pytest.fixture(scope="module")
def lm():
    return make_random_language_model(VOCAB, n_layers=3, hidden_size=32, n_heads=2,
                                      max_positions=64, seed=0)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    return _write_story(tmp_path_factory.mktemp("story"))


@pytest.fixture(scope="module")
def feats(story, lm):
    wav, grid = story
    return extract_features(wav, grid, language_model=lm, layer=2, context_tokens=5)


def _lm_reference(lm, words, layer, context):
    """Hidden state at ``layer`` of each word's last token given ``context`` tokens before it."""
    ids, out = [], {}
    with torch.no_grad():
        for w in words:
            if not is_speech_word(w):
                continue
            ids += lm.tokenizer(w, add_special_tokens=False)["input_ids"]
            window = torch.tensor([ids[max(0, len(ids) - 1 - context):]])
            hidden = lm.model(input_ids=window, output_hidden_states=True).hidden_states[layer]
            out[w] = hidden[0, -1].numpy()
    return out


def test_shapes_streams_and_metadata(feats):
    n_times = math.floor(DURATION * SFREQ)
    assert feats.n_times == n_times == 300 and feats.sfreq == SFREQ
    assert feats.data.shape == (300, 32 + 44 + 40) and feats.data.dtype == np.float32
    assert tuple(feats.streams) == STREAM_NAMES == ("word", "phoneme", "spectrogram")
    assert feats.streams == {"word": (0, 32), "phoneme": (32, 76), "spectrogram": (76, 116)}
    assert feats.stream("phoneme").shape == (300, 44)
    assert np.all(np.isfinite(feats.data))
    meta = feats.metadata
    assert meta["layer"] == 2 and meta["context_tokens"] == 5 and meta["n_words"] == 10
    assert meta["unknown_phonemes"] == {} and meta["audio_sfreq"] == FS
    assert meta["phonemes"] == list(PHONEMES)


def test_gpt2_sized_model_gives_852_columns(story):
    wav, grid = story
    gpt2_sized = make_random_language_model(VOCAB, n_layers=1, hidden_size=768, n_heads=12,
                                            max_positions=32)
    feats = extract_features(wav, grid, language_model=gpt2_sized, layer=1, context_tokens=20)
    assert feats.d_stim == 852 and feats.data.shape == (300, 852)
    assert feats.streams == {"word": (0, 768), "phoneme": (768, 812),
                             "spectrogram": (812, 852)}


def test_word_stream_equals_lm_hidden_state_over_each_word(feats, lm):
    word = feats.stream("word")
    ref = _lm_reference(lm, [w for _, _, w in WORDS], layer=2, context=5)
    centres = (np.arange(feats.n_times) + 0.5) / SFREQ
    for a, b, w in WORDS:
        inside = (centres >= a) & (centres < b)
        assert inside.sum() >= round((b - a) * SFREQ) - 1
        if is_speech_word(w):
            np.testing.assert_allclose(word[inside], np.repeat(ref[w][None], inside.sum(), 0),
                                       rtol=1e-4, atol=1e-5)
            # the word starts within one frame of floor(onset * sfreq)
            first = np.flatnonzero(np.all(np.isclose(word, ref[w], atol=1e-5), axis=1))[0]
            assert abs(first - math.floor(a * SFREQ)) <= 1
        else:
            assert np.all(word[inside] == 0)  # silence and laughter: zeros


def test_phoneme_stream_lines_up_with_the_textgrid(feats):
    phon = feats.stream("phoneme")
    np.testing.assert_array_equal(phon, phoneme_onehot(_phones(), feats.n_times))
    assert np.all(phon.sum(axis=1) == 1)
    for a, b, label in _phones():
        col = PHONEMES.index(normalize_phoneme(label))
        k0, k1 = math.floor(a * SFREQ), math.floor(b * SFREQ)
        owned = np.flatnonzero(phon[:, col] == 1)
        here = owned[(owned >= k0 - 1) & (owned <= k1 + 1)]
        if b - a >= 1 / SFREQ:
            assert abs(here[0] - k0) <= 1 and abs(here[-1] + 1 - k1) <= 1


def test_mel_stream_lines_up_with_the_audio(feats):
    mel = feats.stream("spectrogram").astype(np.float64)
    centres = mel_frequencies(40, fmax=10000.0)[1:-1]
    for a, b, w in WORDS:
        if w not in TONES:
            continue
        band = int(np.argmin(np.abs(centres - TONES[w])))
        power = np.exp(mel[:, band])
        steady = np.median(power[math.floor(a * SFREQ) + 3:math.floor(b * SFREQ) - 3])
        on = np.flatnonzero(power > steady / 2)
        assert abs(on[0] - math.floor(a * SFREQ)) <= 1
        assert abs(on[-1] - math.floor(b * SFREQ)) <= 1
        assert np.all(np.diff(on) == 1)


def test_alignment_api_matches_textgrid_api(story, feats, lm):
    wav, _ = story
    again = features_from_alignment(wav, WORDS, _phones(), language_model=lm, layer=2,
                                    context_tokens=5)
    np.testing.assert_array_equal(again.data, feats.data)
    # a waveform array instead of a file (int16 scaling undone)
    x = wavfile.read(wav)[1] / 32768.0
    from_array = features_from_alignment((x, FS), WORDS, _phones(), language_model=lm,
                                         layer=2, context_tokens=5)
    np.testing.assert_allclose(from_array.data, feats.data, rtol=1e-5, atol=1e-5)


def test_podcast_style_words_without_phones(story, lm, catch_logs):
    wav, _ = story
    words = [(a, b, w) for a, b, w in WORDS if is_speech_word(w)][:5]  # transcript: words only
    with catch_logs("warning") as log:
        out = features_from_alignment(wav, words, None, language_model=lm, layer=1,
                                      context_tokens=3)
    assert any("phoneme stream is all zeros" in m for m in log.messages)
    assert np.all(out.stream("phoneme") == 0) and out.n_times == 300
    assert np.all(out.stream("word")[math.ceil(words[-1][1] * SFREQ):] == 0)
    with pytest.raises(ValueError, match="'words' interval.*outside the audio"):
        features_from_alignment(wav, [*words, (5.9, 6.2, "late")], None, language_model=lm,
                                layer=1)


def test_tolerance_one_frame(tmp_path, lm):
    # a TextGrid 15 ms longer than the audio is accepted (< 1 frame), 30 ms is not
    wav, grid = _write_story(tmp_path, grid_xmax=DURATION + 0.015)
    assert extract_features(wav, grid, language_model=lm, layer=1).n_times == 300
    wav, grid = _write_story(tmp_path, grid_xmax=DURATION + 0.03)
    with pytest.raises(ValueError, match="past the end of the audio.*'tolerance'"):
        extract_features(wav, grid, language_model=lm, layer=1)
    assert extract_features(wav, grid, language_model=lm, layer=1,
                            tolerance=0.05).n_times == 300


def test_errors(tmp_path, story, lm, catch_logs):
    wav, grid = story
    with pytest.raises(FileNotFoundError, match="'audio'.*missing.wav"):
        extract_features(tmp_path / "missing.wav", grid, language_model=lm, layer=1)
    with pytest.raises(FileNotFoundError, match="'textgrid'.*missing.TextGrid"):
        extract_features(wav, tmp_path / "missing.TextGrid", language_model=lm, layer=1)
    # a TextGrid that does not cover the audio: the audio is 1 s longer than the alignment
    longer = tmp_path / "long"
    longer.mkdir()
    wav_long, grid_short = _write_story(longer, duration=DURATION + 1.0)
    with pytest.raises(ValueError, match="does not cover the audio.*6.000.*7.000"):
        extract_features(wav_long, grid_short, language_model=lm, layer=1)
    # wrong sampling rate: 16 kHz cannot hold 0-10 kHz
    low = tmp_path / "low"
    low.mkdir()
    wav16, grid16 = _write_story(low, fs=16000)
    with pytest.raises(ValueError, match="Wrong sampling rate for 'audio'.*16000 Hz.*'fmax'"):
        extract_features(wav16, grid16, language_model=lm, layer=1)
    assert extract_features(wav16, grid16, language_model=lm, layer=1,
                            fmax=8000.0).data.shape == (300, 116)
    # unknown phone labels: reported before any language-model work (the model named here
    # does not exist, so reaching it would raise LanguageModelNotFoundError instead)
    odd = tmp_path / "odd"
    odd.mkdir()
    phones = [*_phones()[:-1], (5.31, 6.0, "{CG}")]
    wav_odd, grid_odd = _write_story(odd, phones=phones)
    with pytest.raises(ValueError, match=r"'\{CG\}' x1"):
        extract_features(wav_odd, grid_odd, language_model="neurofuse-tests/no-such-model",
                         on_unknown_phoneme="raise")
    with catch_logs("warning") as log:
        out = extract_features(wav_odd, grid_odd, language_model=lm, layer=1)
    assert any("'{CG}' x1" in m for m in log.messages)
    assert out.metadata["unknown_phonemes"] == {"{CG}": 1}
    assert np.all(out.stream("phoneme")[math.ceil(5.31 * SFREQ):] == 0)
    # the language model is not available offline
    with pytest.raises(LanguageModelNotFoundError, match="huggingface-cli download"):
        extract_features(wav, grid, language_model="neurofuse-tests/no-such-model")
    with pytest.raises(ValueError, match="'layer' = 7 is out of range"):
        extract_features(wav, grid, language_model=lm)
    with pytest.raises(ValueError, match="on_unknown_phoneme"):
        extract_features(wav, grid, language_model=lm, layer=1, on_unknown_phoneme="skip")
    with pytest.raises(TypeError, match="'audio'"):
        features_from_alignment(12, WORDS, None, language_model=lm)
