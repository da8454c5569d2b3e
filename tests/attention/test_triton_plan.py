"""The Triton kernel's mask plan (``plan.py``: the rule parameters, or the bitmaps of the
partial tiles) is derived once per tile lists object and remembered there: a second call with
the same mask reuses it, masks that are the same rule share it, and masks that only look alike
(other document ids, other dense contents) never do. Results against the float64 reference."""

import gc

import pytest
import torch

pytest.importorskip("triton")

import atenea  # noqa: E402
from atenea import masks  # noqa: E402
from atenea.attention.backends.tile_lists import tile_lists  # noqa: E402
from atenea.attention.backends.triton import plan  # noqa: E402
from tests.attention.triton_cases import DEVICE, assert_close, run_both  # noqa: E402
from tests.helpers import make_qkv  # noqa: E402

SHAPE = (1, 2, 2, 150, 150, 16)


def _documents(boundary):
    return masks.document(torch.tensor([0] * boundary + [1] * (150 - boundary)))


def test_second_call_reuses_the_plan_and_batch_sizes_share_it(monkeypatch):
    """One build for three calls of one (broadcast) dense mask, at batch 1 and batch 2: the
    plan keeps the mask's own batch/head sizes and the launch broadcasts them at stride 0."""
    builds = []
    real = plan._mask_plan
    monkeypatch.setattr(plan, "_mask_plan", lambda *a: builds.append(1) or real(*a))
    allowed = torch.rand(150, 150, generator=torch.Generator().manual_seed(1)) < 0.4
    mask = masks.dense(allowed)
    for batch in (1, 1, 2):
        q, k, v = (t.float().to(DEVICE) for t in make_qkv(batch, 2, 1, 150, 150, 16))
        out = atenea.attention(q, k, v, mask=mask, backend="triton")
        want = atenea.attention(q.double(), k.double(), v.double(), mask=mask)
        assert (out.double().cpu() - want.cpu()).abs().max() < 1e-5
    assert len(builds) == 1
    lists = tile_lists(mask, 150, 150, DEVICE)
    assert plan.mask_plan(mask, lists) is plan.mask_plan(mask, lists)


def test_masks_of_one_rule_share_the_plan_and_others_do_not():
    """Two ``~sliding_window(50)`` objects are one rule: one plan. ``~sliding_window(51)`` is
    another. Calls interleaved, each against the reference."""
    first, same, other = (~masks.sliding_window(50), ~masks.sliding_window(50),
                          ~masks.sliding_window(51))  # fmt: skip
    plans = [plan.mask_plan(m, tile_lists(m, 150, 150, DEVICE, 64, 64)) for m in (first, same)]
    assert first is not same and plans[0] is plans[1]
    other_plan = plan.mask_plan(other, tile_lists(other, 150, 150, DEVICE, 64, 64))
    assert other_plan is not plans[0]
    for mask in (first, other, same):
        assert_close(*run_both(SHAPE, mask))


def test_masks_that_only_look_alike_share_nothing():
    """``document(ids) | causal()`` with other ids is another mask (its lists and plan are the
    object's own), also when the first is gone and the second may reuse its ``id``."""
    first = _documents(60) | masks.causal()
    assert_close(*run_both(SHAPE, first))
    first_plan = plan.mask_plan(first, tile_lists(first, 150, 150, DEVICE, 64, 64))
    second = _documents(100) | masks.causal()
    assert plan.mask_plan(second, tile_lists(second, 150, 150, DEVICE, 64, 64)) is not first_plan
    assert_close(*run_both(SHAPE, second))
    del first, first_plan
    gc.collect()
    assert_close(*run_both(SHAPE, _documents(30) | masks.causal()))


def test_live_keys_are_the_keys_some_query_attends():
    """The plan marks the keys no query of a batch row attends (any head), from the partial
    tiles' bitmaps and the full tiles, equal to the materialized mask; when every key is
    attended it marks none, and the kernels check no key."""
    allowed = torch.rand(2, 2, 100, 150, generator=torch.Generator().manual_seed(2)) < 0.3
    allowed[0, :, :, [3, 70, 140]] = False
    allowed[1, :, :, 64:128] = True  # a full tile column
    allowed[1, :, :, [5, 149]] = False
    mask = masks.dense(allowed)
    live = plan.mask_plan(mask, tile_lists(mask, 100, 150, DEVICE, 64, 64)).live_keys
    assert torch.equal(live.cpu().bool(), allowed.any(2).any(1))
    every_key = ~masks.sliding_window(50)
    lists = tile_lists(every_key, 150, 150, DEVICE, 64, 64)
    assert plan.mask_plan(every_key, lists).live_keys is None


SWITCH_CASES = {
    "causal": (masks.causal(), None, 0.0),
    "window_left_padding": (
        masks.sliding_window(40) & masks.key_padding(torch.tensor([150]), side="left"),
        None,
        0.0,
    ),
    "documents_prefix": (_documents(60) & masks.prefix_lm(20), None, 0.0),
    "dense_dead_keys_alibi_softcap": (
        masks.dense((torch.arange(150) % 7 != 3).expand(150, 150) & (torch.rand(150, 150) < 0.5)),
        atenea.scores.compose(atenea.scores.alibi(2), atenea.scores.softcap(5.0)),
        0.0,
    ),
    "relative_dropout": (None, atenea.scores.relative_bias(2), 0.2),
}


@pytest.mark.parametrize("case", SWITCH_CASES)
def test_the_configs_see_the_switches_the_kernels_run(case, monkeypatch):
    """The block sizes are chosen from ``plan.switches`` (``configs.configs_for``) and the
    sm_90 check compiles the kernels by constexpr names: both must name exactly the code paths
    the launch turns on, or a call would run a configuration no check compiled."""
    from atenea.attention.backends import triton as backend
    from atenea.attention.backends.triton import check_sm90, launch

    chosen, launched = [], []
    real_configs, real_common = backend.configs_for, launch._common_args
    monkeypatch.setattr(backend, "configs_for", lambda *a: chosen.append(a[3]) or real_configs(*a))
    monkeypatch.setattr(
        launch, "_common_args", lambda *a: launched.append(real_common(*a)[1]) or real_common(*a)
    )
    mask, mod, dropout = SWITCH_CASES[case]
    q, k, v = (t.float().to(DEVICE) for t in make_qkv(1, 2, 2, 150, 150, 16))
    atenea.attention(q, k, v, mask=mask, score_mod=mod, dropout_p=dropout, backend="triton")
    names = set().union(*check_sm90.VARIANTS.values())  # every switch the check varies
    assert chosen and chosen[0] == {n for n in names if launched[0][n]}, (chosen, launched)
