"""The attention core on CUDA (``gpu`` tests: skipped where there is no GPU, ``make test-gpu``).

Every backend on the GPU against the float64 reference, the log-sum-exp taken from the fused
kernels (never a second pass), and low precision within twice PyTorch's own error."""

import pytest
import torch

import atenea
from atenea import masks, scores
from atenea.attention.backends.cuda_lse import fused_forward_with_lse
from atenea.attention.problem import check_call
from tests.attention.test_backends import MASKS
from tests.helpers import make_qkv

pytestmark = pytest.mark.gpu

SHAPES = {"gqa_odd": (2, 8, 2, 200, 333, 64, 64), "dv_differs": (1, 4, 4, 129, 129, 32, 48)}


def cuda(tensors, dtype):
    return [t.to("cuda", dtype) for t in tensors]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("mask_name", ["none", "causal", "padding", "dense_random", "empty_rows"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_lse_comes_from_the_fused_kernel_and_is_right(dtype, mask_name, shape):
    b, hq, hkv, lq, lk, d, dv = shape
    mask = MASKS[mask_name](b, lq, lk)
    q64, k64, v64 = make_qkv(b, hq, hkv, lq, lk, d, dv)
    q, k, v = cuda((q64, k64, v64), dtype)
    problem = check_call(q, k, v, mask, None, None, 0.0, "sdpa")
    is_causal = mask_name == "causal" and lq == lk
    allowed = None if mask is None or is_causal else mask.materialize(lq, lk, "cuda")
    assert fused_forward_with_lse(q, k, v, problem, allowed, is_causal) is not None
    out, lse = atenea.attention(q, k, v, mask=mask, return_lse=True, backend="auto")
    ref, ref_lse = atenea.attention(*cuda((q64, k64, v64), torch.float64), mask=mask,
                                    return_lse=True, backend="reference")  # fmt: skip
    sdpa_error = (atenea.attention(q, k, v, mask=mask, backend="sdpa").double() - ref).abs().max()
    assert (out.double() - ref).abs().max() <= 2 * sdpa_error + 1e-6
    assert torch.equal(lse.isneginf(), ref_lse.isneginf())
    tolerance = 1e-2 if dtype != torch.float32 else 1e-4
    torch.testing.assert_close(lse.double().nan_to_num(neginf=0),
                               ref_lse.double().nan_to_num(neginf=0),
                               rtol=tolerance, atol=tolerance)  # fmt: skip


@pytest.mark.parametrize("mask", [masks.sliding_window(100), masks.document(torch.arange(512) // 70)
                                  & masks.causal(), None], ids=["window", "documents", "none"])  # fmt: skip
@pytest.mark.parametrize(
    "mod", [None, scores.alibi(8), scores.softcap(20.0)], ids=["-", "alibi", "cap"]
)
def test_auto_on_cuda_trains_like_the_reference(mask, mod):
    q64, k64, v64 = make_qkv(1, 8, 2, 512, 512, 64, 64)
    results = []
    for dtype in (torch.float32, torch.float64):
        q, k, v = (t.requires_grad_(True) for t in cuda((q64, k64, v64), dtype))
        backend = "auto" if dtype == torch.float32 else "reference"
        out, lse = atenea.attention(q, k, v, mask=mask, score_mod=mod, return_lse=True,
                                    backend=backend)  # fmt: skip
        results.append([out, lse, *torch.autograd.grad(out.square().sum(), (q, k, v))])
    for got, expected in zip(*results):
        torch.testing.assert_close(got.double().nan_to_num(neginf=0),
                                   expected.double().nan_to_num(neginf=0), rtol=2e-3, atol=2e-3)  # fmt: skip
