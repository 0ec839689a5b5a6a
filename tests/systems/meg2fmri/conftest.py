"""Shared set-up of the MEG2fMRI cGAN tests."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread: the test models are tiny, and on a busy 2-core machine OpenMP's
    waiting threads make each step several times slower (0.7 s vs 7 s per tiny epoch,
    measured). Module scope, so runs that tests compare with use the same thread count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
