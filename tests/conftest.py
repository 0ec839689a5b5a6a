"""Test configuration: an isolated cache directory, and GPU tests skipped without a GPU."""

import os

import pytest


def pytest_configure(config):
    # One cache for the whole run (anatomy and forward models are reused across tests), never
    # the user's own cache. Set before neurofuse reads it.
    if "NEUROFUSE_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["NEUROFUSE_CACHE_DIR"] = tempfile.mkdtemp(prefix="neurofuse-test-cache-")
    os.environ.setdefault("MPLBACKEND", "Agg")


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


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """A tiny simulated study (1 MEG + 1 fMRI subject, four 24-s stories), read-only."""
    from neurofuse.simulation.study import simulate_study

    return simulate_study("tiny", tmp_path_factory.mktemp("shared") / "tiny")
