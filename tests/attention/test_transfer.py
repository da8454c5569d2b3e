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
    tensor (the premise) and not ``to_device``'s copy, which arrives intact."""
    host = torch.arange(1000, dtype=torch.int64).view(10, 100)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError):
            host.to("cuda")
        moved = to_device(host, "cuda", torch.int32)
        twice = to_device(moved, "cuda")  # already there: no copy, no wait
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert twice is moved and moved.dtype == torch.int32
    assert torch.equal(moved.cpu(), host.int())
