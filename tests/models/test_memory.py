"""Segment memory (Transformer-XL) in the decoder: equal to one causal forward when it holds
the whole past, blind across documents, no gradient into the past, compressed shapes, and no
value read back from the device (the bookkeeping is on the host)."""

from __future__ import annotations

import pytest
import torch

from atenea.models import DecoderConfig, DecoderModel
from atenea.nn import memory as memory_module
from atenea.nn.memory import SegmentMemory, pool, pool_documents


def tiny(memory_len: int, **overrides) -> DecoderModel:
    overrides = {"num_layers": 3, **overrides}
    config = DecoderConfig.from_name(
        "llama-tiny", vocab_size=53, dim=24, num_heads=6, num_kv_heads=3, ffn_hidden=40,
        memory_len=memory_len, **overrides,
    )  # fmt: skip
    torch.manual_seed(0)
    model = DecoderModel(config).double().eval()
    with torch.no_grad():  # weights large enough that attention is far from uniform
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 1.5 / p.shape[-1] ** 0.5)
    return model


def by_segments(model, ids, segment, document_ids=None):
    memory = model.new_memory(ids.shape[0])
    logits = []
    for start in range(0, ids.shape[1], segment):
        docs = None if document_ids is None else document_ids[:, start : start + segment]
        out = model(ids[:, start : start + segment], memory=memory, document_ids=docs)
        logits.append(out.logits)
    return torch.cat(logits, dim=1), memory


RELATIVE = ["rotary", "alibi"]  # the positions that carry distance through the memory


@pytest.mark.parametrize("positions", RELATIVE)
def test_memory_holding_the_whole_past_equals_one_causal_forward(positions):
    """RoPE: keys stored rotated at their own positions; ALiBi: the bias -slope * (i - j) of a
    query at absolute position i on a memory key at j (6 heads: the slopes of a head count that
    is not a power of two)."""
    model = tiny(memory_len=64, positions=positions)
    ids = torch.randint(0, 53, (2, 37), generator=torch.Generator().manual_seed(1))
    whole = model(ids).logits
    segmented, memory = by_segments(model, ids, segment=5)  # 8 segments, the last of 2
    torch.testing.assert_close(segmented, whole, rtol=1e-10, atol=1e-10)
    assert memory.layers[0].keys.shape == (2, 3, 37, 4)


@pytest.mark.parametrize("positions", RELATIVE)
def test_short_memory_differs_and_matches_a_window_of_the_same_past(positions):
    """One layer, M = 4, segments of 4: the last segment's first token sees exactly the 4
    tokens before it, so its logits equal a causal forward over those 5 tokens at their
    positions. (Deeper, the memory's keys carry what their own segment saw: Transformer-XL's
    context grows with depth.)"""
    model = tiny(memory_len=4, num_layers=1, positions=positions)
    ids = torch.randint(0, 53, (1, 12), generator=torch.Generator().manual_seed(2))
    segmented, _ = by_segments(model, ids, segment=4)
    window = model(ids[:, 4:9], position_ids=torch.arange(4, 9)[None]).logits
    torch.testing.assert_close(segmented[:, 8], window[:, 4], rtol=1e-10, atol=1e-10)
    assert not torch.allclose(segmented, model(ids).logits)


@pytest.mark.parametrize("positions", RELATIVE)
def test_document_boundary_resets_the_memory(positions):
    """A document starting mid-segment sees nothing of the one before: its logits equal the
    document run alone from position 0."""
    model = tiny(memory_len=16, positions=positions)
    generator = torch.Generator().manual_seed(3)
    first, second = (
        torch.randint(0, 53, (1, 7), generator=generator),
        torch.randint(0, 53, (1, 9), generator=generator),
    )
    ids = torch.cat([first, second], dim=1)
    documents = torch.tensor([[0] * 7 + [1] * 9])
    segmented, memory = by_segments(model, ids, segment=5, document_ids=documents)
    torch.testing.assert_close(segmented[:, 7:], model(second).logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(segmented[:, :7], model(first).logits, rtol=1e-10, atol=1e-10)
    assert memory.next_position.tolist() == [9]


def test_no_gradient_flows_into_the_memory():
    model = tiny(memory_len=8).train()
    ids = torch.randint(0, 53, (2, 12), generator=torch.Generator().manual_seed(4))
    memory = model.new_memory(2)
    first = model(ids[:, :6], memory=memory, labels=ids[:, :6]).loss
    assert all(not layer.keys.requires_grad for layer in memory.layers)
    first.backward()  # frees the first segment's graph
    model.zero_grad()
    second = model(ids[:, 6:], memory=memory, labels=ids[:, 6:]).loss
    second.backward()  # would fail ("backward through the graph a second time") if linked
    grads = [p.grad.clone() for p in model.parameters()]

    # The same gradient with the memory's tensors handed in as constants.
    model.zero_grad()
    again = model.new_memory(2)
    with torch.no_grad():
        model(ids[:, :6], memory=again)
    model(ids[:, 6:], memory=again, labels=ids[:, 6:]).loss.backward()
    for grad, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(grad, p.grad)


def test_compressed_memory_shapes_and_pooling():
    """M = 6, C = 3, rate 2, segments of 4: the slots pushed out of the memory (2, then 4 a
    segment) become 1, then 2 pooled slots, the oldest dropped past 3."""
    model = tiny(memory_len=6, compressed_len=3, compression_rate=2)
    ids = torch.randint(0, 53, (2, 20), generator=torch.Generator().manual_seed(5))
    memory = model.new_memory(2)
    layer = memory.layers[1]
    sizes = []
    for start in range(0, 20, 4):
        model(ids[:, start : start + 4], memory=memory)
        if start == 0:
            first_keys = layer.keys.clone()  # positions 0..3
        compressed = 0 if layer.compressed_keys is None else layer.compressed_keys.shape[2]
        sizes.append((layer.keys.shape[2], compressed, memory.compressed_documents.shape[1]))
        if start == 4:  # positions 0, 1 were pushed out and pooled into one slot
            torch.testing.assert_close(layer.compressed_keys[:, :, 0], first_keys[:, :, :2].mean(2))
    assert sizes == [(4, 0, 0), (6, 1, 1), (6, 3, 3), (6, 3, 3), (6, 3, 3)]
    assert layer.keys.shape == (2, 3, 6, 4) and layer.compressed_values.shape == (2, 3, 3, 4)
    slots = torch.arange(10.0).reshape(1, 1, 5, 2)
    torch.testing.assert_close(pool(slots, 2), torch.tensor([[[[1.0, 2], [5, 6], [8, 9]]]]))
    docs = torch.tensor([[0, 0, 0, 1, 1]])
    assert pool_documents(docs, 2).tolist() == [[0, -1, 1]]


def test_learned_positions_are_refused_with_memory():
    with pytest.raises(ValueError, match="memory_len: segment memory needs relative"):
        DecoderConfig.from_name("gpt2-tiny", memory_len=16)


def test_alibi_positions_make_order_matter():
    """One layer: without positions the last token's output would be a function of the bag of
    tokens before it; ALiBi's distance bias makes the order count."""
    model = tiny(memory_len=0, num_layers=1, positions="alibi")
    ids = torch.tensor([[5, 9, 17, 30, 2]])
    swapped = torch.tensor([[17, 9, 5, 30, 2]])
    assert not torch.allclose(model(ids).logits[:, -1], model(swapped).logits[:, -1])
    assert "slopes" not in "".join(model.state_dict())  # no new weights in the checkpoint
    with pytest.raises(ValueError, match="expected 'learned', 'rotary' or 'alibi'"):
        DecoderModel(DecoderConfig.from_name("llama-tiny", positions="nope"))


def test_memory_refuses_padding_and_wrong_batch():
    model = tiny(memory_len=4)
    memory = model.new_memory(2)
    ids = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="memory: made for 2 rows"):
        model(ids, memory=memory)
    with pytest.raises(ValueError, match="memory: runs whole segments"):
        model(ids.expand(2, 3), attention_mask=torch.ones(2, 3), memory=memory)


def test_memory_checks_the_document_ids():
    """On the CPU path the tests run (the path a GPU runs too: one read a segment), negative or
    misshapen ids are refused, and a refused segment leaves the memory as it was."""
    model = tiny(memory_len=4)
    memory = model.new_memory(2)
    ids = torch.zeros(2, 3, dtype=torch.long)
    model(ids, memory=memory, document_ids=torch.zeros(2, 3, dtype=torch.long))
    before = {name: t.clone() for name, t in memory.state().items()}
    bad = {
        "negative": torch.tensor([[0, 0, 0], [0, -1, -1]]),
        "shape": torch.zeros(2, 4, dtype=torch.long),
    }
    for name, documents in bad.items():
        with pytest.raises(ValueError, match=r"document_ids: expected non-negative ids of shape"
                                             r" \(2, 3\), got \(2, [34]\)"):  # fmt: skip
            model(ids, memory=memory, document_ids=documents)
        assert memory.state().keys() == before.keys(), name
        assert all(torch.equal(memory.state()[k], t) for k, t in before.items()), name


def test_rows_going_on_with_their_document_read_nothing_back():
    """Segments without document ids on a memory holding one document a row never read a
    value from the device (a host-device sync on a GPU): on the meta device, which has no
    values to read, the segments run."""
    model = tiny(memory_len=8, num_layers=2).to("meta")
    memory = model.new_memory(3)
    ids = torch.zeros(3, 5, dtype=torch.long, device="meta")
    for _ in range(3):
        logits = model(ids, memory=memory).logits
    assert logits.shape == (3, 5, 53) and memory.one_document
    assert memory.next_position.device.type == "cpu"  # the bookkeeping lives on the host
    assert memory.layers[0].keys.device.type == "meta"


# Segments of 4 tokens of 2 rows through M = 6, C = 3, rate 2: row 1 mixes documents, ids come
# and go (None: the rows go on), the memory overflows into the compressed slots, and at the end
# every slot of a row is in its document again (the plain causal mask).
SEGMENT_DOCUMENTS = [[[0, 0, 0, 0], [5, 5, 6, 6]], None, [[0, 0, 1, 1], [6, 6, 6, 6]], None,
                     None, None, None]  # fmt: skip


def advance_all(memory: SegmentMemory, device) -> list:
    """Run ``SEGMENT_DOCUMENTS`` through ``memory`` (host ids; tokens and keys/values of zeros on
    ``device``, 2 layers, 3 heads of 5): each segment's ``(positions, mask, keys it attends to,
    one_document)``."""
    ids = torch.zeros(2, 4, dtype=torch.long, device=device)
    keys = torch.zeros(2, 3, 4, 5, device=device)
    returned = []
    for documents in SEGMENT_DOCUMENTS:
        documents = None if documents is None else torch.tensor(documents)
        positions, mask, write = memory.advance(ids, documents)
        for layer in memory.layers:
            layer.update(keys, keys, write)
        returned.append((positions, mask, write.slots.stop, memory.one_document))
    return returned


def test_advance_reads_nothing_from_the_device(monkeypatch):
    """The memory decides on the host: on the meta device (no values: any read raises) the
    segments run, and give what a CPU memory gives: the positions it hands to the device, the
    masks (their host ids materialized on the CPU), the bookkeeping, the shapes of the slots."""
    handed = []

    def record(host, device):  # the positions on the host, as they go to the device
        handed.append(host)
        return to_device(host, device)

    to_device = memory_module.to_device
    monkeypatch.setattr(memory_module, "to_device", record)
    on_meta = SegmentMemory(2, 2, 6, 3, 2, device="meta")
    meta_runs = advance_all(on_meta, "meta")
    meta_handed = list(handed)
    on_cpu = SegmentMemory(2, 2, 6, 3, 2, device="cpu")
    cpu_runs = advance_all(on_cpu, "cpu")
    assert [one for *_, one in cpu_runs] == [False] * 6 + [True]  # both masks are exercised
    for (positions, mask, keys, one), (expected, cpu_mask, cpu_keys, cpu_one), host in zip(
        meta_runs, cpu_runs, meta_handed, strict=True
    ):
        assert positions.device.type == "meta" and positions.shape == (2, 4)
        assert torch.equal(host, expected) and (keys, one) == (cpu_keys, cpu_one)
        assert torch.equal(mask.materialize(4, keys, "cpu"), cpu_mask.materialize(4, keys))
    meta_state, cpu_state = on_meta.state(), on_cpu.state()
    assert meta_state.keys() == cpu_state.keys()
    for name, tensor in cpu_state.items():
        if name.startswith("layer."):
            assert meta_state[name].device.type == "meta", name
            assert meta_state[name].shape == tensor.shape, name
        else:
            assert torch.equal(meta_state[name], tensor), name
    assert cpu_state["compressed_documents"].shape == (2, 3) and keys == 3 + 6 + 4


def test_document_ids_are_checked_on_the_host():
    """A negative id (it would match the empty slots' -1) is refused on a memory of the meta
    device too, with the same one-line error, and the memory stays as it was."""
    memory = SegmentMemory(1, 2, 4, device="meta")
    ids = torch.zeros(2, 3, dtype=torch.long, device="meta")
    memory.advance(ids, torch.zeros(2, 3, dtype=torch.long))
    before = {name: t.clone() for name, t in memory.state().items()}
    expected = r"^document_ids: expected non-negative ids of shape \(2, 3\), got \(2, 3\)$"
    with pytest.raises(ValueError, match=expected):
        memory.advance(ids, torch.tensor([[0, 0, 0], [0, -1, -1]]))
    assert all(torch.equal(memory.state()[name], t) for name, t in before.items())


def test_a_model_on_meta_runs_segments_with_host_document_ids():
    """The whole forward, attention included, takes the memory's host-side document masks on
    the meta device: nothing on the way reads a value back."""
    model = tiny(memory_len=6, compressed_len=3, compression_rate=2, num_layers=2).to("meta")
    memory = model.new_memory(2)
    ids = torch.zeros(2, 4, dtype=torch.long, device="meta")
    for documents in SEGMENT_DOCUMENTS:
        documents = None if documents is None else torch.tensor(documents)
        logits = model(ids, memory=memory, document_ids=documents).logits
    assert logits.shape == (2, 4, 53) and logits.device.type == "meta"
    assert memory.compressed_documents.tolist() == [[1, 1, 1], [6, 6, 6]]


@pytest.mark.gpu
def test_advance_on_cuda_never_waits_for_the_device():
    """With PyTorch's check of host-device synchronizations raising, the segments run on a GPU
    memory (the positions' copy included) and give the CPU's positions."""
    on_cuda = SegmentMemory(2, 2, 6, 3, 2, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        cuda_runs = advance_all(on_cuda, "cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu_runs = advance_all(SegmentMemory(2, 2, 6, 3, 2, device="cpu"), "cpu")
    for (positions, *_), (expected, *_) in zip(cuda_runs, cpu_runs, strict=True):
        assert positions.device.type == "cuda" and torch.equal(positions.cpu(), expected)


@pytest.mark.parametrize("reload", [False, True])
def test_going_on_after_a_boundary_still_masks_the_old_document(reload):
    """A document starts mid-segment; the next segments give no ids (the rows go on): the
    memory still holds the old document's slots, so those segments must keep masking them,
    as explicit ids would (also from a memory taken back with ``load_state``)."""
    model = tiny(memory_len=16)
    ids = torch.randint(0, 53, (1, 15), generator=torch.Generator().manual_seed(6))
    documents = torch.tensor([[0] * 3 + [1] * 12])
    explicit, _ = by_segments(model, ids, segment=5, document_ids=documents)
    memory = model.new_memory(1)
    first = model(ids[:, :5], memory=memory, document_ids=documents[:, :5]).logits
    if reload:
        state = memory.state()
        memory = model.new_memory(1)
        memory.load_state(state)
    rest = [model(ids[:, s : s + 5], memory=memory).logits for s in (5, 10)]
    torch.testing.assert_close(torch.cat([first, *rest], 1), explicit, rtol=1e-10, atol=1e-10)
    assert memory.one_document is False  # the doc-0 slots are still in the memory
