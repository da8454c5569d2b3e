import pytest
import torch

from tests.generation import tiny


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is as fast as two on a quiet machine, and on a busy one OpenMP
    threads waiting for each other turn a millisecond step into a long wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def gpt2_pair(tmp_path_factory):
    """(Hugging Face GPT-2, the same weights in atenea)."""
    hf = tiny.hf_gpt2()
    return hf, tiny.saved(hf, tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="package")
def llama_pair(tmp_path_factory):
    """(Hugging Face Llama with grouped-query attention, the same weights in atenea)."""
    hf = tiny.hf_llama()
    return hf, tiny.saved(hf, tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="package")
def seq2seq():
    return tiny.seq2seq()


@pytest.fixture
def every_product_on_the_fast_kernels(monkeypatch):
    """The tiny models' products are below the size where ``atenea.nn.linear`` leaves PyTorch's
    kernels; with the threshold at 0 every one goes to atenea's matvec (one row) or oneDNN."""
    import atenea.nn.linear as linear_module

    monkeypatch.setattr(linear_module, "_MIN_WORK", 0)
    x = torch.zeros(1, 4)
    assert linear_module.route(x, torch.zeros(3, 4)) in ("matvec", "rows", "onednn")
