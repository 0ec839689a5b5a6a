"""The Podcast ECoG (ds005574) loader, on a tiny BIDS iEEG study in the dataset's formats.

The fixture writes what the loader reads of ds005574: per subject an EDF recording at 512 Hz
(written byte by byte here, as no EDF writer is installed) put into BIDS by ``mne_bids.
write_raw_bids`` (``channels.tsv`` with ECOG / SEEG / ECG / MISC types and a ``bad`` channel,
``ieeg.json`` with the line frequency, and for sub-01 an ``events.tsv`` with the podcast
onset at 2.0 s; sub-02 has none, as in ds005574, so its recording starts at the podcast), the
``sub-XX_space-MNI152NLin2009aSym_electrodes.tsv`` (mm) + ``coordsystem.json`` pair next to a
native ``space-Other`` pair (as the dataset has), ``stimuli/podcast.wav`` and
``stimuli/podcast_transcript.csv`` (``word,start,end``). Known signals are injected: a 100 Hz
burst (for the high-gamma envelope) and a short pulse (for the broadband signal) at known
podcast times, so the 50 Hz output can be checked frame by frame.
"""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

pytest.importorskip("mne_bids")
pytest.importorskip("transformers")

import mne
import mne_bids

from neurofuse.anatomy.coordinates import MNI152_TO_MNI305, mni152_to_mni305
from neurofuse.data.datasets.podcast import prepare as podcast_prepare
from neurofuse.data.datasets.podcast import prepare_podcast, read_transcript
from neurofuse.data.ecog import read_ecog_dataset
from neurofuse.preprocessing.ieeg import resample_from_onset
from neurofuse.stimulus import make_random_language_model

SFREQ_IN = 512
FS = 50.0
AUDIO_S = 10.0
N = int(AUDIO_S * FS)
ONSET_1 = 2.0  # sub-01's podcast onset (events.tsv); sub-02 has none (onset 0)
BURST = (4.0, 4.5)  # podcast time of the 100 Hz burst on G2 (sub-01) / G1 (sub-02)
PULSE = 6.0  # podcast time of a 15-ms Gaussian pulse on G3 (sub-01)
COMMON_UV = 100.0  # a 2 Hz signal on every channel, removed by the common average reference
NAMES = ["G1", "G2", "G3", "G4", "G5", "G6", "D1", "EKG1", "DC1"]
TYPES = {**{f"G{i}": "ecog" for i in range(1, 7)}, "D1": "seeg", "EKG1": "ecg", "DC1": "misc"}
POS_MM = {"G1": (-55.0, -20.0, 5.0), "G2": (-58.0, -25.0, 2.0), "G3": (-52.0, -15.0, 12.0),
          "G4": (-50.0, -30.0, 8.0), "G5": (56.0, -18.0, 4.0), "G6": None, "D1": (-30.0, -10.0,
                                                                                     -12.0)}
WORDS = [("Act", 0.50, 0.80), ("one,", 0.90, 1.30), ("monkey", 1.60, 2.10), ("in", 2.20, 2.35),
         ("the", 2.40, 2.55), ("middle.", 2.60, 3.20), ("So", 4.00, 4.20),
         ("there's", 4.25, 4.60), ("some", 4.58, 4.90), ("places", 5.00, 5.60),
         ("where", 6.20, 6.50), ("monkeys", 6.60, 7.20), ("walk.", 7.30, 8.00),
         ("Really", 8.60, 9.10), ("far.", 9.20, 9.60)]


# ---------------------------------------------------------------------- files in ds005574's formats
def write_edf(path, data, sfreq, names, phys_uv=2000.0):
    """A minimal EDF (16-bit, 1-s records, physical unit uV) of ``data`` in volts."""
    n_ch, n = data.shape
    assert n % sfreq == 0
    n_rec = n // sfreq

    def f(value, width):
        text = str(value)
        assert len(text) <= width, text
        return text.ljust(width).encode("ascii")

    head = (f("0", 8) + f("X X X X", 80) + f("Startdate 01-JAN-2001 X X X", 80) + f("01.01.01", 8)
            + f("01.01.01", 8) + f(256 + 256 * n_ch, 8) + f("", 44) + f(n_rec, 8) + f(1, 8)
            + f(n_ch, 4))
    fields = (("label", 16), ("transducer", 80), ("dim", 8), ("pmin", 8), ("pmax", 8),
              ("dmin", 8), ("dmax", 8), ("prefilter", 80), ("ns", 8), ("reserved", 32))
    for key, width in fields:
        for name in names:
            head += f({"label": name, "transducer": "", "dim": "uV", "pmin": f"{-phys_uv:g}",
                       "pmax": f"{phys_uv:g}", "dmin": -32768, "dmax": 32767, "prefilter": "",
                       "ns": sfreq, "reserved": ""}[key], width)
    digital = np.clip(np.round(data * 1e6 / phys_uv * 32767.5 - 0.5), -32768, 32767)
    records = digital.astype("<i2").reshape(n_ch, n_rec, sfreq).transpose(1, 0, 2)
    Path(path).write_bytes(head + records.tobytes())


def _signals(n_seconds, onset, burst_channel, pulse_channel, seed):
    rng = np.random.default_rng(seed)
    n = n_seconds * SFREQ_IN
    t = np.arange(n) / SFREQ_IN
    data = rng.standard_normal((len(NAMES), n)) * 10e-6
    data += 30e-6 * np.sin(2 * np.pi * 60.0 * t)  # line noise on every channel
    data += COMMON_UV * 1e-6 * np.sin(2 * np.pi * 2.0 * t)  # common mode: the reference's
    b0, b1 = onset + BURST[0], onset + BURST[1]
    win = (t >= b0) & (t < b1)
    data[NAMES.index(burst_channel), win] += 200e-6 * np.sin(2 * np.pi * 100.0 * t[win])
    if pulse_channel is not None:
        data[NAMES.index(pulse_channel)] += 400e-6 * np.exp(-0.5 * ((t - onset - PULSE)
                                                                    / 0.015) ** 2)
    return data


def _electrodes(ieeg, sub, names):
    for path in ieeg.glob(f"{sub}_electrodes.*"):
        path.unlink()
    (ieeg / f"{sub}_coordsystem.json").unlink(missing_ok=True)
    rows = ["name\tx\ty\tz\tsize"]
    other = ["name\tx\ty\tz\tsize"]
    for name in names:
        pos = POS_MM.get(name)
        rows.append(f"{name}\t" + ("\t".join(f"{v:g}" for v in pos) if pos else "n/a\tn/a\tn/a")
                    + "\t2.3")
        other.append(f"{name}\t" + ("1.5\t90.0\t-40.0" if pos else "n/a\tn/a\tn/a") + "\t2.3")
    space = f"{sub}_space-MNI152NLin2009aSym"
    (ieeg / f"{space}_electrodes.tsv").write_text("\n".join(rows) + "\n")
    (ieeg / f"{space}_coordsystem.json").write_text(json.dumps(
        {"iEEGCoordinateSystem": "MNI152NLin2009aSym", "iEEGCoordinateUnits": "mm"}))
    (ieeg / f"{sub}_space-Other_electrodes.tsv").write_text("\n".join(other) + "\n")
    (ieeg / f"{sub}_space-Other_coordsystem.json").write_text(json.dumps(
        {"iEEGCoordinateSystem": "Other", "iEEGCoordinateUnits": "mm"}))


def _write_subject(root, scratch, sub, data, bads, onset):
    edf = scratch / f"{sub}.edf"
    write_edf(edf, data, SFREQ_IN, NAMES)
    raw = mne.io.read_raw_edf(edf, verbose="error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the unit of DC1 changed from V to NA"
        raw.set_channel_types(TYPES)
    raw.info["line_freq"] = 60.0
    raw.info["bads"] = list(bads)
    bp = mne_bids.BIDSPath(subject=sub[4:], task="podcast", datatype="ieeg", root=root)
    kwargs = {}
    if onset is not None:
        kwargs = {"events": np.array([[round(onset * SFREQ_IN), 0, 1]]),
                  "event_id": {"podcast": 1}}
    mne_bids.write_raw_bids(raw, bp, overwrite=True, verbose="error", **kwargs)
    _electrodes(root / sub / "ieeg", sub, NAMES)


def _write_transcript(path, words, extra_rows=()):
    lines = ["word,start,end"] + [f'"{w}",{s:.3f},{e:.3f}' for w, s, e in words]
    path.write_text("\n".join(lines + list(extra_rows)) + "\n")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A two-subject ds005574 copy (see the module docstring)."""
    base = tmp_path_factory.mktemp("podcast")
    root, scratch = base / "ds005574", base / "scratch"
    scratch.mkdir()
    _write_subject(root, scratch, "sub-01", _signals(14, ONSET_1, "G2", "G3", 1), ["G4"], ONSET_1)
    _write_subject(root, scratch, "sub-02", _signals(11, 0.0, "G1", None, 2), [], None)
    stim = root / "stimuli"
    stim.mkdir()
    rng = np.random.default_rng(3)
    t = np.arange(int(AUDIO_S * 22050)) / 22050
    audio = 0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    audio += 0.05 * rng.standard_normal(t.size)
    wavfile.write(stim / "podcast.wav", 22050, (audio * 32767).astype(np.int16))
    # a row without times, as the authors' code anticipates
    _write_transcript(stim / "podcast_transcript.csv", WORDS, ['"uh",,'])
    return root


@pytest.fixture(scope="module")
def lm():
    return make_random_language_model([w.strip(",.") for w, _, _ in WORDS], n_layers=2,
                                      hidden_size=32, n_heads=2, seed=0)


@pytest.fixture(scope="module")
def prepared(study, lm, tmp_path_factory):
    base = tmp_path_factory.mktemp("prepared")
    out = prepare_podcast(study, base / "ecog", language_model=lm, layer=2, keep_work=True,
                          work_dir=base / "work", verbose="error")
    return out, base / "work"


# ---------------------------------------------------------------------- what is written
def test_prepare_podcast_writes_the_good_ecog_electrodes(prepared):
    ds = read_ecog_dataset(prepared[0])
    assert ds.subjects == ["sub-01", "sub-02"] and ds.stories == ["podcast"]
    assert ds.sfreq == FS and ds.n_times("podcast") == N
    # G4 bad, G6 without position, D1 SEEG, EKG1/DC1 not electrodes
    assert list(ds.electrodes("sub-01").names) == ["G1", "G2", "G3", "G5"]
    assert list(ds.electrodes("sub-02").names) == ["G1", "G2", "G3", "G4", "G5"]
    assert list(ds.electrodes("sub-01").group) == ["G"] * 4
    for sub in ds.subjects:
        x = np.asarray(ds.ecog(sub, "podcast"))
        assert x.shape == (len(ds.electrodes(sub)), N) and x.dtype == np.float32
        np.testing.assert_allclose(x.mean(1), 0, atol=1e-5)
        np.testing.assert_allclose(x.std(1), 1, rtol=1e-4)
        assert ds.units(sub) == "z" and "envelope" in ds.signal(sub)
    meta = ds.metadata["podcast"]["subjects"]
    assert meta["sub-01"]["onset_s"] == ONSET_1 and meta["sub-02"]["onset_s"] == 0.0
    assert meta["sub-01"]["bad"] == 1 and meta["sub-01"]["no_position"] == 1
    assert not prepared[0].with_name("ecog.work").exists()


def test_positions_are_preserved_on_fsaverage(prepared):
    ds = read_ecog_dataset(prepared[0])
    el = ds.electrodes("sub-01")
    given = np.array([POS_MM[n] for n in el.names])
    np.testing.assert_allclose(el.pos_fsaverage, mni152_to_mni305(given) / 1000, atol=1e-6)
    assert el.pos_mri is None
    assert list(el.hemi) == ["lh", "lh", "lh", "rh"]
    np.testing.assert_allclose(ds.anatomy("sub-01")["pos_space_mm"], given, atol=1e-3)
    # the MNI152 -> MNI305 shift is a few mm, not a unit error
    shift = np.linalg.norm(el.pos_fsaverage * 1000 - given, axis=1)
    assert (shift > 0.5).all() and (shift < 5).all()


def test_mni152_to_mni305_matches_freesurfer_example():
    # FreeSurfer wiki "CoordinateSystems" 8b: (10, -20, 35) -> (9.3131, -21.5849, 33.8345); the
    # wiki prints the matrix rounded to 4 decimals, its example used the unrounded one
    np.testing.assert_allclose(mni152_to_mni305([10, -20, 35])[0], [9.3131, -21.5849, 33.8345],
                               atol=2e-3)
    assert MNI152_TO_MNI305.shape == (4, 4)


def _crossings(z, level):
    above = np.flatnonzero(z > level)
    return above.min(), above.max()


@pytest.mark.parametrize("sub, channel, onset", [("sub-01", "G2", ONSET_1), ("sub-02", "G1", 0.0)])
def test_high_gamma_burst_is_at_its_frames(prepared, sub, channel, onset):
    ds = read_ecog_dataset(prepared[0])
    names = list(ds.electrodes(sub).names)
    z = np.asarray(ds.ecog(sub, "podcast"))
    zc = z[names.index(channel)]
    first, last = round(BURST[0] * FS), round(BURST[1] * FS)  # frames 200 .. 224
    assert zc[first + 3:last - 3].mean() > 3.0
    assert abs(np.r_[zc[:first - 10], zc[last + 10:]].mean()) < 0.5
    lo, hi = _crossings(zc, 0.5 * zc[first + 3:last - 3].mean())
    assert abs(lo - first) <= 1 and abs(hi - (last - 1)) <= 1
    # the burst's own electrode carries it most (the common average spreads a quarter of it)
    assert np.argmax(z[:, first:last].mean(1)) == names.index(channel)


def test_features_follow_the_transcript(prepared, lm):
    ds = read_ecog_dataset(prepared[0])
    feats = np.asarray(ds.features("podcast"))
    streams = ds.feature_streams
    assert list(streams) == ["word", "phoneme", "spectrogram"]
    assert feats.shape == (N, lm.hidden_size + 44 + 40)
    word = feats[:, slice(*streams["word"])]
    speaking = np.zeros(N, bool)
    for _, s, e in WORDS:
        speaking[round(s * FS) + 1:round(e * FS) - 1] = True
    silent = np.ones(N, bool)
    for _, s, e in WORDS:
        silent[round(s * FS) - 1:round(e * FS) + 1] = False
    assert (np.abs(word[speaking]).sum(1) > 0).all()
    assert (word[silent] == 0).all()
    assert (feats[:, slice(*streams["phoneme"])] == 0).all()  # no phone alignment given
    assert ds.metadata["podcast"]["n_words"] == len(WORDS)  # the row without times is out


def test_broadband_pulse_is_at_its_frame_and_phones_are_used(study, lm, tmp_path):
    phones = tmp_path / "phones.tsv"
    phones.write_text("start\tend\tphone\n1.60\t1.80\tM\n1.80\t2.10\tAH1\n")
    out = prepare_podcast(study, tmp_path / "bb", signal="broadband", subjects=["01"],
                          phones=phones, language_model=lm, layer=2, verbose="error")
    ds = read_ecog_dataset(out)
    assert ds.subjects == ["sub-01"] and "broadband" in ds.signal("sub-01")
    z = np.asarray(ds.ecog("sub-01", "podcast"))
    g3 = z[list(ds.electrodes("sub-01").names).index("G3")]
    assert abs(int(np.argmax(g3)) - round(PULSE * FS)) <= 1
    assert g3.max() > 5
    # the phone alignment fills the phoneme stream at its frames (M: 80-89, AH: 90-104)
    ph = np.asarray(ds.features("podcast"))[:, slice(*ds.feature_streams["phoneme"])]
    active = np.flatnonzero(ph.sum(1) > 0)
    assert active.min() == 80 and active.max() == 104 and (ph.sum(1) <= 1).all()
    m, ah = set(ph[80:90].argmax(1).tolist()), set(ph[90:105].argmax(1).tolist())
    assert len(m) == 1 and len(ah) == 1 and m != ah
    # the common average reference removed the common 2 Hz signal (10x the noise)
    tk = ONSET_1 + np.arange(N) / FS
    common = np.sin(2 * np.pi * 2.0 * tk)
    for name in ("G1", "G2", "G5"):
        x = z[list(ds.electrodes("sub-01").names).index(name)]
        assert abs(np.corrcoef(x, common)[0, 1]) < 0.2


def test_resumes_from_the_work_folder(prepared, study, lm, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(podcast_prepare, "_subject_signal", fail)
    monkeypatch.setattr("neurofuse.stimulus.features.features_from_alignment", fail)
    out = prepare_podcast(study, tmp_path / "again", language_model=lm, layer=2,
                          work_dir=prepared[1], keep_work=True, verbose="error")
    a, b = read_ecog_dataset(prepared[0]), read_ecog_dataset(out)
    np.testing.assert_array_equal(a.ecog("sub-02", "podcast"), b.ecog("sub-02", "podcast"))
    np.testing.assert_array_equal(a.features("podcast"), b.features("podcast"))


def test_ecogprep_derivative(study, lm, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(study, root)
    names = ["G1", "G2", "G3", "G5"]  # the good electrodes, as the authors' derivative has
    t = np.arange(14 * SFREQ_IN) / SFREQ_IN
    data = np.tile(1.0 + (t >= ONSET_1 + 3.0), (len(names), 1)) * 1e-6  # a step at 3.0 s
    data += np.random.default_rng(0).standard_normal(data.shape) * 1e-8
    info = mne.create_info(names, SFREQ_IN, "ecog")
    fif = root / "derivatives/ecogprep/sub-01/ieeg/sub-01_task-podcast_desc-highgamma_ieeg.fif"
    fif.parent.mkdir(parents=True)
    mne.io.RawArray(data, info, verbose="error").save(fif, verbose="error")
    out = prepare_podcast(root, tmp_path / "prep", signal="ecogprep", subjects=["sub-01"],
                          language_model=lm, layer=2, verbose="error")
    z = np.asarray(read_ecog_dataset(out).ecog("sub-01", "podcast"))
    lo, _ = _crossings(z[0], 0.0)
    assert abs(lo - round(3.0 * FS)) <= 1


# ---------------------------------------------------------------------- building blocks
def test_resample_from_onset_lands_on_the_onset():
    t = np.arange(20 * SFREQ_IN) / SFREQ_IN
    x = np.stack([np.sin(2 * np.pi * 3.0 * t), np.cos(2 * np.pi * 7.0 * t)])
    onset = 1337  # not on the 50-Hz grid of the recording
    y = resample_from_onset(x, SFREQ_IN, FS, onset, 500)
    tk = onset / SFREQ_IN + np.arange(500) / FS
    ref = np.stack([np.sin(2 * np.pi * 3.0 * tk), np.cos(2 * np.pi * 7.0 * tk)])
    assert y.shape == (2, 500)
    np.testing.assert_allclose(y, ref, atol=2e-3)
    # the recording's end limits the output
    assert resample_from_onset(x, SFREQ_IN, FS, len(t) - 512, 500).shape == (2, 50)


def test_read_transcript_token_table_and_missing_times(tmp_path):
    tsv = tmp_path / "transcript.tsv"
    tsv.write_text("\tword_idx\tword\tstart\tend\thftoken\n0\t0\tAct\t3.71\t3.79\tAct\n"
                   "1\t1\tone,\t3.99\t4.19\tone\n2\t1\tone,\t3.99\t4.19\t,\n"
                   "3\t2\tmonkey\t\t\tmonkey\n")
    words = read_transcript(tsv, verbose="error")
    assert words == [(3.71, 3.79, "Act"), (3.99, 4.19, "one,")]  # tokens merged, no-time out


# ---------------------------------------------------------------------- clear errors
def _nothing_written(tmp_path):
    return not any(p.name.startswith(("out", ".tmp")) for p in tmp_path.iterdir())


def test_missing_files_are_named(study, lm, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        prepare_podcast(study, tmp_path / "out", audio=tmp_path / "nope.wav", language_model=lm)
    with pytest.raises(FileNotFoundError, match="sub-07"):
        prepare_podcast(study, tmp_path / "out", subjects=["07"], language_model=lm)
    root = tmp_path / "ds"
    shutil.copytree(study, root)
    (root / "sub-02/ieeg/sub-02_space-MNI152NLin2009aSym_electrodes.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="MNI152NLin2009aSym"):
        prepare_podcast(root, tmp_path / "out", language_model=lm)
    with pytest.raises(FileNotFoundError, match="ecogprep"):
        prepare_podcast(study, tmp_path / "out", signal="ecogprep", language_model=lm)
    assert _nothing_written(tmp_path)


def test_wrong_sampling_rates(study, lm, tmp_path):
    with pytest.raises(ValueError, match="Wrong sampling rate.*Nyquist"):
        prepare_podcast(study, tmp_path / "out", band=(70, 300), language_model=lm)
    root = tmp_path / "ds"
    shutil.copytree(study, root)
    js = root / "sub-02/ieeg/sub-02_task-podcast_ieeg.json"
    js.write_text(json.dumps({**json.loads(js.read_text()), "SamplingFrequency": 1000.0}))
    with pytest.raises(ValueError, match="Wrong sampling rate for sub-02.*1000 Hz"):
        prepare_podcast(root, tmp_path / "out", language_model=lm)
    assert _nothing_written(tmp_path)


def test_transcript_that_does_not_cover_the_audio(study, lm, tmp_path):
    late = tmp_path / "late.csv"
    _write_transcript(late, WORDS + [("encore", 11.0, 11.5)])
    with pytest.raises(ValueError, match="does not cover the audio.*encore"):
        prepare_podcast(study, tmp_path / "out", transcript=late, language_model=lm)
    short = tmp_path / "short.csv"
    _write_transcript(short, WORDS[:6])  # ends at 3.2 s of 10 s
    with pytest.raises(ValueError, match="does not cover the audio.*after the last word"):
        prepare_podcast(study, tmp_path / "out", transcript=short, max_gap=5.0,
                        language_model=lm)
    assert _nothing_written(tmp_path)


def test_recording_shorter_than_the_podcast(study, lm, tmp_path, catch_logs):
    with pytest.raises(ValueError, match="inconsistent length.*sub-01"):
        prepare_podcast(study, tmp_path / "out", onset={"sub-01": 9.0, "sub-02": 0.0},
                        language_model=lm)
    assert _nothing_written(tmp_path)
    # within the tolerance the story is cut to the shortest recording, with a warning
    with catch_logs("warning") as log:
        out = prepare_podcast(study, tmp_path / "cut", onset={"sub-01": 5.0, "sub-02": 0.0},
                              tolerance=2.0, language_model=lm, layer=2)
    assert read_ecog_dataset(out).n_times("podcast") == round(9.0 * FS)
    assert "story is cut" in log.text


def test_existing_output_is_refused_before_any_work(prepared, study, lm):
    with pytest.raises(FileExistsError, match="already exists"):
        prepare_podcast(study, prepared[0], language_model=lm)


def test_prepare_podcast_command_line(study, lm, tmp_path, capsys):
    """`neurofuse prepare podcast` with a local language-model folder and CLI options."""
    from neurofuse.cli import main

    folder = tmp_path / "tiny-lm"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    rc = main(["prepare", "podcast", str(study), "--out", str(tmp_path / "ecog"),
               "--subjects", "01", "--lm", str(folder), "--layer", "2", "-q"])
    assert rc == 0, capsys.readouterr().err
    data = read_ecog_dataset(tmp_path / "ecog")
    assert data.subjects == ["sub-01"]
    assert data.sfreq == 50.0
    rc = main(["prepare", "podcast", str(study), "--out", str(tmp_path / "ecog2"),
               "--band", "70", "300", "--lm", str(folder), "-q"])
    assert rc == 1 and "band" in capsys.readouterr().err
    assert not (tmp_path / "ecog2").exists()
