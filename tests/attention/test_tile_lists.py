"""Tile lists: the per-query-tile key lists (and their transpose) say exactly what the
materialized mask says about every tile, sorted, cached."""

import pytest
import torch

from atenea import masks
from atenea.attention.backends.tile_lists import tile_lists
from atenea.attention.masks import EMPTY, FULL, PARTIAL


def kinds_by_brute_force(mask, q_len, kv_len, tile):
    """EMPTY/PARTIAL/FULL of every tile from the whole boolean mask."""
    allowed = mask.materialize(q_len, kv_len)
    n_q, n_k = -(-q_len // tile), -(-kv_len // tile)
    kinds = torch.empty(*allowed.shape[:2], n_q, n_k, dtype=torch.int8)
    for i in range(n_q):
        for j in range(n_k):
            block = allowed[..., i * tile : (i + 1) * tile, j * tile : (j + 1) * tile]
            all_, any_ = block.flatten(-2).all(-1), block.flatten(-2).any(-1)
            kinds[..., i, j] = torch.where(all_, FULL, torch.where(any_, PARTIAL, EMPTY))
    return kinds


CASES = [
    (masks.causal(), 300, 300),
    (masks.causal(), 100, 300),  # bottom-right: the queries are the last 100 positions
    (masks.sliding_window(70), 333, 333),
    (masks.document(torch.tensor([0] * 90 + [1] * 150 + [2] * 60)), 300, 300),
    (masks.key_padding([300, 130, 1]), 200, 300),
    (masks.prefix_lm(100) & masks.key_padding([250, 300]), 300, 300),
    (masks.causal() | ~masks.sliding_window(40), 256, 256),
    (masks.dense(torch.rand(2, 3, 130, 260) > 0.5), 130, 260),
]


@pytest.mark.parametrize("mask, q_len, kv_len", CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_lists_hold_every_tile_of_the_materialized_mask(mask, q_len, kv_len):
    tile = 64
    lists = tile_lists(mask, q_len, kv_len, q_tile=tile, k_tile=tile)
    expected = kinds_by_brute_force(mask, q_len, kv_len, tile)
    got = lists.kinds()
    assert torch.equal(got, mask.tile_kinds(q_len, kv_len, tile, tile))
    # a tile listed FULL is full, one left out is empty (PARTIAL may be conservative: an | of
    # two partial tiles can be full, and the kernel then only evaluates the mask needlessly)
    got = got.expand_as(expected)
    assert torch.equal(got == FULL, (expected == FULL) & (got == FULL))
    assert torch.equal(got == EMPTY, expected == EMPTY)
    # ascending within the valid part, and the transposed lists hold the transposed table
    for counts, indices in (
        (lists.partial_counts, lists.partial_indices),
        (lists.full_counts, lists.full_indices),
    ):
        for row, count in zip(indices.flatten(0, 2).tolist(), counts.flatten().tolist()):
            assert row[:count] == sorted(set(row[:count]))
    back = lists.transposed()
    assert torch.equal(back.kinds(), got.transpose(-1, -2))
    assert back.q_len == kv_len and back.kv_len == q_len


def test_no_mask_is_all_full_and_rules_are_cached_by_what_they_are():
    lists = tile_lists(None, 300, 200, q_tile=128, k_tile=128)
    assert lists.shape == (1, 1, 3, 2) and lists.full_counts.eq(2).all()
    assert lists.partial_counts.eq(0).all()
    # two causal() objects made at two calls share one entry; a dense mask is its own entry
    assert tile_lists(masks.causal(), 512, 512) is tile_lists(masks.causal(), 512, 512)
    dense = masks.dense(torch.ones(1, 1, 8, 8, dtype=torch.bool))
    assert tile_lists(dense, 8, 8) is tile_lists(dense, 8, 8)
    other = masks.dense(torch.zeros(1, 1, 8, 8, dtype=torch.bool))
    assert tile_lists(other, 8, 8) is not tile_lists(dense, 8, 8)
    assert tile_lists(other, 8, 8).kinds().eq(EMPTY).all()


@pytest.mark.parametrize("mask, q_len, kv_len", CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_edges_partial_leaves_no_full_tile_holding_a_missing_pair(mask, q_len, kv_len):
    """``edges_partial``: a FULL tile of a ragged last row or column of tiles becomes PARTIAL
    (a kernel then skips bounds in every full tile); every other tile keeps its kind, and the
    host table the Triton plan reads says the same as the device lists."""
    tile = 64
    lists = tile_lists(mask, q_len, kv_len, q_tile=tile, k_tile=tile)
    edges = lists.edges_partial()
    before, after = lists.kinds(), edges.kinds()
    rows, cols = torch.meshgrid(
        torch.arange(before.shape[-2]), torch.arange(before.shape[-1]), indexing="ij"
    )
    ragged_row, ragged_col = (rows + 1) * tile > q_len, (cols + 1) * tile > kv_len
    for choice, ragged in (({"cols": False}, ragged_row), ({"rows": False}, ragged_col)):
        one_side = lists.edges_partial(**choice).kinds()  # only that edge is demoted
        assert torch.equal(one_side, torch.where(ragged & (before == FULL), PARTIAL, before))
    ragged = ragged_row | ragged_col  # tiles past a length
    assert not ((after == FULL) & ragged).any()
    assert torch.equal(after[..., ~ragged], before[..., ~ragged])
    demoted = (before == FULL) & ragged
    assert torch.equal(after[demoted], torch.full_like(after[demoted], PARTIAL))
    assert torch.equal(after[~demoted & ragged.expand_as(before)], before[~demoted & ragged])
    assert torch.equal(edges.host_kinds(), after.cpu())
    assert lists.edges_partial() is edges  # built once per lists object
    assert edges.transposed().kinds().transpose(-1, -2).equal(after)


def test_edges_partial_of_multiples_is_the_lists_and_reads_nothing_on_a_device():
    lists = tile_lists(masks.causal(), 256, 256, q_tile=64, k_tile=64)
    assert lists.edges_partial() is lists
    ids = torch.zeros(2, 300, dtype=torch.long, device="meta")  # any read raises on meta
    edges = tile_lists(masks.document(ids) & masks.causal(), 300, 300, "meta").edges_partial()
    assert edges.partial_counts.device.type == "meta" and edges.shape == (2, 1, 3, 3)
