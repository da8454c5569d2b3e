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
    real_configs, real_shared = backend.configs_for, launch.shared_args
    monkeypatch.setattr(backend, "configs_for", lambda *a: chosen.append(a[3]) or real_configs(*a))
    monkeypatch.setattr(
        launch, "shared_args", lambda *a: launched.append(real_shared(*a)[1]) or real_shared(*a)
    )
    mask, mod, dropout = SWITCH_CASES[case]
    q, k, v = (t.float().to(DEVICE) for t in make_qkv(1, 2, 2, 150, 150, 16))
    atenea.attention(q, k, v, mask=mask, score_mod=mod, dropout_p=dropout, backend="triton")
    names = set().union(*check_sm90.VARIANTS.values())  # every switch the check varies
    assert chosen and chosen[0] == {n for n in names if launched[0][n]}, (chosen, launched)


# -- the launch plan: remembered for calls without a score modifier ------------------------------


def _recording_plans(monkeypatch) -> list:
    """The ``launch.Plan`` of every Triton call from now on, in order."""
    from atenea.attention.backends.triton import launch

    plans, real = [], launch.TritonAttention.apply
    monkeypatch.setattr(
        launch.TritonAttention, "apply", lambda *a: plans.append(a[-1].plan) or real(*a)
    )
    return plans


def test_calls_alike_share_one_launch_plan_and_others_do_not(monkeypatch):
    """A call plans once: the same rule (rebuilt at every call, as a training step may), sizes
    and dtypes take the first call's plan, its launch arguments and expanded lists included.
    Another batch or head count, head size, dtype, scale or document ids plans anew. Every
    result against the float64 reference."""
    plans = _recording_plans(monkeypatch)
    calls = [
        dict(shape=SHAPE, mask=masks.sliding_window(40)),
        dict(shape=SHAPE, mask=masks.sliding_window(40)),  # the same rule, another object
        dict(shape=(2, 2, 2, 150, 150, 16), mask=masks.sliding_window(40)),  # batch
        dict(shape=(1, 4, 2, 150, 150, 16), mask=masks.sliding_window(40)),  # query heads
        dict(shape=(1, 2, 2, 150, 150, 32), mask=masks.sliding_window(40)),  # head size
        dict(shape=SHAPE, mask=masks.sliding_window(40), dtype=torch.float16),
        dict(shape=SHAPE, mask=masks.sliding_window(41)),  # another rule
        dict(shape=SHAPE, mask=_documents(60)),
        dict(shape=SHAPE, mask=_documents(90)),  # other ids: other lists, other plan
    ]
    for call in calls:
        dtype = call.get("dtype", torch.float32)
        assert_close(*run_both(call["shape"], call["mask"], dtype=dtype), dtype)
    assert plans[1] is plans[0]
    assert len({id(p) for p in plans}) == len(plans) - 1
    assert plans[0].walk is plans[1].walk  # the expanded lists, made once
    assert_close(*run_both(SHAPE, masks.sliding_window(40)))  # and back to the first
    assert plans[-1] is plans[0]


def test_the_scale_is_part_of_the_plan(monkeypatch):
    """The scale is a launch argument: another scale, another plan (and the right result)."""
    plans = _recording_plans(monkeypatch)
    q, k, v = (t.float().to(DEVICE) for t in make_qkv(1, 2, 2, 150, 150, 16))
    for scale in (0.25, 0.5, 0.25):
        got = atenea.attention(q, k, v, mask=masks.causal(), scale=scale, backend="triton")
        want = atenea.attention(q.double(), k.double(), v.double(), mask=masks.causal(),
                                scale=scale)  # fmt: skip
        assert (got.double().cpu() - want.cpu()).abs().max() < 1e-5
    assert plans[0] is plans[2] and plans[1] is not plans[0]


def test_dropout_shares_the_plan_and_draws_a_seed_per_call(monkeypatch):
    """With dropout on, calls share the plan (the rate and seed are passed at each launch):
    two calls draw two masks, and each call's rate is its own."""
    plans = _recording_plans(monkeypatch)
    q, k, v = (t.float().to(DEVICE) for t in make_qkv(1, 2, 2, 150, 150, 16))
    first, second = (atenea.attention(q, k, v, dropout_p=0.5, backend="triton") for _ in range(2))
    assert plans[0] is plans[1]
    assert not torch.equal(first, second)
    none_dropped = atenea.attention(q, k, v, dropout_p=1e-9, backend="triton")
    assert plans[2] is plans[0]
    want = atenea.attention(q.double(), k.double(), v.double())
    assert (none_dropped.double().cpu() - want.cpu()).abs().max() < 1e-5


def test_a_score_modifier_is_planned_at_every_call_so_its_training_shows(monkeypatch):
    """T5's relative bias trains: after a change to its table the next call reads the new
    table (a remembered plan would hold the old one). Against the float64 reference."""
    plans = _recording_plans(monkeypatch)
    bias = atenea.scores.relative_bias(2)
    for step in range(2):
        if step:
            with torch.no_grad():
                bias.table.weight.add_(torch.randn_like(bias.table.weight))
        assert_close(*run_both(SHAPE, masks.causal(), bias))
    assert plans[0] is not plans[1]


def test_softcap_calls_share_a_plan_per_cap(monkeypatch):
    """Softcap holds no tensor, only its cap: calls with the same cap share a plan, another
    cap plans anew (the cap is a launch argument). Against the float64 reference."""
    plans = _recording_plans(monkeypatch)
    for cap in (5.0, 5.0, 2.0):
        assert_close(*run_both(SHAPE, masks.causal(), atenea.scores.softcap(cap)))
    assert plans[1] is plans[0] and plans[2] is not plans[0]


def test_a_plan_goes_with_its_tile_lists(monkeypatch):
    """Plans live on the tile lists they were made for: when the lists leave their cache (a
    mask gone, its entry evicted), the plan and what it holds on the device go with them."""
    import weakref

    from atenea.attention.backends import tile_lists as lists_module

    plans = _recording_plans(monkeypatch)
    mask = _documents(60)
    assert_close(*run_both(SHAPE, mask))
    gone = weakref.ref(plans.pop())
    del mask
    lists_module._CACHE.clear()  # evicted (a cache: later calls build their lists again)
    gc.collect()
    assert gone() is None
