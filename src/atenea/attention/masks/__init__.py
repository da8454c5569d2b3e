"""Attention masks as objects: which (query, key) pairs may attend.

Polarity, once and for all: **``True`` means "may attend"**, everywhere in atenea — in
materialized tensors, in tiles, in ``masks.dense(...)`` inputs. ``False`` means the pair is
masked out (its score becomes ``-inf`` before the softmax).

A mask is not a tensor. It knows the rule, and from the rule it can

(a) ``materialize(q_len, kv_len)``: a boolean tensor ``(Bm, Hm, Lq, Lk)``, where ``Bm`` is 1 or
    the batch size and ``Hm`` is 1 or the number of query heads (it broadcasts against
    ``(B, H, Lq, Lk)``);
(b) ``tile_kinds(q_len, kv_len, q_tile, k_tile)``: for every tile of the score matrix, whether
    it is EMPTY (nothing may attend), FULL (everything may attend) or PARTIAL, without ever
    building the ``Lq x Lk`` matrix, on the device of the mask's own tensors (document ids or
    lengths on a GPU give a table on the GPU, never read back; rules of numbers alone, the
    CPU);
(c) ``allowed(rows, cols, q_len, kv_len)``: the boolean block for any rows and columns, which is
    how a PARTIAL tile gets its mask.

Positions. When ``Lq != Lk`` (decoding with a cache, chunked prefill) the queries are the *last*
``Lq`` positions: query row ``i`` sits at absolute position ``i + Lk - Lq`` ("bottom-right"
alignment, as FlashAttention >= 2.1 and every KV cache). Keys sit at ``0 .. Lk-1``.

Masks combine with ``&`` (both allow), ``|`` (either allows) and ``~`` (swap). Tile kinds
combine exactly as the booleans do once encoded EMPTY=0 < PARTIAL=1 < FULL=2: ``&`` is the
elementwise minimum, ``|`` the maximum, ``~`` is ``2 - kind``. That is conservative (``m & ~m``
is reported PARTIAL, not EMPTY) but never wrong: a PARTIAL tile is computed with its exact mask.
"""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.attention.masks.base import (
    EMPTY,
    FULL,
    PARTIAL,
    And,
    Dense,
    Mask,
    Not,
    Or,
    as_mask,
)
from atenea.attention.masks.rules import Causal, Document, KeyPadding, PrefixLM, SlidingWindow


def causal() -> Mask:
    """Causal mask: query ``i`` (absolute position, bottom-right aligned) may attend to keys
    ``0 .. i``. ``True`` = may attend."""
    return Causal()


def sliding_window(size: int) -> Mask:
    """Causal local window: query ``i`` may attend to keys ``i-size+1 .. i``.
    ``True`` = may attend."""
    return SlidingWindow(size)


def key_padding(lengths, side: str = "right") -> Mask:
    """Padding mask from per-row lengths ``(B,)``: only real keys may be attended to
    (``side="right"``: the first ``lengths[b]``; ``"left"``: the last). ``True`` = may attend."""
    return KeyPadding(lengths, side)


def document(ids) -> Mask:
    """Packed documents: attend only within the same id; ``ids`` is ``(Lk,)`` or ``(B, Lk)``.
    ``True`` = may attend."""
    return Document(ids)


def prefix_lm(prefix_len) -> Mask:
    """Prefix-LM: bidirectional over the first ``prefix_len`` keys, causal after them.
    ``True`` = may attend."""
    return PrefixLM(prefix_len)


def from_attention_mask(attention_mask: Tensor | None) -> Mask | None:
    """The key mask of a padded batch from a Hugging Face style ``attention_mask (B, Lk)``
    (1 = real token, 0 = padding): ``key_padding`` when each row's padding is on one side (so
    tiles can skip it), ``dense`` otherwise, ``None`` when nothing is padded.
    ``True`` = may attend."""
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2:
        raise ValueError(
            f"attention_mask: expected shape (B, L) with 1 for real tokens and 0 for padding, got "
            f"{tuple(attention_mask.shape)}"
        )
    real = attention_mask.bool()
    if real.device.type == "meta":  # shapes only (tracing): no values to find the sides from
        return dense(real[:, None, None, :])
    if bool(real.all()):
        return None
    lengths = real.sum(-1)
    keys = torch.arange(real.shape[1], device=real.device)
    if bool((real == (keys < lengths[:, None])).all()):
        return key_padding(lengths.cpu())
    if bool((real == (keys >= real.shape[1] - lengths[:, None])).all()):
        return key_padding(lengths.cpu(), side="left")
    return dense(real[:, None, None, :])


def dense(allowed: Tensor) -> Mask:
    """Any boolean tensor broadcastable to ``(B, H, Lq, Lk)``. ``True`` = may attend."""
    return Dense(allowed)


__all__ = [
    "EMPTY",
    "PARTIAL",
    "FULL",
    "Mask",
    "as_mask",
    "causal",
    "sliding_window",
    "key_padding",
    "document",
    "prefix_lm",
    "dense",
    "from_attention_mask",
    # the classes behind the constructors (for isinstance checks and backends)
    "And",
    "Causal",
    "Dense",
    "Document",
    "KeyPadding",
    "Not",
    "Or",
    "PrefixLM",
    "SlidingWindow",
]
