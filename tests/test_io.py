"""Atomic writes: what an interrupted write leaves is removed by the next write of the same path,
never a live process's temporary."""

import os
import subprocess
import sys

import numpy as np
import pytest

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


@pytest.mark.parametrize("name, text, match", [
    ("fit.toml", "[train\nlr = 1", r"training config '.*fit\.toml' is not valid TOML: .*line 1"),
    ("fit.json", '{"train": ', r"training config '.*fit\.json' is not valid JSON: .*char 10"),
    ("fit.json", "[1, 2]", r"training config '.*fit\.json' must hold a JSON table.*got a list"),
])
def test_read_config_names_the_file_and_the_place(tmp_path, name, text, match):
    import json
    import tomllib

    from neurofuse._io import read_config

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=match + r".*correct it"):
        read_config(path, what="training config", fix="correct it")
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match=r"is not a text file"):
        read_config(path, what="training config", fix="correct it")
    good = {"train": {"lr": 0.5}, "encoder": {"d_model": 8}}  # what tomllib/json read
    path.write_text(json.dumps(good) if name.endswith(".json")
                    else "[train]\nlr = 0.5\n[encoder]\nd_model = 8\n")
    assert read_config(path) == good == (json.loads(json.dumps(good)) if name.endswith(".json")
                                         else tomllib.loads(path.read_text()))


def test_damaged_model_description_and_checkpoint_record_name_their_file(tmp_path):
    from neurofuse.systems.joint.model import JointModel
    from neurofuse.training.checkpoint import load_checkpoint

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{")
    with pytest.raises(ValueError, match=r"model description '.*model\.json' is not valid "
                                         r"JSON.*restore it or fit again"):
        JointModel.load(model)
    ck = tmp_path / "checkpoints"
    (ck / "epoch-0001").mkdir(parents=True)
    (ck / "latest").write_text("epoch-0001")
    (ck / "epoch-0001" / "state.json").write_text('{"format_version": ')
    with pytest.raises(ValueError, match=r"checkpoint record '.*state\.json' is not valid JSON"):
        load_checkpoint(ck)


def test_load_npy_names_the_file_and_never_unpickles(tmp_path):
    from neurofuse._io import load_npy

    good = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "good.npy", good)
    np.testing.assert_array_equal(load_npy(tmp_path / "good.npy"), good)
    cases = {
        "text.npy": (lambda p: p.write_text("hello, world\n"), r"is not a \.npy array"),
        "obj.npy": (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
                    r"holds Python objects.*never unpickles"),
        "cut.npy": (lambda p: p.write_bytes((tmp_path / "good.npy").read_bytes()[:100]),
                    r"is damaged or truncated"),
        "arch.npy": (lambda p: np.savez(open(p, "wb"), x=good), r"is an \.npz archive"),
    }
    for name, (make, match) in cases.items():
        make(tmp_path / name)
        with pytest.raises(ValueError, match=rf"The stimulus file '.*{name}' {match}.*save "
                                             r"features of shape \(n, d\) with numpy\.save"):
            load_npy(tmp_path / name, what="stimulus file", expected="features of shape (n, d)")
