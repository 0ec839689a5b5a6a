"""EEG in the joint model: the average-referenced EEG head, EEG subjects in the simulator,
training on MEG + EEG + fMRI subjects and predicted EEG as ``mne.io.RawArray`` (issue 15,
item 6)."""

import numpy as np
import pytest
import scipy.sparse
import torch

from neurofuse.systems.joint.heads import EEGHead, MEGHead, average_reference
from neurofuse.systems.joint.model import JointModel
from neurofuse.systems.joint.encoder import StimulusEncoder


def _sparse_morph(n_sub, n_fs, seed=0):
    m = scipy.sparse.random(n_sub, n_fs, density=0.1, random_state=seed) \
        + scipy.sparse.eye(n_sub, n_fs)
    return scipy.sparse.csr_array(m)


def test_eeg_head_is_average_referenced_leadfield_times_morph():
    """EEG = P L M s with P = I - 11^T/n, against numpy and MNE's average reference."""
    import mne

    rng = np.random.default_rng(3)
    n_el, n_sub, n_fs = 9, 30, 40
    L = rng.standard_normal((n_el, n_sub)) * 1e-7 + 3e-7  # a common offset to remove
    M = _sparse_morph(n_sub, n_fs)
    head = EEGHead.from_forward(L, M)
    s = rng.standard_normal((2, 50, n_fs))
    ours = head(torch.as_tensor(s, dtype=torch.float64)).numpy() / head.scale  # (B, T, n_el)
    P = np.eye(n_el) - np.ones((n_el, n_el)) / n_el
    ref = np.einsum("ck,btk->btc", P @ L @ M.toarray(), s)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    assert np.abs(ours.sum(-1)).max() < 1e-5 * np.abs(ours).max()  # zero mean over electrodes
    # MNE's average reference of the unreferenced EEG gives the same data
    info = mne.create_info([f"E{i}" for i in range(n_el)], 50.0, "eeg")
    raw = mne.io.RawArray((L @ M.toarray() @ s[0].T), info, verbose="error")
    raw.set_eeg_reference("average", projection=False, verbose="error")
    np.testing.assert_allclose(ours[0].T, raw.get_data(), rtol=1e-5,
                               atol=1e-5 * np.abs(ref).max())
    # a lead field that is referenced already gives the same head (P is idempotent), and an
    # MEG head of the referenced lead field is the EEG head
    again = EEGHead.from_forward(average_reference(L), M)
    torch.testing.assert_close(again.gain, head.gain)
    torch.testing.assert_close(MEGHead.from_forward(P @ L, M).gain, head.gain)
    with pytest.raises(ValueError, match="n_electrodes >= 2"):
        EEGHead.from_forward(L[:1], M)


def test_model_eeg_output_is_head_of_its_sources():
    """The model's fused sensor path gives the EEG head applied to its own sources."""
    rng = np.random.default_rng(0)
    n_fs, d_stim = 40, 5
    M = _sparse_morph(30, n_fs, seed=1)
    eeg = EEGHead.from_forward(rng.standard_normal((8, 30)), M)
    meg = MEGHead.from_forward(rng.standard_normal((6, 30)), M)
    enc = StimulusEncoder(d_stim=d_stim, d_src=n_fs, d_model=8, n_layers=1, n_heads=2, d_ff=16,
                          window=5)
    model = JointModel(enc, meg_heads={"A": meg}, eeg_heads={"A": eeg, "B": eeg}).eval()
    x = torch.randn(2, 30, d_stim)
    with torch.no_grad():
        out = model(x, meg=["A"], eeg=["A", "B"])
    assert set(out.eeg) == {"A", "B"} and set(out.meg) == {"A"}
    s = out.sources.double().numpy()
    gain = average_reference(eeg.gain.double().numpy())  # already referenced: unchanged
    np.testing.assert_allclose(out.eeg["A"].numpy(), s @ gain.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.meg["A"].numpy(), s @ meg.gain.double().numpy().T,
                               rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- a tiny study


@pytest.fixture(scope="module")
def eeg_study(tmp_path_factory):
    """Tiny oct5 studies: 1 MEG + 1 fMRI (+ 1 noiseless EEG) subject."""
    from neurofuse.data.store import read_dataset
    from neurofuse.simulation.study import StudyConfig, simulate_study

    root = tmp_path_factory.mktemp("eeg")
    base = StudyConfig.preset("tiny", spacing="oct5")
    with_eeg = StudyConfig.preset("tiny", spacing="oct5", n_eeg_subjects=1, eeg_cnr="inf")
    return (read_dataset(simulate_study(base, root / "base")),
            read_dataset(simulate_study(with_eeg, root / "eeg")))


def test_defaults_leave_studies_as_they_were():
    from neurofuse.simulation.study import StudyConfig

    cfg = StudyConfig.preset("tiny")
    assert not any(k.startswith(("eeg_", "n_eeg")) for k in cfg.to_dict())
    assert [m for _, _, m in cfg.subject_plan()] == [["meg"], ["fmri"]]
    eeg = StudyConfig.preset("tiny", n_eeg_subjects=2, eeg_cnr="inf")
    d = eeg.to_dict()
    assert d["n_eeg_subjects"] == 2 and d["eeg_cnr"] == "inf"
    assert StudyConfig.from_dict(d) == eeg
    assert [m for _, _, m in eeg.subject_plan()] == [["meg"], ["fmri"], ["eeg"], ["eeg"]]
    with pytest.raises(ValueError, match="n_eeg_subjects"):
        StudyConfig.preset("tiny", n_eeg_subjects=-1)
    with pytest.raises(ValueError, match="eeg_cnr"):
        StudyConfig.preset("tiny", n_eeg_subjects=1, eeg_cnr=0)


def test_simulated_eeg_is_referenced_leadfield_morph_sources(eeg_study):
    """EEG subjects leave the other subjects' data unchanged; their (noiseless) EEG is the
    stored average-referenced lead field times the morph times the true sources."""
    base, ds = eeg_study
    assert ds.subjects == ["S01", "S02", "S03"] and ds.modalities("S03") == ["eeg"]
    for story in base.stories:
        np.testing.assert_array_equal(ds.meg("S01", story), base.meg("S01", story))
        np.testing.assert_array_equal(ds.fmri("S02", story), base.fmri("S02", story))
    story = ds.splits["test"][0]
    eeg = np.asarray(ds.data("S03", "eeg", story), np.float64)  # (n_rep, n_el, n_times)
    L = np.asarray(ds.leadfield("S03", "eeg"), np.float64)
    s = np.asarray(ds.ground_truth(f"sources/{story}"), np.float64)
    pred = average_reference(L) @ (ds.morph("S03") @ s)
    np.testing.assert_allclose(eeg[0], pred, rtol=1e-4, atol=1e-4 * np.abs(pred).max())
    assert np.abs(eeg.mean(axis=1)).max() < 1e-5 * np.abs(eeg).max()
    info = ds.info("S03", "eeg")
    assert len(info["ch_names"]) == L.shape[0] == 70  # fsaverage_1010
    assert any(p["desc"].startswith("Average EEG reference") for p in info["projs"])


def test_meg_eeg_fmri_study_fits_and_predicts_eeg_raw(eeg_study, tmp_path):
    import mne

    from neurofuse.evaluation.prediction import prediction_table
    from neurofuse.systems.joint.predict import predict_eeg, predict_sources, write_predictions
    from neurofuse.systems.joint.trainer import fit, load_fit_config

    _, ds = eeg_study
    cfg, enc = load_fit_config("tiny")
    history = fit(ds, tmp_path / "run", train_config=dict(cfg.to_dict(), max_epochs=1),
                  encoder_kwargs=enc)
    assert len(history) == 1
    row = history[0]
    assert 0 < row["train_eeg"] < 2 and np.isfinite(row["val_eeg_r"])
    model = JointModel.load(tmp_path / "run" / "model")
    assert list(model.eeg_heads) == ["S03"] and "S03" not in model.meg_heads
    story = ds.splits["test"][0]
    sources = predict_sources(model, np.asarray(ds.features(story)))
    raw = predict_eeg(model, "S03", sources)
    info = ds.info("S03", "eeg")
    assert isinstance(raw, mne.io.RawArray)
    assert raw.ch_names == info["ch_names"] and set(raw.get_channel_types()) == {"eeg"}
    assert raw.n_times == ds.n_times(story) and raw.info["sfreq"] == ds.sfreq
    data = raw.get_data()
    np.testing.assert_allclose(data.mean(0), 0, atol=1e-5 * np.abs(data).max())
    # = the stored referenced lead field times the morph times the model's sources (its scale)
    L = average_reference(np.asarray(ds.leadfield("S03", "eeg"), np.float64))
    np.testing.assert_allclose(data, L @ (ds.morph("S03") @ sources), rtol=1e-4,
                               atol=1e-4 * np.abs(data).max())
    written = write_predictions(model, np.asarray(ds.features(story)), tmp_path / "pred")
    assert tmp_path / "pred" / "S03_eeg_pred-raw.fif" in written
    back = mne.io.read_raw_fif(tmp_path / "pred" / "S03_eeg_pred-raw.fif", verbose="error")
    assert back.ch_names == info["ch_names"]
    rows, maps = prediction_table(ds, model=model)
    eeg_rows = [r for r in rows if r["modality"] == "eeg"]
    assert [r["subject"] for r in eeg_rows] == ["S03"] and eeg_rows[0]["n_targets"] == 70
    assert [r["modality"] for r in rows] == ["meg", "eeg", "fmri"]
    assert maps[("S03", "eeg", "neurofuse")].shape == (70,)


def test_eeg_ridge_ceiling_is_fitted_and_scored_like_meg(eeg_study):
    from neurofuse.baselines.ridge import fit_meg_ceiling
    from neurofuse.evaluation.prediction import heldout_r

    _, ds = eeg_study
    ceiling = fit_meg_ceiling(ds, "S03", modality="eeg", n_components=8, cv=2)
    assert ceiling.modality == "eeg"
    stories = ds.splits["test"]
    r = ceiling.evaluate(ds, stories)
    ref = heldout_r([ceiling.predict_story(ds, s) for s in stories],
                    [np.asarray(ds.data("S03", "eeg", s, average=True)) for s in stories])
    np.testing.assert_allclose(r, ref, atol=1e-5)
    assert r.shape == (70,) and np.nanmean(r) > 0  # noiseless EEG of a linear world
    with pytest.raises(ValueError, match="no eeg data"):
        fit_meg_ceiling(ds, "S01", modality="eeg")
    with pytest.raises(ValueError, match="modality"):
        fit_meg_ceiling(ds, "S03", modality="fmri")
