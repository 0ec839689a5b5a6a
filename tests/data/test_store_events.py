"""Per-story event tables of the dataset store: round trip, validation, stores without events."""

import json

import numpy as np
import pytest

from neurofuse.data.store import MANIFEST, DatasetWriter, read_dataset

SFREQ = 50.0


def _store(path, events=None):
    with DatasetWriter(path, sfreq=SFREQ, feature_streams={"word": [0, 3]}) as w:
        for story, n in (("s1", 500), ("s2", 200)):
            w.add_story(story, split="train", n_times=n)
            w.write_features(story, np.zeros((n, 3), np.float32))
        for (story, name), onsets in (events or {}).items():
            w.write_events(story, name, onsets)
    return read_dataset(path)


def test_events_round_trip_as_float64(tmp_path):
    word = np.array([0.0, 0.35, 1.2, 1.2, 9.98])  # s from the story's first sample
    ds = _store(tmp_path / "d", {("s1", "word"): word.astype(np.float32),
                                 ("s1", "sentence"): [0.0, 1.2],
                                 ("s2", "word"): np.zeros(0)})
    assert ds.event_names("s1") == ["word", "sentence"]
    got = ds.events("s1", "word")
    assert got.dtype == np.float64 and got.shape == (5,)
    np.testing.assert_array_equal(got, word.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(ds.events("s1", name="sentence"), [0.0, 1.2])
    assert ds.events("s2").shape == (0,)
    manifest = json.loads((tmp_path / "d" / MANIFEST).read_text())
    assert manifest["stories"]["s1"]["events"] == {"word": 5, "sentence": 2}
    with pytest.raises(ValueError, match="'name'.*word"):
        ds.events("s1", "phrase")
    # A missing file is reported when the store is opened.
    (tmp_path / "d" / "events" / "s1" / "sentence.npy").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        read_dataset(tmp_path / "d")


def test_stores_without_events_read_fine_and_are_unchanged(tmp_path):
    ds = _store(tmp_path / "d")
    assert ds.event_names("s1") == [] and ds.event_names("s2") == []
    with pytest.raises(ValueError, match="no event tables"):
        ds.events("s1")
    manifest = json.loads((tmp_path / "d" / MANIFEST).read_text())
    assert "events" not in manifest["stories"]["s1"]  # the manifest is as before
    assert not (tmp_path / "d" / "events").exists()


@pytest.mark.parametrize("onsets, match", [
    ([0.5, 0.2], "sorted"),
    ([0.1, 10.0], r"\[0, 10\)"),
    ([-0.1], r"\[0, 10\)"),
    ([[0.1, 0.2]], "1-D"),
    ([0.1, np.nan], "NaN|finite"),
])
def test_bad_onsets_are_refused(tmp_path, onsets, match):
    with pytest.raises(ValueError, match=match):
        _store(tmp_path / "d", {("s1", "word"): onsets})
    assert not (tmp_path / "d").exists()


def test_events_need_a_declared_story_and_a_valid_name(tmp_path):
    with pytest.raises(ValueError, match="story"):
        _store(tmp_path / "a", {("s9", "word"): [0.1]})
    with pytest.raises(ValueError, match="event name"):
        _store(tmp_path / "b", {("s1", "bad/name"): [0.1]})
    with pytest.raises(ValueError, match="already written"):
        with DatasetWriter(tmp_path / "c", sfreq=SFREQ) as w:
            w.add_story("s1", split="train", n_times=10)
            w.write_events("s1", "word", [0.0])
            w.write_events("s1", "word", [0.1])
