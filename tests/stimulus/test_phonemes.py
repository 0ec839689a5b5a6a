"""Tests for the 44-dim phoneme one-hot stream (neurofuse.stimulus.phonemes)."""

import math

import numpy as np
import pytest

from neurofuse.stimulus.phonemes import (
    PHONEMES,
    find_unknown_phonemes,
    normalize_phoneme,
    phoneme_onehot,
)

# The CMU Pronouncing Dictionary's symbol set (cmudict.symbols), stress digits removed.
CMU_SYMBOLS = ["AA", "AA0", "AA1", "AA2", "AE", "AE0", "AE1", "AE2", "AH", "AH0", "AH1", "AH2",
               "AO", "AO0", "AO1", "AO2", "AW", "AW0", "AW1", "AW2", "AY", "AY0", "AY1", "AY2",
               "B", "CH", "D", "DH", "EH", "EH0", "EH1", "EH2", "ER", "ER0", "ER1", "ER2", "EY",
               "EY0", "EY1", "EY2", "F", "G", "HH", "IH", "IH0", "IH1", "IH2", "IY", "IY0", "IY1",
               "IY2", "JH", "K", "L", "M", "N", "NG", "OW", "OW0", "OW1", "OW2", "OY", "OY0",
               "OY1", "OY2", "P", "R", "S", "SH", "T", "TH", "UH", "UH0", "UH1", "UH2", "UW",
               "UW0", "UW1", "UW2", "V", "W", "Y", "Z", "ZH"]

# A stretch of a LeBel-style phone tier (P2FA labels as in ds003020's TextGrids).
LEBEL_PHONES = [
    (0.0, 0.43, "sp"), (0.43, 0.51, "AY1"), (0.51, 0.6, "W"), (0.6, 0.68, "AH0"),
    (0.68, 0.75, "Z"), (0.75, 1.02, "{BR}"), (1.02, 1.1, "IH0"), (1.1, 1.19, "N"),
    (1.19, 1.44, "{LG}"), (1.44, 1.52, "DH"), (1.52, 1.6, "AH0"), (1.6, 1.83, "K"),
    (1.83, 1.95, "AA1"), (1.95, 2.05, "R"), (2.05, 2.2, "{NS}"), (2.2, 2.27, "ZH"),
    (2.27, 2.31, "ER0"), (2.31, 2.6, "{LS}"), (2.6, 2.65, "OY2"), (2.65, 3.0, "sp"),
]


def test_44_labels_are_cmu_plus_lebel_non_speech():
    assert len(PHONEMES) == 44 and len(set(PHONEMES)) == 44
    cmu = {s.rstrip("012") for s in CMU_SYMBOLS}
    assert len(cmu) == 39
    assert set(PHONEMES[:39]) == cmu
    assert PHONEMES[39:] == ("sp", "{BR}", "{LG}", "{LS}", "{NS}")


@pytest.mark.parametrize(("label", "expected"), [
    ("ah0", "AH"), ("AH1", "AH"), (" er2 ", "ER"), ("zh", "ZH"), ("{lg}", "{LG}"),
    ("LG", "{LG}"), ("{BR}", "{BR}"), ("SP", "sp"), ("sil", "sp"), ("{SL}", "sp"), ("", ""),
    ("{CG}", None), ("ns_ap", None), ("XX", None),
])
def test_normalize_phoneme(label, expected):
    assert normalize_phoneme(label) == expected


def _reference_onehot(phones, n_times, sfreq):
    """Frame by frame: the label of the interval holding the frame centre."""
    out = np.zeros((n_times, 44), dtype=np.float32)
    for k in range(n_times):
        c = (k + 0.5) / sfreq
        for a, b, label in phones:
            if a <= c < b:
                name = normalize_phoneme(label)
                if name:
                    out[k, PHONEMES.index(name)] = 1
    return out


def test_onehot_matches_frame_by_frame_reference_and_onsets():
    sfreq, n_times = 50.0, 150
    onehot = phoneme_onehot(LEBEL_PHONES, n_times, sfreq=sfreq)
    assert onehot.shape == (150, 44) and onehot.dtype == np.float32
    np.testing.assert_array_equal(onehot, _reference_onehot(LEBEL_PHONES, n_times, sfreq))
    assert np.all(onehot.sum(axis=1) == 1)  # the tier covers the story: one label per frame
    for a, b, label in LEBEL_PHONES:  # each phone lines up with its interval within a frame
        col = PHONEMES.index(normalize_phoneme(label))
        k0 = math.floor(a * sfreq)
        k1 = math.floor(b * sfreq)
        assert onehot[min(k0 + 1, n_times - 1), col] == 1 or b - a < 2 / sfreq
        assert onehot[max(k0 - 1, 0):k1 + 2, col].sum() >= round((b - a) * sfreq) - 1
    # the same phones at another rate
    np.testing.assert_array_equal(phoneme_onehot(LEBEL_PHONES, 300, sfreq=100.0),
                                  _reference_onehot(LEBEL_PHONES, 300, 100.0))


def test_unknown_labels_warn_raise_ignore(catch_logs):
    phones = [*LEBEL_PHONES[:5], (0.75, 1.02, "{CG}"), (1.02, 1.1, "XX"), (1.1, 1.2, "{cg}")]
    assert find_unknown_phonemes(phones) == {"{CG}": 1, "XX": 1, "{cg}": 1}
    assert find_unknown_phonemes(["{CG}", "{CG}", "AH0"]) == {"{CG}": 2}
    with catch_logs("warning") as log:
        onehot = phoneme_onehot(phones, 60)
    assert len(log.records) == 1
    msg = log.messages[0]
    assert "3 of 8" in msg and "'{CG}' x1" in msg and "'XX' x1" in msg
    assert np.all(onehot[38:60] == 0)  # unknown labels give zeros
    with pytest.raises(ValueError, match=r"'XX' x1.*on_unknown_phoneme"):
        phoneme_onehot(phones, 60, on_unknown="raise")
    with catch_logs("warning") as log:
        np.testing.assert_array_equal(phoneme_onehot(phones, 60, on_unknown="ignore"), onehot)
    assert not log.records
    with pytest.raises(ValueError, match="on_unknown"):
        phoneme_onehot(phones, 60, on_unknown="drop")


def test_aliases_map_extra_labels():
    phones = [(0.0, 0.2, "{CG}"), (0.2, 0.4, "AH0")]
    onehot = phoneme_onehot(phones, 20, aliases={"{CG}": "{NS}"})
    assert np.all(onehot[:10, PHONEMES.index("{NS}")] == 1)
    assert np.all(onehot[10:, PHONEMES.index("AH")] == 1)
    assert find_unknown_phonemes(phones, aliases={"cg": "ns"}) == {}
    with pytest.raises(ValueError, match="not one of the 44"):
        phoneme_onehot(phones, 20, aliases={"{CG}": "COUGH"})


def test_bad_intervals():
    with pytest.raises(ValueError, match="start <= end"):
        phoneme_onehot([(1.0, 0.5, "AH0")], 100)
    with pytest.raises(ValueError, match=r"\(start, end, label\)"):
        phoneme_onehot([(0.0, "AH0")], 100)
    # overlapping intervals: the later one wins, still one-hot
    onehot = phoneme_onehot([(0.0, 1.0, "AA1"), (0.5, 1.0, "B")], 50)
    assert np.all(onehot.sum(axis=1) == 1)
    assert onehot[30, PHONEMES.index("B")] == 1
