"""``atenea.attention``: one function, several backends that all compute the same thing."""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.attention.backends import flex
from atenea.attention.backends.blocks import blocks_attention
from atenea.attention.backends.decode import decode_attention
from atenea.attention.backends.reference import attention_probabilities, reference_attention
from atenea.attention.backends.sdpa import sdpa_attention
from atenea.attention.backends.triton import triton_attention, why_not
from atenea.attention.masks import Causal
from atenea.attention.problem import Problem, check_call
from atenea.attention.scores import parameters_of
from atenea.attention.weights import attention_weights

# Below this many scores (one 128 x 128 tile) there is nothing worth skipping.
_ONE_TILE = 128 * 128


def select_backend(problem: Problem, requested: str) -> str:
    """The backend that runs the call. An explicit request that cannot run raises; ``"auto"``
    takes the fastest exact path for the device: the one-query path for a decode step,
    PyTorch's fused kernel for dense and square-causal attention; for sparse masks and score
    modifiers, on a GPU atenea's Triton kernel or FlexAttention (``_sparse_on_cuda``), atenea's
    tiles elsewhere (``problem.device``)."""
    p = problem
    if requested == "sdpa" and p.score_mod is not None:
        raise ValueError(
            "backend='sdpa': PyTorch's fused kernel cannot apply a score_mod; use "
            "backend='blocks' (tiled, exact) or backend='auto'"
        )
    one_query = p.q_len == 1 and p.score_mod is None and p.dropout_p == 0.0
    if requested == "decode" and not one_query:
        raise ValueError(
            f"backend='decode': computes one query per row without score_mod or dropout, got "
            f"Lq={p.q_len}, score_mod={p.score_mod is not None}, dropout_p={p.dropout_p}; use "
            f"backend='auto'"
        )
    if requested == "flex" and (reason := flex.why_not(p)) is not None:
        raise ValueError(f"backend='flex': {reason}; use backend='auto'")
    if requested == "triton" and (reason := why_not(p)) is not None:
        raise ValueError(f"backend='triton': {reason}")
    if min(p.batch, p.q_heads, p.q_len, p.kv_len) == 0:
        # Nothing to compute: the literal steps give the zeros. (PyTorch's fused CPU kernel
        # kills the process with SIGFPE on a zero-length query, so no fast path may see it.)
        return "reference"
    if requested != "auto":
        return requested
    if one_query:
        return "decode"
    dense = p.mask is None or (isinstance(p.mask, Causal) and p.q_len == p.kv_len)
    if dense and p.score_mod is None:
        return "sdpa"
    if p.device.type == "cuda":
        return _sparse_on_cuda(p)
    if p.score_mod is not None:
        return "blocks"
    if p.q_len * p.kv_len <= _ONE_TILE:
        return "sdpa"
    return "blocks"


def _sparse_on_cuda(p: Problem) -> str:
    """A sparse mask or a score modifier on a GPU: atenea's Triton kernel or FlexAttention,
    whichever is faster for the call (benchmarks/gpu.py and gpu_routing.py on an H200, bf16;
    docs/benchmarks.md#gpu). Triton's forward is level with Flex's (0.7-1.9x, most within
    5%) and needs no compile at a new length (Flex compiles each for 1-4 s); its backward is
    0.3-0.7x Flex's. So a call that needs no gradient goes to Triton, one that trains to Flex.
    Each takes the calls the other cannot run: Flex has no dropout, float64 or head size under
    16, and found no kernel configuration for T5's bucketed bias at D=128; Triton has no
    float64, no head size over 256 and no unfused Python score modifier."""
    flex_runs = flex.why_not(p) is None
    flex_fits = flex_runs and flex.seen_failing(p) is None
    if (not flex_fits or not p.needs_grad) and why_not(p) is None:
        return "triton"
    return "flex" if flex_runs else "blocks"


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask=None,
    score_mod=None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
    return_lse: bool = False,
    backend: str = "auto",
):
    """Scaled dot-product attention: ``softmax(q k^T * scale + mods, masked) v``.

    Args:
        q: queries ``(B, Hq, Lq, D)``.
        k: keys ``(B, Hkv, Lk, D)``, with ``Hq % Hkv == 0`` (grouped-query attention; ``Hkv = 1``
            is multi-query). Key/value head ``j`` serves query heads ``j*G .. j*G+G-1``.
        v: values ``(B, Hkv, Lk, Dv)``; ``Dv`` may differ from ``D``.
        mask: an ``atenea.masks`` mask or a boolean tensor broadcastable to ``(B, Hq, Lq, Lk)``.
            **``True`` means "may attend".** When ``Lq != Lk`` the queries are the last ``Lq``
            positions (bottom-right alignment). A query that may attend to nothing gets output
            0, weights 0, lse ``-inf`` and zero gradients -- never NaN.
        score_mod: ``f(score, batch, head, q_pos, k_pos) -> score`` applied before the mask and
            the softmax (``atenea.scores``: alibi, softcap, relative_bias, compose).
        scale: multiplies ``q k^T``; default ``1 / sqrt(D)``.
        dropout_p: dropout on the attention weights (applied whenever > 0: pass 0 at eval).
        return_weights: also return the probabilities ``(B, Hq, Lq, Lk)`` (before dropout).
        return_lse: also return the row log-sum-exp ``(B, Hq, Lq)`` in float32 (no gradient);
            ``atenea.attention_weights`` rebuilds any rows of the weights from it.
        backend: ``"auto"`` (default), ``"reference"``, ``"sdpa"``, ``"blocks"``, ``"decode"``
            (one query per row: a generation step), ``"flex"`` (PyTorch's FlexAttention, fed
            atenea's tile table; compiled on CUDA) or ``"triton"`` (atenea's Triton kernel: CUDA
            tensors, or CPU ones under ``TRITON_INTERPRET=1``).

    Returns:
        ``out (B, Hq, Lq, Dv)``, or the tuple ``(out, weights, lse)`` with only those asked for.
    """
    problem = check_call(q, k, v, mask, score_mod, scale, dropout_p, backend)
    name = select_backend(problem, backend)

    weights = lse = None
    if name == "reference":
        out, weights, lse = reference_attention(q, k, v, problem)
        lse = lse.detach()
    else:
        need_lse = return_lse or return_weights
        if name == "sdpa":
            out, lse = sdpa_attention(q, k, v, problem, need_lse)
        elif name == "decode":
            out, lse = decode_attention(q, k, v, problem, need_lse)
        elif name == "flex":
            out, lse = flex.flex_attention_call(q, k, v, problem, need_lse)
        elif name == "triton":
            out, lse = triton_attention(q, k, v, problem)
            lse = lse.detach()
        else:
            out, lse = blocks_attention(q, k, v, problem)
        if return_weights:
            weights = _weights(q, k, lse, problem)

    extras = []
    if return_weights:
        extras.append(weights)
    if return_lse:
        extras.append(lse.float())
    return (out, *extras) if extras else out


def _weights(q: Tensor, k: Tensor, lse: Tensor, problem: Problem) -> Tensor:
    """Probabilities for ``return_weights`` on a fast backend: from the log-sum-exp, or, when
    autograd needs to differentiate them, through the (differentiable) reference steps."""
    needs_grad = torch.is_grad_enabled() and (
        q.requires_grad or k.requires_grad or bool(parameters_of(problem.score_mod))
    )
    if needs_grad:
        return attention_probabilities(q, k, problem)[0]
    p = problem
    return attention_weights(q, k, lse=lse, mask=p.mask, score_mod=p.score_mod, scale=p.scale)
