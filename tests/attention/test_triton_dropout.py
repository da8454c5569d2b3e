"""Dropout inside atenea's Triton kernel: the forward and both backward kernels draw the same
keep decision for every (batch row, head, query row, key column) from one seed, which
torch's generator supplies. Interpreter runs on CPU tensors (see triton_cases.py)."""

import math

import pytest
import torch

pytest.importorskip("triton")

import atenea  # noqa: E402
from atenea import masks, scores  # noqa: E402
from tests.attention.triton_cases import DEVICE, assert_close, kernel_keep, run_both  # noqa: E402
from tests.helpers import make_qkv  # noqa: E402

DOCS = torch.tensor([0] * 50 + [1] * 60 + [2] * 40)  # 150 key positions


@pytest.mark.parametrize(
    "mask, score_mod, shape",
    [
        (masks.causal() & masks.key_padding(140), None, (1, 4, 2, 100, 150, 32)),
        (masks.document(DOCS) | masks.causal(), scores.softcap(3.0), (1, 2, 1, 130, 150, 16)),
    ],
    ids=["rules_gqa", "bitmap_softcap_mqa"],
)
def test_dropout_matches_reference_with_the_kernels_own_mask(mask, score_mod, shape):
    """Output and dq/dk/dv against the float64 reference computed with the keep-mask the
    forward drew (read back through the kernel): the backward kernels must redraw exactly that
    mask, and scale the kept weights by 1/(1-p). The LSE is of the undropped weights."""
    assert_close(*run_both(shape, mask, score_mod, dropout_p=0.3))


def test_kept_fraction_and_independent_draws():
    """Every pair is allowed here, so the read-back mask is the draw itself: 1-p of it kept
    (within five binomial standard deviations; the seed is fixed, so never flaky), and the
    draws of two batch rows, two heads, neighbouring rows and neighbouring columns agree only
    as often as independent ones would (p^2 + (1-p)^2): the counter holds every coordinate."""
    p = 0.25
    q, k, _ = (t.float().to(DEVICE) for t in make_qkv(2, 2, 1, 120, 160, 16))
    keep = kernel_keep(q, k, None, None, p, dropout_seed=11).float()
    n = keep.numel()
    assert abs(keep.mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    same = p * p + (1 - p) * (1 - p)
    pairs = {
        "batch rows": (keep[0], keep[1]),
        "heads": (keep[:, 0], keep[:, 1]),
        "rows": (keep[..., 1:, :], keep[..., :-1, :]),
        "columns": (keep[..., 1:], keep[..., :-1]),
    }
    for name, (a, b) in pairs.items():
        agree = (a == b).float().mean().item()
        assert abs(agree - same) < 5 * math.sqrt(same * (1 - same) / a.numel()), name


def test_without_dropout_no_seed_is_drawn():
    """dropout_p=0 takes the kernel without dropout: torch's generator is left untouched and
    the output is the reference's."""
    q, k, v = (t.float().to(DEVICE) for t in make_qkv(1, 2, 2, 90, 90, 16))
    state = torch.get_rng_state()
    out = atenea.attention(q, k, v, mask=masks.causal(), dropout_p=0.0, backend="triton")
    assert torch.equal(torch.get_rng_state(), state)
    want = atenea.attention(q.double(), k.double(), v.double(), mask=masks.causal())
    assert (out.double().cpu() - want.cpu()).abs().max() < 1e-5


def test_seed_from_torch_makes_runs_reproducible():
    """Through ``atenea.attention``: the same ``torch.manual_seed`` gives bit-identical outputs
    and gradients, another seed other outputs."""
    q, k, v = (t.float().to(DEVICE).requires_grad_() for t in make_qkv(1, 2, 1, 80, 100, 16))
    mask = masks.sliding_window(50)

    def run(seed):
        torch.manual_seed(seed)
        out = atenea.attention(q, k, v, mask=mask, dropout_p=0.5, backend="triton")
        return [out, *torch.autograd.grad(out.sum(), (q, k, v))]

    first, again, other = run(5), run(5), run(6)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])
