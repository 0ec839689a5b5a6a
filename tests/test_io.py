"""Atomic writes: what an interrupted write leaves is removed by the next write of the same path,
never a live process's temporary."""

import os
import subprocess
import sys

import numpy as np

from neurofuse._io import atomic_dir, clean_stale_temporaries, save_npy


def _dead_pid():
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_write_are_removed_by_the_next_one(tmp_path, catch_logs):
    dead, alive = _dead_pid(), os.getpid()
    (tmp_path / f".tmp-{dead}-ab12cd34-x.npy").write_bytes(b"half")          # atomic_path's
    (tmp_path / f".tmp-{dead}-run-q8z1").mkdir()                              # atomic_dir's
    (tmp_path / f".tmp-{dead}-run-q8z1" / "model.safetensors").write_bytes(b"half")
    live = tmp_path / f".tmp-{alive}-ef56ab78-x.npy"                          # a write in progress
    live.write_bytes(b"busy")
    other = tmp_path / f".tmp-{dead}-ab12cd34-y.npy"                          # another file's
    other.write_bytes(b"half")
    with catch_logs("info") as log:
        save_npy(tmp_path / "x.npy", np.arange(3))
    assert "leftover" in log.text
    assert live.exists() and other.exists()
    assert not (tmp_path / f".tmp-{dead}-ab12cd34-x.npy").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), np.arange(3))
    with atomic_dir(tmp_path / "run") as tmp:
        (tmp / "a.txt").write_text("done")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([live.name, other.name, "run", "x.npy"])
    # the copy of a replaced folder goes once the folder exists again
    (tmp_path / ".old-run-1234abcd").mkdir()
    assert clean_stale_temporaries(tmp_path / "run") == [tmp_path / ".old-run-1234abcd"]
    assert clean_stale_temporaries(tmp_path / "run") == []


def test_a_replaced_folder_is_kept_while_the_new_one_is_missing(tmp_path):
    """Killed between moving the old folder aside and moving the new one in: the old copy is
    the only good one, so it is not removed."""
    (tmp_path / ".old-run-1234abcd").mkdir()
    assert clean_stale_temporaries(tmp_path / "run") == []
    assert (tmp_path / ".old-run-1234abcd").exists()
