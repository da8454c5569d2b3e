"""Attention speed and memory: atenea vs PyTorch SDPA vs FlexAttention, in one process.

    python benchmarks/attention.py                  # the full table (about 15 minutes on 2 cores)
    python benchmarks/attention.py --lengths 4096 --no-long   # a quick look

B=1, H=8, D=64, float32. Masks: causal; causal sliding window of 256; 8 packed documents,
causal within each. For each length: forward and forward+backward of

- atenea  ``atenea.attention(q, k, v, mask=...)`` (backend "auto"),
- SDPA    ``F.scaled_dot_product_attention``: ``is_causal=True`` for the causal mask, otherwise
          the only way SDPA takes these masks: a dense boolean ``L x L`` mask,
- Flex    ``torch.compile(flex_attention)`` with ``create_block_mask`` (forward only: FlexAttention
          has no CPU backward); its mask-building and compile times are reported apart.

Times are medians of ``--reps`` runs after one warm-up, contenders taking turns in every
repetition (the machine's noise then hits all of them alike). Ratios are "times faster than atenea's
peer" (> 1 means atenea is faster). Also: the first call's time in a fresh process, and the
memory growth (peak RSS) of a 32k-token causal forward with ``return_lse=True``.
Prints a markdown table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

# FlexAttention's compile time as a first call meets it: a fresh inductor cache, not the one
# an earlier run left on disk (which made 4.3 s look like 0.2 s); a set one is kept.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="atenea-inductor-"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import atenea
from atenea import masks
from benchlib import PEAK_RSS_PRELUDE, machine, timed_together

BATCH, HEADS, HEAD_DIM = 1, 8, 64
WINDOW, DOCUMENTS = 256, 8


def atenea_mask(case: str, length: int):
    if case == "causal":
        return masks.causal()
    if case == "window":
        return masks.sliding_window(WINDOW)
    ids = torch.arange(length) * DOCUMENTS // length
    return masks.document(ids) & masks.causal()


def flex_mask_mod(case: str, length: int):
    ids = torch.arange(length) * DOCUMENTS // length

    def causal(b, h, q, k):
        return q >= k

    def window(b, h, q, k):
        return (q >= k) & (q - k < WINDOW)

    def documents(b, h, q, k):
        return (ids[q] == ids[k]) & (q >= k)

    return {"causal": causal, "window": window, "documents": documents}[case]


def inputs(length: int, requires_grad: bool = False):
    generator = torch.Generator().manual_seed(0)
    shape = (BATCH, HEADS, length, HEAD_DIM)
    return [torch.randn(shape, generator=generator).requires_grad_(requires_grad) for _ in range(3)]


def forward_backward(call, length):
    q, k, v = inputs(length, requires_grad=True)
    grad = torch.randn(BATCH, HEADS, length, HEAD_DIM)

    def run():
        out = call(q, k, v)
        out.backward(grad)
        q.grad = k.grad = v.grad = None

    return run


def bench_length(case: str, length: int, reps: int, with_peers: bool, with_flex: bool, results):
    mask = atenea_mask(case, length)
    q, k, v = inputs(length)
    row = {"case": case, "L": length}

    def ours(q, k, v):
        return atenea.attention(q, k, v, mask=mask)

    contenders = {
        "atenea_fwd": lambda: ours(q, k, v),
        "atenea_fwdbwd": forward_backward(ours, length),
    }
    if with_peers:
        if case == "causal":

            def sdpa(q, k, v):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            dense = mask.materialize(length, length)  # (1, 1, L, L) bool: what SDPA needs

            def sdpa(q, k, v):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=dense)

        contenders["sdpa_fwd"] = lambda: sdpa(q, k, v)
        contenders["sdpa_fwdbwd"] = forward_backward(sdpa, length)

    if with_flex:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        start = time.perf_counter()
        block_mask = create_block_mask(
            flex_mask_mod(case, length), None, None, length, length, device="cpu"
        )
        row["flex_mask_s"] = time.perf_counter() - start
        compiled = torch.compile(flex_attention)
        start = time.perf_counter()
        compiled(q, k, v, block_mask=block_mask)
        row["flex_compile_s"] = time.perf_counter() - start
        contenders["flex_fwd"] = lambda: compiled(q, k, v, block_mask=block_mask)

    row.update(timed_together(contenders, reps))
    if with_flex:
        torch._dynamo.reset()
    results.append(row)
    print(
        f"  {case:<10} L={length:<6} "
        + "  ".join(f"{key}={value:.4f}" for key, value in row.items() if isinstance(value, float)),
        flush=True,
    )


FIRST_CALL = textwrap.dedent("""
    import time, torch, atenea
    from atenea import masks
    q, k, v = (torch.randn(1, 8, 4096, 64) for _ in range(3))
    start = time.perf_counter()
    atenea.attention(q, k, v, mask=masks.sliding_window(256))
    print(time.perf_counter() - start)
""")

MEMORY = PEAK_RSS_PRELUDE + textwrap.dedent("""
    import torch, atenea
    from atenea import masks
    q, k, v = (torch.randn(1, 8, {length}, 64) for _ in range(3))
    out = torch.empty_like(q)  # the output itself is not "extra"
    del out
    before = reset_peak()
    out, lse = atenea.attention(q, k, v, mask=masks.causal(), return_lse=True)
    print((status_kib("VmHWM") - before) / 1024 ** 2)
""")


def in_fresh_process(code: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def ratio(numerator, denominator) -> str:
    if numerator is None or denominator is None:
        return "-"
    return f"{numerator / denominator:.2f}x"


def report(results, extra, info) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads), "
        f"torch {info['torch']}, Python {info['python']}, atenea {info['atenea']}.",
        f"B={BATCH}, H={HEADS}, D={HEAD_DIM}, float32; window {WINDOW}; {DOCUMENTS} documents. "
        "Times in seconds (median); 'x' columns = peer time / atenea time (> 1: atenea faster).",
        "",
        "| mask | L | atenea fwd | SDPA fwd | Flex fwd | vs SDPA | vs Flex | atenea fwd+bwd "
        "| SDPA fwd+bwd | vs SDPA | Flex mask + compile |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(value):
        return "-" if value is None else f"{value:.4f}"

    for row in results:
        get = row.get
        flex_setup = (
            f"{get('flex_mask_s'):.2f} + {get('flex_compile_s'):.1f} s"
            if get("flex_compile_s") is not None
            else "-"
        )
        lines.append(
            f"| {row['case']} | {row['L']} | {cell(get('atenea_fwd'))} | {cell(get('sdpa_fwd'))} "
            f"| {cell(get('flex_fwd'))} | {ratio(get('sdpa_fwd'), get('atenea_fwd'))} "
            f"| {ratio(get('flex_fwd'), get('atenea_fwd'))} | {cell(get('atenea_fwdbwd'))} "
            f"| {cell(get('sdpa_fwdbwd'))} | {ratio(get('sdpa_fwdbwd'), get('atenea_fwdbwd'))} "
            f"| {flex_setup} |"
        )
    lines.append("")
    if "first_call_s" in extra:
        lines.append(
            f"First call in a fresh process (window 256, L=4096): {extra['first_call_s']:.3f} s."
        )
    if "memory_gib" in extra:
        length = extra["memory_length"]
        full = HEADS * length * length * 4 / 1024**3
        lines.append(
            f"Causal forward with return_lse=True at L={length}: peak RSS growth "
            f"{extra['memory_gib']:.3f} GiB (the full float32 weight matrix would be "
            f"{full / HEADS:.0f} GiB per head, {full:.0f} GiB for all {HEADS})."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384])
    parser.add_argument(
        "--long",
        type=int,
        default=32768,
        help="length run by atenea alone (peers would take too long)",
    )
    parser.add_argument("--no-long", action="store_true")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=["causal", "window", "documents"])
    parser.add_argument("--no-flex", action="store_true")
    parser.add_argument("--json", default="bench-results/attention.json")
    args = parser.parse_args()

    info = machine()
    print(f"machine: {info}", flush=True)
    # Warm the machine up (thread pool, clock, allocator) so the first row is not penalised.
    warm_q, warm_k, warm_v = inputs(min(args.lengths))
    for _ in range(3):
        F.scaled_dot_product_attention(warm_q, warm_k, warm_v, is_causal=True)
        atenea.attention(warm_q, warm_k, warm_v, mask=masks.sliding_window(WINDOW))
    results: list[dict] = []
    for length in args.lengths:
        for case in args.cases:
            bench_length(case, length, args.reps, True, not args.no_flex, results)
    if not args.no_long:
        for case in args.cases:
            bench_length(case, args.long, 1, False, False, results)

    extra = {"first_call_s": in_fresh_process(FIRST_CALL)}
    if not args.no_long:
        extra["memory_length"] = args.long
        extra["memory_gib"] = in_fresh_process(MEMORY.format(length=args.long))

    table = report(results, extra, info)
    print()
    print(table)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": info, "results": results, **extra}, indent=2))
    print(f"\nJSON written to {path}")


if __name__ == "__main__":
    main()
