"""BIDS MEG into the dataset store: a tiny study written with mne-bids, in the real format.

Two subjects hear two stories (3 s and 2 s); sub-01 hears story01 three times and story02
twice over two runs, sub-02 each once. The recordings are the simulated 306-channel
Vectorview recordings of :mod:`test_preprocessing` (blinks, heartbeats, audio leak, line
noise, triggers), the stimuli real WAV files and TextGrids with LeBel phone labels; the
stimulus features come from the real extractor with a tiny random GPT-2 built in code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")
mne_bids = pytest.importorskip("mne_bids")
pytestmark = pytest.mark.filterwarnings("ignore:FastICA did not converge")

# The simulated recordings live beside the preprocessing tests (tests/preprocessing/test_meg.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preprocessing"))
from test_meg import FAST, simulate_raw  # noqa: E402

from neurofuse.data._prepare import resolve_splits
from neurofuse.data.datasets.bids_meg import find_meg_recordings, prepare_meg_bids
from neurofuse.data.datasets.bids_meg import prepare as bids_prepare
from neurofuse.data.datasets.bids_meg import recording as bids_recording
from neurofuse.data.store import read_dataset
from neurofuse.preprocessing.meg import (
    MEGPreprocessing,
    epoch_stories,
    preprocess_meg,
)

SFREQ = 500.0
AUDIO_SFREQ = 22050
STORIES = {"story01": 3.0, "story02": 2.0}
CODES = {"story01": 1, "story02": 2}
#: Per subject, per run: (story, onset s) and the recording length.
DESIGN = {
    "01": {"1": ([("story01", 1.0), ("story02", 4.6), ("story01", 7.1)], 11.0),
           "2": ([("story02", 1.0), ("story01", 3.5)], 7.5)},
    "02": {"1": ([("story01", 1.0), ("story02", 4.5)], 7.5)},
}
WORDS = ["the", "cat", "sat", "on", "a", "mat"]
PHONES = {"the": ["DH", "AH0"], "cat": ["K", "AE1"], "sat": ["S", "AE1"], "on": ["AA1", "N"],
          "a": ["AH0", "sp"], "mat": ["M", "AE1"]}
CONFIG = MEGPreprocessing(**{**FAST, "audio_channel": None})  # audio from the story WAVs


def _story_audio(story, seed):
    """A speech-like waveform: 80-140 Hz noise modulated at 4 Hz, at 22.05 kHz, in [-.5, .5]."""
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(seed)
    n = int(STORIES[story] * AUDIO_SFREQ)
    sos = butter(4, [80, 140], btype="band", fs=AUDIO_SFREQ, output="sos")
    x = sosfiltfilt(sos, rng.standard_normal(n)) * (1 + np.sin(2 * np.pi * 4 * np.arange(n)
                                                                / AUDIO_SFREQ))
    return 0.5 * x / np.abs(x).max()


def _write_stimuli(folder, stories=STORIES):
    from scipy.io import wavfile

    from neurofuse.stimulus.textgrid import write_textgrid

    folder.mkdir(parents=True, exist_ok=True)
    audio = {}
    for k, (story, dur) in enumerate(stories.items()):
        audio[story] = _story_audio(story, k)
        wavfile.write(folder / f"{story}.wav", AUDIO_SFREQ,
                      (audio[story] * 32767).astype(np.int16))
        words, phones = [], []
        for i, t in enumerate(np.arange(0.0, dur, 0.5)):
            w = WORDS[i % len(WORDS)]
            words.append((t, t + 0.5, w))
            phones += [(t, t + 0.25, PHONES[w][0]), (t + 0.25, t + 0.5, PHONES[w][1])]
        write_textgrid(folder / f"{story}.TextGrid", {"phone": phones, "word": words},
                       xmax=dur)
    return audio


def _write_bids(root, design=DESIGN, *, sfreq=SFREQ, stories=STORIES, seed=0):
    """Write the study with mne-bids; returns the audio per story."""
    audio = _write_stimuli(root / "stimuli", stories)
    at_raw = {CODES[s]: bids_recording._resample_audio(a, AUDIO_SFREQ, sfreq)
              for s, a in audio.items()}
    for sub, runs in design.items():
        for run, (events, duration) in runs.items():
            raw, _ = simulate_raw([(CODES[s], t, stories[s]) for s, t in events], duration,
                                  sfreq=sfreq, seed=seed + 10 * int(sub) + int(run),
                                  audio=at_raw)
            raw.set_meas_date(1_700_000_000 + int(run) * 3600)
            ev = mne.find_events(raw, stim_channel="STI101", shortest_event=1, verbose=False)
            bp = mne_bids.BIDSPath(subject=sub, task="listening", run=run, datatype="meg",
                                   root=root)
            mne_bids.write_raw_bids(raw, bp, events=ev,
                                    event_id={f"story/{s}": c for s, c in CODES.items()},
                                    format="FIF", allow_preload=True, overwrite=True,
                                    verbose=False)
    return audio


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids") / "study"
    _write_bids(root)
    return root


@pytest.fixture(scope="module")
def language_model():
    from neurofuse.stimulus.language_model import make_random_language_model

    return make_random_language_model(WORDS, n_layers=2, hidden_size=16, n_heads=2)


@pytest.fixture(scope="module")
def prepared(bids_root, tmp_path_factory, language_model):
    """Prepare the study; the first attempt is interrupted after one recording."""
    base = tmp_path_factory.mktemp("prepared")
    out, work = base / "ds", base / "work"
    kw = {"language_model": language_model, "layer": 1, "preprocessing": CONFIG,
              "splits": {"story02": "val"}, "spacing": "oct6", "work_dir": work, "keep_work": True}
    calls = []
    real = bids_prepare._process_recording

    def interrupted(*args, **kwargs):
        calls.append(args[0].basename)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bids_prepare, "_process_recording", interrupted)
        with pytest.raises(KeyboardInterrupt):
            prepare_meg_bids(bids_root, out, **kw)
    first_attempt = (list(calls), out.exists(), sorted(p.name for p in base.iterdir()))
    calls.clear()

    def counted(*args, **kwargs):
        calls.append(args[0].basename)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bids_prepare, "_process_recording", counted)
        prepare_meg_bids(bids_root, out, **kw)
    return {"out": out, "work": work, "kw": kw, "first_attempt": first_attempt,
            "resumed_calls": list(calls)}


# ---------------------------------------------------------------------------------------------


def test_find_meg_recordings(bids_root):
    recs = find_meg_recordings(bids_root)
    assert list(recs) == ["sub-01", "sub-02"]
    assert [bp.run for bp in recs["sub-01"]] == ["1", "2"]
    assert list(find_meg_recordings(bids_root, subjects=["sub-02"])) == ["sub-02"]
    with pytest.raises(FileNotFoundError, match="sub-07"):
        find_meg_recordings(bids_root, subjects=["07"])
    with pytest.raises(FileNotFoundError, match="task 'rest'"):
        find_meg_recordings(bids_root, task="rest")


def test_interrupted_prepare_leaves_nothing_and_resumes(prepared):
    calls, out_existed, folders = prepared["first_attempt"]
    assert len(calls) == 2 and not out_existed
    assert folders == ["work"]  # no dataset, no temporary dataset folder
    # The resumed run preprocessed only the two recordings not finished before.
    assert len(prepared["resumed_calls"]) == 2 and calls[0] not in prepared["resumed_calls"]


def test_store_has_the_right_shapes(prepared):
    ds = read_dataset(prepared["out"])
    assert ds.sfreq == 50.0 and ds.stories == ["story01", "story02"]
    assert ds.splits == {"train": ["story01"], "val": ["story02"]}
    assert ds.n_times("story01") == 150 and ds.n_times("story02") == 100
    assert set(ds.feature_streams) == {"word", "phoneme", "spectrogram"}
    assert ds.feature_streams["phoneme"][1] - ds.feature_streams["phoneme"][0] == 44
    assert ds.features("story01").shape == (150, ds.n_features)
    assert ds.subjects == ["sub-01", "sub-02"]
    assert ds.meg("sub-01", "story01").shape == (3, 306, 150)
    assert ds.meg("sub-01", "story02").shape == (2, 306, 100)
    assert ds.meg("sub-02", "story01").shape == (1, 306, 150)
    info = ds.info("sub-01")
    assert info["sfreq"] == 50.0 and len(info["ch_names"]) == 306
    n_src = ds.leadfield("sub-01").shape[1]
    assert ds.leadfield("sub-01").shape == (306, n_src) and n_src > 8000
    assert ds.morph("sub-01").shape == (n_src, 8196)
    # the template the morphs map from, as simulated stores describe it
    from neurofuse.systems.joint.model import JointModel

    tmpl = ds.metadata["template"]
    assert tmpl["subject"] == "fsaverage" and tmpl["spacing"] == prepared["kw"]["spacing"]
    assert sum(map(len, tmpl["vertices"])) == ds.morph("sub-01").shape[1]
    model = JointModel.from_dataset(ds, encoder_kwargs=dict(
        d_model=8, n_layers=1, n_heads=2, d_ff=8, window=10, source_fwhm=15.0))
    assert model.vertices == tmpl["vertices"]
    assert ds.forward("sub-01")["nchan"] == 306
    assert ds.anatomy("sub-01")["kind"] == "template"
    r = ds.repeatability("sub-01", "meg")
    assert r.shape == (306,) and ds.repeatability_info("sub-01", "meg")["stories"] == [
        "story01", "story02"]
    assert ds.repeatability("sub-02", "meg") is None  # no repeats
    reports = ds.metadata["meg_bids"]["recordings"]
    assert len(reports) == 3
    for rep in reports.values():
        assert rep["sfreq_out"] == 50.0 and len(rep["ica"]["ocular"]) >= 1
        assert len(rep["ica"]["audio"]) == 1 and rep["ica"]["audio_reference"] == "array"
    assert not (prepared["out"].parent / "ds.work").exists()


def test_onsets_and_epochs_match_an_independent_run(prepared, bids_root):
    """sub-01 run 2 preprocessed by hand and cut at the true onsets = the stored repeats."""
    ds = read_dataset(prepared["out"])
    reports = ds.metadata["meg_bids"]["recordings"]
    for sub, runs in DESIGN.items():
        for run, (events, _) in runs.items():
            rep = next(v for k, v in reports.items()
                       if k.startswith(f"sub-{sub}/") and f"run-{run}_" in k)
            got = rep["onsets"]
            assert [s for s, _ in got] == [s for s, _ in events]
            np.testing.assert_allclose([t for _, t in got], [t for _, t in events],
                                       atol=1 / 50)  # within one sample at 50 Hz
    bp = find_meg_recordings(bids_root, subjects=["01"])["sub-01"][1]
    raw = mne_bids.read_raw_bids(bp, verbose="error")
    first = find_meg_recordings(bids_root, subjects=["01"])["sub-01"][0]
    dest = mne_bids.read_raw_bids(first, verbose="error").info["dev_head_t"]["trans"]
    clean, _ = preprocess_meg(raw, config=CONFIG, destination=dest,
                              audio=bids_recording._audio_reference(
                                  raw, DESIGN["01"]["2"][0],
                                  {s: (bids_root / "stimuli" / f"{s}.wav",) for s in STORIES}))
    epochs = epoch_stories(clean, DESIGN["01"]["2"][0], {"story01": 150, "story02": 100})
    stored01, stored02 = ds.meg("sub-01", "story01"), ds.meg("sub-01", "story02")
    np.testing.assert_allclose(stored01[2], epochs["story01"][0], rtol=1e-5,
                               atol=1e-6 * np.abs(epochs["story01"]).max())
    np.testing.assert_allclose(stored02[1], epochs["story02"][0], rtol=1e-5,
                               atol=1e-6 * np.abs(epochs["story02"]).max())
    # Averaging the repeats is their mean.
    np.testing.assert_allclose(ds.meg("sub-01", "story01", average=True),
                               np.mean(np.asarray(stored01, np.float64), axis=0), rtol=1e-5,
                               atol=1e-7 * np.abs(stored01).max())


def test_features_line_up_with_the_audio(prepared):
    """The stored features are the real extractor's: the loudest mel band follows the audio's
    4 Hz amplitude modulation frame by frame."""
    ds = read_dataset(prepared["out"])
    a, b = ds.feature_streams["spectrogram"]
    spec = np.asarray(ds.features("story01"))[:, a:b]
    band = spec[:, np.argmax(spec.mean(axis=0))]
    t = (np.arange(150) + 0.5) / 50.0
    env = np.log((1 + np.sin(2 * np.pi * 4 * t)) ** 2 + 1e-3)
    assert np.corrcoef(band, env)[0, 1] > 0.7


def test_resume_reuses_the_work_folder_with_trigger_onsets(prepared, bids_root, tmp_path,
                                                           monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("preprocessing should have come from the work folder")

    monkeypatch.setattr(bids_recording, "preprocess_meg", boom)
    monkeypatch.setattr("neurofuse.stimulus.features._from_waveform", boom)
    out = prepare_meg_bids(bids_root, tmp_path / "again", **{**prepared["kw"], "onsets": "stim"})
    a, b = read_dataset(prepared["out"]), read_dataset(out)
    for sub in a.subjects:
        for story in a.subject_stories(sub, "meg"):
            np.testing.assert_array_equal(a.meg(sub, story), b.meg(sub, story))
    np.testing.assert_array_equal(a.features("story02"), b.features("story02"))


# ---------------------------------------------------------------------------------------------
# Errors: clear, early, and nothing written


def _stub_features(n_extra=0, rate=50.0):
    """Features of the right shape (zeros), optionally too long or at a wrong rate."""
    from types import SimpleNamespace

    from neurofuse.stimulus.audio import read_audio

    def fn(wav, textgrid, **kwargs):
        wave, audio_rate = read_audio(wav)
        n = int(np.floor(wave.size / audio_rate * 50.0)) + n_extra
        return SimpleNamespace(data=np.zeros((n, 8), np.float32), n_times=n, sfreq=rate,
                               streams={"word": [0, 4], "phoneme": [4, 6],
                                        "spectrogram": [6, 8]})

    return fn


def _nothing_written(tmp_path, out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp")]


def test_missing_files_are_reported_before_any_work(bids_root, tmp_path):
    out = tmp_path / "ds"
    kw = {"features_fn": _stub_features(), "preprocessing": CONFIG}
    with pytest.raises(FileNotFoundError, match="story09.TextGrid"):
        prepare_meg_bids(bids_root, out, stories=["story01", "story09"], **kw)
    with pytest.raises(FileNotFoundError, match="sub-05"):
        prepare_meg_bids(bids_root, out, subjects=["05"], **kw)
    with pytest.raises(FileNotFoundError, match="stimuli folder"):
        prepare_meg_bids(bids_root, out, stimuli_dir=tmp_path / "nowhere", **kw)
    with pytest.raises(FileNotFoundError, match="subjects_dir"):
        prepare_meg_bids(bids_root, out, subjects_dir=tmp_path / "nofs", **kw)
    with pytest.raises(ValueError, match="'splits' names stories"):
        prepare_meg_bids(bids_root, out, splits={"story07": "test"}, **kw)
    _nothing_written(tmp_path, out)


@pytest.mark.parametrize("features, match", [
    (_stub_features(rate=100.0), "Wrong sampling rate.*100 Hz"),
    (_stub_features(n_extra=3), "stories of inconsistent length.*153 frames"),
])
def test_bad_features_stop_before_writing(bids_root, tmp_path, features, match):
    out = tmp_path / "ds"
    with pytest.raises(ValueError, match=match):
        prepare_meg_bids(bids_root, out, features_fn=features, preprocessing=CONFIG)
    _nothing_written(tmp_path, out)


def test_story_running_past_the_recording_is_refused(tmp_path):
    root = tmp_path / "short"
    _write_bids(root, {"01": {"1": ([("story01", 1.0), ("story02", 4.8)], 6.5)}})
    out = tmp_path / "ds"
    with pytest.raises(ValueError, match="stories of inconsistent length.*'story02'"):
        prepare_meg_bids(root, out, features_fn=_stub_features(), preprocessing=CONFIG)
    _nothing_written(tmp_path, out)


def test_wrong_recording_rate_is_refused(tmp_path):
    root = tmp_path / "slow"
    _write_bids(root, {"01": {"1": ([("story01", 1.0)], 5.0)}}, sfreq=200.0)
    out = tmp_path / "ds"
    with pytest.raises(ValueError, match="Wrong sampling rate.*200 Hz"):
        prepare_meg_bids(root, out, features_fn=_stub_features(), preprocessing=CONFIG)
    _nothing_written(tmp_path, out)


def test_splits_from_a_json_file(bids_root, tmp_path):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"story02": "test"}))
    assert resolve_splits(path, ["story01", "story02"]) == {"story01": "train",
                                                            "story02": "test"}
    with pytest.raises(ValueError, match="'split'"):
        resolve_splits({"story01": "dev"}, ["story01"])


def test_freesurfer_subject_gets_its_own_anatomy(tmp_path):
    """A subject with a FreeSurfer folder (here a simulated, deformed anatomy) and a trans
    file gets its own forward model and a non-identity morph; without a trans: a clear error
    before any preprocessing."""
    import scipy.sparse

    from neurofuse.anatomy import make_simulated_subject

    sim = make_simulated_subject(1, seed=0, meg=False)  # as tiny_study and test_forward
    fs = tmp_path / "freesurfer"
    fs.mkdir()
    (fs / "sub-01").symlink_to(sim.subjects_dir / sim.name, target_is_directory=True)
    root = tmp_path / "bids"
    _write_bids(root, {"01": {"1": ([("story01", 1.0)], 5.0)}}, stories={"story01": 3.0})
    fast = MEGPreprocessing(**{**FAST, "maxwell": False, "ica": False})
    kw = {"features_fn": _stub_features(), "preprocessing": fast, "subjects_dir": fs}
    with pytest.raises(FileNotFoundError, match="no head<->MRI transform.*mne coreg"):
        prepare_meg_bids(root, tmp_path / "ds", **kw)
    _nothing_written(tmp_path, tmp_path / "ds")
    trans = tmp_path / "sub-01-trans.fif"
    mne.write_trans(trans, sim.trans)
    ds = read_dataset(prepare_meg_bids(root, tmp_path / "ds", trans={"sub-01": trans}, **kw))
    assert ds.anatomy("sub-01")["kind"] == "freesurfer"
    morph = ds.morph("sub-01")
    assert morph.shape[1] == 8196 and morph.shape[0] == ds.leadfield("sub-01").shape[1]
    assert (morph != scipy.sparse.eye(*morph.shape)).nnz > 0
    np.testing.assert_allclose(morph.sum(axis=1), 1.0, rtol=1e-5)


def test_prepare_meg_bids_command_line(prepared, bids_root, language_model, tmp_path, capsys):
    """`neurofuse prepare meg-bids`: options reach prepare_meg_bids (work cached by the fixture)."""
    from neurofuse.cli import main

    folder = tmp_path / "tiny-lm"
    language_model.model.save_pretrained(folder)
    language_model.tokenizer.save_pretrained(folder)
    cfg = tmp_path / "preprocessing.json"
    cfg.write_text(json.dumps(CONFIG.to_dict()))
    rc = main(["prepare", "meg-bids", str(bids_root), "--out", str(tmp_path / "ds"),
               "--preprocessing", str(cfg), "--splits", "story02=val", "--lm", str(folder),
               "--layer", "1", "-q"])
    assert rc == 0, capsys.readouterr().err
    ds = read_dataset(tmp_path / "ds")
    ref = read_dataset(prepared["out"])
    assert ds.splits == ref.splits and ds.subjects == ref.subjects
    np.testing.assert_allclose(ds.meg(ds.subjects[0], "story01"),
                               ref.meg(ref.subjects[0], "story01"), rtol=1e-5,
                               atol=1e-6 * float(np.abs(ref.meg(ref.subjects[0], "story01")).max()))
    rc = main(["prepare", "meg-bids", str(bids_root), "--out", str(tmp_path / "ds2"),
               "--event-id", "story01", "--lm", str(folder), "-q"])
    assert rc == 1 and "--event-id" in capsys.readouterr().err
