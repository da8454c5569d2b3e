"""Every backend, the reference included, computes half inputs in float32 (no overflow of a
float16 score) and returns the input dtype; an all-NaN query row gives NaN on every backend,
while a fully *masked* row gives 0."""

import pytest
import torch

from atenea.attention import attention, masks, scores

BACKENDS = ["reference", "sdpa", "blocks", "auto"]
B, H, L, D = 1, 2, 5, 8


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", [*BACKENDS, "decode"])
def test_half_scores_do_not_overflow(backend, dtype):
    length = 1 if backend == "decode" else L
    # q . k = 256 * 256 * 8 = 524288 > 65504, the largest float16
    q = torch.full((B, H, length, D), 256.0, dtype=dtype)
    k = v = torch.full((B, H, L, D), 256.0, dtype=dtype)
    out = attention(q, k, v, backend=backend)
    assert out.dtype == dtype
    assert torch.equal(out, torch.full_like(out, 256.0)), out


@pytest.mark.parametrize("backend", ["blocks", "auto"])
def test_half_alibi_matches_the_float64_reference(backend):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, 4, 33, D, generator=generator, dtype=torch.float64) for _ in "qkv")
    alibi = scores.alibi(4)
    expected = attention(q, k, v, score_mod=alibi, mask=masks.causal(), backend="reference")
    for dtype in (torch.float16, torch.bfloat16):
        low = [t.to(dtype) for t in (q, k, v)]
        reference = attention(*low, score_mod=alibi, mask=masks.causal(), backend="reference")
        fast = attention(*low, score_mod=alibi, mask=masks.causal(), backend=backend)
        reference_error = (reference.double() - expected).abs().max()
        # the reference is as good as the fast path: both compute in float32, round at the end
        assert reference_error <= 2 * (fast.double() - expected).abs().max() + 1e-3
        assert reference_error < 0.02


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_nan_query_row_stays_nan_without_a_mask(backend, dtype):
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, H, L, D, generator=generator).to(dtype) for _ in "qkv")
    q[0, 1, 2] = float("nan")
    out = attention(q, k, v, backend=backend)  # PyTorch's CPU flash kernel alone writes 0
    assert torch.isnan(out[0, 1, 2]).all()
    out[0, 1, 2] = 0.0
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_nan_query_row_stays_nan_and_a_masked_row_is_zero(backend, dtype):
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, H, L, D, generator=generator).to(dtype) for _ in "qkv")
    q[0, 1, 2] = float("nan")
    # query 4 may attend to nothing; the others to every key
    allowed = torch.ones(1, 1, L, L, dtype=torch.bool)
    allowed[..., 4, :] = False
    out = attention(q, k, v, mask=allowed, backend=backend)
    assert torch.isnan(out[0, 1, 2]).all()
    assert torch.equal(out[..., 4, :], torch.zeros_like(out[..., 4, :]))
    others = torch.ones(B, H, L, dtype=torch.bool)
    others[0, 1, 2] = others[..., 4] = False
    assert torch.isfinite(out[others]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_row_with_no_key_is_zero_even_over_nan_padding(backend):
    """Padding a caller never wrote (NaN) sits behind the mask: a batch row of length 0 gives
    zeros (the reference multiplied its zero weights by the NaN values)."""
    q, k, v = (torch.randn(2, H, L, D, generator=torch.Generator().manual_seed(2)) for _ in "qkv")
    k[0], v[0], k[1, :, 3:], v[1, :, 3:] = float("nan"), float("nan"), float("nan"), float("nan")
    out = attention(q, k, v, mask=masks.key_padding(torch.tensor([0, 3])), backend=backend)
    assert torch.equal(out[0], torch.zeros_like(out[0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("lse", [False, True])
def test_a_nan_query_stays_nan_in_a_decode_step(dtype, lse):
    q, k, v = (torch.randn(B, H, n, D, dtype=dtype) for n in (1, L, L))
    q[0, 0] = float("nan")
    out = attention(q, k, v, backend="decode", return_lse=lse)
    out = out[0] if lse else out
    assert torch.isnan(out[0, 0]).all() and torch.isfinite(out[0, 1]).all()


@pytest.mark.parametrize("backend", [*BACKENDS, "decode"])
def test_zero_heads_give_an_empty_output_like_sdpa(backend):
    length = 1 if backend == "decode" else 3
    q = torch.randn(2, 0, length, D, requires_grad=True)
    k, v = torch.randn(2, 0, L, D), torch.randn(2, 0, L, 6)
    out = attention(q, k, v, backend=backend)
    assert out.shape == torch.nn.functional.scaled_dot_product_attention(q, k, v).shape
    out.sum().backward()
    assert q.grad.shape == q.shape
    with pytest.raises(ValueError, match="q heads 2 and k/v heads 0"):
        attention(torch.randn(2, 2, length, D), k, v, backend=backend)


@pytest.mark.parametrize("backend", ["sdpa", "blocks", "auto"])
def test_a_finite_fp16_row_whose_sum_overflows_is_not_taken_for_nan(backend):
    """The NaN guard sums each query row: 300 x 256 overflows fp16, the row is still finite."""
    q = torch.full((1, 1, 4, 256), 300.0, dtype=torch.float16)
    k, v = torch.randn(1, 1, 4, 256).half(), torch.randn(1, 1, 4, 256).half()
    assert not attention(q, k, v, backend=backend).isnan().any()
    assert not attention(q[:, :, -1:], k, v, backend=backend).isnan().any()
