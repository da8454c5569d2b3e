"""Everything follows the device of its inputs.

Without a GPU the ``meta`` device stands in for a foreign one: a tensor left on the CPU (an
ALiBi slope table, a position cache, a mask's lengths) meets a meta tensor and fails exactly as
it would meet a CUDA one. Values cannot be read on meta, so what needs them (dense padding masks)
is checked on CUDA itself (``gpu`` tests, ``make test-gpu``)."""

import pytest
import torch
from torch import nn

import atenea
from atenea import masks, scores
from atenea.models import (
    DecoderConfig,
    DecoderModel,
    EncoderConfig,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    EncoderForSequenceClassification,
    EncoderModel,
)
from atenea.nn import MultiHeadAttention
from tests.conftest import DEVICES


def tensors_in(value, seen=None):
    """Every tensor reachable from a module's attributes (registered or not), recursively."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, nn.Module) or type(value).__module__.startswith("atenea"):
        for attribute in vars(value).values():
            yield from tensors_in(attribute, seen)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item, seen)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from tensors_in(item, seen)


MODELS = {
    "gpt2": lambda: DecoderModel(DecoderConfig.from_name("gpt2-tiny")),
    "llama": lambda: DecoderModel(DecoderConfig.from_name("llama-tiny")),
    "bert": lambda: EncoderModel(EncoderConfig.from_name("bert-tiny")),
    "classifier": lambda: EncoderForSequenceClassification(EncoderConfig.from_name("bert-tiny"), 3),
    "transformer": lambda: EncoderDecoderModel(EncoderDecoderConfig.from_name("transformer-tiny")),
    "attention_alibi_bias": lambda: MultiHeadAttention(
        64, 4, score_mod=scores.compose(scores.alibi(4), scores.relative_bias(4))
    ),
}


@pytest.mark.parametrize("name", MODELS)
def test_every_tensor_a_model_holds_moves_with_to(name):
    model = MODELS[name]()
    model(*_inputs(name, "cpu"))  # caches built lazily by a first call must move too
    model.to("meta")
    left = [tuple(t.shape) for t in tensors_in(model) if t.device.type != "meta"]
    assert left == [], f"tensors that stayed on the CPU: {left}"


def _inputs(name, device):
    ids = torch.zeros(2, 150, dtype=torch.long, device=device)
    if name == "transformer":
        return ids, ids[:, :90]
    if name == "attention_alibi_bias":
        return (torch.zeros(2, 150, 64, device=device),)
    return (ids,)


@pytest.mark.parametrize("name", MODELS)
def test_a_forward_pass_creates_nothing_on_the_wrong_device(name):
    model = MODELS[name]().to("meta")
    out = model(*_inputs(name, "meta"))
    made = [out] if isinstance(out, torch.Tensor) else list(tensors_in(vars(out)))
    assert made and {t.device.type for t in made} == {"meta"}


def test_a_cache_is_made_on_the_model_device():
    model = DecoderModel(DecoderConfig.from_name("llama-tiny")).to("meta")
    cache = model.new_cache(2, 64)
    assert {t.device.type for t in tensors_in(cache)} == {"meta"}


STRUCTURED = {
    "causal": masks.causal(),
    "window": masks.sliding_window(30),
    "padding": masks.key_padding([200, 10]),  # lengths held on the CPU
    "documents": masks.document(torch.arange(300) // 100) & masks.causal(),
    "prefix_or_window": masks.prefix_lm([20, 40]) | masks.sliding_window(8),
}


CALLS = [(b, m) for b in ("auto", "blocks", "reference") for m in ("none", "alibi", "softcap")]


@pytest.mark.parametrize("backend, mod_name", [*CALLS, ("sdpa", "none")])
@pytest.mark.parametrize("mask_name", STRUCTURED)
def test_masks_and_modifiers_built_on_the_cpu_serve_other_devices(backend, mask_name, mod_name):
    mod = {"none": None, "alibi": scores.alibi(8), "softcap": scores.softcap(3.0)}[mod_name]
    q = torch.randn(2, 8, 300, 16, device="meta")
    kv = torch.randn(2, 2, 300, 16, device="meta")
    out, lse = atenea.attention(q, kv, kv, mask=STRUCTURED[mask_name], score_mod=mod,
                                backend=backend, return_lse=True)  # fmt: skip
    assert out.device.type == lse.device.type == "meta"


@pytest.mark.parametrize("mask_name", STRUCTURED)
def test_a_decode_step_with_a_cpu_mask_serves_other_devices(mask_name):
    q = torch.randn(2, 8, 1, 16, device="meta")
    kv = torch.randn(2, 2, 300, 16, device="meta")
    one = atenea.attention(q, kv, kv, mask=STRUCTURED[mask_name])  # the decode path
    assert one.device.type == "meta"


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["gpt2", "llama", "bert", "transformer"])
def test_models_on_cuda_compute_what_they_compute_on_the_cpu(name):
    model = MODELS[name]().double().eval()
    inputs = [torch.randint(0, 900, t.shape) for t in _inputs(name, "cpu")]
    expected = model(*inputs)
    got = model.to("cuda")(*[t.cuda() for t in inputs])
    got, expected = list(tensors_in(vars(got))), list(tensors_in(vars(expected)))
    assert got and len(got) == len(expected)
    for got_tensor, expected_tensor in zip(got, expected):
        torch.testing.assert_close(got_tensor.cpu(), expected_tensor, rtol=1e-9, atol=1e-9)


@pytest.mark.gpu
def test_sampling_on_cuda_with_a_cpu_generator_draws_what_the_cpu_draws():
    model = DecoderModel(DecoderConfig.from_name("gpt2-tiny")).eval()
    prompt = torch.tensor([[5, 6, 7]])
    runs = []
    for device in DEVICES:
        config = atenea.GenerationConfig(max_new_tokens=8, do_sample=True,
                                         generator=torch.Generator().manual_seed(3))  # fmt: skip
        runs.append(atenea.generate(model.to(device), prompt.to(device), config=config).cpu())
    assert all(torch.equal(run, runs[0]) for run in runs)
