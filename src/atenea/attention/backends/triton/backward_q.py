"""The dQ pass of the backward: one program per (query block, batch row, query head), walking
the same lists as the forward and recomputing ``p = exp(s - lse)`` and ``dS = p * (dP - delta)``
as the dK/dV pass does (``backward.py``, whose docstring says how dropout and the bounds are
handled: the same here), and summing ``dQ = dS K`` in registers.
"""

from __future__ import annotations

import triton
import triton.language as tl
from atenea.attention.backends.triton.rules import (
    LOG2E,
    dropout_keep,
    keys_valid,
    log2_scores,
    pairs_allowed,
    rows_descriptor,
    rows_load,
    tile_lists_of,
)


@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call: no recompiles
def attention_backward_q(
    Q, K, V, DO, LSE, DELTA, DQ,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om, stride_lb, stride_lh,
    stride_dqb, stride_dqh, stride_dqm,
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
    UPCAST: tl.constexpr, PRECISION: tl.constexpr, EVEN: tl.constexpr = False,
    TMA: tl.constexpr = False,
):  # fmt: skip
    """``EVEN`` (no score modifier or dropout, 16-bit; ``launch.skips_bounds``): the lists'
    ragged edge is partial, so the full tiles' pairs all exist and their steps skip the bounds
    (as the forward's and the dK/dV pass's). ``TMA``: the full tiles' K and V come by the
    copy engine (``rules.rows_descriptor``); the partial tiles' keep the threads' loads, which
    never read a key their mask rules out (padding, dead keys)."""
    start_m = tl.program_id(0) * BLOCK_M
    off_b = tl.program_id(1).to(tl.int64)
    off_h = tl.program_id(2).to(tl.int64)
    off_kvh = off_h // GROUP
    q_tile = start_m // SPARSE_Q

    rows = start_m + tl.arange(0, BLOCK_M)
    row_ok = rows < q_len
    dims = tl.arange(0, BLOCK_D)
    dims_v = tl.arange(0, BLOCK_DV)
    q = tl.load(
        Q + off_b * stride_qb + off_h * stride_qh + rows[:, None] * stride_qm + dims[None, :],
        mask=row_ok[:, None] & (dims[None, :] < head_dim),
        other=0.0,
    )
    do = tl.load(
        DO + off_b * stride_ob + off_h * stride_oh + rows[:, None] * stride_om + dims_v[None, :],
        mask=row_ok[:, None] & (dims_v[None, :] < value_dim),
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    row_stats = off_b * stride_lb + off_h * stride_lh
    lse = tl.load(LSE + row_stats + rows, mask=row_ok, other=0.0)
    lse = tl.where(lse == float("-inf"), 0.0, lse) * LOG2E
    delta = tl.load(DELTA + row_stats + rows, mask=row_ok, other=0.0)
    K_head = K + off_b * stride_kb + off_kvh * stride_kh
    V_head = V + off_b * stride_vb + off_kvh * stride_vh
    if TMA:  # (at D=128 under Triton 3.6, 6-12% fewer instructions a full step)
        batch, kv_heads = tl.num_programs(1), tl.num_programs(2) // GROUP
        k_desc = rows_descriptor(K, batch, kv_heads, kv_len, head_dim, stride_kb, stride_kh,
                                 stride_kn, 1, BLOCK_N, BLOCK_D)  # fmt: skip
        v_desc = rows_descriptor(V, batch, kv_heads, kv_len, value_dim, stride_vb, stride_vh,
                                 stride_vn, 1, BLOCK_N, BLOCK_DV)  # fmt: skip
    slope = 0.0
    if ALIBI != 0:
        slope = tl.load(slopes_ptr + off_h)
    relative_head = relative_ptr + off_h * stride_rh
    bitmap_index_head = bitmap_index_ptr + off_b * stride_bb + off_h * stride_bh

    head_row = off_b * tl.num_programs(2) + off_h  # b * Hq + h (dropout)
    keep_scale = 1.0 / (1.0 - dropout_p)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    SUB: tl.constexpr = SPARSE_K // BLOCK_N
    n_partial, partial_at, n_full, full_at = tile_lists_of(
        partial_counts, partial_index, full_counts, full_index, off_b, off_h, q_tile,
        stride_cb, stride_ch, stride_ib, stride_ih, stride_iq,
    )  # fmt: skip
    for phase in tl.static_range(2):  # 0: partial tiles (masked), 1: full tiles
        count, index = (n_partial, partial_at) if phase == 0 else (n_full, full_at)
        for step in range(0, count * SUB):
            k_tile = tl.load(index + step // SUB)
            col0 = k_tile * SPARSE_K + (step % SUB) * BLOCK_N  # the step's first key
            cols = col0 + tl.arange(0, BLOCK_N)
            if phase == 0:
                key_ok = keys_valid(cols, off_b, kv_len, padding_ptr, padding_stride,
                                    live_ptr, live_stride, PADDING, LIVE)  # fmt: skip
            else:  # EVEN: a full tile's keys all exist (the load masks fold)
                key_ok = (cols < kv_len) | EVEN
            if TMA and phase == 1:  # a full tile's keys are all allowed: nothing to skip
                k_t = tl.trans(rows_load(k_desc, off_b, off_kvh, col0, 1, BLOCK_N, BLOCK_D))
                v_t = tl.trans(rows_load(v_desc, off_b, off_kvh, col0, 1, BLOCK_N, BLOCK_DV))
            else:
                k_t = tl.load(  # (BLOCK_D, BLOCK_N): k transposed
                    K_head + cols[None, :] * stride_kn + dims[:, None],
                    mask=key_ok[None, :] & (dims[:, None] < head_dim),
                    other=0.0,
                )
                v_t = tl.load(
                    V_head + cols[None, :] * stride_vn + dims_v[:, None],
                    mask=key_ok[None, :] & (dims_v[:, None] < value_dim),
                    other=0.0,
                )
            if UPCAST:
                k_t = k_t.to(tl.float32)
                v_t = v_t.to(tl.float32)
            qk = tl.dot(q, k_t, input_precision=PRECISION)
            s, tanh_s = log2_scores(qk, rows[:, None], cols[None, :], q_len, kv_len, scale,
                                    slope, relative_head, cap,
                                    ALIBI, ALIBI_SYMMETRIC, CAP, RELATIVE)  # fmt: skip
            allowed = row_ok[:, None] & key_ok[None, :]
            if phase == 0:
                allowed = allowed & pairs_allowed(
                    rows[:, None], cols[None, :], off_b, q_tile, k_tile, q_len, kv_len, window,
                    document_ptr, document_stride, prefix_ptr, prefix_stride,
                    bitmap_ptr, bitmap_index_head, stride_bq, stride_bk,
                    CAUSAL, WINDOWED, DOCUMENT, PREFIX, BITMAP, SPARSE_Q, SPARSE_K,
                )  # fmt: skip
            p = tl.math.exp2(s - lse[:, None])
            if (phase == 0) or (not EVEN):  # EVEN: a full tile's pairs all exist
                p = tl.where(allowed, p, 0.0)
            dp = tl.dot(do, v_t, input_precision=PRECISION)
            if DROPOUT:  # the forward's draw; dP of the undropped weights
                keep = dropout_keep(seed, dropout_p, head_row, rows[:, None], cols[None, :],
                                    q_len, kv_len)  # fmt: skip
                dp = tl.where(keep, dp * keep_scale, 0.0)
            ds = p * (dp - delta[:, None])
            if CAP:
                ds = ds * (1.0 - tanh_s * tanh_s)
            dq += tl.dot(ds.to(k_t.dtype), tl.trans(k_t), input_precision=PRECISION)

    tl.store(
        DQ + off_b * stride_dqb + off_h * stride_dqh + rows[:, None] * stride_dqm + dims[None, :],
        (dq * scale).to(DQ.dtype.element_ty),
        mask=row_ok[:, None] & (dims[None, :] < head_dim),
    )
