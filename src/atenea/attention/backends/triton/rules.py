"""In-kernel pieces shared by the forward and backward kernels: which pairs a partial tile
allows, the fused score modifiers and the dropout draw. Orientation-free: ``rows`` (query row
indices) and ``cols`` (key indices) are any two tensors that broadcast to the tile,
``(M, 1)`` and ``(1, N)`` in the forward (and the dK/dV pass with ``DIRECT``), ``(1, M)`` and
``(N, 1)`` in the transposed dK/dV pass (``per_query`` and ``per_key`` lay a vector for either).

Dropout draws one uniform number per ``(batch row, query head, query row, key column)`` with
Triton's counter-based Philox generator: the counter is that element's flat index
``((b * Hq + h) * Lq + row) * Lk + col`` (64-bit), the key the call's seed. The forward and both
backward kernels hash the same counters, whatever their block sizes and orientation, so each
element gets the same draw in all three and nothing is stored between them.

Interpreter traps (Triton 3.9 on the CPU): libdevice ``tanh`` fails, so ``tanh`` is written
with ``exp``; bf16 ``tl.dot`` is wrong, so the kernels upcast their tiles to float32 when
``INTERPRETED`` (decided once, when this module is imported: Triton decorates the kernels for
the interpreter only if ``TRITON_INTERPRET=1`` was set before).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def tile_lists_of(
    partial_counts, partial_index, full_counts, full_index, off_b, off_h, tile,
    stride_cb, stride_ch, stride_ib, stride_ih, stride_iq,
):  # fmt: skip
    """The sparse tiles that ``tile`` of (batch row ``off_b``, head ``off_h``) visits: how many
    partial ones and a pointer to their indices, then the same for the full ones. The same for
    the forward and dQ (key tiles of a query tile) and dK/dV (query tiles of a key tile, on the
    transposed lists); ``launch._expanded`` lays the lists out. Called once, before the two
    phases: what the second phase needs stays two numbers, not the seven that locate it (the
    fp32 kernels spilled registers when each phase located its own list)."""
    counts_at = off_b * stride_cb + off_h * stride_ch + tile
    index_at = off_b * stride_ib + off_h * stride_ih + tile * stride_iq
    n_partial = tl.load(partial_counts + counts_at)
    n_full = tl.load(full_counts + counts_at)
    return n_partial, partial_index + index_at, n_full, full_index + index_at


@triton.jit
def keys_valid(
    cols, off_b, kv_len, padding_ptr, padding_stride, live_ptr, live_stride,
    PADDING: tl.constexpr, LIVE: tl.constexpr,
):  # fmt: skip
    """Keys that exist, are not padding (1 = right padding, 2 = left) and, under a bitmap mask
    with dead keys (``LIVE``), that some query may attend (``plan.MaskPlan.live_keys``): also
    the load mask of K and V, so whatever sits in the others (NaN included) is never read."""
    valid = cols < kv_len
    if PADDING != 0:
        real = tl.load(padding_ptr + off_b * padding_stride)
        if PADDING == 1:
            valid = valid & (cols < real)
        else:
            valid = valid & (cols >= kv_len - real)
    if LIVE:
        live = tl.load(live_ptr + off_b * live_stride + cols, mask=valid, other=0)
        valid = valid & (live != 0)
    return valid


@triton.jit
def pairs_allowed(
    rows, cols, off_b, q_tile, k_tile, q_len, kv_len, window,
    document_ptr, document_stride, prefix_ptr, prefix_stride,
    bitmap_ptr, bitmap_index_ptr, bitmap_stride_q, bitmap_stride_k,
    CAUSAL: tl.constexpr, WINDOWED: tl.constexpr, DOCUMENT: tl.constexpr,
    PREFIX: tl.constexpr, BITMAP: tl.constexpr, SPARSE_Q: tl.constexpr, SPARSE_K: tl.constexpr,
):  # fmt: skip
    """The mask inside a partial tile (key padding aside: see ``keys_valid``). Positions are
    bottom-right aligned: query row ``r`` sits at ``r + Lk - Lq``. ``bitmap_index_ptr`` points
    at this (batch, head)'s table of bitmap numbers."""
    q_pos = rows + (kv_len - q_len)
    allowed = (rows < q_len) & (cols < kv_len)
    if CAUSAL:
        allowed = allowed & (cols <= q_pos)
    if WINDOWED:
        allowed = allowed & (cols <= q_pos) & (cols > q_pos - window)
    if DOCUMENT:
        ids = document_ptr + off_b * document_stride
        q_doc = tl.load(ids + q_pos, mask=(rows < q_len) & (q_pos >= 0), other=-1)
        k_doc = tl.load(ids + cols, mask=cols < kv_len, other=-2)
        allowed = allowed & (q_doc == k_doc)
    if PREFIX:
        prefix = tl.load(prefix_ptr + off_b * prefix_stride)
        allowed = allowed & ((cols < prefix) | (cols <= q_pos))
    if BITMAP:
        which = tl.load(bitmap_index_ptr + q_tile * bitmap_stride_q + k_tile * bitmap_stride_k)
        offset = (rows - q_tile * SPARSE_Q) * SPARSE_K + (cols - k_tile * SPARSE_K)
        bits = tl.load(bitmap_ptr + which.to(tl.int64) * (SPARSE_Q * SPARSE_K) + offset)
        allowed = allowed & (bits != 0)
    return allowed


@triton.jit
def tanh(x):
    """``tanh`` from one ``exp`` of a non-positive number (never overflows)."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def bias(
    rows, cols, q_len, kv_len, slope, relative_ptr,
    ALIBI_HERE: tl.constexpr, ALIBI_SYMMETRIC: tl.constexpr, RELATIVE_HERE: tl.constexpr,
):  # fmt: skip
    """The additive biases of one stage: ALiBi ``slope * (k_pos - q_pos)`` (``-slope * |.|``
    symmetric) and the relative bias read by distance (``relative_ptr``: this head's row of the
    ``(Hq, Lq + Lk - 1)`` table)."""
    distance = cols - (rows + (kv_len - q_len))
    total = tl.zeros(distance.shape, tl.float32)
    if ALIBI_HERE:
        if ALIBI_SYMMETRIC:
            total += -slope * tl.abs(distance).to(tl.float32)
        else:
            total += slope * distance.to(tl.float32)
    if RELATIVE_HERE:
        inside = (rows < q_len) & (cols < kv_len)
        total += tl.load(relative_ptr + distance + kv_len - 1, mask=inside, other=0.0)
    return total


@triton.jit
def modified_scores(
    qk, rows, cols, q_len, kv_len, scale, slope, relative_ptr, cap,
    ALIBI: tl.constexpr, ALIBI_SYMMETRIC: tl.constexpr, CAP: tl.constexpr, RELATIVE: tl.constexpr,
):  # fmt: skip
    """``s = qk * scale``, the biases placed before the cap (stage 1), ``cap * tanh(s / cap)``,
    the biases after it (stage 2). Returns ``s`` and the tanh (the backward's cap factor is
    ``1 - tanh^2``; ``s`` itself when there is no cap)."""
    s = qk * scale
    if (ALIBI == 1) or (RELATIVE == 1):
        s += bias(rows, cols, q_len, kv_len, slope, relative_ptr,
                  ALIBI == 1, ALIBI_SYMMETRIC, RELATIVE == 1)  # fmt: skip
    t = s
    if CAP:
        t = tanh(s / cap)
        s = cap * t
    if (ALIBI == 2) or (RELATIVE == 2):
        s += bias(rows, cols, q_len, kv_len, slope, relative_ptr,
                  ALIBI == 2, ALIBI_SYMMETRIC, RELATIVE == 2)  # fmt: skip
    return s, t


@triton.jit
def log2_scores(
    qk, rows, cols, q_len, kv_len, scale, slope, relative_ptr, cap,
    ALIBI: tl.constexpr, ALIBI_SYMMETRIC: tl.constexpr, CAP: tl.constexpr, RELATIVE: tl.constexpr,
    FOLD: tl.constexpr = True,
):  # fmt: skip
    """The scores in base 2 (``s * log2 e``, what ``exp2`` takes) and ``modified_scores``'
    tanh. Without a modifier, and with ``FOLD``, one product ``qk * (scale * log2 e)``: the
    forward's rounding, which the backward's recomputed probabilities must match (the dK/dV
    pass folds it with ``EVEN`` only)."""
    if (ALIBI != 0) or CAP or (RELATIVE != 0) or (not FOLD):
        s, t = modified_scores(qk, rows, cols, q_len, kv_len, scale, slope, relative_ptr, cap,
                               ALIBI, ALIBI_SYMMETRIC, CAP, RELATIVE)  # fmt: skip
        s = s * LOG2E
    else:
        s = qk * (scale * LOG2E)
        t = s
    return s, t


@triton.jit
def per_query(x, DIRECT: tl.constexpr):
    """A vector over a step's ``BLOCK_M`` query columns laid along their axis of the pairs'
    tiles: ``(1, BLOCK_M)`` in the transposed tiles, ``(BLOCK_M, 1)`` with ``DIRECT``."""
    if DIRECT:
        laid = x[:, None]
    else:
        laid = x[None, :]
    return laid


@triton.jit
def per_key(x, DIRECT: tl.constexpr):
    """A vector over the program's ``BLOCK_N`` keys laid along their axis (``per_query``)."""
    if DIRECT:
        laid = x[None, :]
    else:
        laid = x[:, None]
    return laid


@triton.jit
def dot_over_queries(pairs, rows_operand, PRECISION: tl.constexpr, DIRECT: tl.constexpr):
    """``pairs`` as ``(BLOCK_N, BLOCK_M)`` times ``rows_operand (BLOCK_M, D)``: dV's and dK's
    sums over the step's query rows, whichever way the pairs' tiles lie."""
    if DIRECT:
        product = tl.dot(tl.trans(pairs), rows_operand, input_precision=PRECISION)
    else:
        product = tl.dot(pairs, rows_operand, input_precision=PRECISION)
    return product


@triton.jit
def dropout_keep(seed, dropout_p, head_row, rows, cols, q_len, kv_len):
    """Which pairs dropout keeps (probability ``1 - dropout_p``): ``head_row = b * Hq + h``
    (int64), ``rows``/``cols`` broadcast as everywhere here. The draw depends on the element's
    position only, never on the program that asks (see the module docstring)."""
    counters = (head_row * q_len + rows) * kv_len + cols
    return tl.rand(seed, counters) >= dropout_p


@triton.jit
def rows_descriptor(base, batch, heads, length, width, stride_b, stride_h, stride_m,
                    PACK: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """A TMA descriptor of a ``(B, H, length, width)`` tensor (the dK/dV pass's Q and dO, the
    dQ pass's K and V) for ``rows_load``: its blocks are ``ROWS`` rows of ``PACK`` heads,
    ``BLOCK`` columns; what lies past ``length`` or ``width`` arrives as zeros (the copy
    engine checks the bounds, not the threads)."""
    if PACK == 1:
        desc = tl.make_tensor_descriptor(
            base, shape=[batch, heads, length, width], strides=[stride_b, stride_h, stride_m, 1],
            block_shape=[1, 1, ROWS, BLOCK],
        )  # fmt: skip
    else:  # rows outer, heads inner: column c of a step is head c % PACK, row c // PACK
        desc = tl.make_tensor_descriptor(
            base, shape=[batch, length, heads, width], strides=[stride_b, stride_m, stride_h, 1],
            block_shape=[1, ROWS, PACK, BLOCK],
        )  # fmt: skip
    return desc


@triton.jit
def rows_load(desc, off_b, first, row0, PACK: tl.constexpr, BLOCK_M: tl.constexpr,
              BLOCK: tl.constexpr):  # fmt: skip
    """``(BLOCK_M, BLOCK)``: the step's rows from ``row0`` of the heads from ``first``
    (``rows_descriptor``; a descriptor's coordinates are 32-bit)."""
    off_b, first, row0 = off_b.to(tl.int32), first.to(tl.int32), row0.to(tl.int32)
    if PACK == 1:
        blk = desc.load([off_b, first, row0, 0])
    else:
        blk = desc.load([off_b, row0, first, 0])
    return tl.reshape(blk, [BLOCK_M, BLOCK])
