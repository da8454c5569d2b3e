"""Shared test helpers: inputs with a different size on every axis, and error measures."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import torch

import atenea
from atenea.attention.backends.blocks import blocks_attention
from atenea.attention.problem import check_call

BACKENDS = ("reference", "sdpa", "blocks", "auto")


def make_qkv(
    batch=2,
    q_heads=6,
    kv_heads=2,
    q_len=13,
    kv_len=17,
    head_dim=8,
    value_dim=None,
    dtype=torch.float64,
    requires_grad=False,
    seed=0,
    scale=1.0,
):
    """Random q, k, v. Defaults give every axis a different size, so a transposition fails."""
    generator = torch.Generator().manual_seed(seed)
    value_dim = head_dim if value_dim is None else value_dim

    def rand(*shape):
        t = (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale).to(dtype)
        return t.requires_grad_(requires_grad)

    return (
        rand(batch, q_heads, q_len, head_dim),
        rand(batch, kv_heads, kv_len, head_dim),
        rand(batch, kv_heads, kv_len, value_dim),
    )


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (0 when both are all zero)."""
    actual, expected = actual.double(), expected.double()
    scale = expected.abs().max().item() if expected.numel() else 0.0
    diff = (actual - expected).abs().max().item() if expected.numel() else 0.0
    return diff / scale if scale > 0 else diff


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    if not expected.numel():
        return 0.0
    return (actual.double() - expected.double()).abs().max().item()


def run_blocks(q, k, v, *, mask=None, score_mod=None, scale=None, dropout_p=0.0, tiles=(128, 128)):
    """The blocks backend with chosen tile sizes (small tiles exercise many-tile plans on
    small inputs)."""
    problem = check_call(q, k, v, mask, score_mod, scale, dropout_p, "blocks")
    return blocks_attention(q, k, v, problem, q_tile=tiles[0], k_tile=tiles[1])


def reference(q, k, v, **kwargs):
    return atenea.attention(q, k, v, backend="reference", **kwargs)


def assert_same_weights(a, b, **close):
    """Two models hold the same tensors under the same names: bit for bit, or within
    ``close`` (``rtol=``, ``atol=``) when given. A missing or extra tensor fails too."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], msg=name, **(close or dict(rtol=0, atol=0)))


# -- two-rank runs and the texts they train on ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the a cat dog sat ran on under mat table while because red blue".split()


def random_texts(count: int, seed: int, words: int = 30) -> list[dict]:
    """``count`` documents of ``words`` words drawn from ``WORDS`` (reproducible by seed)."""
    rng = random.Random(seed)
    return [{"text": " ".join(rng.choice(WORDS) for _ in range(words))} for _ in range(count)]


def losses(folder) -> list[float]:
    """The training losses a run logged, in order."""
    from atenea.training.metrics_log import read_metrics

    return [r["loss"] for r in read_metrics(folder) if "loss" in r]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node=2 ARGS`` from the repository root,
    one thread a rank, ``src`` on the path; asserts it succeeded (its stderr otherwise)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               f"--master_port={free_port()}", *map(str, args)]  # fmt: skip
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    done = subprocess.run(command, env=environment, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done
