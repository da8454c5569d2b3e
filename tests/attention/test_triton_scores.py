"""The fused score modifiers of the Triton kernel against the float64 reference: ALiBi (plain
and symmetric), softcap (its backward factor), the T5 relative bias (the table's gradient) and
their compositions in both orders, with masks and grouped queries."""

import pytest
import torch

pytest.importorskip("triton")

import atenea  # noqa: E402
from atenea import masks, scores  # noqa: E402
from tests.attention.triton_cases import DEVICE, assert_close, run_both  # noqa: E402

CASES = {
    "alibi_causal_gqa": (lambda: scores.alibi(4), masks.causal(), (1, 4, 2, 150, 177, 32)),
    "alibi_symmetric_then_softcap": (
        lambda: scores.compose(scores.alibi(2, symmetric=True), scores.softcap(5.0)),
        masks.key_padding([177, 90]),
        (2, 2, 2, 120, 177, 32),
    ),
    "softcap_then_relative_bias": (
        lambda: scores.compose(scores.softcap(3.0), scores.relative_bias(2, 32, 128)),
        masks.document(torch.tensor([0] * 100 + [1] * 77)),
        (1, 2, 1, 177, 177, 32),
    ),
    "relative_bias_unidirectional_then_softcap": (
        lambda: scores.compose(
            scores.relative_bias(3, 16, 64, bidirectional=False), scores.softcap(2.0)
        ),
        masks.causal() | masks.sliding_window(1),  # a bitmap mask
        (1, 2, 2, 130, 177, 32),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_fused_score_modifiers_match_reference(case):
    make_mod, mask, shape = CASES[case]
    torch.manual_seed(0)
    mod = make_mod()
    for param in mod.parameters():  # a table far from its initial values
        param.data.normal_(0.0, 1.0)
    got, want = run_both(shape, mask, score_mod=mod)
    assert ("dtable" in want) == any(isinstance(m, scores.RelativeBias) for m in mod.modules())
    assert_close(got, want)


@pytest.mark.skipif(DEVICE == "cpu", reason="the slopes and q share the CPU here: nothing to move")
def test_module_on_another_device_than_the_slopes():
    """ALiBi's slopes live where the module was made; the kernel takes them to q's device."""
    q = torch.randn(1, 2, 70, 16, device=DEVICE)
    mod = scores.alibi(2)
    out = atenea.attention(q, q, q, mask=masks.causal(), score_mod=mod, backend="triton")
    want = atenea.attention(
        q.double().cpu(), q.double().cpu(), q.double().cpu(), mask=masks.causal(),
        score_mod=mod, backend="reference",
    )  # fmt: skip
    assert (out.double().cpu() - want).abs().max() < 1e-5


def test_unfusable_compositions_are_refused():
    q = torch.randn(1, 2, 16, 16, device=DEVICE)
    twice = scores.compose(scores.softcap(2.0), scores.softcap(3.0))
    with pytest.raises(ValueError, match="at most one alibi, one softcap and one relative_bias"):
        atenea.attention(q, q, q, score_mod=twice, backend="triton")
    with pytest.raises(ValueError, match="has 1 heads, the queries 2"):
        atenea.attention(q, q, q, score_mod=scores.alibi(1), backend="triton")
