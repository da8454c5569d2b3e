"""The products of a decode step, kernel against kernel: how fast each reads the weights.

    python benchmarks/kernels.py             # 1 and 2 threads, 1 to 8 rows (about a minute)
    python benchmarks/kernels.py --quick     # a smoke run: 2 small layers, one thread, 1 and 4 rows

The weights are GPT-2 124M's 48 matrices and its 50257 x 768 output matrix, random, float32
(494 MB, so every pass reads them from memory, as a decode step does). One pass multiplies all
of them by ``rows`` input rows. Contenders, taking turns within every repetition:

- ``F.linear``: PyTorch's route (MKL for float32 on the CPU);
- ``oneDNN``: ``torch.ops.mkldnn._linear_pointwise``, also inside PyTorch;
- ``atenea``: what ``atenea.nn.linear`` calls -- ``matvec`` for one row, ``matmul_rows`` for 2-8;
- ``sum``: ``tensor.sum()`` over as many bytes, the speed of reading memory on this machine.

The figure is GB/s of weights read (bytes / median time); ratio = atenea's GB/s / the peer's.
bfloat16 rows (one input row): the same with bfloat16 weights (half the bytes). Prints a
markdown table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import benchlib
from atenea import _native

DIM, VOCAB, LAYERS = 768, 50257, 12
CONTENDERS = ("F.linear", "oneDNN", "atenea", "sum")


def gpt2_weights(dtype, layers: int = LAYERS, vocab: int = VOCAB) -> list[torch.Tensor]:
    shapes = [(3 * DIM, DIM), (DIM, DIM), (4 * DIM, DIM), (DIM, 4 * DIM)] * layers + [(vocab, DIM)]
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(*shape, generator=generator).to(dtype) for shape in shapes]


def contenders(weights, rows: int) -> dict:
    dtype = weights[0].dtype
    inputs = {n: torch.randn(rows, n).to(dtype) for n in (DIM, 4 * DIM)}
    ours = _native.matvec if rows == 1 else _native.matmul_rows
    total = sum(w.numel() for w in weights) * weights[0].element_size()
    block = torch.ones(total // 4)  # float32: as many bytes as the weights

    def each(product):
        return lambda: [product(inputs[w.shape[1]], w) for w in weights]

    runs = {
        "F.linear": each(F.linear),
        "oneDNN": each(_onednn_linear),
        "atenea": each(lambda x, w: ours(x, w)),
        "sum": block.sum,
    }
    if not _onednn_runs(dtype):
        del runs["oneDNN"]
    return runs


def _onednn_linear(x, w):
    return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")


def _onednn_runs(dtype) -> bool:
    """Whether oneDNN has a linear primitive for ``dtype`` on this CPU (bfloat16 needs
    AVX-512: on an AVX2-only CPU it cannot create one, and the row says n/a)."""
    try:
        _onednn_linear(torch.ones(1, 16, dtype=dtype), torch.ones(16, 16, dtype=dtype))
    except RuntimeError:
        return False
    return True


def run(threads: int, row_counts, reps: int, **sizes) -> list[dict]:
    torch.set_num_threads(threads)
    results = []
    cases = [(torch.float32, rows) for rows in row_counts] + [(torch.bfloat16, 1)]
    for dtype, rows in cases:
        weights = gpt2_weights(dtype, **sizes)
        total = sum(w.numel() for w in weights) * weights[0].element_size()
        with torch.no_grad():
            times = benchlib.timed_together(contenders(weights, rows), reps)
        rates = {name: total / times[name] / 1e9 if name in times else None
                 for name in CONTENDERS}  # fmt: skip
        results.append({"threads": threads, "dtype": str(dtype).split(".")[-1], "rows": rows,
                        "gb_per_s": rates, "megabytes": total / 1e6})  # fmt: skip
        print(f"  threads={threads} {dtype} rows={rows}: "
              + ", ".join(f"{k} {_rate(v)}" for k, v in rates.items()), flush=True)  # fmt: skip
    return results


def report(results, info) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, Python "
        f"{info['python']}; load average at start {info['load_average'][0]:.2f}.",
        f"GB/s of weights read (GPT-2 124M's matrices, {results[0]['megabytes']:.0f} MB in "
        f"float32); ratio = atenea / peer."
        if results
        else "",
        "",
        "| threads | dtype | rows | F.linear | oneDNN | atenea | sum | atenea / F.linear "
        "| atenea / oneDNN | atenea / sum |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        g = r["gb_per_s"]
        onednn = f"{g['atenea'] / g['oneDNN']:.2f}x" if g["oneDNN"] else "n/a"
        lines.append(
            f"| {r['threads']} | {r['dtype']} | {r['rows']} | {g['F.linear']:.1f} "
            f"| {_rate(g['oneDNN'])} | {g['atenea']:.1f} | {g['sum']:.1f} "
            f"| {g['atenea'] / g['F.linear']:.2f}x | {onednn} | {g['atenea'] / g['sum']:.0%} |"
        )
    return "\n".join(lines)


def _rate(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8],
        help="input rows, 1 to 8 (atenea's kernels; beyond, linear is oneDNN's)",
    )
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default="bench-results/kernels.json")
    args = parser.parse_args(argv)
    if not all(1 <= rows <= 8 for rows in args.rows):  # matmul_rows would fail mid-run
        parser.error(f"--rows: give counts from 1 to 8, got {' '.join(map(str, args.rows))}")
    sizes = {}
    if args.quick:
        args.threads, args.rows, args.reps = [1], [1, 4], 2
        sizes = {"layers": 2, "vocab": 5000}
    if _native.unavailable() is not None:
        print(f"atenea's kernels are not built: {_native.unavailable()}")
        return 1
    info = benchlib.machine()
    results = []
    for threads in args.threads:
        results += run(threads, args.rows, args.reps, **sizes)
    table = report(results, info)
    print()
    print(table)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    print(f"\nJSON written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
