"""Edge cases: rows with no allowed key, huge logits, reads past the end, empty inputs."""

import pytest
import torch

import atenea
from atenea import masks
from tests.helpers import BACKENDS, make_qkv, max_error, reference, run_blocks


def _all_paths(q, k, v, mask, **kwargs):
    for backend in BACKENDS:
        yield backend, atenea.attention(q, k, v, mask=mask, backend=backend, **kwargs)
    yield "blocks_small_tiles", run_blocks(q, k, v, mask=mask, tiles=(4, 4))[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "mask, q_len, kv_len",
    [
        (masks.key_padding([0, 11]), 9, 11),  # a whole batch row with no key
        (masks.causal() & masks.dense(torch.arange(9)[:, None] % 4 != 0), 9, 11),  # every 4th query
        (masks.causal(), 9, 6),  # Lq > Lk: the first queries sit before every key
    ],
    ids=["empty_batch_row", "every_fourth_row", "queries_before_keys"],
)
def test_fully_masked_rows_give_zeros_not_nan(mask, q_len, kv_len, dtype):
    q, k, v = make_qkv(2, 4, 2, q_len, kv_len, 8, dtype=dtype, requires_grad=True)
    lq, lk = q.shape[2], k.shape[2]
    empty = ~mask.materialize(lq, lk).expand(2, 4, lq, lk).any(-1)  # (B, H, Lq)
    assert empty.any() and not empty.all()
    for backend in BACKENDS:
        out, weights, lse = atenea.attention(
            q, k, v, mask=mask, backend=backend, return_weights=True, return_lse=True
        )
        assert not out.isnan().any() and not weights.isnan().any(), backend
        assert (out[empty] == 0).all() and (weights[empty] == 0).all(), backend
        assert (lse[empty] == float("-inf")).all() and lse[~empty].isfinite().all(), backend
        dq, dk, dv = torch.autograd.grad(out.float().square().sum(), (q, k, v))
        for g in (dq, dk, dv):
            assert not g.isnan().any(), backend
        assert (dq[empty] == 0).all(), backend
        # the other rows are unaffected by the empty ones
        if dtype == torch.float64:
            expected = reference(q, k, v, mask=mask)
            assert max_error(out, expected) < 1e-12, backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_logits_do_not_overflow(backend):
    # scores around 1e4: exp would overflow without the max subtraction
    q, k, v = make_qkv(2, 2, 1, 33, 40, 16, dtype=torch.float32, scale=30.0)
    golden = reference(*(t.double() for t in (q, k, v)), mask=masks.sliding_window(7))
    assert golden.isfinite().all()
    scores_scale = (q.double() @ k.double().transpose(-2, -1)).abs().max().item() / 4
    assert scores_scale > 1e3
    out = atenea.attention(q, k, v, mask=masks.sliding_window(7), backend=backend)
    assert out.isfinite().all()
    assert max_error(out, golden) < 1e-3 * golden.abs().max().item()


@pytest.mark.parametrize("backend", BACKENDS)
def test_very_negative_scores_still_attend(backend):
    # every allowed score far below any "finite sentinel" (-1e5): still a proper softmax
    q, k, v = make_qkv(1, 2, 2, 6, 6, 4, dtype=torch.float32)
    q = torch.ones_like(q) * 500.0
    k = -torch.ones_like(k) * 500.0  # scores = -500*500*4/2 = -5e5
    out, weights = atenea.attention(
        q, k, v, mask=masks.causal(), backend=backend, return_weights=True
    )
    assert torch.allclose(weights.sum(-1), torch.ones(1, 2, 6), atol=1e-5)
    expected = torch.cumsum(v, 2) / torch.arange(1, 7).view(1, 1, 6, 1)  # uniform over the past
    assert max_error(out, expected) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_beyond_the_view_is_never_read(backend):
    """xFormers' out-of-bounds check: inputs are views into buffers filled with NaN past their
    end (along L and along D); the output must be bit-identical to contiguous copies."""
    batch, hq, hkv, lq, lk, d = 2, 4, 2, 37, 45, 16

    def nan_padded(shape):
        buffer = torch.full((shape[0], shape[1], shape[2] + 19, shape[3] + 5), float("nan"))
        view = buffer[:, :, : shape[2], : shape[3]]
        view.copy_(torch.randn(shape))
        return view

    q, k, v = (
        nan_padded((batch, hq, lq, d)),
        nan_padded((batch, hkv, lk, d)),
        nan_padded((batch, hkv, lk, d)),
    )
    mask = masks.sliding_window(9) | masks.prefix_lm(4)
    out = atenea.attention(q, k, v, mask=mask, backend=backend)
    expected = atenea.attention(
        q.contiguous(), k.contiguous(), v.contiguous(), mask=mask, backend=backend
    )
    assert not out.isnan().any()
    assert torch.equal(out, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "shape",
    [(2, 4, 2, 0, 5, 8), (2, 4, 2, 5, 0, 8), (0, 4, 2, 5, 5, 8)],
    ids=["no_queries", "no_keys", "no_batch"],
)
def test_empty_inputs(backend, shape):
    q, k, v = make_qkv(*shape, requires_grad=True)
    out, weights, lse = atenea.attention(
        q, k, v, backend=backend, return_weights=True, return_lse=True
    )
    assert out.shape == (shape[0], 4, shape[3], 8)
    assert weights.shape == (shape[0], 4, shape[3], shape[4])
    assert (out == 0).all() and (lse == float("-inf")).all()
    out.sum().backward()
    assert (q.grad == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_length_one(backend):
    q, k, v = make_qkv(3, 2, 1, 1, 1, 8)
    out = atenea.attention(q, k, v, mask=masks.causal(), backend=backend)
    # one key: the weight is 1 and the output is that value
    assert torch.allclose(out, v.expand(3, 2, 1, 8), atol=1e-12)
