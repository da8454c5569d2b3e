"""Generation speed: atenea.generate vs Hugging Face's generate, same weights, one process.

    python benchmarks/generation.py              # the full tables, 1 and 2 threads (~25 min)
    python benchmarks/generation.py --threads 1  # one table
    python benchmarks/generation.py --quick      # a smoke run (1 thread, batch 1, 2 repetitions)

GPT-2 124M (``GPT2Config()``, random weights, seed 0) saved by transformers and read by both.
Prompt of 32 random tokens, 64 new tokens, greedy, no end token (every run makes all 64),
batch 1 and batch 8. Contenders, taking turns within every repetition (a slow moment of the
shared machine then hits all of them alike):

- HF float32 / bfloat16: ``GPT2LMHeadModel.generate`` (its default: sdpa attention, dynamic cache);
- atenea float32 / bfloat16: ``atenea.generate`` (prefill, then the one-token decode step);
- atenea fp32, PyTorch kernels: the same with ``ATENEA_LINEAR=aten``, every product on
  ``F.linear`` (what atenea's own matrix-vector kernel and oneDNN route are worth);
- atenea compiled: ``atenea.generate(..., compile=True)``: the decode step through
  ``torch.compile`` with frozen weights; its compile time (the first call) is reported apart.

Tokens/s = batch * 64 / median time of a whole ``generate`` call (prefill included). Decode
tokens/s: the steps after the first token only, timed by a streamer both libraries call once
per token (``put``), in the same calls. The memory-bandwidth limit: a decode step reads every
weight once (the token embedding too: GPT-2's output layer is the same matrix; the position
table, one row of it, is not counted), so at most ``batch * bandwidth / weight bytes``
tokens/s; the bandwidth is that of summing a 512 MiB tensor, timed as one more contender
(the machine is shared: the median over the same repetitions), on the same number of threads.
"% of limit" compares the decode tokens/s with it. One table per thread count (every contender
on the same count: Hugging Face's float32 products are MKL's, which use one thread for a
matrix-vector product either way). Prints markdown tables and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

import atenea  # noqa: E402
import benchlib  # noqa: E402

PROMPT, NEW = 32, 64


class StepClock:
    """A streamer that notes when each new token arrives (both libraries call ``put`` with the
    prompt first, then once per step)."""

    def __init__(self):
        self.times = []

    def put(self, tokens):
        self.times.append(time.perf_counter())

    def end(self):
        pass

    def decode_seconds(self) -> float:
        """From the first new token to the last: the ``NEW - 1`` decode steps."""
        return self.times[-1] - self.times[1]


def timed_together(functions: dict, reps: int) -> tuple[dict, dict]:
    """Median time of each function (a whole call, and its decode steps from the returned
    ``StepClock``), run in turn within every repetition after one warm-up round, so that a slow
    moment of a shared machine hits all contenders alike."""
    total = {name: [] for name in functions}
    decode = {name: [] for name in functions}
    for repetition in range(reps + 1):
        for name, function in functions.items():
            start = time.perf_counter()
            clock = function()
            if repetition:
                total[name].append(time.perf_counter() - start)
                decode[name].append(clock.decode_seconds())
    median = statistics.median
    return (
        {name: median(values) for name, values in total.items()},
        {name: median(values) for name, values in decode.items()},
    )


class BandwidthProbe:
    """Read bandwidth, measured as one more contender (so it sees the same machine): the best
    of three sums of a 512 MiB float32 tensor per repetition."""

    def __init__(self, mib: int = 512):
        self.tensor = torch.ones(mib * 2**20 // 4)
        self.bytes = self.tensor.numel() * 4
        self.seconds = float("inf")

    def __call__(self):
        self.seconds = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            self.tensor.sum()
            self.seconds = min(self.seconds, time.perf_counter() - start)
        return self

    def decode_seconds(self) -> float:
        return self.seconds


def weight_bytes_per_step(model) -> int:
    """Bytes a decode step reads: every parameter but the position table (one row of it)."""
    skip = {id(p) for p in model.position_embedding.parameters()}
    return sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in skip)


def load(folder: Path):
    from transformers import GPT2LMHeadModel

    hf = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = GPT2LMHeadModel.from_pretrained(folder, dtype=dtype).eval()
        model.generation_config.eos_token_id = None  # never stop early: always 64 new tokens
        model.generation_config.pad_token_id = 0
        hf[name] = model
    ours = {
        "fp32": atenea.load_pretrained(folder, dtype=torch.float32)[0],
        "bf16": atenea.load_pretrained(folder, dtype=torch.bfloat16)[0],
    }
    return hf, ours


def contenders(hf, ours, ids, with_compile: bool) -> tuple[dict, dict]:
    """The functions to time, and the compile time of each compiled one (its first call)."""

    def hf_run(model):
        def run():
            clock = StepClock()
            model.generate(ids, max_new_tokens=NEW, do_sample=False, streamer=clock)
            return clock

        return run

    def ours_run(model, compile=False, linear=""):
        def run():
            clock = StepClock()
            os.environ["ATENEA_LINEAR"] = linear  # read by atenea.nn.linear at every call
            try:
                atenea.generate(
                    model, ids, max_new_tokens=NEW, eos_token_id=[], compile=compile,
                    streamer=clock,
                )  # fmt: skip
            finally:
                os.environ["ATENEA_LINEAR"] = ""
            return clock

        return run

    runs = {
        "HF fp32": hf_run(hf["fp32"]),
        "atenea fp32": ours_run(ours["fp32"]),
        "atenea fp32, PyTorch kernels": ours_run(ours["fp32"], linear="aten"),
        "HF bf16": hf_run(hf["bf16"]),
        "atenea bf16": ours_run(ours["bf16"]),
    }
    compile_times = {}
    if with_compile:
        for dtype in ("fp32", "bf16"):
            name = f"atenea {dtype} compiled"
            runs[name] = ours_run(ours[dtype], compile=True)
            start = time.perf_counter()
            runs[name]()
            compile_times[name] = time.perf_counter() - start
    return runs, compile_times


def bench_batch(hf, ours, batch, reps, with_compile, threads) -> list[dict]:
    generator = torch.Generator().manual_seed(batch)
    ids = torch.randint(0, hf["fp32"].config.vocab_size, (batch, PROMPT), generator=generator)
    with torch.no_grad():
        runs, compile_times = contenders(hf, ours, ids, with_compile)
        probe = runs["read bandwidth"] = BandwidthProbe()
        times, decode_times = timed_together(runs, reps)
        bandwidth = probe.bytes / decode_times.pop("read bandwidth")
        del times["read bandwidth"], runs["read bandwidth"]
        # Does every atenea contender produce Hugging Face's tokens (same dtype)?
        expected = {
            dtype: hf[dtype].generate(ids, max_new_tokens=NEW, do_sample=False)
            for dtype in ("fp32", "bf16")
        }
        same = {}
        for name in runs:
            if name.startswith("atenea"):
                dtype = "bf16" if "bf16" in name else "fp32"
                os.environ["ATENEA_LINEAR"] = "aten" if "PyTorch kernels" in name else ""
                out = atenea.generate(ours[dtype], ids, max_new_tokens=NEW, eos_token_id=[],
                                      compile="compiled" in name)  # fmt: skip
                os.environ["ATENEA_LINEAR"] = ""
                same[name] = torch.equal(out, expected[dtype])
    rows = []
    for name, seconds in times.items():
        dtype = "bf16" if "bf16" in name else "fp32"
        limit = batch * bandwidth / weight_bytes_per_step(ours[dtype])
        tokens_per_s = batch * NEW / seconds
        decode_per_s = batch * (NEW - 1) / decode_times[name]
        rows.append({
            "threads": threads, "batch": batch, "contender": name, "dtype": dtype,
            "seconds": seconds,
            "tokens_per_s": tokens_per_s, "decode_tokens_per_s": decode_per_s,
            "vs_hf_fp32": times["HF fp32"] / seconds,
            "vs_hf_same_dtype": times[f"HF {dtype}"] / seconds,
            "bandwidth_bytes_per_s": bandwidth, "limit_tokens_per_s": limit,
            "fraction_of_limit": decode_per_s / limit, "compile_s": compile_times.get(name),
            "tokens_equal_hf": same.get(name),
        })  # fmt: skip
        print(f"  threads={threads} B={batch} {name:<28} {tokens_per_s:8.1f} tokens/s", flush=True)
    return rows


def report(rows, info) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, transformers "
        f"{info['transformers']}, Python {info['python']}; load average at start "
        f"{info['load_average'][0]:.2f} (shared machine).",
        f"GPT-2 124M, random weights; prompt {PROMPT}, {NEW} new tokens, greedy. Limit = batch x "
        "read bandwidth / weight bytes per step; '% of limit' uses the decode tokens/s.",
    ]
    for threads in dict.fromkeys(r["threads"] for r in rows):
        lines += ["", *table([r for r in rows if r["threads"] == threads], threads)]
    return "\n".join(lines)


def table(rows, threads) -> list[str]:
    per_batch = {r["batch"]: r["bandwidth_bytes_per_s"] for r in rows}
    bandwidths = ", ".join(f"B={batch}: {bw / 1e9:.1f}" for batch, bw in per_batch.items())
    lines = [
        f"{threads} torch thread{'s' if threads > 1 else ''}; read bandwidth (GB/s, sum of a "
        f"512 MiB tensor, timed among the contenders) {bandwidths}.",
        "",
        "| batch | contender | tokens/s | decode tokens/s | vs HF fp32 | vs HF same dtype "
        "| % of limit | tokens = HF | compile |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        compile_s = f"{r['compile_s']:.0f} s" if r["compile_s"] is not None else "-"
        same = {True: "yes", False: "no", None: "-"}[r["tokens_equal_hf"]]
        lines.append(
            f"| {r['batch']} | {r['contender']} | {r['tokens_per_s']:.1f} "
            f"| {r['decode_tokens_per_s']:.1f} | {r['vs_hf_fp32']:.2f}x "
            f"| {r['vs_hf_same_dtype']:.2f}x | {100 * r['fraction_of_limit']:.0f}% | {same} "
            f"| {compile_s} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2],
        help="torch thread counts, one table each (default: 1 2)",
    )  # fmt: skip
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="batch 1, 2 repetitions")
    parser.add_argument("--json", default="bench-results/generation.json")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.reps, args.threads = [1], 2, [1]
    warnings.filterwarnings("ignore")
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    info = benchlib.machine("transformers")
    print(f"machine: {info}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(folder)
        hf, ours = load(Path(folder))
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        torch._dynamo.reset()  # compile again for this thread count
        for batch in args.batches:
            rows += bench_batch(hf, ours, batch, args.reps, not args.no_compile, threads)
    table = report(rows, info)
    print()
    print(table)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": info, "results": rows}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON written to {path}")


if __name__ == "__main__":
    main()
