"""Weight recovery: attention probabilities rebuilt from the saved log-sum-exp.

A fast kernel never stores the ``Lq x Lk`` probabilities, but it can return the row
log-sum-exp ``lse`` (``return_lse=True``). With it, any single probability is one dot product
away::

    weights[b, h, i, j] = exp(scale * q[b, h, i] . k[b, h // G, j] + mods - lse[b, h, i])

(each recomputed row is then renormalised, which cancels the rounding of a float32 lse).

so a caller can read row 32767 of a 32k-token sequence, or one head of one layer, without ever
holding the whole matrix.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from atenea.attention.problem import check_call, compute_dtype, index_grids

ROWS_PER_CHUNK = 1024


def _indices(selection, size: int, name: str, device) -> Tensor:
    """Turn ``None`` / an int / a slice / a sequence / a 1-D tensor into int64 indices."""
    if selection is None:
        return torch.arange(size, device=device)
    if isinstance(selection, slice):
        return torch.arange(size, device=device)[selection]
    if isinstance(selection, bool):
        raise TypeError(
            f"{name}: expected an int, a slice, a sequence or a tensor of ints, got a bool"
        )
    if isinstance(selection, numbers.Integral) or (
        isinstance(selection, Tensor) and selection.dim() == 0
        and not selection.is_floating_point() and selection.dtype != torch.bool
    ):  # fmt: skip
        selection = [int(selection)]  # numpy's ints and 0-d tensors of an int too
    index = torch.as_tensor(selection, device=device)
    if index.numel() == 0:  # [] or (): nothing asked for (as_tensor makes it float32)
        return index.long()
    if index.dtype == torch.bool or index.is_floating_point() or index.dim() != 1:
        raise TypeError(
            f"{name}: expected an int, a slice, a sequence or a 1-D tensor of ints, got "
            f"{index.dtype} of shape {tuple(index.shape)}"
        )
    if index.numel() and (int(index.min()) < -size or int(index.max()) >= size):
        raise ValueError(
            f"{name}: indices must lie in [-{size}, {size}), got values from {int(index.min())} "
            f"to {int(index.max())}"
        )
    return index.long() % max(size, 1)


@torch.no_grad()
def attention_weights(
    q: Tensor,
    k: Tensor,
    *,
    lse: Tensor,
    mask=None,
    score_mod=None,
    scale: float | None = None,
    rows=None,
    heads=None,
) -> Tensor:
    """Attention probabilities of the chosen query ``rows`` and query ``heads``, recomputed from
    the log-sum-exp that ``atenea.attention(..., return_lse=True)`` returned.

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)`` -- the same tensors the attention saw.
        lse: ``(B, Hq, Lq)`` log-sum-exp from the same call.
        mask, score_mod, scale: the same as in that call (``True`` in a mask = may attend).
        rows: query rows (None = all; an int, slice, sequence or 1-D tensor).
        heads: query heads, same forms.

    Returns:
        ``(B, len(heads), len(rows), Lk)`` probabilities in ``q``'s dtype; each selected row sums
        to 1 (0 for a query that may attend to nothing). For inspection: no gradient flows.
        Memory: ``B x heads x rows x Lk`` plus one chunk of ``ROWS_PER_CHUNK`` rows.
    """
    problem = check_call(q, k, k, mask, score_mod, scale, 0.0, "auto")
    p = problem
    if not isinstance(lse, Tensor):
        raise TypeError(f"lse: expected a tensor (B, Hq, Lq), got {type(lse).__name__}")
    if tuple(lse.shape) != (p.batch, p.q_heads, p.q_len):
        raise ValueError(
            f"lse: expected shape (B, Hq, Lq) = ({p.batch}, {p.q_heads}, {p.q_len}), got "
            f"{tuple(lse.shape)}"
        )
    device = q.device
    row_index = _indices(rows, p.q_len, "rows", device)
    head_index = _indices(heads, p.q_heads, "heads", device)

    dtype = compute_dtype(q.dtype)
    keys = k.index_select(1, head_index // p.group).to(dtype)  # (B, h, Lk, D)
    q_heads = q.index_select(1, head_index)  # (B, h, Lq, D)
    lse_heads = lse.index_select(1, head_index).to(dtype)  # (B, h, Lq)
    key_positions = torch.arange(p.kv_len, device=device)

    weights = None
    for start in range(0, row_index.numel(), ROWS_PER_CHUNK):
        chunk = row_index[start : start + ROWS_PER_CHUNK]
        # The scale on the queries (c x D values), not on the scores (c x Lk).
        scores = (q_heads[:, :, chunk].to(dtype) * p.scale) @ keys.transpose(-2, -1)  # (B,h,c,Lk)
        if p.score_mod is not None:
            grids = index_grids(p.batch, head_index, chunk + p.offset, key_positions)
            scores = p.score_mod(scores, *grids)
        if p.mask is not None:
            allowed = p.mask.allowed(chunk, key_positions, p.q_len, p.kv_len)  # (Bm, Hm, c, Lk)
            if allowed.shape[1] > 1:
                allowed = allowed.index_select(1, head_index)
            scores.masked_fill_(~allowed, float("-inf"))  # scores is this chunk's own tensor
        row_lse = lse_heads[:, :, chunk]
        # lse -inf marks a row with no allowed key: +inf turns its weights into exp(-inf) = 0.
        row_lse = row_lse.masked_fill(row_lse == float("-inf"), float("inf"))
        rows_weights = scores.sub_(row_lse.unsqueeze(-1)).exp_()  # (B, h, c, Lk), in place
        # The lse is the exact shift in exact arithmetic; renormalising each (complete) row
        # cancels its rounding, which matters when |scores| is large (float32 lse at 1e5
        # is off by ~0.01, i.e. 1% on every weight).
        total = rows_weights.sum(-1, keepdim=True)
        rows_weights.div_(total.masked_fill_(total == 0, 1.0))
        if chunk.numel() == row_index.numel() and rows_weights.dtype == q.dtype:
            return rows_weights  # one chunk: no copy into a result tensor
        if weights is None:
            weights = q.new_empty(p.batch, head_index.numel(), row_index.numel(), p.kv_len)
        weights[:, :, start : start + chunk.numel()] = rows_weights
    if weights is None:  # no rows asked for
        return q.new_empty(p.batch, head_index.numel(), 0, p.kv_len)
    return weights
