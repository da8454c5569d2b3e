"""Training throughput: atenea's ``DecoderModel`` vs Hugging Face ``GPT2LMHeadModel``.

    python benchmarks/training.py            # the full table (a few minutes on 2 cores)
    python benchmarks/training.py --quick    # a smoke run (tiny model, 1 repetition)

The model is the ``small`` size of ``atenea train lm``: a GPT-2 style decoder with 6 layers,
384 wide, 6 heads (FFN 1536), here on sequences of L=256 tokens with a vocabulary of 8192 and
batch 16 (the task's defaults are L=128 and 4000; the benchmark's sizes are its own) and dropout
0 (the task uses 0.1; dropout would make the two libraries' losses differ). One training step =
forward, loss (next token), backward, ``AdamW.step``, ``zero_grad``. Hugging Face's model is
built with seed 0, saved with ``save_pretrained`` and read by ``atenea.load_pretrained``: the
same weights, and every contender has its own copy and optimizer, so the copies that see the
same data take the same steps (the losses are compared at every step). Every HF call passes
``use_cache=False``, as a training loop should: by default GPT-2 builds a key/value cache in
training mode too.

Contenders, all in one run, taking turns within every repetition (a slow moment of a shared
machine hits them alike):

- fp32: atenea and HF (default attention, sdpa) on the same random rows;
- packing: atenea with ``document_ids`` -- each row holds 4-8 documents, no token attends across
  a boundary and positions restart per document, as ``atenea train lm`` packs. HF packs through
  ``position_ids`` that restart per document: its masking finds the documents from them and
  builds a block-diagonal causal mask, but only when no cache is made (``use_cache=False``;
  with a cache the same call runs plain causal rows and its loss differs by ~3e-3). Checked:
  the two packed losses agree at every step, and the logits of a packed document equal those
  of the document run alone;
- bf16: both under ``torch.autocast(device_type="cpu", dtype=torch.bfloat16)`` (fp32 weights
  and optimizer, as a mixed-precision training loop runs).

Rates are tokens/s from the median time of ``--reps`` steps after one warm-up step; ratio = peer
time / atenea time (> 1: atenea faster), then the lowest and highest ratio of the single
repetitions (a measure of the noise). Prints a markdown table with the machine line (the load
average at the start says whether the machine was shared) and writes JSON
(bench-results/training.json; --quick: training-quick.json).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

import atenea  # noqa: E402
import benchlib  # noqa: E402
from atenea.nn.positions import positions_in_documents  # noqa: E402

FULL = dict(layers=6, dim=384, heads=6, length=256, vocab=8192, batch=16)
QUICK = dict(layers=2, dim=64, heads=4, length=64, vocab=512, batch=4)


def document_ids(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``(B, L)`` ids of 4-8 contiguous documents per row, of random lengths (at least 2)."""
    rows = []
    for _ in range(batch):
        count = int(torch.randint(4, 9, (1,), generator=generator))
        cuts = torch.randperm(length // 2 - 1, generator=generator)[: count - 1] * 2 + 2
        starts = torch.zeros(length, dtype=torch.long)
        starts[cuts] = 1
        rows.append(starts.cumsum(0))
    return torch.stack(rows)


def packed_labels(ids: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Next-token labels that never cross a document: the first token of a document is not a
    target of the previous one (-100; the model compares position t with ``labels[t + 1]``)."""
    labels = ids.clone()
    labels[:, 1:][documents[:, 1:] != documents[:, :-1]] = -100
    return labels


@torch.no_grad()
def packing_is_exact(model, ids: torch.Tensor, documents: torch.Tensor) -> float:
    """Largest logit difference between the second document of row 0, run packed, and the same
    document run alone (0 up to rounding when nothing crosses the boundary)."""
    model.eval()
    row, docs = ids[:1], documents[:1]
    where = (docs[0] == 1).nonzero().flatten()
    start, end = int(where[0]), int(where[-1]) + 1
    packed = model(row, document_ids=docs).logits[0, start:end]
    alone = model(row[:, start:end]).logits[0]
    model.train()
    return float((packed - alone).abs().max())


def build(shape: dict):
    """HF's ``GPT2LMHeadModel`` (seed 0) and atenea's ``DecoderModel`` read from its folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=shape["layers"], n_embd=shape["dim"], n_head=shape["heads"],
        n_positions=shape["length"], vocab_size=shape["vocab"],
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=shape["vocab"] - 1, eos_token_id=shape["vocab"] - 1,
    )  # fmt: skip
    hf = GPT2LMHeadModel(config)
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours, _ = atenea.load_pretrained(folder)
    return hf.train(), ours.train()


def bench(shape: dict, reps: int, clock) -> dict:
    hf, ours = build(shape)
    generator = torch.Generator().manual_seed(2)
    batch, length = shape["batch"], shape["length"]
    ids = torch.randint(0, shape["vocab"], (batch, length), generator=generator)
    documents = document_ids(batch, length, generator)
    labels = packed_labels(ids, documents)
    packing_diff = packing_is_exact(ours, ids, documents)
    bf16 = torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    # name: (model, keyword arguments of its forward, autocast)
    packed = {"labels": labels, "document_ids": documents}
    positions = positions_in_documents(documents)
    hf_packed = {"labels": labels, "position_ids": positions, "use_cache": False}
    hf_plain = {"labels": ids, "use_cache": False}
    contenders = {
        "atenea_fp32": (ours, {"labels": ids}, False),
        "hf_fp32": (hf, hf_plain, False),
        "atenea_packed": (copy.deepcopy(ours), packed, False),
        "hf_packed": (copy.deepcopy(hf), hf_packed, False),
        "atenea_bf16": (copy.deepcopy(ours), {"labels": ids}, True),
        "hf_bf16": (copy.deepcopy(hf), hf_plain, True),
    }  # fmt: skip
    optimizers = {
        n: torch.optim.AdamW(m.parameters(), lr=1e-4) for n, (m, _, _) in contenders.items()
    }
    losses = {name: [] for name in contenders}

    def step(name: str) -> None:
        model, kwargs, low_precision = contenders[name]
        with bf16 if low_precision else contextlib.nullcontext():
            loss = model(ids, **kwargs).loss
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad()
        losses[name].append(float(loss.detach()))

    times = benchlib.timed_together({n: (lambda n=n: step(n)) for n in contenders}, reps, clock)

    def max_diff(a: str, b: str) -> float:
        return max(abs(x - y) for x, y in zip(losses[a], losses[b]))

    return {
        **shape,
        "tokens_per_step": batch * length,
        "params": sum(p.numel() for p in hf.parameters()),
        "documents_per_row": [int(d.max()) + 1 for d in documents],
        "packing_max_logit_diff": packing_diff,
        "losses": losses,
        "fp32_max_loss_diff": max_diff("atenea_fp32", "hf_fp32"),
        "packed_max_loss_diff": max_diff("atenea_packed", "hf_packed"),
        "bf16_max_loss_diff": max_diff("atenea_bf16", "hf_bf16"),
        **times,
    }


def ratios(row: dict, peer: str, ours: str) -> str:
    """Two cells: peer time / atenea time from the medians, and the range of the ratios of the
    single repetitions (each pair ran back to back)."""
    pairs = [p / o for p, o in zip(row["samples"][peer], row["samples"][ours])]
    return f"{row[peer] / row[ours]:.2f}x | {min(pairs):.2f}-{max(pairs):.2f}"


def report(info: dict, r: dict, clock_name: str, reps: int) -> str:
    tokens = r["tokens_per_step"]

    def rate(name: str) -> str:
        return f"{tokens / r[name]:,.0f} tok/s"

    fp32_ok = r["fp32_max_loss_diff"] < 1e-3
    bf16_ok = r["bf16_max_loss_diff"] < 5e-2
    packing_ok = r["packing_max_logit_diff"] < 1e-3 and r["packed_max_loss_diff"] < 1e-3
    docs = r["documents_per_row"]
    shape = (
        f"{r['layers']} layers, {r['dim']} wide, {r['heads']} heads, vocabulary {r['vocab']}, "
        f"{r['params'] / 1e6:.1f}M parameters, B={r['batch']}, L={r['length']}"
    )
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads), "
        f"load average at start {', '.join(f'{v:.2f}' for v in info['load_average'])}; torch "
        f"{info['torch']}, transformers {info['transformers']}, Python {info['python']}, "
        f"atenea {info['atenea']}.",
        f"Training step (forward, loss, backward, AdamW), the lm task's small decoder: {shape}. "
        f"Rates from median {clock_name} times of {reps} steps, contenders interleaved. Ratio = HF "
        "time / atenea time (> 1: atenea faster), from the medians; then the lowest and highest "
        "ratio of single repetitions.",
        "",
        "| case | atenea | HF GPT2LMHeadModel | ratio | per-repetition ratios | check |",
        "|---|---|---|---|---|---|",
        f"| fp32 | {rate('atenea_fp32')} | {rate('hf_fp32')} "
        f"| {ratios(r, 'hf_fp32', 'atenea_fp32')} | {'ok' if fp32_ok else 'MISMATCH'}: losses "
        f"agree, max diff {r['fp32_max_loss_diff']:.1e} |",
        f"| fp32, packed ({min(docs)}-{max(docs)} documents per row): atenea document_ids, HF "
        f"position_ids restarting per document | {rate('atenea_packed')} | {rate('hf_packed')} "
        f"| {ratios(r, 'hf_packed', 'atenea_packed')} | {'ok' if packing_ok else 'MISMATCH'}: "
        f"losses max diff {r['packed_max_loss_diff']:.1e}; a packed document's logits = alone, "
        f"max diff {r['packing_max_logit_diff']:.1e} |",
        f"| bf16 autocast | {rate('atenea_bf16')} | {rate('hf_bf16')} "
        f"| {ratios(r, 'hf_bf16', 'atenea_bf16')} | {'ok' if bf16_ok else 'MISMATCH'}: losses "
        f"max diff {r['bf16_max_loss_diff']:.1e} |",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model, 1 repetition")
    parser.add_argument("--reps", type=int, default=None, help="timed steps; default 3 (--quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine)",
    )  # fmt: skip
    parser.add_argument("--json", default=None, help="output (default bench-results/training.json)")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = {"wall": time.perf_counter, "cpu": time.process_time}[args.clock]
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    with contextlib.suppress(AttributeError):
        transformers.utils.logging.disable_progress_bar()

    info = benchlib.machine("transformers")
    print(f"machine: {info}", flush=True)
    started = time.perf_counter()
    result = bench(QUICK if args.quick else FULL, reps, clock)
    elapsed = time.perf_counter() - started
    print()
    print(report(info, result, args.clock, reps))
    print(f"\nTotal {elapsed:.0f} s.")
    path = Path(args.json or f"bench-results/training{'-quick' if args.quick else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "quick": args.quick, "clock": args.clock, "reps": reps,
               "seconds": elapsed, "training": result}  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"JSON written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
