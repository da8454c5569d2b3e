"""``attention.transfer.to_device``: host-to-GPU copies the host does not wait for."""

import pytest
import torch

from atenea.attention.transfer import to_device


def test_on_the_cpu_it_is_tensor_to():
    ids = torch.tensor([[3, 1, 2]])
    assert to_device(ids, "cpu") is ids  # already there: no copy
    moved = to_device(ids, torch.device("cpu"), torch.int32)
    assert moved.dtype == torch.int32 and moved.tolist() == [[3, 1, 2]]
    assert to_device(ids, "meta").device.type == "meta"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_host_does_not_wait():
    """PyTorch's check of host-device synchronisations flags a plain ``.to("cuda")`` of a host
    tensor (the premise) and not ``to_device``'s copies, which arrive intact: a plain tensor in
    another dtype, an expanded one (stride 0: the tile tables of key padding), a strided slice
    and one already pinned, changed right after the call."""
    host = torch.arange(1000, dtype=torch.int64).view(10, 100)
    expanded = torch.arange(6, dtype=torch.int8).view(1, 1, 6).expand(3, 4, 6)
    pinned = torch.arange(50, dtype=torch.float32).pin_memory()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError):
            host.to("cuda")
        moved = to_device(host, "cuda", torch.int32)
        twice = to_device(moved, "cuda")  # already there: no copy, no wait
        copies = [to_device(t, "cuda") for t in (expanded, host[:, ::3], pinned)]
        pinned.zero_()  # the copy read its own duplicate
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert twice is moved and moved.dtype == torch.int32
    assert torch.equal(moved.cpu(), host.int())
    want = [expanded, host[:, ::3], torch.arange(50, dtype=torch.float32)]
    assert all(torch.equal(got.cpu(), w) for got, w in zip(copies, want, strict=True))
