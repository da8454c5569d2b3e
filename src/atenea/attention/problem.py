"""One attention call, checked: the sizes every backend needs, and the errors for bad input.

Every message names the argument and gives what was expected and what came; nothing is left to
fail deep inside a kernel.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from atenea.attention.masks import Mask, as_mask
from atenea.attention.scores import ALiBi, RelativeBias, ScoreModFn, modifiers_in, parameters_of

BACKENDS = ("auto", "reference", "sdpa", "blocks", "decode", "flex", "triton")


@dataclass(frozen=True)
class Problem:
    """Sizes and options of one call: batch, heads, lengths and head sizes (the ``(B, H, L, D)``
    of every docstring), the options every backend reads, and where and in what dtype the
    inputs are (backends are chosen by them)."""

    batch: int
    q_heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int
    value_dim: int
    scale: float
    mask: Mask | None
    score_mod: ScoreModFn | None
    dropout_p: float
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    # grad mode on and one of q, k, v needs a gradient (``needs_grad`` adds the modifier's)
    inputs_need_grad: bool = False

    @functools.cached_property
    def needs_grad(self) -> bool:
        """Whether autograd will ask this call for gradients: q, k, v or a tensor the score
        modifier uses need one, grad mode on. On a GPU the backward's speed decides between
        kernels; asked only there (the modifier's tensors are a walk of its objects)."""
        if self.inputs_need_grad:
            return True
        return torch.is_grad_enabled() and bool(parameters_of(self.score_mod))

    @property
    def group(self) -> int:
        """Query heads served by each key/value head (1 = MHA, ``q_heads`` = MQA)."""
        return self.q_heads // self.kv_heads if self.kv_heads else 1  # no heads: nothing to do

    @property
    def offset(self) -> int:
        """Absolute position of query row 0 (bottom-right alignment)."""
        return self.kv_len - self.q_len


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_call(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask,
    score_mod,
    scale,
    dropout_p,
    backend: str,
) -> Problem:
    """Validate the arguments of ``atenea.attention`` and return the ``Problem``."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{name}: expected 4 dimensions (batch, heads, length, head_dim), got shape "
                f"{_shape(t)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v: must share one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(
            f"q, k, v: must be on one device, got q {q.device}, k {k.device}, v {v.device}"
        )
    batch, q_heads, q_len, head_dim = q.shape
    if k.shape[0] != batch or v.shape[0] != batch:
        raise ValueError(
            f"k, v: batch size must match q's {batch}, got k {_shape(k)} and v {_shape(v)}"
        )
    if k.shape[-1] != head_dim:
        raise ValueError(
            f"k: head_dim must match q's (scores are q . k), expected {head_dim}, got "
            f"{k.shape[-1]} (q {_shape(q)}, k {_shape(k)})"
        )
    if k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
        raise ValueError(
            f"v: must have k's heads and length, expected (B, {k.shape[1]}, {k.shape[2]}, Dv), "
            f"got {_shape(v)}"
        )
    kv_heads, kv_len = k.shape[1], k.shape[2]
    # Zero heads on both sides is an empty problem (empty output, as SDPA gives), not an error.
    if (q_heads, kv_heads) != (0, 0) and (kv_heads == 0 or q_heads % kv_heads != 0):
        raise ValueError(
            f"k, v: the query heads must be a multiple of the key/value heads (grouped-query "
            f"attention), got q heads {q_heads} and k/v heads {kv_heads}"
        )

    if scale is None:
        scale = 1.0 / math.sqrt(head_dim) if head_dim > 0 else 1.0
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise TypeError(f"scale: expected a finite float or None, got {scale!r}")
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p: expected a float in [0, 1), got {dropout_p!r}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p: expected a float in [0, 1), got {dropout_p}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if score_mod is not None and not callable(score_mod):
        raise TypeError(
            f"score_mod: expected a callable (score, batch, head, q_pos, k_pos) -> score, got "
            f"{type(score_mod).__name__}"
        )
    for leaf in modifiers_in(score_mod) if score_mod is not None else []:
        # alibi and relative_bias hold a slope / a table column per query head (every backend,
        # the Triton kernel's fused ones included, indexes them by head)
        if isinstance(leaf, (ALiBi, RelativeBias)) and leaf.num_heads < q_heads:
            name = "alibi" if isinstance(leaf, ALiBi) else "relative_bias"
            raise ValueError(
                f"score_mod: {name} has {leaf.num_heads} heads, the queries {q_heads}; make it "
                f"with num_heads={q_heads}"
            )

    if mask is not None:
        mask = as_mask(mask)
        mask.validate(batch, q_heads, q_len, kv_len)

    return Problem(
        batch=batch,
        q_heads=q_heads,
        kv_heads=kv_heads,
        q_len=q_len,
        kv_len=kv_len,
        head_dim=head_dim,
        value_dim=v.shape[-1],
        scale=float(scale),
        mask=mask,
        score_mod=score_mod,
        dropout_p=float(dropout_p),
        device=q.device,
        dtype=q.dtype,
        inputs_need_grad=torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)),
    )


def index_grids(
    batch: int, heads: Tensor, q_positions: Tensor, k_positions: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``(batch, head, q_pos, k_pos)`` arguments of a score modifier, shaped to broadcast
    against scores ``(B, H', Lq', Lk')``: ``(B,1,1,1)``, ``(1,H',1,1)``, ``(1,1,Lq',1)``,
    ``(1,1,1,Lk')``. Positions are absolute (query rows shifted by ``Lk - Lq``)."""
    device = q_positions.device
    return (
        torch.arange(batch, device=device).view(-1, 1, 1, 1),
        heads.to(device).view(1, -1, 1, 1),
        q_positions.view(1, 1, -1, 1),
        k_positions.view(1, 1, 1, -1),
    )


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Precision the tiled paths compute in: float32 for half types, otherwise the input's."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
