"""The dK/dV pass with its tiles queries down (``DIRECT``, ``BackwardConfig.kv_direct``): K and
V enter the products as the operand the tensor cores read from shared memory, the
probabilities and dS are transposed instead. Every feature the transposed tiles carry, against
the float64 reference: mask families and bitmaps, empty rows, grouped heads packed and looped,
padded head sizes, the score modifiers (the relative table's gradient included), dropout's
redrawn mask, fp16 with the full tiles' bounds skipped. Interpreter runs on CPU tensors (see
triton_cases.py)."""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("triton")

from atenea import masks, scores  # noqa: E402
from tests.attention.test_triton import MASK_CASES, _dense  # noqa: E402
from tests.attention.test_triton_scores import CASES as MODIFIER_CASES  # noqa: E402
from tests.attention.triton_cases import (  # noqa: E402
    HEAD_SIZE_SHAPES,
    assert_close,
    record_launches,
    run_both,
)

DIRECT_MASKS = ("causal_bottom_right", "causal_more_queries_than_keys", "documents_causal",
                "key_padding_left", "window_documents_padding", "or", "dense_per_head_gqa")  # fmt: skip


@pytest.fixture
def direct(monkeypatch):
    """Every call's dK/dV pass runs ``DIRECT``; yields the ``DIRECT``, ``PACK``, ``EVEN`` and
    block sizes each launch of it received, so a test sees them reach the kernel."""
    from atenea.attention.backends import triton as backend

    real_configs = backend.configs_for

    def configs_for(*args, **kwargs):
        forward, backward = real_configs(*args, **kwargs)
        return forward, replace(backward, kv_direct=True)

    monkeypatch.setattr(backend, "configs_for", configs_for)
    return record_launches(
        monkeypatch, "attention_backward_kv", "DIRECT", "PACK", "EVEN", "BLOCK_M", "BLOCK_N"
    )


@pytest.mark.parametrize("case", DIRECT_MASKS)
def test_mask_families_match_reference(case, direct):
    mask, shape = MASK_CASES[case]
    mask = _dense(shape) if mask is None else mask
    assert_close(*run_both(shape, mask))
    assert direct and all(launched["DIRECT"] for launched in direct)


@pytest.mark.parametrize(
    "shape, pack",
    [((1, 4, 2, 150, 150, 32), 2), ((1, 16, 1, 70, 150, 16), 16),
     ((1, 6, 2, 100, 150, 32), 1)],
    ids=["gqa_packed", "mqa_16_heads_packed", "gqa_3_heads_loop"],
)  # fmt: skip
def test_grouped_queries_match_reference(shape, pack, direct):
    """Packed heads lie along the queries' axis: per-row pointers, statistics and dropout
    counters turn with the tiles."""
    assert_close(*run_both(shape, masks.causal() & masks.key_padding(140)))
    assert [(launched["DIRECT"], launched["PACK"]) for launched in direct] == [(True, pack)]


@pytest.mark.parametrize("shape", **HEAD_SIZE_SHAPES)
def test_head_sizes_match_reference(shape, direct):
    assert_close(*run_both(shape, masks.sliding_window(70)))
    assert direct and all(launched["DIRECT"] for launched in direct)


@pytest.mark.parametrize("case", MODIFIER_CASES)
def test_score_modifiers_match_reference(case, direct):
    """ALiBi's per-head slopes, softcap's factor, the T5 table's gradient (an atomic sum per
    head and distance, whose distances turn with the tiles)."""
    make_mod, mask, shape = MODIFIER_CASES[case]
    torch.manual_seed(0)
    mod = make_mod()
    for param in mod.parameters():
        param.data.normal_(0.0, 1.0)
    got, want = run_both(shape, mask, score_mod=mod)
    assert ("dtable" in want) == any(isinstance(m, scores.RelativeBias) for m in mod.modules())
    assert_close(got, want)
    assert direct and all(launched["DIRECT"] for launched in direct)


@pytest.mark.parametrize(
    "mask, score_mod, shape, pack",
    [(masks.causal() & masks.key_padding(140), None, (1, 4, 2, 100, 150, 32), 2),
     (masks.document(torch.tensor([0] * 50 + [1] * 100)) | masks.causal(), scores.softcap(3.0),
      (1, 2, 1, 130, 150, 16), 2)],
    ids=["rules_gqa_packed", "bitmap_softcap_mqa"],
)  # fmt: skip
def test_dropout_redraws_the_forwards_mask(mask, score_mod, shape, pack, direct):
    """The reference applies the keep decisions the forward drew; the dK/dV pass redraws them
    from the same counters, whichever way its tiles lie."""
    assert_close(*run_both(shape, mask, score_mod, dropout_p=0.3))
    # the dropout draw reads the kernel's keep decisions back through a forward: one backward
    assert [(launched["DIRECT"], launched["PACK"]) for launched in direct] == [(True, pack)]


def test_fp16_full_tiles_without_bounds_match_reference(direct):
    """16-bit without modifiers: the full tiles skip their bounds (``EVEN``), at lengths not
    multiples of the tile."""
    dtype = torch.float16
    assert_close(*run_both((1, 4, 2, 177, 150, 64), masks.causal(), dtype=dtype), dtype)
    assert direct and all(launched["DIRECT"] and launched["EVEN"] for launched in direct)


@pytest.mark.parametrize("blocks", [(128, 64, 8, 2), (64, 64, 4, 1)], ids=["128x64", "64x64_1"])
def test_the_sweeps_blocks_match_reference(blocks, direct, monkeypatch):
    """The blocks ``gpu_backward_sweep.py`` times queries down, on the 128 sparse tile: a
    step of 128 query rows covers a whole tile (one step a tile)."""
    from atenea.attention.backends import triton as backend

    m, n, warps, stages = blocks
    directed = backend.configs_for  # the fixture's, queries down

    def configs_for(*args, **kwargs):
        forward, backward = directed(*args, **kwargs)
        return forward, replace(backward, block_m1=m, block_n1=n, kv_warps=warps,
                                kv_stages=stages)  # fmt: skip

    monkeypatch.setattr(backend, "configs_for", configs_for)
    mask = masks.sliding_window(150) & masks.key_padding([260, 200])
    dtype = torch.float16  # the blocks are 16-bit ones (float32 would not fit them on a GPU)
    assert_close(*run_both((2, 2, 2, 200, 260, 64), mask, dtype=dtype, tile=128), dtype)
    assert [(launched["DIRECT"], launched["BLOCK_M"], launched["BLOCK_N"])
            for launched in direct] == [(True, m, n)]  # fmt: skip
