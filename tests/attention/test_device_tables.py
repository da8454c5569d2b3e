"""Tile tables of masks whose tensors live on a device (a batch's document ids, lengths): built
there, with nothing read back to the host. The ``meta`` device holds no values, so any read
raises on it: a table that builds there read nothing. On a GPU, PyTorch's sync check says the
same of a whole Triton and FlexAttention call, and the tables equal the CPU's."""

import os

import pytest
import torch

import atenea
from atenea import masks
from atenea.attention.backends.tile_lists import tile_lists
from atenea.attention.backends.triton.plan import PAD_LEFT, mask_plan
from atenea.attention.transfer import OpRecorder

META = "meta"


def _device_masks(device, length=300):
    ids = torch.zeros(2, length, dtype=torch.long, device=device)
    lengths = torch.tensor([3, length], device=device)
    return {
        "documents & causal": masks.document(ids) & masks.causal(),
        "causal & documents": masks.causal() & masks.document(ids),
        "padding & window": masks.key_padding(lengths) & masks.sliding_window(64),
        "prefix": masks.prefix_lm(lengths),
        "documents | window": masks.document(ids) | masks.sliding_window(5),
        "~documents": ~masks.document(ids),
        "dense": masks.dense(torch.ones(length, length, dtype=torch.bool, device=device)),
    }


@pytest.mark.parametrize("name", list(_device_masks("cpu")))
def test_a_device_masks_lists_are_built_on_its_device_reading_nothing(name):
    mask = _device_masks(META)[name]
    lists = tile_lists(mask, 300, 300, META, q_tile=128, k_tile=128)
    expected_batch = 1 if name == "dense" else 2
    assert lists.shape == (expected_batch, 1, 3, 3)
    assert {t.device.type for t in (lists.partial_counts, lists.full_indices)} == {META}
    assert lists.transposed().partial_indices.device.type == META
    # the CPU table of a rule of numbers joined the ids' device, whichever side it is on
    assert mask.tile_kinds(300, 300, 128, 128).device.type == META


def test_the_triton_plan_of_a_device_mask_reads_nothing():
    """Equal lengths (training): the kernel's parameters are the device's own tensors."""
    ids = torch.zeros(2, 300, dtype=torch.long, device=META)
    mask = masks.document(ids) & masks.causal()
    plan = mask_plan(mask, tile_lists(mask, 300, 300, META))
    assert plan.causal and plan.document.device.type == META and plan.bitmaps is None
    lengths = torch.tensor([3, 300], device=META)
    mask = masks.key_padding(lengths, side="left") & masks.prefix_lm(lengths)
    plan = mask_plan(mask, tile_lists(mask, 300, 300, META))
    assert plan.padding_side == PAD_LEFT and plan.prefix.device.type == META


def test_building_the_lists_and_what_the_passes_walk_runs_no_op_that_waits():
    """Every ATen op of building the lists, their ragged-edge variants and transposes: none of
    them waits for the device (``kinds[mask] = x``, an ``index_put_`` through ``nonzero``,
    would on a GPU; ``masked_fill_`` does not). Recorded on the CPU, where every op runs."""
    ids = (torch.arange(300) // 70).expand(2, -1)
    with OpRecorder() as recorder:
        lists = tile_lists(masks.document(ids) & masks.causal(), 300, 300, "cpu", 64, 64)
        for walked in (lists, lists.edges_partial(), lists.edges_partial(cols=False)):
            walked.transposed()
    assert "aten.sort.stable" in recorder.names  # (the recorder saw the build)
    assert not recorder.waits(), recorder.waits()


def test_a_device_masks_repr_shows_a_shape_not_values():
    lengths = torch.tensor([3, 300], device=META)
    assert repr(masks.key_padding(lengths)) == "key_padding(lengths on meta, shape (2,))"
    assert repr(masks.prefix_lm(lengths)) == "prefix_lm(prefix_len on meta, shape (2,))"
    assert repr(masks.key_padding([3, 4], side="left")) == "key_padding([3, 4], side='left')"


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
    reason="needs a CUDA GPU with Triton's interpreter off",
)
@pytest.mark.parametrize("backend", ["triton", "flex"])
def test_on_a_gpu_a_new_batchs_documents_cost_no_wait(backend):
    """A training step's mask is new every step (the batch's ids). After a first call (kernels
    compiled), a call with new ids on the GPU, forward and backward, passes PyTorch's sync
    check; its tables equal those built from the same ids on the CPU. A length that is no
    multiple of the tile: Triton's lists then also demote their ragged edge on the GPU."""
    length = 500

    def ids_of(seed):
        cuts = torch.randint(1, length, (2, 3), generator=torch.Generator().manual_seed(seed))
        marks = torch.zeros(2, length, dtype=torch.long).scatter_(1, cuts, 1)
        return marks.cumsum(1)  # three cuts: up to four documents a row, sorted

    q, k, v = (torch.randn(2, 4, length, 64, device="cuda", dtype=torch.bfloat16,
                           requires_grad=True) for _ in range(3))  # fmt: skip
    first = masks.document(ids_of(0).cuda()) & masks.causal()
    atenea.attention(q, k, v, mask=first, backend=backend).sum().backward()
    host_ids = ids_of(1)
    device_ids = host_ids.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        mask = masks.document(device_ids) & masks.causal()
        out = atenea.attention(q, k, v, mask=mask, backend=backend)
        out.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    on_gpu = tile_lists(mask, length, length, "cuda")
    on_cpu = tile_lists(masks.document(host_ids) & masks.causal(), length, length, "cpu")
    assert torch.equal(on_gpu.kinds().cpu(), on_cpu.kinds())
    want = atenea.attention(q, k, v, mask=masks.document(host_ids) & masks.causal(),
                            backend="reference")  # fmt: skip
    assert (out.float() - want.float()).abs().max() < 2e-2
