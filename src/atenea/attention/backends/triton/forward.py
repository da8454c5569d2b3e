"""The forward kernel: one program per (query block, batch row, query head).

It walks the query tile's *partial* key tiles (mask evaluated in the kernel), then its *full*
ones (no mask); empty tiles are in neither list and never read. Online softmax in float32 and
base 2 (``exp2``, scores scaled by ``log2 e``): a running row maximum ``m``, a running sum
``l`` of ``exp2(s - m)`` and the output accumulator, rescaled by ``exp2(m_old - m_new)`` when
the maximum grows. A row that met no allowed key keeps ``l = 0``: output 0, LSE ``-inf``.
With ``EVEN`` (no score modifier or dropout, 16-bit: ``launch.skips_bounds``) the lists'
ragged edge is partial (``TileLists.edges_partial``), so a full tile's keys all exist and its
steps skip the bounds check (one select per score fewer where most tiles are full), and their
K and V loads the keys' bound (the head dims' stays).

Dropout (``DROPOUT``) zeroes the kept-out weights and scales the others by ``1 / (1 - p)``
*after* they enter the running sum ``l``: the LSE is that of the undropped softmax, as in the
other backends and FlashAttention, so the backward recomputes the undropped probabilities from
it and applies the same draw (``rules.dropout_keep``) again.
"""

from __future__ import annotations

import triton
import triton.language as tl
from atenea.attention.backends.triton.rules import (
    LN2,
    dropout_keep,
    keys_valid,
    log2_scores,
    pairs_allowed,
    tile_lists_of,
)


@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call: no recompiles
def attention_forward(
    Q, K, V, O, LSE,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om, stride_lb, stride_lh,
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
):  # fmt: skip
    start_m = tl.program_id(0) * BLOCK_M
    off_b = tl.program_id(1).to(tl.int64)
    off_h = tl.program_id(2).to(tl.int64)
    off_kvh = off_h // GROUP  # grouped-query attention: no copy of K/V
    q_tile = start_m // SPARSE_Q

    rows = start_m + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    dims_v = tl.arange(0, BLOCK_DV)
    q = tl.load(
        Q + off_b * stride_qb + off_h * stride_qh + rows[:, None] * stride_qm + dims[None, :],
        mask=(rows[:, None] < q_len) & (dims[None, :] < head_dim),
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
    K_head = K + off_b * stride_kb + off_kvh * stride_kh
    V_head = V + off_b * stride_vb + off_kvh * stride_vh

    slope = 0.0
    if ALIBI != 0:
        slope = tl.load(slopes_ptr + off_h)
    relative_head = relative_ptr + off_h * stride_rh
    bitmap_index_head = bitmap_index_ptr + off_b * stride_bb + off_h * stride_bh
    head_row = off_b * tl.num_programs(2) + off_h  # b * Hq + h: the dropout counters' base
    keep_scale = 1.0 / (1.0 - dropout_p)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    SUB: tl.constexpr = SPARSE_K // BLOCK_N  # compute blocks per sparse tile

    n_partial, partial_at, n_full, full_at = tile_lists_of(
        partial_counts, partial_index, full_counts, full_index, off_b, off_h, q_tile,
        stride_cb, stride_ch, stride_ib, stride_ih, stride_iq,
    )  # fmt: skip
    for phase in tl.static_range(2):  # 0: partial tiles (masked), 1: full tiles
        count, index = (n_partial, partial_at) if phase == 0 else (n_full, full_at)
        for step in range(0, count * SUB):
            k_tile = tl.load(index + step // SUB)
            cols = k_tile * SPARSE_K + (step % SUB) * BLOCK_N + tl.arange(0, BLOCK_N)
            if phase == 0:
                key_ok = keys_valid(cols, off_b, kv_len, padding_ptr, padding_stride,
                                    live_ptr, live_stride, PADDING, LIVE)  # fmt: skip
            else:  # EVEN: a full tile's keys all exist (the load masks fold)
                key_ok = (cols < kv_len) | EVEN
            k = tl.load(
                K_head + cols[None, :] * stride_kn + dims[:, None],
                mask=key_ok[None, :] & (dims[:, None] < head_dim),
                other=0.0,
            )
            v = tl.load(
                V_head + cols[:, None] * stride_vn + dims_v[None, :],
                mask=key_ok[:, None] & (dims_v[None, :] < value_dim),
                other=0.0,
            )
            if UPCAST:
                k = k.to(tl.float32)
                v = v.to(tl.float32)
            qk = tl.dot(q, k, input_precision=PRECISION)
            s, _ = log2_scores(qk, rows[:, None], cols[None, :], q_len, kv_len, scale, slope,
                               relative_head, cap,
                               ALIBI, ALIBI_SYMMETRIC, CAP, RELATIVE)  # fmt: skip
            if phase == 0:
                allowed = pairs_allowed(
                    rows[:, None], cols[None, :], off_b, q_tile, k_tile, q_len, kv_len, window,
                    document_ptr, document_stride, prefix_ptr, prefix_stride,
                    bitmap_ptr, bitmap_index_head, stride_bq, stride_bk,
                    CAUSAL, WINDOWED, DOCUMENT, PREFIX, BITMAP, SPARSE_Q, SPARSE_K,
                )  # fmt: skip
                s = tl.where(allowed & key_ok[None, :], s, float("-inf"))
            elif not EVEN:  # EVEN: a full tile's keys all exist
                s = tl.where(key_ok[None, :], s, float("-inf"))

            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no -inf - -inf
            alpha = tl.math.exp2(m_i - m_safe)
            p = tl.math.exp2(s - m_safe[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)  # undropped: the LSE is of the softmax itself
            if DROPOUT:
                keep = dropout_keep(seed, dropout_p, head_row, rows[:, None], cols[None, :],
                                    q_len, kv_len)  # fmt: skip
                p = tl.where(keep, p * keep_scale, 0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new

    empty = l_i == 0.0
    out = acc / tl.where(empty, 1.0, l_i)[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(tl.where(empty, 1.0, l_i))) * LN2)
    tl.store(
        O + off_b * stride_ob + off_h * stride_oh + rows[:, None] * stride_om + dims_v[None, :],
        out.to(O.dtype.element_ty),
        mask=(rows[:, None] < q_len) & (dims_v[None, :] < value_dim),
    )
    tl.store(LSE + off_b * stride_lb + off_h * stride_lh + rows, lse, mask=rows < q_len)
