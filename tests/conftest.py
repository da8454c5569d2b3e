import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The commands speak the locale's language (LANG=es_* -> Spanish); the tests read English
# unless they ask for another (tests/cli/test_steps.py sets the locale itself).
os.environ["ATENEA_LANG"] = "en"

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


@pytest.fixture
def progress_bars(monkeypatch):
    """What the code under test asks of ``tqdm.auto.tqdm``: each bar's keyword arguments, then
    the counts of its ``update`` calls, in one list (the bars themselves draw nothing)."""
    import tqdm.auto

    shown = []

    class Bar(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            shown.append(kwargs)
            super().__init__(*args, **{**kwargs, "disable": True})

        def update(self, n=1):
            shown.append(n)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    return shown


# -- devices ------------------------------------------------------------------------------------

CUDA = torch.cuda.is_available()
#: The devices the public paths are checked on: the CPU always, CUDA where there is one.
DEVICES = ["cpu", "cuda"] if CUDA else ["cpu"]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skip them, saying so, where there is none."""
    if CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here); run `make test-gpu` on one")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
