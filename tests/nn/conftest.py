import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is as fast as two on a quiet machine, and on a busy
    one (shared CI runners, parallel jobs) OpenMP threads waiting for each other make a
    millisecond step take a second. Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
