"""The Triton kernel's full tiles without bounds (``EVEN``): 16-bit calls without score
modifiers or dropout skip the bounds in every full tile's step, at any length, because each
pass walks lists whose ragged edge along the axis it steps on is partial
(``TileLists.edges_partial``). Against the float64 reference in Triton's interpreter."""

import pytest
import torch

pytest.importorskip("triton")

from atenea import masks, scores  # noqa: E402
from tests.attention.triton_cases import assert_close, record_launches, run_both  # noqa: E402

DOCS_256 = torch.tensor([0] * 70 + [1] * 100 + [2] * 86)

# 16-bit tables without score modifiers or dropout: the passes skip the bounds in their full
# tiles (``launch.skips_bounds``), whose lists have a ragged edge's tiles made partial
# (``TileLists.edges_partial``); lengths multiples of the tile (64 here) and not. (mask,
# score_mod, shape, run_both's options, whether the path is taken)
EVEN_CASES = {
    "no_mask": (None, None, (1, 2, 2, 128, 128, 32), {}, True),  # every tile full
    "causal_fewer_queries": (masks.causal(), None, (1, 2, 2, 128, 192, 32), {}, True),
    "window": (masks.sliding_window(40), None, (1, 2, 2, 192, 192, 32), {}, True),
    # fewer queries than keys: the keys before the window are dead, read as left padding
    "window_dead_prefix": (masks.sliding_window(40), None, (1, 2, 2, 64, 192, 32), {}, True),
    "documents_causal": (masks.document(DOCS_256) & masks.causal(), None, (2, 1, 1, 256, 256, 32),
                         {}, True),
    "padding_right_on_edges": (masks.key_padding([192, 64]), None, (2, 1, 1, 128, 192, 32), {},
                               True),
    "padding_left": (masks.key_padding([100, 64], side="left"), None, (2, 1, 1, 128, 192, 32),
                     {}, True),
    "prefix": (masks.prefix_lm([30, 100]), None, (2, 1, 1, 128, 128, 32), {}, True),
    "bitmap": (masks.document(DOCS_256[:192]) | masks.causal(), None, (1, 2, 2, 192, 192, 32),
               {}, True),
    "gqa_causal_d128": (masks.causal(), None, (1, 4, 2, 128, 128, 128), {}, True),
    "fp16_inputs": (masks.causal(), None, (1, 2, 2, 128, 128, 64), {"dtype": torch.float16},
                    True),
    # ragged lengths: the last row and column of tiles, full before, are partial
    "ragged_no_mask": (None, None, (1, 2, 2, 150, 170, 32), {}, True),
    "ragged_window_fewer_queries": (masks.sliding_window(100), None, (1, 2, 2, 70, 230, 32), {},
                                    True),
    "ragged_documents_padding": (masks.document(DOCS_256[:230]) & masks.key_padding([230, 200]),
                                 None, (2, 1, 1, 230, 230, 32), {}, True),
    "ragged_bitmap": (masks.document(DOCS_256[:200]) | masks.causal(), None,
                      (1, 2, 2, 200, 200, 32), {}, True),
    "ragged_gqa_d64": (masks.causal(), None, (1, 4, 1, 100, 150, 64), {}, True),
    # the bounds stay: score modifiers, dropout, float32 tables
    "alibi_softcap": (masks.causal(), scores.compose(scores.alibi(2), scores.softcap(5.0)),
                      (1, 2, 2, 128, 128, 32), {}, False),
    "dropout": (masks.causal(), None, (1, 2, 2, 128, 128, 32), {"dropout_p": 0.3}, False),
    "float32_tables": (masks.causal(), None, (1, 2, 2, 128, 128, 32),
                       {"table_dtype": torch.float32}, False),
}  # fmt: skip


@pytest.mark.parametrize("case", EVEN_CASES)
def test_full_tiles_without_bounds_match_reference(case, monkeypatch):
    from atenea.attention.backends.triton import launch

    evens, real = [], launch.skips_bounds
    monkeypatch.setattr(launch, "skips_bounds", lambda *a: evens.append(real(*a)) or evens[-1])
    mask, score_mod, shape, options, even = EVEN_CASES[case]
    assert_close(*run_both(shape, mask, score_mod, **options), options.get("dtype", torch.float32))
    assert evens[0] == even  # (dropout: later calls read the keep-mask back through the kernel)


def test_each_pass_demotes_only_the_edge_it_steps_along(monkeypatch):
    """Few ragged queries against many keys (a chunk of a prefill, cross-attention): the
    forward and dQ step along keys, so only the keys' ragged column goes partial and the
    query tile keeps its full key tiles; dK/dV steps along queries, whose ragged row is then
    all partial. Against float64."""
    from atenea.attention.backends.triton import launch

    setups, real = [], launch.TritonAttention.apply
    monkeypatch.setattr(launch.TritonAttention, "apply",
                        lambda *a: setups.append(a[-1]) or real(*a))  # fmt: skip
    assert_close(*run_both((1, 2, 2, 50, 300, 32), None))
    plan = setups[0].plan
    assert plan.even
    assert plan.lists.full_counts.tolist() == [[[4]]]  # keys 0..255 full, 256..299 partial
    assert plan.lists.partial_counts.tolist() == [[[1]]]
    assert plan.lists_t.full_counts.eq(0).all() and plan.lists_t.partial_counts.eq(1).all()


@pytest.mark.parametrize("dim, value_dim", [(32, 32), (64, 64), (128, 128), (64, 80)])
def test_the_dkdv_pass_skips_the_bounds_at_every_head_dim(dim, value_dim, monkeypatch):
    """Without modifiers the dK/dV pass is built with ``EVEN`` too (its full tiles skip the
    select, one product of the scale and log2(e)), also where a head dim pads to 128 (until
    stop 27 it kept its bounds there, for spills the sm_90 check misread). Against
    float64."""
    launched = record_launches(monkeypatch, "attention_backward_kv", "EVEN")
    shape = (1, 2, 2, 128, 128, dim, value_dim)
    assert_close(*run_both(shape, masks.causal()))
    assert launched == [{"EVEN": True}]
