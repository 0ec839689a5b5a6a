"""Storage failures (issue 16, item 4): disk full, read-only, permission denied and a file where
a folder is expected (or the reverse) are each named as such, with the path and the fix, and
leave nothing half-written and earlier outputs intact.

Real failures use a tiny tmpfs in a private mount namespace (``unshare -rm``, as on a Linux
workstation); where that is not allowed (some CI runners) those tests are skipped and the
monkeypatched ones still check the same messages.
"""

import errno
import functools
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from neurofuse._io import (StorageError, atomic_dir, atomic_path, check_writable_dir, make_dir,
                           save_npy, storage_error, write_json)
from neurofuse.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def _can_mount_tmpfs():
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d"],
        capture_output=True, timeout=30)
    return probe.returncode == 0


def _in_tmpfs(tmp_path, script, *args, size="256k", timeout=300):
    """Run python ``script`` (or ``-m neurofuse.cli`` when ``script`` is None) with a fresh
    tmpfs of ``size`` mounted on ``tmp_path / 'disk'`` (its path is ``argv[1]`` / ``{disk}``)."""
    if not _can_mount_tmpfs():
        pytest.skip("cannot mount a tmpfs here (unshare -rm / mount not allowed)")
    disk = tmp_path / "disk"
    disk.mkdir(parents=True)
    if script is None:
        cmd = [sys.executable, "-m", "neurofuse.cli", *(a.format(disk=disk) for a in args)]
    else:
        (tmp_path / "script.py").write_text(textwrap.dedent(script))
        cmd = [sys.executable, str(tmp_path / "script.py"), str(disk)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shell = (f"mount -t tmpfs -o size={size} tmpfs '{disk}' && cd '{ROOT}' && "
             + " ".join(f"'{c}'" for c in cmd) + f"; rc=$?; ls -A '{disk}'; exit $rc")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", shell], capture_output=True, text=True,
                          env=env, timeout=timeout)
    return proc, disk


# --------------------------------------------------------------------- real failures (tmpfs)
def test_disk_full_on_a_real_tmpfs(tmp_path):
    """numpy (whose short write has no errno), safetensors (SafetensorError) and json writes
    into a 256 KiB tmpfs: each says "disk full", nothing is left, earlier output is intact."""
    proc, disk = _in_tmpfs(tmp_path, """
        import json, os, sys
        import numpy as np, torch
        from safetensors.torch import save_file
        from neurofuse._io import StorageError, atomic_dir, save_npy, write_json

        disk, out = sys.argv[1], {}
        save_npy(disk + "/keep.npy", np.arange(10))        # an earlier output

        def attempt(name, write):
            try:
                write()
            except StorageError as exc:
                out[name] = [exc.kind, str(exc)]

        def model():
            with atomic_dir(disk + "/model", what="model") as tmp:
                save_file({"w": torch.zeros(200_000)}, str(tmp / "model.safetensors"))

        attempt("npy", lambda: save_npy(disk + "/keep.npy", np.zeros(200_000)))
        attempt("safetensors", model)
        attempt("json", lambda: write_json(disk + "/big.json", list(range(100_000))))
        out["files"] = sorted(os.listdir(disk))
        out["keep"] = np.load(disk + "/keep.npy").tolist()
        print(json.dumps(out))
        """)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[0])
    assert out["files"] == ["keep.npy"]                     # no temporaries left
    assert out["keep"] == list(range(10))                   # the earlier version kept
    for name, what, path in [("npy", "array", "keep.npy"), ("safetensors", "model", "model"),
                             ("json", "JSON file", "big.json")]:
        kind, message = out[name]
        assert kind == "disk full"
        assert message.startswith(f"disk full while writing the {what} to '{disk / path}': ")
        assert f"MiB free on '{disk}'" in message
        assert "Nothing half-written was left behind" in message
    assert "[Errno" not in out["npy"][1] and "None" not in out["npy"][1]


def test_read_only_disk_on_a_real_tmpfs(tmp_path):
    proc, disk = _in_tmpfs(tmp_path, """
        import json, os, subprocess, sys
        import numpy as np
        from neurofuse._io import StorageError, atomic_dir, check_writable_dir, make_dir, save_npy

        disk, out = sys.argv[1], {}
        save_npy(disk + "/keep.npy", np.arange(10))
        subprocess.run(["mount", "-o", "remount,ro", disk], check=True)

        def new_folder():
            with atomic_dir(disk + "/run", what="model") as tmp:
                (tmp / "a").write_text("x")

        for name, write in [("npy", lambda: save_npy(disk + "/keep.npy", np.zeros(3))),
                            ("dir", new_folder), ("mkdir", lambda: make_dir(disk + "/a/b")),
                            ("probe", lambda: check_writable_dir(disk + "/ds"))]:
            try:
                write()
            except StorageError as exc:
                out[name] = [exc.kind, str(exc)]
        out["files"] = sorted(os.listdir(disk))
        out["keep"] = np.load(disk + "/keep.npy").tolist()
        print(json.dumps(out))
        """)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[0])
    assert out["files"] == ["keep.npy"] and out["keep"] == list(range(10))
    for name, start in [("npy", f"cannot write the array to '{disk / 'keep.npy'}'"),
                        ("dir", f"cannot write the model to '{disk / 'run'}'"),
                        ("mkdir", f"cannot create the output folder '{disk / 'a' / 'b'}'"),
                        ("probe", f"cannot write the output ('out') to '{disk / 'ds'}'")]:
        kind, message = out[name]
        assert kind == "read-only"
        assert message.startswith(f"read-only file system: {start}")
        assert f"'{disk}' is mounted read-only" in message and "--out" in message


@pytest.mark.parametrize("command", ["simulate", pytest.param("fit", marks=pytest.mark.slow)])
def test_cli_simulate_and_fit_on_a_full_disk_say_so(tmp_path, tiny_study, command):
    """End to end: one clear line, exit 1, no traceback, nothing half-written."""
    size, args, what = {
        # --force: past the up-front disk estimate (tests/simulation/test_study_resources.py),
        # to the write that fills the disk
        "simulate": ("256k", ["simulate", "study", "tiny", "--out", "{disk}/ds", "--force"],
                     "while writing the "),
        "fit": ("1m", ["joint", "fit", "tiny", "--data", str(tiny_study), "--out", "{disk}/run",
                       "--epochs", "1", "-q"], "while writing the model to '{disk}/run/model'"),
    }[command]
    proc, disk = _in_tmpfs(tmp_path, None, *args, size=size)
    err = proc.stderr
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "SafetensorError" not in err
    assert f"neurofuse {args[0]} {args[1]}: error: disk full {what.format(disk=disk)}" in err
    assert f"MiB free on '{disk}'" in err
    assert ".tmp-" not in proc.stdout                        # the listing of the disk


def test_real_library_errors_at_the_file_size_limit(tmp_path):
    """Real failures of numpy, safetensors and MNE writes, without privileges: a process
    file-size limit (``ulimit -f``) makes each write fail the way a full disk does."""
    resource = pytest.importorskip("resource")
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys
        import mne, numpy as np, torch
        from safetensors.torch import save_file
        from neurofuse._io import StorageError, atomic_dir, atomic_path, save_npy

        disk, out = sys.argv[1], {}
        save_npy(disk + "/keep.npy", np.arange(10))

        def model():
            with atomic_dir(disk + "/model", what="model") as tmp:
                save_file({"w": torch.zeros(200_000)}, str(tmp / "model.safetensors"))

        def raw():
            info = mne.create_info(2, 1000.0, "eeg")
            with atomic_path(disk + "/pred-raw.fif", what="MEG prediction") as tmp:
                mne.io.RawArray(np.zeros((2, 100_000)), info, verbose="error").save(
                    tmp, verbose="error")

        for name, write in [("npy", lambda: save_npy(disk + "/keep.npy", np.zeros(200_000))),
                            ("safetensors", model), ("fif", raw)]:
            try:
                write()
            except StorageError as exc:
                out[name] = [exc.kind, str(exc)]
        out["files"] = sorted(os.listdir(disk))
        out["keep"] = np.load(disk + "/keep.npy").tolist()
        print(json.dumps(out))
        """))
    disk = tmp_path / "disk"
    disk.mkdir()

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    proc = subprocess.run([sys.executable, str(script), str(disk)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          preexec_fn=limit, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["files"] == ["keep.npy"] and out["keep"] == list(range(10))
    for name, what, path in [("npy", "array", "keep.npy"), ("safetensors", "model", "model"),
                             ("fif", "MEG prediction", "pred-raw.fif")]:
        kind, message = out[name]
        assert kind == "file too large", message
        assert message.startswith(f"file too large while writing the {what} to "
                                  f"'{disk / path}': ")
        assert "ulimit -f" in message and "Nothing half-written was left behind" in message


# ------------------------------------------------------------------- simulated failures (CI)
def _failing_np_save(exc):
    def save(fid, arr, allow_pickle=False):
        fid.write(b"\x93NUMPY partial")                       # something was half-written
        raise exc
    return save


@pytest.mark.parametrize("exc, kind, start", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk full",
     "disk full while writing the array to "),
    (OSError("800 requested and 12 written"), "disk full",    # numpy's: errno is None
     "disk full while writing the array to "),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "quota exceeded",
     "disk quota exceeded while writing the array to "),
    (OSError(errno.EROFS, "Read-only file system"), "read-only",
     "read-only file system: cannot write the array to "),
    (PermissionError(errno.EACCES, "Permission denied"), "permission",
     "permission denied: cannot write the array to "),
])
def test_a_failed_write_is_named_and_leaves_the_earlier_file(tmp_path, monkeypatch, exc, kind,
                                                              start):
    target = tmp_path / "x.npy"
    save_npy(target, np.arange(4))
    monkeypatch.setattr("neurofuse._io.np.save", _failing_np_save(exc))
    with pytest.raises(StorageError) as info:
        save_npy(target, np.arange(7))
    err = info.value
    assert err.kind == kind and err.path == target and isinstance(err, OSError)
    assert str(err).startswith(f"{start}'{target}'")
    assert f"the earlier '{target}' and outputs written before it are kept" in str(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(target), np.arange(4))
    again = pickle.loads(pickle.dumps(err))                  # crosses process boundaries
    assert str(again) == str(err) and again.kind == kind and again.errno == err.errno


def test_safetensors_error_inside_a_folder_names_the_file_where_it_would_go(tmp_path):
    from safetensors import SafetensorError

    run = tmp_path / "run"
    with atomic_dir(run, what="model") as tmp:
        (tmp / "old.txt").write_text("earlier model")
    with pytest.raises(StorageError) as info:
        with atomic_dir(run, overwrite=True, what="model") as tmp:
            with atomic_path(tmp / "ckpt" / "state.safetensors", what="checkpoint") as part:
                part.write_bytes(b"half")
                raise SafetensorError("Error while serializing: I/O error: No space left on "
                                      "device (os error 28)")
    msg = str(info.value)
    assert msg.startswith(f"disk full while writing the checkpoint to "
                          f"'{run / 'ckpt' / 'state.safetensors'}' (part of the model '{run}')")
    assert f"the earlier '{run}' and outputs written before it are kept" in msg
    assert ".tmp-" not in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert (run / "old.txt").read_text() == "earlier model"


def test_other_errors_pass_through_unchanged(tmp_path):
    """A bug, or an input that cannot be read, is not reported as a storage failure."""
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "x.json") as tmp:
            tmp.write_text("{}")
            raise KeyError("bug")
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope/input.fif")
    with pytest.raises(FileNotFoundError) as info:
        with atomic_dir(tmp_path / "run"):
            raise missing
    assert info.value is missing
    assert storage_error(ValueError("x"), tmp_path) is None
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------- a file where a folder goes
def test_a_file_where_a_folder_is_expected(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("someone's notes")
    for write, path, verb in [
        (lambda: save_npy(blocker / "x.npy", np.arange(3)), blocker / "x.npy",
         "write the array to"),
        (lambda: write_json(blocker / "sub" / "a.json", {}), blocker / "sub" / "a.json",
         "write the JSON file to"),
        (lambda: atomic_dir(blocker / "run").__enter__(), blocker / "run", "write the dataset to"),
        (lambda: atomic_dir(blocker, overwrite=True, what="model").__enter__(), blocker,
         "write the model to"),
        (lambda: make_dir(blocker / "a" / "b"), blocker / "a" / "b", "create the output folder"),
        (lambda: make_dir(blocker), blocker, "create the output folder"),          # EEXIST
        (lambda: check_writable_dir(blocker / "ds"), blocker / "ds",
         "write the output ('out') to"),
    ]:
        with pytest.raises(StorageError) as info:
            write()
        assert info.value.kind == "not a folder"
        assert str(info.value).startswith(
            f"a file is where a folder is expected: cannot {verb} '{path}', because "
            f"'{blocker}' is a file, not a folder. Move or rename '{blocker}'")
        assert "Nothing was written." in str(info.value)
    assert blocker.read_text() == "someone's notes"
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_a_folder_where_a_file_is_expected(tmp_path):
    folder = tmp_path / "x.npy"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(StorageError) as info:
        save_npy(folder, np.arange(3))
    assert info.value.kind == "not a file"
    assert str(info.value).startswith(
        f"a folder is where a file is expected: cannot write the array to '{folder}', because "
        f"'{folder}' is a folder, not a file.")
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]
    assert [p.name for p in folder.iterdir()] == ["inside"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores permissions (the EACCES case is monkeypatched above)")
def test_a_folder_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    save_npy(locked / "x.npy", np.arange(3))
    locked.chmod(0o500)
    try:
        with pytest.raises(StorageError) as info:
            save_npy(locked / "x.npy", np.arange(5))
        assert info.value.kind == "permission"
        assert f"this user may not write in '{locked}'" in str(info.value)
    finally:
        locked.chmod(0o700)
    assert sorted(p.name for p in locked.iterdir()) == ["x.npy"]
    np.testing.assert_array_equal(np.load(locked / "x.npy"), np.arange(3))


# --------------------------------------------------------------------------- the command
def test_cli_explains_a_storage_failure_raised_outside_the_writers(tmp_path, monkeypatch, capsys):
    """A library writing directly (not through neurofuse._io) still gets the clear message."""
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")

    monkeypatch.setattr("neurofuse.simulation.study.simulate_study", full)
    out = tmp_path / "ds"
    assert main(["simulate", "study", "tiny", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"neurofuse simulate study: error: disk full while writing the output "
                          f"to '{out}': ")
    assert "may be incomplete" in err and "Traceback" not in err

    def bug(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("neurofuse.simulation.study.simulate_study", bug)
    with pytest.raises(RuntimeError):                        # bugs keep their traceback
        main(["simulate", "study", "tiny", "--out", str(out)])
