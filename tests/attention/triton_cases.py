"""Shared setup of the Triton kernel tests: the interpreter switch and one comparison against
the float64 reference (outputs, LSE and every gradient)."""

from __future__ import annotations

import os

import torch

# tests/conftest.py switches Triton's interpreter on when there is no GPU (before anything
# imports triton); then the kernels run on CPU tensors.
DEVICE = "cuda" if os.environ.get("TRITON_INTERPRET") != "1" else "cpu"

from atenea.attention.backends.reference import (  # noqa: E402
    attention_probabilities,
    reference_attention,
)
from atenea.attention.backends.triton import triton_attention  # noqa: E402
from atenea.attention.problem import check_call  # noqa: E402
from atenea.attention.scores import parameters_of  # noqa: E402
from tests.helpers import make_qkv, relative_error  # noqa: E402

# Largest relative error (max |diff| / max |expected|) of outputs and of gradients.
TOLERANCE = {torch.float32: (2e-5, 1e-4), torch.float16: (2e-3, 1e-2), torch.bfloat16: (1e-2, 2e-2)}


def kernel_keep(q, k, mask, score_mod, dropout_p, dropout_seed, tile=64, table_dtype=None):
    """The keep decisions the kernel draws under ``torch.manual_seed(dropout_seed)``, bool
    ``(B, Hq, Lq, Lk)`` on the CPU, read back through its own forward: with V the identity
    (``Dv = Lk``) output row ``i`` *is* row ``i`` of the dropped weights,
    ``w_ij * keep_ij / (1 - p)``, nonzero exactly where the pair is allowed (``w > 0``) and
    kept. (Where a pair is masked it reads False; its weight is 0 in any case.)"""
    batch, kv_heads, kv_len = k.shape[:3]
    eye = torch.eye(kv_len, dtype=q.dtype, device=q.device).expand(batch, kv_heads, -1, -1)
    q, k = q.detach(), k.detach()
    problem = check_call(q, k, eye, mask, score_mod, None, dropout_p, "triton")
    torch.manual_seed(dropout_seed)
    out, _ = triton_attention(q, k, eye, problem, tile=tile, table_dtype=table_dtype)
    return (out != 0).cpu()


def run_both(
    shape,
    mask=None,
    score_mod=None,
    dtype=torch.float32,
    tile=64,
    seed=0,
    table_dtype=None,
    dropout_p=0.0,
):
    """Run the kernel and the float64 reference on the same (rounded) inputs.

    ``shape``: ``(B, Hq, Hkv, Lq, Lk, D)`` or with ``Dv`` appended. Returns two dicts with
    ``out``, ``lse`` and the gradients ``dq, dk, dv`` (and ``dtable`` for a trainable score
    modifier) of ``sum(out * g) + sum(lse * g_lse)`` (the LSE term where every row has a key).
    With ``dropout_p > 0`` the reference applies the keep-mask the kernel drew
    (``kernel_keep``, same seed) and its LSE stays that of the undropped weights.
    """
    q, k, v = make_qkv(*shape, seed=seed)
    low = [t.to(dtype).to(DEVICE).requires_grad_() for t in (q, k, v)]
    high = [t.detach().double().cpu().requires_grad_() for t in low]
    problem = check_call(*low, mask, score_mod, None, dropout_p, "triton")
    dropout_seed = seed + 2
    torch.manual_seed(dropout_seed)
    out, lse = triton_attention(*low, problem, tile=tile, table_dtype=table_dtype)
    ref_problem = check_call(*high, mask, score_mod, None, 0.0, "reference")
    if dropout_p == 0.0:
        ref_out, _, ref_lse = reference_attention(*high, ref_problem)
    else:
        keep = kernel_keep(*low[:2], mask, score_mod, dropout_p, dropout_seed, tile, table_dtype)
        weights, ref_lse = attention_probabilities(*high[:2], ref_problem)
        dropped = weights * keep / (1 - dropout_p)
        ref_out = dropped @ high[2].repeat_interleave(ref_problem.group, dim=1)

    generator = torch.Generator().manual_seed(seed + 1)
    g_out = torch.randn(ref_out.shape, generator=generator, dtype=torch.float64)
    g_lse = torch.randn(ref_lse.shape, generator=generator, dtype=torch.float64)
    every_row_has_a_key = bool(torch.isfinite(ref_lse).all())
    params = parameters_of(score_mod)

    def grads(o, s, inputs):
        loss = (o.double().cpu() * g_out).sum()
        if every_row_has_a_key:  # logsumexp's own backward is NaN on a row of -inf
            loss = loss + (s.double().cpu() * g_lse).sum()
        found = torch.autograd.grad(loss, [*inputs, *params])
        return dict(zip(["dq", "dk", "dv", "dtable"], found))

    got = {"out": out, "lse": lse, **grads(out, lse, low)}
    want = {"out": ref_out, "lse": ref_lse, **grads(ref_out, ref_lse, high)}
    return got, want


def record_launches(monkeypatch, kernel: str, *names: str) -> list[dict]:
    """From now on, launches of ``launch.<kernel>`` still run, and each one's constexprs
    ``names`` (as ``{name: value}``) are appended to the returned list, in order: a test sees
    what reached the kernel."""
    from atenea.attention.backends.triton import launch

    launches, real = [], getattr(launch, kernel)

    class Recording:
        def __getitem__(self, grid):
            def launch_kernel(*args, **kwargs):
                launches.append({name: kwargs[name] for name in names})
                return real[grid](*args, **kwargs)

            return launch_kernel

    monkeypatch.setattr(launch, kernel, Recording())
    return launches


def assert_close(got, want, dtype=torch.float32):
    out_tol, grad_tol = TOLERANCE[dtype]
    assert got["out"].dtype == dtype and got["lse"].dtype == torch.float32
    empty = torch.isinf(want["lse"])
    assert torch.equal(torch.isinf(got["lse"].cpu()), empty), "rows with no key: LSE -inf"
    assert not got["out"].cpu()[empty].any(), "rows with no key: output 0"
    finite = ~empty
    assert relative_error(got["lse"].cpu()[finite], want["lse"][finite]) < out_tol
    for name, tolerance in (("out", out_tol), ("dq", grad_tol), ("dk", grad_tol),
                            ("dv", grad_tol), ("dtable", grad_tol)):  # fmt: skip
        if name in want:
            assert got[name].shape == want[name].shape, name
            assert torch.isfinite(got[name]).all(), name
            error = relative_error(got[name].cpu(), want[name])
            assert error < tolerance, (name, error)


# Head sizes that are no power of two (80: computed in 128, masked past 80) and a value size
# apart from the key size: (B, Hq, Hkv, Lq, Lk, D[, Dv]) for ``run_both``, with their ids
HEAD_SIZE_SHAPES = dict(argvalues=[(1, 2, 2, 100, 130, 80), (1, 2, 2, 100, 130, 64, 24)],
                        ids=["d80_padded_to_128", "dv_differs"])  # fmt: skip


def assert_past_lengths_never_read(lengths, mask, shape=(2, 1, 150, 32), seed=0):
    """``atenea.attention(backend="triton")``'s output and gradients with K and V set to 0,
    then NaN, past each batch row's length (``lengths``) are bit-identical: what lies there is
    never read. ``shape``: ``(B, H, L, D)`` of q, k and v."""
    import atenea

    results = []
    for filler in (0.0, float("nan")):
        q, k, v = torch.randn(3, *shape, generator=torch.Generator().manual_seed(seed)).unbind(0)
        for row, length in enumerate(lengths):
            k[row, :, length:] = filler
            v[row, :, length:] = filler
        inputs = [t.to(DEVICE).requires_grad_() for t in (q, k, v)]
        out = atenea.attention(*inputs, mask=mask, backend="triton")
        results.append([out, *torch.autograd.grad(out, inputs, torch.ones_like(out))])
    for clean, dirty in zip(*results):
        assert torch.equal(clean, dirty)
