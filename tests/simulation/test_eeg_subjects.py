"""EEG subjects of the naturalistic study: average-referenced noise at the requested CNR."""

import numpy as np

from neurofuse.simulation.eeg_subjects import referenced_noise


def test_referenced_noise_has_the_requested_cnr_and_zero_electrode_mean():
    rng = np.random.default_rng(0)
    n_el, n_times, cnr = 20, 40000, 0.5
    # electrodes of unequal power: the uniform 1/sqrt(1 - 1/n) correction would miss by ~9 %
    clean = rng.standard_normal((n_el, n_times)) * rng.uniform(0.5, 2.0, (n_el, 1))
    clean -= clean.mean(axis=0, keepdims=True)  # a referenced signal
    eeg = referenced_noise(np.random.default_rng(1), clean, cnr, 3)
    assert eeg.shape == (3, n_el, n_times)
    np.testing.assert_allclose(eeg.mean(axis=1), 0, atol=1e-6 * np.abs(eeg).max())  # float32
    noise = eeg - clean
    ratio = clean.std(axis=1) / noise.std(axis=2)  # (n_rep, n_el): CNR per electrode
    np.testing.assert_allclose(ratio, cnr, rtol=0.03)
    # independent repeats; no noise at an infinite CNR (float32 like the store)
    assert abs(np.corrcoef(noise[0, 0], noise[1, 0])[0, 1]) < 0.03
    np.testing.assert_allclose(referenced_noise(rng, clean, np.inf, 2)[1], clean, rtol=0,
                               atol=1e-6 * np.abs(clean).max())
