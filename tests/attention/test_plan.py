"""The tiled plan: every allowed (query, key) pair is computed exactly once, empty tiles never,
and repeated shapes become few batched calls."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import atenea
from atenea import masks
from atenea.attention.backends.plan import plan_groups
from atenea.attention.problem import check_call
from tests.helpers import make_qkv, max_error, reference, run_blocks


def _problem(q_len, kv_len, mask, batch=2):
    q, k, v = make_qkv(batch, 2, 1, q_len, kv_len, 4)
    return check_call(q, k, v, mask, None, None, 0.0, "blocks")


def _coverage(problem, q_tile, k_tile):
    covered = torch.zeros(problem.q_len, problem.kv_len, dtype=torch.int32)
    for group in plan_groups(problem, q_tile, k_tile, batch=problem.batch):
        assert group.q_step >= group.rows or group.count == 1
        rows_seen = set()
        for seg in group.members():
            assert seg.q_end <= problem.q_len and seg.k_end <= problem.kv_len
            assert seg.q_start not in rows_seen  # members never share query rows
            rows_seen.add(seg.q_start)
            covered[seg.q_start : seg.q_end, seg.k_start : seg.k_end] += 1
    return covered


MASKS = {
    "window": lambda lq, lk: masks.sliding_window(37),
    "documents_causal": lambda lq, lk: masks.document(torch.arange(lk) // 50) & masks.causal(),
    "padding": lambda lq, lk: masks.key_padding([lk, lk // 2]),
    "prefix": lambda lq, lk: masks.prefix_lm(70),
    "dense": lambda lq, lk: masks.dense(
        torch.rand(lq, lk, generator=torch.Generator().manual_seed(0)) > 0.97
    ),
}


@pytest.mark.parametrize("name", MASKS)
@pytest.mark.parametrize("tiles", [(16, 16), (8, 32), (128, 128)])
def test_every_allowed_pair_is_computed_once(name, tiles):
    q_len, kv_len = 300, 333
    mask = MASKS[name](q_len, kv_len)
    problem = _problem(q_len, kv_len, mask)
    covered = _coverage(problem, *tiles)
    allowed = mask.materialize(q_len, kv_len).any(0).any(0)  # any batch row or head
    assert (covered <= 1).all(), "a pair computed twice would be counted twice"
    assert (covered[allowed] == 1).all(), "an allowed pair was skipped"


def test_repeated_spans_are_batched_into_shared_calls():
    bands = 4096 // 128
    window = plan_groups(_problem(4096, 4096, masks.sliding_window(256), batch=1), 128, 128)
    # Once the window is full (after the first two bands), every band's span has one shape at
    # one step: all of them go into batched calls, however the mask budget splits them.
    assert sum(g.count for g in window if g.count > 1) >= bands - 2
    padding = plan_groups(_problem(4096, 4096, masks.key_padding([4000]), batch=1), 128, 128)
    # The same padded tail in every band: one call for all of them, with the same keys.
    assert any(g.k_step == 0 and g.count == bands for g in padding)


@settings(max_examples=40, deadline=None)
@given(
    q_len=st.integers(1, 90),
    extra=st.integers(0, 40),
    q_tile=st.sampled_from([1, 3, 8, 16]),
    k_tile=st.sampled_from([1, 4, 8, 32]),
    name=st.sampled_from(sorted(MASKS)),
)
def test_random_plans_cover_exactly(q_len, extra, q_tile, k_tile, name):
    kv_len = q_len + extra
    mask = MASKS[name](q_len, kv_len)
    problem = _problem(q_len, kv_len, mask)
    covered = _coverage(problem, q_tile, k_tile)
    allowed = mask.materialize(q_len, kv_len).any(0).any(0)
    assert (covered <= 1).all() and (covered[allowed] == 1).all()


def test_groups_that_merge_into_rows_written_before():
    """Row bands reached by several groups, in an order where a group finds some of its rows
    written and others not: the result must still equal the reference."""
    pattern = torch.zeros(64, 64, dtype=torch.bool)
    pattern[0:8, 0:8] = True  # band 0: one span of shape (8, 8)
    pattern[8:16, 40:56] = True  # band 1: one span of shape (8, 16)
    pattern[16:24, 0:8] = True  # band 2: shape (8, 8) ...
    pattern[16:24, 40:56] = True  # ... and (8, 16): merged into what the first group wrote
    pattern[24:, :] = torch.rand(40, 64, generator=torch.Generator().manual_seed(1)) > 0.5
    mask = masks.dense(pattern)
    q, k, v = make_qkv(2, 2, 1, 64, 64, 8, requires_grad=True)
    expected = reference(q, k, v, mask=mask)
    out = run_blocks(q, k, v, mask=mask, tiles=(8, 8))[0]
    assert max_error(out, expected) < 1e-12
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    want = torch.autograd.grad(expected.sum(), (q, k, v))
    assert all(max_error(a, b) < 1e-12 for a, b in zip(grads, want))


def test_batched_groups_with_several_batch_rows_and_per_row_masks():
    # B > 1 makes the batched views copies; key padding differs per batch row
    mask = masks.sliding_window(40) & masks.key_padding([500, 333, 1])
    q, k, v = make_qkv(3, 4, 2, 500, 500, 16, requires_grad=True)
    expected = reference(q, k, v, mask=mask)
    out = atenea.attention(q, k, v, mask=mask, backend="blocks")
    assert max_error(out, expected) < 1e-12
    grads = torch.autograd.grad((out * out).sum(), (q, k, v))
    want = torch.autograd.grad((expected * expected).sum(), (q, k, v))
    assert all(max_error(a, b) < 1e-10 for a, b in zip(grads, want))
