"""The ``"flex"`` backend: PyTorch's FlexAttention fed atenea's tile lists and translated masks.

On the CPU FlexAttention runs its unfused reference (forward only): enough to prove that the
block mask built from the tile lists and every translated ``mask_mod`` say what atenea's masks
say, and that the LSE is the kernel's own. Speed and gradients are checked on CUDA (``gpu``)."""

import dataclasses

import pytest
import torch

import atenea
from atenea import masks, scores
from atenea.attention.backends import flex
from atenea.attention.backends.flex import mask_mod_of
from atenea.attention.core import select_backend
from atenea.attention.problem import check_call
from tests.attention.test_backends import MASKS
from tests.helpers import make_qkv, max_error

pytestmark = pytest.mark.skipif(not flex.available(), reason="this torch has no FlexAttention")

# Lengths over one 128 tile, not multiples of it, Lq != Lk, GQA, Dv != D.
SHAPE = dict(batch=2, q_heads=4, kv_heads=2, q_len=150, kv_len=270, head_dim=16, value_dim=24)


def every_pair(mask_mod, batch, heads, q_len, kv_len):
    from torch.nn.attention.flex_attention import create_mask

    return create_mask(mask_mod, batch, heads, q_len, kv_len, device="cpu")


EXTRA = {
    "left_padding_per_row": lambda b, lq, lk: masks.key_padding([lk, 5], side="left"),
    "not_window": lambda b, lq, lk: ~masks.sliding_window(40),
    "dense_per_head": lambda b, lq, lk: masks.dense(
        torch.rand(1, 4, lq, lk, generator=torch.Generator().manual_seed(2)) > 0.7
    ),
    "prefix_per_row_and_padding": lambda b, lq, lk: (
        masks.prefix_lm([100, 7]) & masks.key_padding([lk, lk - 60])
    ),
}
ALL_MASKS = {**{k: v for k, v in MASKS.items() if k != "none"}, **EXTRA}


@pytest.mark.parametrize("name", ALL_MASKS)
def test_every_translated_mask_mod_allows_what_the_mask_allows(name):
    batch, heads, q_len, kv_len = 2, 4, 150, 270
    mask = ALL_MASKS[name](batch, q_len, kv_len)
    got = every_pair(
        mask_mod_of(mask, q_len, kv_len, torch.device("cpu")), batch, heads, q_len, kv_len
    )
    expected = mask.materialize(q_len, kv_len).expand(batch, heads, q_len, kv_len)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", [*ALL_MASKS, "none"])
def test_outputs_and_lse_equal_the_float64_reference(name):
    q, k, v = make_qkv(**SHAPE)
    mask = MASKS["none"](2, 150, 270) if name == "none" else ALL_MASKS[name](2, 150, 270)
    out, lse = atenea.attention(q, k, v, mask=mask, return_lse=True, backend="flex")
    ref, ref_lse = atenea.attention(q, k, v, mask=mask, return_lse=True, backend="reference")
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    # rows with no allowed key: output 0 and lse -inf on both
    assert torch.equal(lse.isneginf(), ref_lse.isneginf())
    torch.testing.assert_close(lse.nan_to_num(neginf=0), ref_lse.nan_to_num(neginf=0))


@pytest.mark.parametrize(
    "mod",
    [
        scores.alibi(4),
        scores.compose(scores.softcap(3.0), scores.alibi(4, symmetric=True)),
        scores.relative_bias(4).double(),
    ],
    ids=["alibi", "softcap_alibi", "relative_bias"],
)
def test_score_modifiers_see_absolute_positions(mod):
    q, k, v = make_qkv(**SHAPE)  # Lq < Lk: the modifier must see query rows shifted by 120
    mask = masks.sliding_window(64)
    with torch.no_grad():
        out = atenea.attention(q, k, v, mask=mask, score_mod=mod, backend="flex")
        ref = atenea.attention(q, k, v, mask=mask, score_mod=mod, backend="reference")
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


def test_the_block_mask_skips_what_the_tile_lists_skip():
    """The BlockMask is the tile lists, not a fresh evaluation: its block counts are theirs."""
    from atenea.attention.backends.tile_lists import tile_lists

    q, k, v = make_qkv(batch=1, q_heads=2, kv_heads=2, q_len=512, kv_len=512, head_dim=8)
    problem = check_call(q, k, v, masks.sliding_window(100), None, None, 0.0, "flex")
    block_mask = flex.block_mask_of(problem, q.device)
    lists = tile_lists(problem.mask, 512, 512)
    assert torch.equal(block_mask.kv_num_blocks, lists.partial_counts)
    assert torch.equal(block_mask.full_kv_num_blocks, lists.full_counts)
    assert flex.block_mask_of(problem, q.device) is block_mask  # cached


def on_cuda(problem):
    """The same call as if its tensors were on a GPU (routing reads ``problem.device``)."""
    return dataclasses.replace(problem, device=torch.device("cuda"))


def _route(
    monkeypatch,
    triton_reason,
    mask=None,
    score_mod=None,
    dropout_p=0.0,
    grad=False,
    dtype=torch.float32,
    head_dim=16,
    q_len=64,
):
    """Where ``auto`` sends the call on a GPU, with the Triton kernel available (reason None)
    or not (reason given): ``why_not`` stands in for the GPU's answer."""
    import atenea.attention.core as core

    monkeypatch.setattr(core, "why_not", lambda problem: triton_reason)
    q, k, v = (t.to(dtype) for t in make_qkv(1, 4, 2, q_len, 64, head_dim))
    q.requires_grad_(grad)
    problem = check_call(q, k, v, mask, score_mod, None, dropout_p, "auto")
    return select_backend(on_cuda(problem), "auto")


def test_auto_on_cuda_sends_inference_to_triton_and_training_to_flex(monkeypatch):
    """The measured split (core._sparse_on_cuda): Triton's forward is level with Flex's and
    needs no compile per length, its backward is slower; each takes what the other cannot."""
    window = masks.sliding_window(8)
    assert _route(monkeypatch, None, window) == "triton"
    assert _route(monkeypatch, None, window, grad=True) == "flex"
    with torch.no_grad():
        assert _route(monkeypatch, None, window, grad=True) == "triton"
    assert _route(monkeypatch, None, score_mod=scores.alibi(4)) == "triton"
    assert _route(monkeypatch, None, score_mod=scores.alibi(4), grad=True) == "flex"
    # T5's bias trains, but Flex found no kernel configuration for it (H200, D=128): Triton
    assert _route(monkeypatch, None, score_mod=scores.relative_bias(4)) == "triton"
    t5_and_cap = scores.compose(scores.relative_bias(4), scores.softcap(5.0))
    assert _route(monkeypatch, None, score_mod=t5_and_cap) == "triton"
    assert _route(monkeypatch, "not installed", score_mod=scores.relative_bias(4)) == "flex"
    bias = torch.zeros(4, requires_grad=True)  # a tensor a plain function captures, trained
    assert _route(monkeypatch, None, score_mod=lambda s, b, h, q, k: s + bias[h]) == "flex"
    with torch.no_grad():
        assert _route(monkeypatch, None, score_mod=lambda s, b, h, q, k: s + bias[h]) == "triton"
    assert _route(monkeypatch, None, window, dropout_p=0.1, grad=True) == "triton"
    assert _route(monkeypatch, None, window, grad=True, head_dim=8) == "triton"  # Flex: D >= 16
    assert _route(monkeypatch, "no float64", window, grad=True, dtype=torch.float64) == "blocks"
    # without the Triton kernel (not installed, interpreter on): Flex, and tiles for dropout
    assert _route(monkeypatch, "not installed", window) == "flex"
    assert _route(monkeypatch, "not installed", window, dropout_p=0.1) == "blocks"
    # the paths before: dense and square causal to SDPA, one query to the decode path
    assert _route(monkeypatch, None) == "sdpa"
    assert _route(monkeypatch, None, masks.causal(), grad=True) == "sdpa"
    assert _route(monkeypatch, None, window, q_len=1) == "decode"


def test_explicit_flex_says_what_it_cannot():
    q, k, v = make_qkv(**SHAPE)
    problem = check_call(q, k, v, masks.sliding_window(8), None, None, 0.0, "auto")
    assert select_backend(problem, "auto") == "blocks"  # the CPU: atenea's tiles
    with pytest.raises(ValueError, match="flex.*no dropout"):
        atenea.attention(q, k, v, dropout_p=0.1, backend="flex")
    # on a GPU the compiled kernel's limits, said before it fails to compile
    small = check_call(*(t[..., :8].float() for t in (q, k, v)), None, None, None, 0.0, "flex")
    with pytest.raises(ValueError, match="backend='flex': its CUDA kernel needs head sizes"):
        select_backend(on_cuda(small), "flex")
    wide = check_call(q.double(), k.double(), v.double(), None, None, None, 0.0, "flex")
    with pytest.raises(ValueError, match="backend='flex': its CUDA kernel computes float16"):
        select_backend(on_cuda(wide), "flex")
    assert select_backend(wide, "flex") == "flex"  # the eager CPU path computes float64
    q.requires_grad_(True)
    with pytest.raises(ValueError, match="no backward on cpu"):
        atenea.attention(q, k, v, mask=masks.causal(), backend="flex")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["causal", "window5", "documents_causal", "padding", "not_window"])
def test_cuda_gradients_equal_the_reference_with_a_learned_bias(name):
    """float32 on the GPU (compiled FlexAttention) against the float64 reference: outputs and
    the gradients of q, k, v and of the bias table the score modifier captures."""
    q64, k64, v64 = make_qkv(**SHAPE)
    mask = ALL_MASKS[name](2, 150, 270)
    bias = scores.relative_bias(4).cuda()
    results = []
    for backend, dtype in (("flex", torch.float32), ("reference", torch.float64)):
        q, k, v = (t.to("cuda", dtype).requires_grad_(True) for t in (q64, k64, v64))
        table = bias.to(dtype)
        table.zero_grad()
        out = atenea.attention(q, k, v, mask=mask, score_mod=table, backend=backend)
        grads = torch.autograd.grad(out.square().sum(), (q, k, v, table.table.weight))
        results.append([t.double() for t in (out, *grads)])
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_a_modifier_made_on_another_device_runs_as_a_copy_once_and_a_trainable_one_says_so():
    """FlexAttention cannot move a tensor inside its kernel: ALiBi made on the CPU serves CUDA
    inputs as a copy on their device (the meta device stands in), made once; a module with a
    trainable tensor elsewhere is refused in one line (a copy would lose its gradient)."""
    alibi = scores.alibi(4)
    meta = torch.device("meta")
    copy = flex._on_device(alibi, meta)
    assert copy is not alibi and copy.slopes.device == meta and alibi.slopes.device.type == "cpu"
    assert flex._on_device(alibi, meta) is copy
    assert flex._on_device(alibi, torch.device("cpu")) is alibi
    with pytest.raises(ValueError, match="score_mod's parameters are not on meta"):
        flex._on_device(scores.relative_bias(4), meta)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_alibi_in_half_precision_within_twice_the_reference_error(dtype):
    """Flex traces a modifier with a score of the inputs' dtype; ALiBi's bias cast to it was
    rounded (bf16: 0.24 from float64 against the reference's 0.008)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 9, 127, 16) for _ in range(3))  # head 8: slope 2^-0.5
    mod = scores.alibi(9)
    exact = atenea.attention(q.double(), k.double(), v.double(), score_mod=mod, scale=1.0,
                             backend="reference")  # fmt: skip
    half = [t.to(dtype) for t in (q, k, v)]
    with torch.no_grad():
        errors = {backend: max_error(atenea.attention(*half, score_mod=mod, scale=1.0,
                                                      backend=backend).double(), exact)
                  for backend in ("reference", "flex")}  # fmt: skip
    assert errors["flex"] <= 2 * errors["reference"], errors
