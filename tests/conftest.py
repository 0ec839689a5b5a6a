"""Test configuration: an isolated cache directory, GPU tests skipped without a GPU, and a
capture of the package logger for tests of log messages, the package log level restored after
every test."""

import os

import pytest


def pytest_configure(config):
    # One cache for the whole run (anatomy and forward models are reused across tests), never
    # the user's own cache. Set before neurofuse reads it.
    if "NEUROFUSE_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["NEUROFUSE_CACHE_DIR"] = tempfile.mkdtemp(prefix="neurofuse-test-cache-")
        config._neurofuse_own_cache = os.environ["NEUROFUSE_CACHE_DIR"]
    os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_unconfigure(config):
    # The run's own cache (anatomy, forward models: up to GBs) goes with the run; a cache the
    # user pointed NEUROFUSE_CACHE_DIR at is theirs and stays.
    own = getattr(config, "_neurofuse_own_cache", None)
    if own is not None:
        import shutil

        shutil.rmtree(own, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_package_log_level():
    """Every test starts and ends at the package's log level: the CLI's ``main`` sets it for
    its process (INFO by default), which in a test run would leak into the tests after it."""
    from neurofuse._logging import logger

    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """A tiny simulated study (1 MEG + 1 fMRI subject, four 24-s stories), read-only."""
    from neurofuse.simulation.study import simulate_study

    return simulate_study("tiny", tmp_path_factory.mktemp("shared") / "tiny")


@pytest.fixture
def catch_logs():
    """Capture the ``neurofuse`` logger: ``with catch_logs("warning") as log: ...``.

    Use it, not pytest's ``caplog``, to assert on the package's log messages: the package
    logger does not propagate to the root logger that ``caplog`` listens on (pytest >= 9.2
    works around that only for loggers that exist when the test starts). Returns
    :func:`neurofuse._logging.catch_logging`: ``log.text`` holds ``'LEVEL: message'`` lines,
    ``log.messages`` the messages and ``log.records`` the ``logging.LogRecord`` objects.
    """
    from neurofuse._logging import catch_logging

    return catch_logging


@pytest.fixture
def one_torch_thread():
    """Run the test on one torch thread (restored after): tiny models on a busy 2-core
    machine run several times faster. Use as ``pytestmark =
    pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_benchmark(name):
    """The module of ``benchmarks/<name>.py`` (the benchmark scripts are not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def benchmark_script():
    """``benchmark_script(name)``: the module of ``benchmarks/<name>.py``."""
    return load_benchmark
