"""Memory and disk checks before work (neurofuse._resources)."""

import os
import shutil

import numpy as np
import pytest

from neurofuse import _resources
from neurofuse._resources import (
    ResourceError,
    available_memory,
    check_disk,
    check_memory,
    format_bytes,
    free_disk,
    ignore_limits,
    limits_ignored,
)

GiB = 1024 ** 3


def _meminfo(key):
    with open("/proc/meminfo") as fid:
        for line in fid:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return None


def test_available_memory_is_what_the_system_reports():
    avail = available_memory()
    total = _meminfo("MemTotal:") if os.path.exists("/proc/meminfo") else None
    assert avail > 0
    if total is not None:
        assert avail <= total
        # MemAvailable moves while we read it; 25 % is far more than it does in a test
        expected = min(_meminfo("MemAvailable:"), _resources._cgroup_free() or np.inf)
        assert abs(avail - expected) < 0.25 * expected


def test_a_cgroup_limit_caps_the_available_memory(monkeypatch):
    files = {"/sys/fs/cgroup/memory.max": 3 * GiB, "/sys/fs/cgroup/memory.current": 1 * GiB}
    monkeypatch.setattr(_resources, "_read_int", lambda p: files.get(str(p)))
    assert _resources._cgroup_free() == 2 * GiB
    assert available_memory() <= 2 * GiB
    files["/sys/fs/cgroup/memory.max"] = None  # "max": no limit
    assert _resources._cgroup_free() is None


def test_free_disk_of_a_path_that_does_not_exist_yet(tmp_path):
    got = free_disk(tmp_path / "a" / "b" / "c")
    ref = shutil.disk_usage(tmp_path).free
    assert abs(got - ref) < 0.05 * ref + 2 ** 24


def test_format_bytes():
    assert format_bytes(1.5 * GiB) == "1.5 GiB"
    assert format_bytes(12 * 2 ** 20) == "12 MiB"
    assert format_bytes(153.2 * GiB) == "153 GiB"


def test_check_memory_refuses_with_both_sizes_and_the_fix(catch_logs):
    with pytest.raises(ResourceError, match=r"^Predicting X needs about 2 GiB of memory, 1 GiB "
                       r"available \(largest: a 1.5 GiB, b 512 MiB\); reduce the length\. Or "
                       r"pass --force \(or set NEUROFUSE_IGNORE_LIMITS=1\) to try anyway\.$"):
        check_memory(2 * GiB, what="Predicting X", reduce="the length",
                     parts={"a": 1.5 * GiB, "b": 0.5 * GiB, "c": 0}, available=GiB)
    assert isinstance(ResourceError("x"), ValueError)  # the CLI prints it as an error
    assert check_memory(GiB, what="X", reduce="y", available=2 * GiB) == GiB
    with ignore_limits(), catch_logs("warning") as log:
        check_memory(2 * GiB, what="X", reduce="y", available=GiB)
    assert "needs about 2 GiB" in log.text and "Continuing anyway" in log.text
    assert not limits_ignored()  # only inside the block


def test_check_disk_names_the_location(tmp_path):
    with pytest.raises(ResourceError, match="writes about 3 GiB to '.*out', 1 GiB free there; "
                                            "choose another location"):
        check_disk(3 * GiB, tmp_path / "out", what="X", reduce="y", available=GiB)


def test_check_disk_says_read_only_before_sizes(tmp_path, monkeypatch):
    real = os.statvfs

    class ReadOnly:
        def __init__(self, st):
            self.st = st

        def __getattr__(self, name):
            return getattr(self.st, name)

        f_flag = os.ST_RDONLY

    monkeypatch.setattr(_resources.os, "statvfs", lambda p: ReadOnly(real(p)))
    with pytest.raises(ResourceError, match=r"X cannot write to '.*out': '.*' is on a read-only "
                                            r"file system.*remount"):
        with ignore_limits():  # a fact, not an estimate: no override
            check_disk(1, tmp_path / "out", what="X", reduce="y", available=GiB)
    monkeypatch.setattr(_resources.os, "statvfs", real)
    assert check_disk(1, tmp_path / "out", what="X", reduce="y", available=GiB) == 1


def test_the_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv("NEUROFUSE_IGNORE_LIMITS", "1")
    assert limits_ignored()
    check_memory(2 * GiB, what="X", reduce="y", available=1)
    monkeypatch.setenv("NEUROFUSE_IGNORE_LIMITS", "0")
    assert not limits_ignored()
    with ignore_limits(False):
        assert not limits_ignored()
