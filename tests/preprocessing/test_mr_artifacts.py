"""The gradient-artefact check: the TR-harmonic contrast on clean and artefacted EEG.

Clean EEG here is 1/f-like (AR(1)) noise with an alpha rhythm, strong 50 Hz line noise and
evoked responses at jittered (not TR-locked) times; the gradient artefact is a TR-periodic
train of per-slice switching waveforms (20 slices per TR), scaled per channel, as the MR
gradients induce it with synchronised clocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from neurofuse.preprocessing.mr_artifacts import (
    GRADIENT_THRESHOLD,
    check_gradient_artifact,
    gradient_artifact_score,
)

SFREQ, TR = 500.0, 2.0


def clean_eeg(n_channels, n_times, sfreq=SFREQ, seed=0):
    """1/f-like noise + 10 Hz alpha + 50 Hz line noise + ERPs at 2-3 s intervals, in V."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / sfreq
    x = lfilter([1.0], [1.0, -0.95], rng.standard_normal((n_channels, n_times)), axis=-1)
    x += 3 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 2 * np.pi, (n_channels, 1)))
    x += 5 * np.sin(2 * np.pi * 50 * t)
    onset = 1.0
    while onset < t[-1] - 1:
        i = int(onset * sfreq)
        erp = 4 * np.sin(np.pi * np.arange(int(0.4 * sfreq)) / (0.4 * sfreq))
        x[:, i:i + erp.size] += erp[: max(0, n_times - i)]
        onset += rng.uniform(2.0, 3.0)
    return 1e-6 * x


def gradient_artifact(n_channels, n_times, amplitude, sfreq=SFREQ, tr=TR, n_slices=20, seed=0):
    """A TR-periodic gradient artefact: per slice, square-wave readout switching, in V."""
    rng = np.random.default_rng(seed)
    per_tr = int(round(tr * sfreq))
    per_slice = per_tr // n_slices
    template = np.zeros(per_tr)
    u = np.arange(per_slice) / per_slice
    for s in range(n_slices):
        template[s * per_slice:(s + 1) * per_slice] = np.sign(np.sin(2 * np.pi * 3 * u)) * (
            1 + 0.1 * s)
    train = np.tile(template, n_times // per_tr + 1)[:n_times]
    return amplitude * rng.uniform(0.5, 1.5, (n_channels, 1)) * train


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_eeg_passes_artifacted_is_refused(seed):
    n = int(40 * SFREQ)
    clean = clean_eeg(8, n, seed=seed)
    score = gradient_artifact_score(clean, SFREQ, TR)
    assert 0.6 < score["score"] < 1.5  # no TR-periodic part: contrast about 1
    assert score["score"] < GRADIENT_THRESHOLD
    dirty = clean + gradient_artifact(8, n, 50 * clean.std(), seed=seed)
    result = gradient_artifact_score(dirty, SFREQ, TR)
    assert result["score"] > 100 * GRADIENT_THRESHOLD
    names = [f"EEG{i:03d}" for i in range(8)]
    with pytest.raises(ValueError, match=r"gradient artefact.*1/TR = 0\.5 Hz.*threshold 3") as e:
        check_gradient_artifact(dirty, SFREQ, TR, what="The EEG 'x.vhdr'", ch_names=names)
    assert "'x.vhdr'" in str(e.value) and "EEG0" in str(e.value)
    assert check_gradient_artifact(clean, SFREQ, TR)["score"] == pytest.approx(score["score"])
    assert check_gradient_artifact(dirty, SFREQ, TR, threshold=np.inf)["score"] > 100


def test_score_is_scale_free_and_grows_with_the_artifact():
    n = int(40 * SFREQ)
    clean = clean_eeg(4, n)
    art = gradient_artifact(4, n, clean.std())
    base = gradient_artifact_score(clean, SFREQ, TR)["score"]
    assert gradient_artifact_score(clean * 1e6, SFREQ, TR)["score"] == pytest.approx(base)
    scores = [gradient_artifact_score(clean + a * art, SFREQ, TR)["score"]
              for a in (0.0, 0.1, 1.0, 10.0)]
    assert scores[0] == pytest.approx(base)
    assert np.all(np.diff(scores) > 0)


def test_white_noise_and_a_pure_comb():
    """Analytic limits: no periodic part gives contrast ~1; a noiseless TR-periodic signal
    puts all its power in the harmonic bins (contrast limited only by rounding)."""
    rng = np.random.default_rng(3)
    n = int(64 * SFREQ)
    white = rng.standard_normal((16, n))
    result = gradient_artifact_score(white, SFREQ, TR)
    assert 0.7 < result["score"] < 1.3
    assert result["n_segments"] == 7 and result["resolution"] == pytest.approx(1 / (8 * TR))
    comb = gradient_artifact(2, n, 1.0)
    assert gradient_artifact_score(comb, SFREQ, TR)["score"] > 1e6


def test_line_noise_harmonics_are_left_out():
    """Strong 50/100/150 Hz line noise sits on harmonics of 1/TR but does not count."""
    n = int(40 * SFREQ)
    t = np.arange(n) / SFREQ
    clean = clean_eeg(4, n)
    line = 1e-3 * sum(np.sin(2 * np.pi * f * t) for f in (50, 100, 150))
    score = gradient_artifact_score(clean + line, SFREQ, TR)
    assert score["score"] < GRADIENT_THRESHOLD
    assert not np.any(np.isclose(score["frequencies"][:, None], [50, 100, 150], atol=1.0))


def test_too_short_and_bad_band():
    with pytest.raises(ValueError, match="at least 4 TRs"):
        gradient_artifact_score(np.zeros((2, int(3 * TR * SFREQ))), SFREQ, TR)
    with pytest.raises(ValueError, match="No harmonic"):
        gradient_artifact_score(np.ones((2, int(10 * TR * SFREQ))), SFREQ, TR, fmin=50.2,
                                fmax=50.4)
