"""The subject level on a dataset store of recordings, written in ds000116's layout by the
loader tests' study writer: trained on the training runs' events only (the held-out run is
never read), the blockwise transcoding equals the model's own forward pass, and evaluate
scores only what recordings allow (the subject level's transcodings of the group-level
estimates inside the brain mask), against a hand numpy computation."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

mne = pytest.importorskip("mne")
pytest.importorskip("mne_bids")
pytest.importorskip("nibabel")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "data"))
from test_ds000116 import GRID, write_study  # noqa: E402

from neurofuse.cli import main  # noqa: E402
from neurofuse.data.datasets.ds000116 import prepare_eeg_fmri_bids  # noqa: E402
from neurofuse.evaluation.transcoder_pipeline import _data_for  # noqa: E402
from neurofuse.evaluation.transcoder_subject import (CONTROL_METHOD,  # noqa: E402
                                                     SUBJECT_METHOD)
from neurofuse.systems.transcoder import StoreRuns, fit, load_model  # noqa: E402
from neurofuse.systems.transcoder.data import normalize  # noqa: E402
from neurofuse.systems.transcoder.subject import (subject_transcode,  # noqa: E402
                                                  upsample_space)
from neurofuse.systems.transcoder.subject_fit import (SubjectData,  # noqa: E402
                                                      SubjectDataConfig, run_averages)

TEST_RUN = "sub-01_task-oddball_run-03"
SUBJECT_TINY = {"preset": "tiny", "train": {"epochs": 1}}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Three oddball runs of one subject (the third held out), a bright ellipsoid brain; a
    1-epoch tiny group model and, through the CLI, the subject level on it."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("substore")
    idx = np.indices(GRID).astype(float)
    centre = (np.array(GRID) - 1) / 2
    brain = sum(((idx[i] - centre[i]) / (0.45 * GRID[i])) ** 2 for i in range(3)) <= 1
    write_study(root / "bids", subjects=("01",), runs=("01", "02", "03"), brain=brain)
    store = prepare_eeg_fmri_bids(root / "bids", root / "store", sfreq=50.0,
                                  splits={TEST_RUN: "test"}, verbose="error")
    fit(store, root / "group", config={"preset": "tiny", "train": {"epochs": 1},
                                       "data": {"n_val": 0}})
    cfg = root / "subject.json"
    cfg.write_text(json.dumps(SUBJECT_TINY))
    read = []
    orig = StoreRuns.read_run

    def spy(self, run, **kw):
        read.append(run)
        return orig(self, run, **kw)

    StoreRuns.read_run = spy
    try:
        assert main(["transcoder", "fit", str(cfg), "--data", str(store), "--out",
                     str(root / "subject"), "--level", "subject", "--group",
                     str(root / "group" / "model"), "-q"]) == 0
    finally:
        StoreRuns.read_run = orig
    return store, root, brain, read


def test_subject_level_trains_on_the_training_runs_events(fitted):
    store, root, brain, read = fitted
    ds = StoreRuns(store)
    assert ds.manifest["split"]["test"] == [TEST_RUN]
    assert read and TEST_RUN not in read          # the held-out run is never read
    meta = json.loads((root / "subject" / "model" / "model.json").read_text())
    assert meta["data"]["test_runs"] == [TEST_RUN]
    assert meta["data"]["runs"] == ds.manifest["split"]["train"]
    # every event of every kind of the training runs whose epoch fits is averaged
    dur, n_times = meta["data"]["settings"]["epoch_duration"], ds.config.n_times
    want = 0
    for run in ds.manifest["split"]["train"]:
        onsets = np.concatenate([ds.store.events(run, k) for k in ds.store.event_names(run)])
        starts = np.round(onsets * ds.config.sfreq).astype(int)
        want += int(((starts >= 0) & (starts + round(dur * ds.config.sfreq) <= n_times)).sum())
    assert want > 0 and meta["data"]["n_epochs"] == want


def test_subject_transcode_equals_the_forward_pass(fitted):
    _, root, _, _ = fitted
    model = load_model(root / "subject" / "model")
    rng = np.random.default_rng(0)
    e, f = (rng.standard_normal((*GRID, 23)).astype(np.float32) for _ in range(2))
    with torch.no_grad():
        ref = model.eval()(torch.as_tensor(e)[None], torch.as_tensor(f)[None])
    got = subject_transcode(model, e, f, block=7)     # blocks of 7 steps / 7 voxels
    for key in ("eeg_sources", "fmri_sources", "eeg2fmri", "fmri2eeg"):
        np.testing.assert_allclose(got[key], ref[key][0].numpy(), rtol=1e-4, atol=1e-5)


def _mean_r(a, b):
    return float(np.mean([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)]))


def test_evaluate_the_subject_level_on_recordings(fitted, tmp_path, capsys):
    store, root, brain, _ = fitted
    out = tmp_path / "ev"
    assert main(["transcoder", "evaluate", "--data", str(store), "--out", str(out),
                 "--model", str(root / "subject" / "model"), "-q"]) == 0
    assert "fMRI r" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["level"] == "subject" and "no true sources" in res["note"]
    assert (out / "report.html").is_file()
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {SUBJECT_METHOD, CONTROL_METHOD}
    for row in rows.values():
        assert row["n_runs"] == 1 and row["source_r"] is None
        assert row["fmri_mask"] == "brain mask" and row["fmri_voxels"] == brain.sum()
    # by hand: the held-out run's epoch-averaged group estimates, transcoded by the subject
    # model; numpy's r over epoch time, mean over the brain voxels
    ds = StoreRuns(store)
    model, meta = load_model(root / "subject" / "model", return_meta=True)
    gmodel, gmeta = load_model(root / "group" / "model", return_meta=True)
    data = _data_for(gmodel, gmeta, ds)
    cfg = SubjectDataConfig.from_dict(meta["data"]["settings"])
    avg_e, avg_f, _ = run_averages(gmodel, data, ds.read_run(TEST_RUN), ds.config.sfreq, cfg)
    e, f, _ = normalize(upsample_space(avg_e, data.pool, GRID), avg_f)
    tc = subject_transcode(model, e, f)
    keep = brain.ravel()
    flat = {k: v.reshape(-1, v.shape[-1])[keep].astype(float) for k, v in
            (("e", e), ("f", f), ("e2f", tc["eeg2fmri"]), ("f2e", tc["fmri2eeg"]))}
    sub, ctl = rows[SUBJECT_METHOD], rows[CONTROL_METHOD]
    assert sub["fmri_r"] == pytest.approx(_mean_r(flat["e2f"], flat["f"]), abs=1e-5)
    assert sub["eeg_r"] == pytest.approx(_mean_r(flat["f2e"], flat["e"]), abs=1e-5)
    assert ctl["fmri_r"] == ctl["eeg_r"] == pytest.approx(_mean_r(flat["e"], flat["f"]),
                                                          abs=1e-5)


def test_a_store_without_events_is_refused(fitted, tmp_path):
    """The subject level epochs at the runs' events: a store without any cannot train it."""
    store, root, _, _ = fitted
    ds = StoreRuns(store)
    gmodel, gmeta = load_model(root / "group" / "model", return_meta=True)
    ds.events = lambda run: {}
    with pytest.raises(ValueError, match="has an event"):
        SubjectData(ds, gmodel, gmeta["data"], {"epoch_duration": 1.0})
