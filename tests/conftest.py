import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# Without a GPU the Triton kernel's tests run in Triton's interpreter, which must be switched on
# before anything imports triton (triton.language's own helpers are decorated at that import).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Every test starts from seed 0, on one torch thread: the suite's tensors are small, one
    thread is as fast as two on a quiet machine, and on a busy one (shared CI runners) OpenMP
    threads waiting for each other turn a millisecond step into a second."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
