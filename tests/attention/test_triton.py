"""atenea's Triton kernel (``backend="triton"``) against the float64 reference: every mask
family and their ``&``, the bitmap path (``|``, ``~``, dense), GQA/MQA, ``Lq != Lk``, lengths
that are not a multiple of the tile, head sizes, fp16; outputs, LSE and dq/dk/dv. Without a
GPU the kernels run in Triton's interpreter on CPU tensors (see triton_cases.py)."""

import pytest
import torch

pytest.importorskip("triton")

import atenea  # noqa: E402
from atenea import masks, scores  # noqa: E402
from tests.attention.triton_cases import (  # noqa: E402
    DEVICE,
    assert_close,
    assert_past_lengths_never_read,
    run_both,
)
from tests.helpers import make_qkv  # noqa: E402

DOCS = torch.tensor([0] * 50 + [1] * 90 + [2] * 37)  # 177 key positions
DOCS_PER_ROW = torch.stack([DOCS, torch.tensor([0] * 120 + [3] * 57)])

# (mask, (B, Hq, Hkv, Lq, Lk, D)): every case has lengths that are not multiples of the tile
MASK_CASES = {
    "causal_bottom_right": (masks.causal(), (1, 2, 2, 100, 177, 32)),
    "causal_more_queries_than_keys": (masks.causal(), (1, 2, 2, 177, 100, 32)),  # empty rows
    "sliding_window": (masks.sliding_window(40), (1, 2, 2, 177, 177, 32)),
    "documents_causal": (masks.document(DOCS_PER_ROW) & masks.causal(), (2, 1, 1, 150, 177, 32)),
    "key_padding_right": (masks.key_padding([177, 70]), (2, 1, 1, 130, 177, 32)),
    "key_padding_left": (masks.key_padding([100, 3], side="left"), (2, 1, 1, 130, 177, 32)),
    "prefix_lm": (masks.prefix_lm([30, 140]), (2, 1, 1, 177, 177, 32)),
    "window_documents_padding": (
        masks.sliding_window(60) & masks.document(DOCS) & masks.key_padding([150, 0]),
        (2, 1, 1, 177, 177, 32),
    ),  # batch row 1 has no key at all
    "prefix_padding_left": (
        masks.prefix_lm(20) & masks.key_padding([160, 90], side="left"),
        (2, 1, 1, 177, 177, 32),
    ),
    # length 1: a decoding step (one query, grouped heads), one key (every row but the last
    # empty, bottom-right), one of each
    "one_query_gqa": (masks.causal(), (1, 4, 2, 1, 177, 32)),
    "one_key": (masks.causal(), (1, 2, 2, 50, 1, 32)),
    "one_by_one_window": (masks.sliding_window(3), (1, 1, 1, 1, 1, 16)),
    # bitmaps of the partial tiles
    "or": (masks.document(DOCS) | masks.causal(), (1, 2, 2, 177, 177, 32)),
    "not": (~masks.sliding_window(50), (1, 2, 2, 177, 177, 32)),
    "dense_per_head_gqa": (None, (1, 4, 2, 130, 150, 32)),  # random, made in the test
}


def _dense(shape):
    generator = torch.Generator().manual_seed(3)
    allowed = torch.rand(1, shape[1], shape[3], shape[4], generator=generator) < 0.3
    allowed[:, :, :5] = False  # five empty rows
    allowed[:, :, 64:128, 64:128] = True  # a full tile
    allowed[:, :, :, 128:] = False  # an empty tile column
    return masks.dense(allowed)


@pytest.mark.parametrize("case", MASK_CASES)
def test_mask_families_match_reference(case):
    mask, shape = MASK_CASES[case]
    mask = _dense(shape) if mask is None else mask
    assert_close(*run_both(shape, mask))


@pytest.mark.parametrize(
    "shape, pack",
    [
        ((1, 4, 2, 150, 150, 32), 2),
        ((1, 4, 1, 100, 150, 32), 4),
        ((1, 4, 2, 130, 150, 128), 2),
        ((1, 16, 1, 70, 150, 16), 16),
        ((1, 6, 2, 100, 150, 32), 1),
    ],
    ids=["gqa", "mqa_fewer_queries", "gqa_d128", "mqa_16_heads", "gqa_3_heads_loop"],
)
def test_grouped_queries_match_reference(shape, pack, monkeypatch):
    """The dK/dV pass takes a group's query heads together in each step (``pack``) when they
    share the mask's tiles and number a power of two; three heads a group take the loop over
    them (and its smaller blocks, ``configs.GROUPED_KV_ROWS``)."""
    from atenea.attention.backends.triton import launch

    packs, real = [], launch.pack_of
    monkeypatch.setattr(launch, "pack_of", lambda *a: packs.append(real(*a)) or packs[-1])
    assert_close(*run_both(shape, masks.causal() & masks.key_padding(140)))
    assert packs == [pack]


@pytest.mark.parametrize(
    "shape",
    [(1, 2, 2, 100, 100, 16), (1, 2, 2, 100, 130, 80), (1, 1, 1, 130, 130, 128),
     (1, 2, 2, 100, 130, 64, 24)],
    ids=["d16", "d80_padded_to_128", "d128", "dv_differs"],
)  # fmt: skip
def test_head_sizes_match_reference(shape):
    assert_close(*run_both(shape, masks.sliding_window(70)))


def test_fp16_scores_past_its_range_stay_within_twice_pytorchs_error():
    """q.k near 8e4, past fp16's largest number (65504): the kernel's scores are float32
    (``tl.dot`` accumulates in float32, the scale applies there), so nothing overflows. Most of
    each score is the same for every key of its row (q ~ 100 + noise, k ~ 25 + small noise),
    so the softmax is not one-hot; but then dq sums nearly equal keys with weights that sum to
    zero, which no fp16 or float32 computation gets to fp16's usual tolerance (float32 keeps
    ~1e-3 of a 1.4e4 score). So the rule is FlashAttention's: within twice the error PyTorch's
    own attention (SDPA) makes in fp16 on the same inputs, against float64."""
    from tests.attention.triton_cases import relative_error

    q, k, v = make_qkv(1, 2, 2, 100, 130, 32, seed=4)
    q, k = q + 100, 25 + 0.01 * k
    low = [t.half().to(DEVICE).requires_grad_() for t in (q, k, v)]
    peer = [t.detach().clone().requires_grad_() for t in low]  # PyTorch's, in fp16 too
    high = [t.detach().double().cpu().requires_grad_() for t in low]
    assert (high[0] @ high[1].transpose(-1, -2)).abs().max() > 65504  # the premise
    mask = masks.causal()
    grad = torch.randn(1, 2, 100, 32, generator=torch.Generator().manual_seed(2))
    results = []
    for inputs, backend in ((low, "triton"), (peer, "sdpa"), (high, "reference")):
        out = atenea.attention(*inputs, mask=mask, backend=backend)
        grads = torch.autograd.grad(out, inputs, grad.to(out))
        results.append([t.detach().double().cpu() for t in (out, *grads)])
    for name, got, pytorch, want in zip(["out", "dq", "dk", "dv"], *results):
        assert torch.isfinite(got).all(), name
        assert relative_error(got, want) <= 2 * relative_error(pytorch, want) + 1e-4, name


def test_float32_blocks_match_reference():
    """The small blocks float32 takes on a GPU (16 to 32 rows), with a relative bias table:
    the interpreter runs the 16-bit blocks unless told."""
    mod = scores.compose(scores.relative_bias(2, 16, 40), scores.softcap(4.0))
    shape = (1, 2, 1, 70, 90, 16)
    mask = masks.key_padding(80) & masks.causal()
    assert_close(*run_both(shape, mask, mod, tile=128, table_dtype=torch.float32))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_reference(dtype):
    """fp32 accumulation, output in the input's dtype. (The interpreter truncates fp32 -> bf16
    stores instead of rounding: its bf16 tolerance allows one ulp.)"""
    shape = (1, 2, 1, 130, 177, 64)
    assert_close(*run_both(shape, masks.causal(), dtype=dtype), dtype)


def test_production_tiles_through_attention():
    """``atenea.attention(backend="triton")`` with the 128 tile and the sm_90 blocks; the LSE
    and weights it returns are the reference's."""
    q, k, v = (t.to(DEVICE) for t in torch.randn(3, 2, 2, 200, 64).unbind(0))
    mask = masks.sliding_window(100)
    out, weights, lse = atenea.attention(
        q, k, v, mask=mask, backend="triton", return_weights=True, return_lse=True
    )
    want, want_weights, want_lse = atenea.attention(
        q.double(), k.double(), v.double(), mask=mask, backend="reference",
        return_weights=True, return_lse=True,
    )  # fmt: skip
    assert (out.double() - want).abs().max() < 1e-5
    assert (lse.double() - want_lse).abs().max() < 1e-5
    assert (weights.double() - want_weights).abs().max() < 1e-5


def test_nan_in_key_padding_changes_nothing():
    """Whatever sits past each row's length (NaN here) is never read: outputs and gradients
    are bit-identical to those with zeros there."""
    lengths = [130, 61]
    assert_past_lengths_never_read(lengths, masks.key_padding(lengths) & masks.causal())


def _dense_without_keys(heads, q_len, kv_len, dead_keys):
    """A random per-head dense mask in which the ``dead_keys`` columns no query may attend."""
    generator = torch.Generator().manual_seed(5)
    allowed = torch.rand(1, heads, q_len, kv_len, generator=generator) < 0.5
    allowed[..., dead_keys] = False
    return masks.dense(allowed)


DEAD = [3, 70, 71, 140]  # keys no query attends in the bitmap cases below
NAN_CASES = {  # (mask, score_mod, (B, Hq, Hkv, Lq, Lk, D)): bitmaps of the partial tiles
    "dense_gqa": (_dense_without_keys(4, 100, 150, DEAD), None, (1, 4, 2, 100, 150, 32)),
    # queries at 130..149: keys 90..130 lie in every query's window, which ~ forbids
    "not_window_softcap": (~masks.sliding_window(60), scores.softcap(2.0), (1, 2, 1, 20, 150, 16)),
    # queries at 120..149, all in document 1: keys 0..59 (document 0) are dead
    "or_documents": (
        masks.document(torch.tensor([0] * 60 + [1] * 90)) | masks.sliding_window(10),
        None,
        (1, 2, 2, 30, 150, 16),
    ),
    # rules with Lq < Lk (the dead keys a prefix: read as left padding): queries at 110..149
    # with a window of 25 attend keys 86..149 only
    "window_short_queries": (masks.sliding_window(25), None, (1, 2, 1, 40, 150, 16)),
    # queries at 100..149 in documents 2..4: documents 0 and 1 (keys 0..69) are dead
    "documents_causal_short_queries": (
        masks.document(torch.arange(150) // 35) & masks.causal(),
        scores.alibi(2),
        (1, 2, 2, 50, 150, 16),
    ),
    # the same with left padding of its own, per row: the dead prefix is the longer of the two
    "window_padding_short_queries": (
        masks.sliding_window(60) & masks.key_padding(torch.tensor([150, 30]), side="left"),
        None,
        (2, 2, 1, 40, 150, 16),
    ),
    # dead keys that are no prefix (through the bitmaps, LIVE): queries at 120..149 in
    # document 1, which also holds keys 0..39; document 0 (keys 40..99) is dead
    "documents_out_of_order_short_queries": (
        masks.document(torch.tensor([1] * 40 + [0] * 60 + [1] * 50)) & masks.causal(),
        None,
        (1, 2, 1, 30, 150, 16),
    ),
    # a dead window prefix beside right padding (row 0 keeps 130 keys: 130..149 are padding)
    "window_right_padding_short_queries": (
        masks.sliding_window(25) & masks.key_padding(torch.tensor([130, 150]), side="right"),
        None,
        (2, 2, 1, 40, 150, 16),
    ),
}


@pytest.mark.parametrize("case", NAN_CASES)
def test_nan_in_keys_no_query_attends_changes_nothing(case):
    """Under a bitmap mask, or rules with fewer queries than keys, a key that no query may
    attend contributes exactly nothing: NaN in its K and V leaves the outputs and all gradients
    bit-identical to zeros there (the plan's live keys join the K/V load mask, and a dead
    prefix is read as left padding: such keys are never read)."""
    mask, mod, (b, hq, hkv, lq, lk, d) = NAN_CASES[case]
    allowed = mask.materialize(lq, lk).expand(b, hq, lq, lk)
    dead = ~allowed.any(2).any(1)  # (B, Lk): keys no head's query attends
    assert dead.any()
    q, k, v = (t.float() for t in make_qkv(b, hq, hkv, lq, lk, d))
    results = []
    for filler in (0.0, float("nan")):
        k2, v2 = k.clone(), v.clone()
        k2.transpose(1, 2)[dead] = filler
        v2.transpose(1, 2)[dead] = filler
        inputs = [t.to(DEVICE).requires_grad_() for t in (q, k2, v2)]
        out = atenea.attention(*inputs, mask=mask, score_mod=mod, backend="triton")
        grads = torch.autograd.grad(out, inputs, torch.ones_like(out))
        results.append([out, *grads])
    for name, clean, dirty in zip(["out", "dq", "dk", "dv"], *results):
        assert torch.equal(clean, dirty), name


def test_errors_say_why():
    q = torch.randn(1, 2, 64, 32, device=DEVICE)
    with pytest.raises(ValueError, match="backend='triton': score_mod: .*Python score_mod"):
        atenea.attention(q, q, q, score_mod=lambda s, b, h, i, j: s * 2, backend="triton")
    with pytest.raises(ValueError, match="backend='triton': .*float64"):
        atenea.attention(q.double(), q.double(), q.double(), backend="triton")


def test_cpu_without_the_interpreter_is_refused(monkeypatch):
    import atenea.attention.backends.triton.rules as rules

    monkeypatch.setattr(rules, "INTERPRETED", False)
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ValueError, match="backend='triton': CPU tensors run only in Triton"):
        atenea.attention(q, q, q, backend="triton")


def test_without_triton_installed_the_request_says_so(monkeypatch):
    import functools
    import importlib.util

    from atenea.attention.backends import triton as backend

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name, *a)
    )  # and a fresh answer to "is it installed?" (remembered per process otherwise)
    monkeypatch.setattr(backend, "_installed", functools.cache(backend._installed.__wrapped__))
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ValueError, match=r"backend='triton': triton is not installed"):
        atenea.attention(q, q, q, backend="triton")


@pytest.mark.slow  # a fresh interpreter importing torch: seconds
def test_importing_atenea_does_not_import_triton():
    import subprocess
    import sys

    code = "import sys, atenea; atenea.attention; print('triton' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize("value_dim", [48, 256])
def test_the_delta_pass_is_rowsum_of_out_times_dout_minus_the_lse_gradient(value_dim):
    """The backward's one pass over O and dO against the float64 formula: rows not a multiple
    of the pass's block, Dv padded (48 -> 64) and the widest (256: fewer rows a program),
    with and without the LSE's gradient, on a dO that was not contiguous."""
    from atenea.attention.backends.triton.launch import _delta

    generator = torch.Generator().manual_seed(3)
    out = torch.randn(2, 3, 77, value_dim, generator=generator).to(DEVICE)
    dout = torch.randn(2, 3, value_dim, 77, generator=generator).to(DEVICE).transpose(-1, -2)
    lse = torch.empty(2, 3, 77, device=DEVICE)
    dlse = torch.randn(2, 3, 77, generator=generator).to(DEVICE)
    want = (out.double() * dout.double()).sum(-1)
    assert (_delta(out, dout, None, lse).double() - want).abs().max() < 1e-4
    assert (_delta(out, dout, dlse, lse).double() - (want - dlse.double())).abs().max() < 1e-4
