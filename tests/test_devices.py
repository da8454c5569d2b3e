"""Everything follows the device of its inputs.

Without a GPU the ``meta`` device stands in for a foreign one: a tensor left on the CPU (an
ALiBi slope table, a position cache, a mask's lengths) meets a meta tensor and fails exactly as
it would meet a CUDA one. Values cannot be read on meta, so what needs them (dense padding masks,
the recurrent encoder's packed lengths, generation's token choices) is checked on CUDA itself
(``gpu`` tests, ``make test-gpu``)."""

import pytest
import torch
from torch import nn

import atenea
from atenea import masks, scores
from atenea.generation import GenerationConfig
from atenea.models import (
    DecoderConfig,
    DecoderModel,
    EncoderConfig,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    EncoderForSequenceClassification,
    EncoderModel,
    RNNConfig,
    RNNEncDec,
    RNNSearch,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
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
    "vit_classifier": lambda: ViTForImageClassification(ViTConfig.from_name("vit-tiny"), 3),
    # 20 x 24 pixels: a 5 x 6 grid, not the 7 x 7 trained one, so the positions are resized
    "vit_interpolated": lambda: ViTModel(ViTConfig.from_name("vit-tiny")),
    "rnnsearch": lambda: RNNSearch(RNNConfig.from_name("rnnsearch-tiny")),
    "rnnencdec": lambda: RNNEncDec(RNNConfig.from_name("rnnsearch-tiny")),
}
RECURRENT = ("rnnsearch", "rnnencdec")


@pytest.mark.parametrize("name", MODELS)
def test_every_tensor_a_model_holds_moves_with_to(name):
    model = MODELS[name]()
    model(*_inputs(name, "cpu"))  # caches built lazily by a first call must move too
    model.to("meta")
    left = [tuple(t.shape) for t in tensors_in(model) if t.device.type != "meta"]
    assert left == [], f"tensors that stayed on the CPU: {left}"


def _inputs(name, device):
    ids = torch.zeros(2, 150, dtype=torch.long, device=device)
    if name in ("transformer", *RECURRENT):
        return ids, ids[:, :90]
    if name.startswith("vit"):
        size = (28, 28) if name == "vit_classifier" else (20, 24)
        return (torch.zeros(2, 1, *size, device=device),)
    if name == "attention_alibi_bias":
        return (torch.zeros(2, 150, 64, device=device),)
    return (ids,)


# The recurrent encoder packs its rows by their lengths, which PyTorch reads on the CPU (a
# meta tensor has none to read): its decoder is checked on meta below, the whole on CUDA.
@pytest.mark.parametrize("name", [name for name in MODELS if name not in RECURRENT])
def test_a_forward_pass_creates_nothing_on_the_wrong_device(name):
    model = MODELS[name]().to("meta")
    out = model(*_inputs(name, "meta"), **_asking_for_everything(name))
    made = [out] if isinstance(out, torch.Tensor) else list(tensors_in(vars(out)))
    assert made and {t.device.type for t in made} == {"meta"}


def _asking_for_everything(name):
    """The ViTs also return every layer's attention and hidden state (the fast path's
    recovered weights, the interpolated positions' first layer)."""
    return dict(output_attentions=True, output_hidden_states=True) if "vit" in name else {}


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_decoding_steps_and_beam_reordering_stay_on_the_device(name):
    """What greedy and beam search do with an ``RNNState``: a first call over the prompt, steps
    of one token, rows picked and repeated by ``select``; all on meta, with the alignment."""
    model = MODELS[name]().to("meta")
    hidden = model.config.hidden_dim
    memory = torch.zeros(2, 11, 2 * hidden, device="meta")  # the encoder's annotations
    memory_mask = torch.ones(2, 11, dtype=torch.long, device="meta")
    cache = model.new_cache()
    ids = torch.zeros(2, 1, dtype=torch.long, device="meta")
    logits, states = model.decode(ids, memory, memory_mask, cache=cache)
    rows = torch.tensor([1, 1, 0], device="meta")  # three beams from two rows
    cache.select(rows)
    logits, states = model.decode(ids[rows], memory[rows], memory_mask[rows], cache=cache)
    made = [logits, states, *tensors_in(cache)]
    assert {t.device.type for t in made} == {"meta"}
    assert logits.shape == (3, 1, model.config.tgt_vocab_size) and cache.state.shape[0] == 3
    if name == "rnnsearch":
        out = model._run(ids, memory, memory_mask, None, None, 0)  # with its alignments
        assert out[2].device.type == "meta" and out[2].shape == (2, 1, 11)


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
@pytest.mark.parametrize("name", ["gpt2", "llama", "bert", "transformer", "vit_classifier",
                                  "vit_interpolated", *RECURRENT])  # fmt: skip
def test_models_on_cuda_compute_what_they_compute_on_the_cpu(name):
    model = MODELS[name]().double().eval()
    inputs = [torch.randn(t.shape, dtype=torch.float64) if t.is_floating_point()
              else torch.randint(3, 900, t.shape) for t in _inputs(name, "cpu")]  # fmt: skip
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
        config = GenerationConfig(max_new_tokens=8, do_sample=True,
                                         generator=torch.Generator().manual_seed(3))  # fmt: skip
        runs.append(atenea.generate(model.to(device), prompt.to(device), config=config).cpu())
    assert all(torch.equal(run, runs[0]) for run in runs)


@pytest.mark.gpu
@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_greedy_and_beam_search_on_cuda_choose_what_the_cpu_chooses(name):
    """The whole path: packed encoder over left-padded rows, the RNNState, beam reordering."""
    model = MODELS[name]().double().eval()
    with torch.no_grad():  # larger weights than the paper's N(0, 0.01): no near-ties
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    source = torch.randint(3, 1000, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(source)
    mask[1, :4] = 0
    for beams in (1, 3):
        runs = [atenea.generate(model.to(device), source.to(device), num_beams=beams,
                                attention_mask=mask.to(device), max_new_tokens=6).cpu()
                for device in DEVICES]  # fmt: skip
        assert all(torch.equal(run, runs[0]) for run in runs)
