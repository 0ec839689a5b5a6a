"""Small dataset stores for the training tests.

``make_store`` writes a synthetic study directly with :class:`DatasetWriter` (5 Hz, TR 2 s,
12 fsaverage sources, one MEG and one fMRI subject): big enough to exercise the paper's
40-s pieces with a 20-s loss window, the curriculum, checkpoints and DDP, small enough that
a fit takes about a second. Pieces cover 20 TRs, longer than the 17-tap HRF, so every HRF
parameter gets a real gradient. The learning
test (test_trainer.py) uses a real simulated study instead.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch

from neurofuse.data.store import DatasetWriter, expected_n_trs, read_dataset

SFREQ, TR = 5.0, 2.0
N_FEAT, N_SRC_FS = 6, 12
# Tiny encoder used by the trainer tests; window in samples at 5 Hz.
SMALL_ENCODER = dict(d_model=8, n_layers=2, n_heads=2, d_ff=16, window=10)


def make_store(path, *, train_durations=(140.0, 140.0), val_duration=60.0, test_duration=60.0,
               n_repeats=3, seed=0, meg=True, fmri=True, meg_noise=None):
    """Write a synthetic dataset store and return it opened.

    Sources are a random linear, 3-sample-lagged function of the features; MEG is
    ``L M s + noise``; fMRI is the TR-average of ``|M s|`` + noise. Val and test stories have
    ``n_repeats`` presentations with independent noise.

    Parameters
    ----------
    train_durations : tuple of float
        Seconds per training story (whole TRs unless a test wants otherwise).
    n_repeats : int | dict
        Presentations of the val and test stories, or ``{"val": n, "test": m}``.
    meg_noise : dict | None
        ``{split: array (5,)}``: MEG noise SD per channel, relative to the signal SD, for the
        stories of that split (default 1: CNR 1 everywhere).
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((N_FEAT, N_SRC_FS))
    lf = rng.standard_normal((5, 10))
    m_meg = scipy.sparse.random(10, N_SRC_FS, density=0.3, random_state=seed + 1) \
        + scipy.sparse.eye(10, N_SRC_FS)
    m_fmri = scipy.sparse.random(8, N_SRC_FS, density=0.3, random_state=seed + 2) \
        + scipy.sparse.eye(8, N_SRC_FS)
    stories = [(f"train-{k}", "train", d) for k, d in enumerate(train_durations)]
    stories += [("val-0", "val", val_duration), ("test-0", "test", test_duration)]
    import mne

    info = mne.create_info([f"MEG{i:03d}" for i in range(5)], SFREQ, "mag")
    with DatasetWriter(path, sfreq=SFREQ, tr=TR,
                       feature_streams={"a": (0, 3), "b": (3, N_FEAT)}) as wr:
        if meg:
            wr.add_subject("M1", modalities=["meg"], info=info, leadfield=lf, morph=m_meg,
                           vertices=[np.arange(5), np.arange(5)])
        if fmri:
            wr.add_subject("F1", modalities=["fmri"], morph=m_fmri,
                           vertices=[np.arange(4), np.arange(4)])
        for name, split, dur in stories:
            n_times = int(round(dur * SFREQ))
            wr.add_story(name, split=split, n_times=n_times)
            x = rng.standard_normal((n_times, N_FEAT))
            wr.write_features(name, x)
            s = np.roll(x @ w, 3, axis=0)  # (T, n_src)
            reps = 1 if split == "train" else (
                n_repeats[split] if isinstance(n_repeats, dict) else n_repeats)
            if meg:
                clean = lf @ (m_meg @ s.T)  # (5, T)
                rel = (meg_noise or {}).get(split, np.ones(5))
                sd = np.asarray(rel, float)[:, None] * clean.std()
                wr.write_meg("M1", name, clean + sd * rng.standard_normal((reps, *clean.shape)))
            if fmri:
                n_tr = expected_n_trs(n_times, SFREQ, TR)
                spt = int(SFREQ * TR)
                env = np.abs(m_fmri @ s.T)[:, :n_tr * spt].reshape(8, n_tr, spt).mean(-1)
                wr.write_fmri("F1", name, env + 0.5 * env.std()
                              * rng.standard_normal((reps, *env.shape)))
    return read_dataset(path)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """Two 140-s training stories: 12 pieces of 40 s (loss 20 s); 1 MEG + 1 fMRI subject."""
    return make_store(tmp_path_factory.mktemp("store") / "small")


@pytest.fixture(scope="session")
def store_factory(tmp_path_factory):
    """``make_store`` with a fresh folder: ``store_factory(**kwargs)``."""
    def factory(**kwargs):
        return make_store(tmp_path_factory.mktemp("store") / "ds", **kwargs)

    return factory


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Run the training tests on one torch thread: the models here are tiny, so more threads
    only add synchronisation, and on a busy machine OpenMP's waiting threads make a step
    ~10x slower (measured). Module scope, so module fixtures (runs that tests compare
    with) use the same thread count as the tests: summation order changes with it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
