"""The backward passes reading through TMA descriptors: the dK/dV pass its Q and dO
(``BackwardConfig.kv_tma``), the dQ pass its full tiles' K and V (``dq_tma``; the kernels'
``TMA``). The copy engine checks the bounds and fills zeros past the rows and the head size,
where the threads' masks did. Both tile orientations of dK/dV (``DIRECT``), against the float64
reference: mask families and bitmaps, empty rows, grouped heads packed (a descriptor over
``(B, L, H, D)``, heads inner) and looped, padded head sizes, score modifiers, dropout, fp16
without bounds; the alignment rule that sends other tensors the pointers' way; NaN past the
rows of a view, or past the keys' lengths, never read. Interpreter runs on CPU tensors (see
triton_cases.py)."""

from dataclasses import dataclass, replace

import pytest
import torch

pytest.importorskip("triton")

import atenea  # noqa: E402
from atenea import masks, scores  # noqa: E402
from atenea.attention.backends.triton.launch import tma_ready  # noqa: E402
from tests.attention.test_triton import MASK_CASES, _dense  # noqa: E402
from tests.attention.triton_cases import (  # noqa: E402
    DEVICE,
    HEAD_SIZE_SHAPES,
    assert_close,
    assert_past_lengths_never_read,
    record_launches,
    run_both,
)

TMA_MASKS = ("causal_bottom_right", "causal_more_queries_than_keys", "documents_causal",
             "key_padding_left", "window_documents_padding", "or", "dense_per_head_gqa")  # fmt: skip


@pytest.fixture(params=[False, True], ids=["transposed", "queries_down"])
def tma(request, monkeypatch):
    """Every call's backward asks for TMA in both passes, the dK/dV tiles either way; yields
    what each launch of the two passes received."""
    from atenea.attention.backends import triton as backend

    real_configs = backend.configs_for

    def configs_for(*args, **kwargs):
        forward, backward = real_configs(*args, **kwargs)
        return forward, replace(backward, kv_tma=True, dq_tma=True, kv_direct=request.param)

    monkeypatch.setattr(backend, "configs_for", configs_for)
    kv = record_launches(monkeypatch, "attention_backward_kv", "TMA", "DIRECT", "PACK", "EVEN")
    q = record_launches(monkeypatch, "attention_backward_q", "TMA")
    return Launches(kv, q, request.param)


@dataclass
class Launches:
    """What each launch of the dK/dV (``seen``) and dQ (``seen_q``) passes received, and the
    orientation the fixture asked."""

    seen: list
    seen_q: list
    direct: bool

    def __iter__(self):
        return iter(self.seen)

    def all_tma(self, expected: bool = True) -> bool:
        both = [*self.seen, *self.seen_q]
        return (
            bool(self.seen)
            and bool(self.seen_q)
            and all(launched["TMA"] is expected for launched in both)
        )


@pytest.mark.parametrize("case", TMA_MASKS)
def test_mask_families_match_reference(case, tma):
    mask, shape = MASK_CASES[case]
    mask = _dense(shape) if mask is None else mask
    assert_close(*run_both(shape, mask))
    assert tma.all_tma() and all(launched["DIRECT"] is tma.direct for launched in tma)


@pytest.mark.parametrize(
    "shape, pack",
    [((1, 4, 2, 150, 150, 32), 2), ((1, 16, 1, 70, 150, 16), 16),
     ((1, 6, 2, 100, 150, 32), 1)],
    ids=["gqa_packed", "mqa_16_heads_packed", "gqa_3_heads_loop"],
)  # fmt: skip
def test_grouped_queries_match_reference(shape, pack, tma):
    """Packed heads come as ``(ROWS, PACK)`` blocks of a descriptor over ``(B, L, H, D)``:
    column ``c`` is head ``c % PACK``, row ``c // PACK``, as the pointers lay them."""
    assert_close(*run_both(shape, masks.causal() & masks.key_padding(140)))
    assert tma.all_tma() and [launched["PACK"] for launched in tma] == [pack]


@pytest.mark.parametrize("shape", **HEAD_SIZE_SHAPES)
def test_head_sizes_match_reference(shape, tma):
    """Past the head size (80 in a block of 128; dO's 24 in 32) the copy engine fills zeros."""
    assert_close(*run_both(shape, masks.sliding_window(70)))
    assert tma.all_tma()


@pytest.mark.parametrize(
    "make_mod", [lambda: scores.relative_bias(2, 8, 40), lambda: scores.alibi(2)],
    ids=["t5_table", "alibi"],
)  # fmt: skip
def test_score_modifiers_match_reference(make_mod, tma):
    torch.manual_seed(0)
    mod = make_mod()
    for param in mod.parameters():
        param.data.normal_(0.0, 1.0)
    assert_close(*run_both((1, 2, 2, 90, 150, 32), masks.causal(), score_mod=mod))
    assert tma.all_tma()


def test_dropout_redraws_the_forwards_mask(tma):
    assert_close(*run_both((1, 4, 2, 100, 150, 32), masks.causal() & masks.key_padding(140),
                           dropout_p=0.3))  # fmt: skip
    assert [(launched["TMA"], launched["PACK"]) for launched in tma] == [(True, 2)]


def test_fp16_full_tiles_without_bounds_match_reference(tma):
    dtype = torch.float16
    assert_close(*run_both((1, 4, 2, 177, 150, 64), masks.causal(), dtype=dtype), dtype)
    assert tma.all_tma() and all(launched["EVEN"] for launched in tma)


def test_rows_off_16_bytes_take_the_pointers(tma):
    """fp16 rows of 20 (40 bytes) are no TMA stride: the pass loads as it does without, and
    is right."""
    dtype = torch.float16
    assert_close(*run_both((1, 2, 2, 100, 150, 20), masks.causal(), dtype=dtype), dtype)
    assert tma.all_tma(expected=False)


def test_tma_ready_asks_16_byte_starts_and_strides():
    x = torch.zeros(2, 4, 64, 64, dtype=torch.float16)
    assert tma_ready(x, x.transpose(1, 2))  # heads and rows swapped: strides still 16 bytes
    assert not tma_ready(torch.zeros(2, 4, 64, 20, dtype=torch.float16))  # 40-byte rows
    moved = torch.zeros(2 * 4 * 64 * 64 + 1, dtype=torch.float16)[1:].view(2, 4, 64, 64)
    assert not tma_ready(moved)  # starts 2 bytes into its storage
    assert not tma_ready(x[..., ::2])  # columns not contiguous
    assert not tma_ready(x[:, :1].expand(2, 4, 64, 64))  # heads broadcast: stride 0
    assert not tma_ready(x.as_strided((1, 1, 64, 64), (0, 0, 64, 1)))  # on extent 1: too
    assert tma_ready(torch.zeros(1, 1, 7, 8, dtype=torch.float32)) and not tma_ready(
        torch.zeros(1, 1, 7, 2, dtype=torch.float32)
    )


def test_nan_past_the_rows_is_never_read(tma):
    """Q a view of a longer buffer whose rows past the call's length are NaN: the
    descriptor's shape is the call's length, so outputs and gradients are bit-identical to
    those with zeros there."""
    torch.manual_seed(0)
    q_len, extra = 150, 30
    k, v = torch.randn(2, 1, 2, 170, 32).unbind(0)
    results = []
    for filler in (0.0, float("nan")):
        buffer = torch.randn(1, 2, q_len + extra, 32, generator=torch.Generator().manual_seed(1))
        buffer[:, :, q_len:] = filler
        q = buffer.to(DEVICE)[:, :, :q_len].requires_grad_()
        inputs = [q, k.to(DEVICE).requires_grad_(), v.to(DEVICE).requires_grad_()]
        out = atenea.attention(*inputs, mask=masks.causal(), backend="triton")
        results.append([out, *torch.autograd.grad(out, inputs, torch.ones_like(out))])
    for clean, dirty in zip(*results):
        assert torch.equal(clean, dirty)
    assert tma.all_tma()


def test_nan_past_the_keys_lengths_is_never_read(tma):
    """Key padding: the partial tiles' keys past a row's length are NaN; the dQ pass reads
    full tiles by TMA (all their keys allowed) and partial ones through the threads' masks,
    so outputs and gradients are bit-identical to those with zeros there."""
    lengths = [130, 61]
    assert_past_lengths_never_read(lengths, masks.key_padding(lengths) & masks.causal(), seed=2)
    assert tma.all_tma()


@pytest.mark.parametrize(
    "shape, pack, documents",
    [((2, 4, 2, 150, 150, 32), 2, True), ((3, 3, 3, 100, 150, 32), 1, True),
     ((2, 2, 2, 200, 200, 32), 1, False)],
    ids=["batch_2_gqa_packed", "batch_3_heads_3", "batch_2_causal"],
)  # fmt: skip
def test_batches_of_many_heads_match_reference(shape, pack, documents, tma):
    """Several batch rows and heads: with one of either, a batch stride swapped for the head
    stride in a descriptor reads the same (a contiguous tensor with H=1 has them equal).
    Causal at 200 leaves the dQ pass full 64x64 tiles, the only ones it reads by TMA (40-key
    documents leave it none)."""
    mask = masks.causal()
    if documents:
        ids = torch.arange(shape[4]).expand(shape[0], -1) // 40 + torch.arange(shape[0])[:, None]
        mask = masks.document(ids) & mask
    assert_close(*run_both(shape, mask))
    assert tma.all_tma() and [launched["PACK"] for launched in tma] == [pack]


@pytest.mark.parametrize("mask", [masks.sliding_window(50), masks.causal()],
                         ids=["window", "causal"])  # fmt: skip
def test_heads_and_rows_swapped_views_match_reference(mask, tma):
    """Q, K and V made ``(B, L, H, D)`` and viewed ``(B, H, L, D)``: the head stride is smaller
    than the row stride, and the descriptors take them as they are (Q's in dK/dV; K's and V's
    in dQ's full tiles, which causal at 200 has; dO comes contiguous)."""
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 200, 4, 32).transpose(1, 2) for _ in range(3))
    inputs = [t.to(DEVICE).requires_grad_() for t in (q, k, v)]
    out = atenea.attention(*inputs, mask=mask, backend="triton")
    grads = torch.autograd.grad(out, inputs, torch.ones_like(out))
    high = [t.detach().double().cpu().requires_grad_() for t in (q, k, v)]
    want = atenea.attention(*high, mask=mask, backend="reference")
    want_grads = torch.autograd.grad(want, high, torch.ones_like(want))
    for got, expected in zip((out, *grads), (want, *want_grads)):
        assert (got.double().cpu() - expected).abs().max() < 1e-4
    assert tma.all_tma()
