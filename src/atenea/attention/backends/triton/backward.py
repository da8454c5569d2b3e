"""The backward kernels, recomputing the probabilities from the saved (global) LSE:
``p = exp(s - lse)``, ``dS = p * (dP - delta)`` with ``dP = dO V^T`` and
``delta = rowsum(O * dO) - dLSE``.

- ``attention_backward_delta``: one program per (block of rows, batch row, query head): delta,
  in float32, in one pass over O and dO (no float32 copies of them).

- ``attention_backward_kv``: one program per (key block, batch row, key/value head); it walks
  the query tiles that visit its key tile (the transposed lists) for every query head of its
  group, the heads packed into each step where they share the tiles (``PACK``) or one after
  the other: dK and dV summed in registers, no atomics, no copies of K/V per head. The
  relative-bias table's gradient (per head and distance) is the only atomic sum, in float32.
  A packed step interleaves the heads (query column ``c``, a row of the tiles with ``DIRECT``:
  head ``c % PACK``, row ``c // PACK``):
  the head-major order (``c = h * ROWS + r``) compiled to 150-280 bytes of register spills in
  the light 64x64 blocks where this one spills none (check_sm90).
- dQ: ``backward_q.py``.

Dropout: with ``Z = keep / (1 - p)`` the output is ``(P * Z) V``, so ``dV = (P * Z)^T dO``
and the undropped weights' gradient is ``dP = (dO V^T) * Z``; ``rowsum(dP * P)`` is still
``rowsum(O * dO)``, so ``delta`` does not change. ``Z`` is redrawn here from the same counters
as in the forward (``rules.dropout_keep``), never stored.

Rows past ``Lq`` and keys past ``Lk`` are masked in every step (zeros loaded there could meet
a large bias and overflow ``exp2``) but the full tiles' under ``EVEN`` (their lists' ragged
edge is partial, so they hold none), and K/V are loaded through ``keys_valid`` as in the
forward (padding, and under a bitmap mask the keys no query attends, are never read).
"""

from __future__ import annotations

import triton
import triton.language as tl
from atenea.attention.backends.triton.rules import (
    LOG2E,
    dot_over_queries,
    dropout_keep,
    keys_valid,
    log2_scores,
    pairs_allowed,
    per_key,
    per_query,
    rows_descriptor,
    rows_load,
    tile_lists_of,
)


@triton.jit
def attention_backward_delta(
    O, DO, DLSE, DELTA, stride_ob, stride_oh, stride_om, stride_lb, stride_lh, q_len, value_dim,
    BLOCK_M: tl.constexpr, BLOCK_DV: tl.constexpr, HAS_DLSE: tl.constexpr,
):  # fmt: skip
    """``delta = rowsum(O * dO) - dLSE`` for ``BLOCK_M`` rows. O and dO share their strides
    (``stride_o*``), as dLSE and delta do (``stride_l*``)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    off_b = tl.program_id(1).to(tl.int64)
    off_h = tl.program_id(2).to(tl.int64)
    dims_v = tl.arange(0, BLOCK_DV)
    at = off_b * stride_ob + off_h * stride_oh + rows[:, None] * stride_om + dims_v[None, :]
    inside = (rows[:, None] < q_len) & (dims_v[None, :] < value_dim)
    o = tl.load(O + at, mask=inside, other=0.0).to(tl.float32)
    do = tl.load(DO + at, mask=inside, other=0.0).to(tl.float32)
    delta = tl.sum(o * do, axis=1)
    row_stats = off_b * stride_lb + off_h * stride_lh + rows
    if HAS_DLSE:  # the LSE's own gradient (ring attention merges chunks through it)
        delta -= tl.load(DLSE + row_stats, mask=rows < q_len, other=0.0)
    tl.store(DELTA + row_stats, delta, mask=rows < q_len)


@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call: no recompiles
def attention_backward_kv(
    Q, K, V, DO, LSE, DELTA, DK, DV, DREL,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om, stride_lb, stride_lh,
    stride_dkb, stride_dkh, stride_dkn, stride_dvb, stride_dvh, stride_dvn,
    partial_counts, partial_index, full_counts, full_index,
    stride_cb, stride_ch, stride_ib, stride_ih, stride_iq,
    q_len, kv_len, head_dim, value_dim, scale,
    window, document_ptr, document_stride, padding_ptr, padding_stride,
    prefix_ptr, prefix_stride, live_ptr, live_stride, bitmap_ptr, bitmap_index_ptr,
    stride_bb, stride_bh, stride_bq, stride_bk,
    slopes_ptr, relative_ptr, stride_rh, cap, seed, dropout_p,
    GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, SPARSE_Q: tl.constexpr, SPARSE_K: tl.constexpr,
    CAUSAL: tl.constexpr, WINDOWED: tl.constexpr, DOCUMENT: tl.constexpr,
    PADDING: tl.constexpr, PREFIX: tl.constexpr, BITMAP: tl.constexpr, LIVE: tl.constexpr,
    ALIBI: tl.constexpr, ALIBI_SYMMETRIC: tl.constexpr, CAP: tl.constexpr, RELATIVE: tl.constexpr,
    DROPOUT: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr, PACK: tl.constexpr = 1,
    EVEN: tl.constexpr = False, DIRECT: tl.constexpr = False, TMA: tl.constexpr = False,
):  # fmt: skip
    """The lists here are the transposed ones: per key tile, the query tiles visiting it.
    ``PACK`` (a power of two dividing ``GROUP``, at most ``BLOCK_M``): query heads of the group
    taken together in one step; GROUP when every head visits the same tiles (the mask's lists
    broadcast over heads), else 1 (a loop over the heads). ``EVEN``: as the dQ pass's (the
    full tiles skip their bounds, one product of the scale and log2(e)). ``DIRECT``: a step's
    tiles are ``(BLOCK_M, BLOCK_N)``, queries down, as in the dQ pass, and K and V enter the
    products as their second operand, which the tensor cores read from shared memory, where
    the transposed tiles ``(BLOCK_N, BLOCK_M)`` hold K and V in registers as the first; the
    probabilities and dS then go through shared memory transposed. ``per_query`` and
    ``per_key`` (rules.py) lay each vector along its axis of the tiles, either way. ``TMA``:
    Q and dO come by the copy engine (``rules.rows_descriptor``), bounds checked there."""
    start_n = tl.program_id(0) * BLOCK_N
    off_b = tl.program_id(1).to(tl.int64)
    off_kvh = tl.program_id(2).to(tl.int64)
    k_tile = start_n // SPARSE_K

    cols = start_n + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    dims_v = tl.arange(0, BLOCK_DV)
    key_ok = keys_valid(cols, off_b, kv_len, padding_ptr, padding_stride,
                        live_ptr, live_stride, PADDING, LIVE)  # fmt: skip
    k = tl.load(
        K + off_b * stride_kb + off_kvh * stride_kh + cols[:, None] * stride_kn + dims[None, :],
        mask=key_ok[:, None] & (dims[None, :] < head_dim),
        other=0.0,
    )
    v = tl.load(
        V + off_b * stride_vb + off_kvh * stride_vh + cols[:, None] * stride_vn + dims_v[None, :],
        mask=key_ok[:, None] & (dims_v[None, :] < value_dim),
        other=0.0,
    )
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    # A step's BLOCK_M columns are ROWS query rows of each of PACK query heads of the group
    # (column c: head c % PACK, row c // PACK): the heads that visit the same tiles share the
    # loop, so a group costs the registers of one head; the other packs of the group follow.
    ROWS: tl.constexpr = BLOCK_M // PACK
    SUB: tl.constexpr = SPARSE_Q // ROWS
    lanes = tl.arange(0, BLOCK_M)
    keep_scale = 1.0 / (1.0 - dropout_p)
    heads_total = tl.num_programs(2) * GROUP  # Hq
    if TMA:  # no addresses or bounds of Q and dO in the threads (Triton 3.6: 8% fewer a step)
        batch = tl.num_programs(1)
        q_desc = rows_descriptor(Q, batch, heads_total, q_len, head_dim, stride_qb, stride_qh,
                                 stride_qm, PACK, ROWS, BLOCK_D)  # fmt: skip
        do_desc = rows_descriptor(DO, batch, heads_total, q_len, value_dim, stride_ob, stride_oh,
                                  stride_om, PACK, ROWS, BLOCK_DV)  # fmt: skip

    for g in range(0, GROUP // PACK):
        first = off_kvh * GROUP + g * PACK  # the pack's first query head (its lists are all's)
        if PACK == 1:  # one head: scalars, as the forward has them
            q_cols = Q + off_b * stride_qb + first * stride_qh
            do_rows = DO + off_b * stride_ob + first * stride_oh
            stats = off_b * stride_lb + first * stride_lh
            head_row = off_b * heads_total + first  # b * Hq + h (dropout)
            relative_at = relative_ptr + first * stride_rh
            drel_at = DREL + first * stride_rh
            slope = 0.0
            if ALIBI != 0:
                slope = tl.load(slopes_ptr + first)
        else:  # per query column (row, with DIRECT) of a step's tiles
            heads = first + lanes % PACK
            q_cols = per_query(Q + off_b * stride_qb + heads * stride_qh, DIRECT)
            do_rows = (DO + off_b * stride_ob + heads * stride_oh)[:, None]
            stats = off_b * stride_lb + heads * stride_lh
            head_row = per_query(off_b * heads_total + heads, DIRECT)
            relative_at = per_query(relative_ptr + heads * stride_rh, DIRECT)
            drel_at = per_query(DREL + heads * stride_rh, DIRECT)
            slope = 0.0
            if ALIBI != 0:
                slope = per_query(tl.load(slopes_ptr + heads), DIRECT)
        bitmap_index_head = bitmap_index_ptr + off_b * stride_bb + first * stride_bh
        n_partial, partial_at, n_full, full_at = tile_lists_of(
            partial_counts, partial_index, full_counts, full_index, off_b, first, k_tile,
            stride_cb, stride_ch, stride_ib, stride_ih, stride_iq,
        )  # fmt: skip
        for phase in tl.static_range(2):  # 0: partial tiles (masked), 1: full tiles
            count, index = (n_partial, partial_at) if phase == 0 else (n_full, full_at)
            for step in range(0, count * SUB):
                q_tile = tl.load(index + step // SUB)
                row0 = q_tile * SPARSE_Q + (step % SUB) * ROWS  # the step's first row
                rows = row0 + lanes // PACK
                # EVEN: a full tile's rows all exist (the lists' ragged edge is partial), and
                # the bound folds out of the loads' masks
                row_ok = (rows < q_len) | ((phase == 1) and EVEN)
                if TMA:
                    q_blk = rows_load(q_desc, off_b, first, row0, PACK, BLOCK_M, BLOCK_D)
                    if not DIRECT:
                        q_blk = tl.trans(q_blk)
                    do = rows_load(do_desc, off_b, first, row0, PACK, BLOCK_M, BLOCK_DV)
                elif DIRECT:  # (BLOCK_M, BLOCK_D)
                    q_blk = tl.load(
                        q_cols + rows[:, None] * stride_qm + dims[None, :],
                        mask=row_ok[:, None] & (dims[None, :] < head_dim),
                        other=0.0,
                    )
                else:  # (BLOCK_D, BLOCK_M): q transposed
                    q_blk = tl.load(
                        q_cols + rows[None, :] * stride_qm + dims[:, None],
                        mask=row_ok[None, :] & (dims[:, None] < head_dim),
                        other=0.0,
                    )
                if not TMA:
                    do = tl.load(
                        do_rows + rows[:, None] * stride_om + dims_v[None, :],
                        mask=row_ok[:, None] & (dims_v[None, :] < value_dim),
                        other=0.0,
                    )
                lse = tl.load(LSE + stats + rows, mask=row_ok, other=0.0)
                # an empty row (-inf): p = 0. A full tile holds none, so its steps skip this,
                # but with ALiBi, where that spilled 8-16 bytes at D=128 (check_sm90)
                if (phase == 0) or (ALIBI != 0):
                    lse = tl.where(lse == float("-inf"), 0.0, lse)
                lse = lse * LOG2E
                delta = tl.load(DELTA + stats + rows, mask=row_ok, other=0.0)
                if UPCAST:
                    q_blk = q_blk.to(tl.float32)
                    do = do.to(tl.float32)
                # the pairs' tiles: (BLOCK_N, BLOCK_M), or (BLOCK_M, BLOCK_N) with DIRECT
                if DIRECT:
                    qk = tl.dot(q_blk, tl.trans(k), input_precision=PRECISION)
                else:
                    qk = tl.dot(k, q_blk, input_precision=PRECISION)
                rows_at, cols_at = per_query(rows, DIRECT), per_key(cols, DIRECT)
                s, tanh_s = log2_scores(
                    qk, rows_at, cols_at, q_len, kv_len, scale, slope,
                    relative_at, cap, ALIBI, ALIBI_SYMMETRIC, CAP, RELATIVE, FOLD=EVEN,
                )  # fmt: skip
                allowed = per_key(key_ok, DIRECT) & per_query(row_ok, DIRECT)
                if phase == 0:
                    allowed = allowed & pairs_allowed(
                        rows_at, cols_at, off_b, q_tile, k_tile, q_len, kv_len,
                        window, document_ptr, document_stride, prefix_ptr, prefix_stride,
                        bitmap_ptr, bitmap_index_head, stride_bq, stride_bk,
                        CAUSAL, WINDOWED, DOCUMENT, PREFIX, BITMAP, SPARSE_Q, SPARSE_K,
                    )  # fmt: skip
                p = tl.math.exp2(s - per_query(lse, DIRECT))
                if (phase == 0) or (not EVEN):  # EVEN: a full tile's pairs all exist
                    p = tl.where(allowed, p, 0.0)
                if DIRECT:
                    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
                else:
                    dp = tl.dot(v, tl.trans(do), input_precision=PRECISION)
                if DROPOUT:  # the forward's draw; dP of the undropped weights
                    keep = dropout_keep(seed, dropout_p, head_row, rows_at, cols_at,
                                        q_len, kv_len)  # fmt: skip
                    dv += dot_over_queries(tl.where(keep, p * keep_scale, 0.0).to(do.dtype),
                                           do, PRECISION, DIRECT)  # fmt: skip
                    dp = tl.where(keep, dp * keep_scale, 0.0)
                else:
                    dv += dot_over_queries(p.to(do.dtype), do, PRECISION, DIRECT)
                ds = p * (dp - per_query(delta, DIRECT))  # gradient of the final score
                ds_before_cap = ds
                if CAP:
                    ds_before_cap = ds * (1.0 - tanh_s * tanh_s)
                if RELATIVE != 0:
                    grad = ds_before_cap if RELATIVE == 1 else ds
                    distance = cols_at - (rows_at + (kv_len - q_len))
                    tl.atomic_add(drel_at + distance + kv_len - 1, grad, mask=allowed)
                ds_low = ds_before_cap.to(q_blk.dtype)  # (cast, then the transpose of q)
                dk += dot_over_queries(ds_low, q_blk if DIRECT else tl.trans(q_blk), PRECISION,
                                       DIRECT)  # fmt: skip

    tl.store(
        DK + off_b * stride_dkb + off_kvh * stride_dkh + cols[:, None] * stride_dkn + dims[None, :],
        (dk * scale).to(DK.dtype.element_ty),
        mask=(cols[:, None] < kv_len) & (dims[None, :] < head_dim),
    )
    tl.store(
        DV + off_b * stride_dvb + off_kvh * stride_dvh + cols[:, None] * stride_dvn
        + dims_v[None, :],
        dv.to(DV.dtype.element_ty),
        mask=(cols[:, None] < kv_len) & (dims_v[None, :] < value_dim),
    )  # fmt: skip
