"""Masks: each rule against a plain-Python formula, tile kinds against the materialized mask,
the algebra, bottom-right alignment, and the errors."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from atenea import masks
from atenea.attention.masks import EMPTY, FULL, PARTIAL

# (name, mask factory taking the batch size, plain-Python rule(b, q_abs, k) -> bool)
DOC_IDS = [
    [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4],
    [0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2],
]
LENGTHS = [17, 5]


def rules(kv_len):
    return [
        ("causal", lambda: masks.causal(), lambda b, q, k: k <= q),
        ("window3", lambda: masks.sliding_window(3), lambda b, q, k: q - 3 < k <= q),
        ("window1", lambda: masks.sliding_window(1), lambda b, q, k: k == q),
        ("padding_right", lambda: masks.key_padding(LENGTHS), lambda b, q, k: k < LENGTHS[b]),
        (
            "padding_left",
            lambda: masks.key_padding(LENGTHS, side="left"),
            lambda b, q, k: k >= kv_len - LENGTHS[b],
        ),
        ("padding_int", lambda: masks.key_padding(torch.tensor([9, 9])), lambda b, q, k: k < 9),
        ("prefix4", lambda: masks.prefix_lm(4), lambda b, q, k: k < 4 or k <= q),
        (
            "prefix_per_row",
            lambda: masks.prefix_lm([2, 6]),
            lambda b, q, k: k < [2, 6][b] or k <= q,
        ),
        (
            "document",
            lambda: masks.document(torch.tensor(DOC_IDS)),
            lambda b, q, k: DOC_IDS[b][q] == DOC_IDS[b][k],
        ),
        (
            "document_causal",
            lambda: masks.document(torch.tensor(DOC_IDS)) & masks.causal(),
            lambda b, q, k: DOC_IDS[b][q] == DOC_IDS[b][k] and k <= q,
        ),
        (
            "window_or_prefix",
            lambda: masks.sliding_window(2) | masks.prefix_lm(3),
            lambda b, q, k: (q - 2 < k <= q) or k < 3 or k <= q,
        ),
        ("not_causal", lambda: ~masks.causal(), lambda b, q, k: not k <= q),
        (
            "padding_and_not_window",
            lambda: masks.key_padding(LENGTHS) & ~masks.sliding_window(2),
            lambda b, q, k: k < LENGTHS[b] and not (q - 2 < k <= q),
        ),
    ]


def expected_mask(rule, batch, q_len, kv_len):
    offset = kv_len - q_len
    out = torch.zeros(batch, 1, q_len, kv_len, dtype=torch.bool)
    for b, i, j in itertools.product(range(batch), range(q_len), range(kv_len)):
        out[b, 0, i, j] = rule(b, i + offset, j)
    return out


@pytest.mark.parametrize("q_len", [17, 6, 1])
@pytest.mark.parametrize("index", range(len(rules(17))))
def test_materialize_matches_the_rule(index, q_len):
    kv_len = 17
    name, factory, rule = rules(kv_len)[index]
    mask = factory()
    got = mask.materialize(q_len, kv_len).expand(2, 1, q_len, kv_len)
    assert torch.equal(got, expected_mask(rule, 2, q_len, kv_len)), name


def check_tile_kinds(mask, batch, q_len, kv_len, q_tile, k_tile, exact=True):
    """Sound: EMPTY tiles hold no True, FULL tiles no False. Exact: PARTIAL holds both."""
    dense = mask.materialize(q_len, kv_len).expand(batch, -1, -1, -1)
    kinds = mask.tile_kinds(q_len, kv_len, q_tile, k_tile)
    n_q, n_k = -(-q_len // q_tile), -(-kv_len // k_tile)
    assert kinds.shape[-2:] == (n_q, n_k)
    kinds = kinds.expand(batch, dense.shape[1], n_q, n_k)
    for b, h, i, j in itertools.product(
        range(batch), range(dense.shape[1]), range(n_q), range(n_k)
    ):
        tile = dense[b, h, i * q_tile : (i + 1) * q_tile, j * k_tile : (j + 1) * k_tile]
        kind = int(kinds[b, h, i, j])
        if kind == EMPTY:
            assert not tile.any(), (b, h, i, j)
        elif kind == FULL:
            assert tile.all(), (b, h, i, j)
        else:
            assert kind == PARTIAL
            if exact:
                assert tile.any() and not tile.all(), (b, h, i, j, tile)


@pytest.mark.parametrize("tiles", [(4, 4), (3, 5), (8, 2), (1, 1), (32, 32)])
@pytest.mark.parametrize("q_len", [17, 6])
@pytest.mark.parametrize("index", range(len(rules(17))))
def test_tile_kinds_are_sound_and_exact(index, q_len, tiles):
    name, factory, _ = rules(17)[index]
    # Primitives are classified exactly; combinations conservatively (PARTIAL may be all-one-way).
    exact = name in {
        "causal",
        "window3",
        "window1",
        "padding_right",
        "padding_left",
        "padding_int",
        "prefix4",
        "prefix_per_row",
        "document",
    }
    check_tile_kinds(factory(), 2, q_len, 17, *tiles, exact=exact)


def test_dense_masks_any_pattern_and_broadcast_axes():
    generator = torch.Generator().manual_seed(3)
    pattern = torch.rand(2, 3, 11, 13, generator=generator) > 0.5
    mask = masks.dense(pattern)
    assert torch.equal(mask.materialize(11, 13), pattern)
    check_tile_kinds(mask, 2, 11, 13, 4, 5)
    # one row for every query (key padding written densely), one column for every key
    keys_only = masks.dense(torch.tensor([[True] * 7 + [False] * 6]))
    assert keys_only.materialize(11, 13).shape == (1, 1, 11, 13)
    check_tile_kinds(keys_only, 1, 11, 13, 4, 4)
    queries_only = masks.dense(torch.arange(11)[:, None] < 4)
    check_tile_kinds(queries_only, 1, 11, 13, 3, 5)


def test_polarity_true_means_may_attend():
    assert torch.equal(
        masks.causal().materialize(3, 3)[0, 0],
        torch.tensor([[True, False, False], [True, True, False], [True, True, True]]),
    )
    assert torch.equal(
        masks.key_padding([2]).materialize(1, 3)[0, 0], torch.tensor([[True, True, False]])
    )
    for name, factory, _ in rules(17):
        doc = type(factory()).__doc__ or ""
        assert "True" in doc and "may attend" in doc, f"{name}: docstring must state the polarity"


def test_bottom_right_alignment():
    # one query with a cache of 5 keys: it is the newest position and sees all of them
    assert masks.causal().materialize(1, 5).all()
    # more queries than keys: the first queries sit before position 0 and see nothing
    m = masks.causal().materialize(5, 3)[0, 0]
    assert not m[:2].any() and torch.equal(m[2:], torch.tril(torch.ones(3, 3, dtype=torch.bool)))
    assert torch.equal(
        masks.sliding_window(2).materialize(2, 6)[0, 0],
        torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.bool),
    )


def test_algebra_matches_booleans():
    a, b = masks.sliding_window(4), masks.key_padding([9, 3])
    ma, mb = a.materialize(10, 12), b.materialize(10, 12)
    assert torch.equal((a & b).materialize(10, 12), ma & mb)
    assert torch.equal((a | b).materialize(10, 12), ma | mb)
    assert torch.equal((~a).materialize(10, 12), ~ma)
    assert torch.equal((~(a & ~b)).materialize(10, 12), ~(ma & ~mb))
    # a boolean tensor combines directly, on either side
    t = torch.rand(10, 12) > 0.3
    assert torch.equal((a & t).materialize(10, 12), ma & t)
    assert torch.equal((t | a).materialize(10, 12), t | ma)
    assert (a & b).batch_heads() == (2, 1)


# ----------------------------------------------------------------------------------- errors


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="sliding_window: size"):
        masks.sliding_window(0)
    with pytest.raises(TypeError, match="key_padding: lengths must be integers"):
        masks.key_padding(torch.tensor([1.5]))
    with pytest.raises(ValueError, match=r"key_padding: lengths must be in \[0, Lk=8\].*9"):
        masks.key_padding([3, 9]).validate(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"key_padding: lengths must be in \[0, Lk=8\].*-1"):
        masks.key_padding([-1, 3]).validate(2, 1, 8, 8)
    with pytest.raises(ValueError, match="side"):
        masks.key_padding([3], side="top")
    with pytest.raises(ValueError, match="batch of 3 but the attention batch is 2"):
        masks.key_padding([1, 2, 3]).validate(2, 4, 8, 8)
    with pytest.raises(ValueError, match=r"document: ids .* expected length Lk=8, got 7"):
        masks.document(torch.zeros(7, dtype=torch.long)).validate(1, 1, 8, 8)
    with pytest.raises(TypeError, match="document: ids must be integers"):
        masks.document(torch.zeros(8))
    with pytest.raises(ValueError, match="cannot broadcast"):
        masks.dense(torch.ones(5, 6, dtype=torch.bool)).validate(1, 1, 5, 7)
    with pytest.raises(TypeError, match="boolean tensor"):
        masks.dense(torch.ones(5, 6))
    with pytest.raises(ValueError, match="carries 3 heads but the queries have 4"):
        masks.dense(torch.ones(1, 3, 5, 6, dtype=torch.bool)).validate(1, 4, 5, 6)
    with pytest.raises(ValueError, match=r"prefix_lm: prefix_len must be in \[0, inf\)"):
        masks.prefix_lm(-2).validate(1, 1, 8, 8)
    masks.prefix_lm(20).validate(1, 1, 8, 8)  # a prefix longer than the keys seen so far is fine


# ------------------------------------------------------------------------------ hypothesis

primitive = st.one_of(
    st.just(masks.causal()),
    st.integers(1, 12).map(masks.sliding_window),
    st.lists(st.integers(0, 24), min_size=2, max_size=2).map(lambda v: ("pad", v)),
    st.integers(0, 24).map(lambda p: ("prefix", p)),
    st.lists(st.integers(0, 3), min_size=24, max_size=24).map(lambda v: ("doc", sorted(v))),
)


def _build(spec, kv_len):
    if isinstance(spec, masks.Mask):
        return spec
    kind, value = spec
    if kind == "pad":
        return masks.key_padding([min(x, kv_len) for x in value])
    if kind == "prefix":
        return masks.prefix_lm(min(value, kv_len))
    return masks.document(torch.tensor(value[:kv_len]))


@settings(max_examples=60, deadline=None)
@given(
    specs=st.lists(primitive, min_size=1, max_size=3),
    ops=st.lists(st.sampled_from(["&", "|", "&~"]), min_size=2, max_size=2),
    q_len=st.integers(1, 24),
    kv_len=st.integers(1, 24),
    q_tile=st.integers(1, 9),
    k_tile=st.integers(1, 9),
)
def test_random_combinations_tile_soundly(specs, ops, q_len, kv_len, q_tile, k_tile):
    q_len = min(q_len, kv_len)  # document masks need Lq <= Lk
    mask = _build(specs[0], kv_len)
    for op, spec in zip(ops, specs[1:]):
        other = _build(spec, kv_len)
        mask = mask & other if op == "&" else (mask | other if op == "|" else mask & ~other)
    mask.validate(2, 1, q_len, kv_len)
    check_tile_kinds(mask, 2, q_len, kv_len, q_tile, k_tile, exact=False)
