"""System B's paired data: subject split, per-channel standardisation, test never read."""

import numpy as np
import pytest

from neurofuse.data.store import DatasetWriter, read_dataset
from neurofuse.systems.eeg2meg.data import DataConfig, PairedEpochs, eeg_epochs

SFREQ = 250.0


def _infos():
    import mne

    eeg = mne.create_info([f"EEG{i:03d}" for i in range(4)], SFREQ, "eeg")
    meg = mne.create_info([f"MEG{i:04d}" for i in range(3)], SFREQ, ["grad", "grad", "mag"])
    return eeg, meg


def _store(tmp_path, n_sub=4, eeg_only=("sub-09",), n_epochs=5, n_times=50):
    rng = np.random.default_rng(0)
    eeg_info, meg_info = _infos()
    truth = {}
    with DatasetWriter(tmp_path / "w", sfreq=SFREQ) as w:
        for k in range(n_sub):
            sub = f"sub-{k + 1:02d}"
            w.add_subject(sub, modalities=["eeg", "meg"])
            w.add_sensors(sub, "eeg", info=eeg_info, units="V")
            w.add_sensors(sub, "meg", info=meg_info, units="T")
            eeg = rng.normal(1e-6 * (k + 1), 1e-5, (n_epochs, 4, n_times))
            meg = rng.normal(0, [[1e-11], [2e-11], [1e-13]], (n_epochs, 3, n_times))
            labels = np.arange(n_epochs) % 2
            for mod, x in (("eeg", eeg), ("meg", meg)):
                w.write_epochs(sub, mod, "faces", x, events=np.arange(n_epochs) * 2.0,
                               labels=labels, event_id={"a": 0, "b": 1}, tmin=-0.1)
            truth[sub] = (eeg, meg)
        for sub in eeg_only:
            w.add_subject(sub, modalities=["eeg"])
            w.add_sensors(sub, "eeg", info=eeg_info, units="V")
            w.write_epochs(sub, "eeg", "imagery", rng.normal(0, 1e-5, (3, 4, n_times)),
                           events=np.arange(3.0), labels=np.array([0, 1, 0]), tmin=0.0)
    return tmp_path / "w", truth


def test_split_by_subject_and_scale(tmp_path):
    path, truth = _store(tmp_path)
    pe = PairedEpochs(path, {"n_val_subjects": 1, "n_test_subjects": 1})
    assert pe.subjects == {"train": ["sub-01", "sub-02"], "val": ["sub-03"], "test": ["sub-04"]}
    # the scale is the mean and std over the training subjects' epochs and samples only
    eeg_train = np.concatenate([truth[s][0] for s in ("sub-01", "sub-02")])
    mean = eeg_train.mean(axis=(0, 2))
    std = eeg_train.std(axis=(0, 2))
    np.testing.assert_allclose(pe.eeg_scale[0], mean, rtol=1e-4)
    np.testing.assert_allclose(pe.eeg_scale[1], std, rtol=1e-4)
    eeg, meg, labels = pe.arrays("train")
    assert eeg.shape == (10, 4, 50) and meg.shape == (10, 3, 50)
    np.testing.assert_allclose(eeg.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(meg.std(axis=(0, 2)), 1, atol=1e-3)
    np.testing.assert_array_equal(labels, np.tile(np.arange(5) % 2, 2))
    # standardisation round-trips to physical units
    phys = pe.to_physical(meg)
    np.testing.assert_allclose(phys[:5], truth["sub-01"][1], rtol=1e-4, atol=1e-16)
    # items of a split load the same epochs as arrays()
    e, m = pe.load(pe.items("val")[:2])
    np.testing.assert_allclose(e, pe.arrays("val")[0][:2], rtol=1e-6)


def test_test_subjects_never_read_in_training(tmp_path, monkeypatch):
    path, _ = _store(tmp_path)
    ds = read_dataset(path)
    seen = []
    orig = type(ds).epochs

    def spy(self, subject, modality, name):
        seen.append(subject)
        return orig(self, subject, modality, name)

    monkeypatch.setattr(type(ds), "epochs", spy)
    pe = PairedEpochs(ds, DataConfig(test_subjects=["sub-02"], n_val_subjects=1))
    assert pe.subjects["test"] == ["sub-02"] and "sub-02" not in pe.subjects["train"]
    pe.load(pe.items("train")), pe.load(pe.items("val")), pe.fingerprint()
    assert "sub-02" not in seen and "sub-09" not in seen


def test_errors_name_the_problem(tmp_path):
    path, _ = _store(tmp_path, n_sub=2)
    with pytest.raises(ValueError, match="none is left to train"):
        PairedEpochs(path, {"n_val_subjects": 1, "n_test_subjects": 1})
    with pytest.raises(ValueError, match="in both eeg and meg"):
        PairedEpochs(path, {"task": "imagery"})
    with pytest.raises(ValueError, match="Unknown DataConfig key"):
        PairedEpochs(path, {"n_tests": 1})
    with pytest.raises(ValueError, match="not paired subjects"):
        PairedEpochs(path, {"test_subjects": ["sub-09"]})


def test_eeg_only_subjects_in_the_model_scale(tmp_path):
    path, _ = _store(tmp_path)
    pe = PairedEpochs(path)
    x, labels = eeg_epochs(path, "sub-09", "imagery", eeg_scale=pe.eeg_scale)
    raw = np.asarray(read_dataset(path).epochs("sub-09", "eeg", "imagery"))
    np.testing.assert_allclose(x, (raw - pe.eeg_scale[0][:, None]) / pe.eeg_scale[1][:, None],
                               rtol=1e-5)
    np.testing.assert_array_equal(labels, [0, 1, 0])
    with pytest.raises(ValueError, match="channels"):
        eeg_epochs(path, "sub-09", "imagery", eeg_scale=(np.zeros(3), np.ones(3)))
