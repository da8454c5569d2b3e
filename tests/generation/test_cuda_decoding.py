"""Decoding on a GPU (``gpu`` tests, ``make test-gpu``): the compiled step captured as a CUDA
graph gives the eager tokens, replays without re-recording, and keeps the cache in place."""

import copy

import pytest
import torch

import atenea
from tests.generation import tiny

pytestmark = pytest.mark.gpu


@pytest.fixture
def on_cuda(request):
    def move(name):
        return copy.deepcopy(request.getfixturevalue(name)[1]).cuda().eval()

    return move


@pytest.mark.parametrize("name", ["gpt2_pair", "llama_pair"])
@pytest.mark.parametrize("options", [dict(), dict(num_beams=3), dict(do_sample=True)],
                         ids=["greedy", "beams", "sampling"])  # fmt: skip
def test_cuda_graph_steps_give_the_eager_tokens(on_cuda, name, options):
    from torch._dynamo.utils import counters

    model = on_cuda(name)
    ids, mask = (t.cuda() for t in tiny.left_padded())
    runs = []
    for compile in (False, True):
        generator = torch.Generator("cuda").manual_seed(5)
        runs.append(atenea.generate(model, ids, attention_mask=mask, max_new_tokens=20,
                                    compile=compile, generator=generator, **options))  # fmt: skip
    assert counters["stats"].get("unique_graphs", 0) > 0, "no graph compiled: eager vs eager"
    assert torch.equal(*runs)


def test_a_second_generate_replays_the_recorded_graph(on_cuda):
    from torch._dynamo.utils import counters

    model = on_cuda("gpt2_pair")
    ids = torch.tensor([[5, 6, 7, 8]], device="cuda")
    atenea.generate(model, ids, max_new_tokens=16, compile=True)
    before = dict(counters["stats"])
    assert before.get("unique_graphs", 0) > 0, "compile=True recorded no graph: proves nothing"
    atenea.generate(model, ids, max_new_tokens=16, compile=True)
    assert counters["stats"].get("unique_graphs", 0) == before.get("unique_graphs", 0)
