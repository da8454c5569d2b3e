"""Translation quality against sentence length, and training speed against sequence length:
the RNN encoder-decoder without attention (Cho et al. 2014), RNNsearch (Bahdanau et al. 2015)
and the Transformer, on the built-in Spanish -> English Bible (``bible-es-en``).

    python benchmarks/translation_length.py                      # the run of docs/translation.md
    python benchmarks/translation_length.py --steps 20 --test-limit 40 --out /tmp/quick

1. One tokenizer (byte-level BPE, trained once on the training verses) and one budget for the
   three: the same steps, batch size, learning rate schedule and data order (``--seed``). Each
   trains with atenea's own loop (``atenea.training.loop.train``), at the ``tiny`` size of the
   translate task. Reported: parameters, wall time, the last training loss.
2. BLEU (sacrebleu) of greedy translations of the test books (Acts, James), by source length in
   words (the paper's Figure 2), printed and drawn (``bleu_by_length.png``).
3. Training tokens per second of each model (forward + backward + optimizer step, source and
   target of the same length, random tokens) at lengths 8..128: a recurrent model walks the
   sequence step by step, a Transformer takes it in one matrix product per layer
   (``--speed-device cuda`` measures this table on a GPU).
4. A few test verses with the three translations side by side, and RNNsearch's alignment of one
   (``alignment.png``).

Writes ``results.json``, ``report.md`` and the pictures into ``--out``. Times are medians after a
warm-up; on a shared machine they move with its load (recorded as the load average). One
torch thread by default (``--threads``).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import torch

from atenea.inspect.alignment import explain_alignment
from atenea.inspect.plots import heatmap_png
from atenea.training import loop, sampling
from atenea.training.datasets import bible
from atenea.training.tasks import build_task
from benchlib import machine, timed_together

ARCHS = ("rnnencdec", "rnnsearch", "transformer")
BUCKETS = ((1, 10), (11, 20), (21, 30), (31, 40), (41, 200))  # source words, inclusive


def train_all(args, out: Path) -> tuple[dict, dict]:
    """Train the three architectures on the same data and budget: ``(tasks, results)``."""
    tasks, results, tokenizer = {}, {}, None
    for arch in ARCHS:
        task = build_task(
            "translate", data=bible.NAME, arch=arch, size=args.size, max_length=args.max_length,
            vocab_size=args.vocab_size, tokenizer=tokenizer, seed=args.seed,
        )  # fmt: skip
        tokenizer = task.tokenizer  # the same one for the next architectures
        model = sampling.initial_model(task, args.seed)
        if args.speed_only:
            tasks[arch] = (task, model)
            continue
        config = loop.TrainConfig(
            output=out / arch, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
            warmup=args.steps // 10, eval_every=0, save_every=args.steps, seed=args.seed,
            eval_limit=args.eval_limit, progress=True, keep=1,
        )  # fmt: skip
        started = time.perf_counter()
        loop.train(task, model, config)
        seconds = time.perf_counter() - started
        losses = [json.loads(line) for line in (out / arch / "metrics.jsonl").open()]
        losses = [r["loss"] for r in losses if "loss" in r]
        results[arch] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_seconds": seconds,  # evaluation at steps 0 and end included
            "final_loss": statistics.mean(losses[-20:]),
        }
        tasks[arch] = (task, model.eval())
        print(f"{arch}: {results[arch]}", flush=True)
    return tasks, results


def test_translations(tasks: dict, limit: int | None) -> tuple[list[dict], dict]:
    """Greedy translations of the test books by every model: ``(rows, bleu by bucket)``."""
    import sacrebleu

    test = bible.split(test=True).validation[:limit]
    rows = [{"source": p["source"], "reference": p["target"]} for p in test]
    for arch, (task, model) in tasks.items():
        ids = task.tokenizer.encode_batch([r["source"] for r in rows], add_special_tokens=False)
        ids = [row[: task.max_length] for row in ids]
        started = time.perf_counter()
        outputs = task.translate(model, ids)
        print(f"{arch}: translated {len(rows)} verses in {time.perf_counter() - started:.0f} s")
        for row, out in zip(rows, outputs):
            row[arch] = task.tokenizer.decode(out).strip()
    table = {}
    for low, high in BUCKETS:
        chosen = [r for r in rows if low <= len(r["source"].split()) <= high]
        name = f"{low}-{high}" if high < 200 else f"{low}+"
        table[name] = {"verses": len(chosen)}
        for arch in tasks:
            hypotheses = [r[arch] for r in chosen]
            references = [[r["reference"] for r in chosen]]
            table[name][arch] = (
                sacrebleu.corpus_bleu(hypotheses, references).score if chosen else None
            )
    table["all"] = {"verses": len(rows)}
    for arch in tasks:
        score = sacrebleu.corpus_bleu([r[arch] for r in rows], [[r["reference"] for r in rows]])
        table["all"][arch] = score.score
    return rows, table


def train_step(model, src, tgt, optimizer) -> None:
    logits = model(src, tgt).logits
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.flatten()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if src.is_cuda:
        torch.cuda.synchronize()  # the step is done when the GPU is, not when Python is


def throughput(tasks: dict, lengths: list[int], batch: int, reps: int, device="cpu") -> dict:
    """Training tokens/s (source + target) of each model on random ``(batch, L)`` sequences,
    the three taking turns in every repetition (``timed_together``), on ``device``."""
    speeds = {arch: {} for arch in tasks}
    for length in lengths:
        steps = {}
        for arch, (task, model) in tasks.items():
            model.to(device).train()
            vocab = task.tokenizer.vocab_size
            src = torch.randint(4, vocab, (batch, length), device=device)
            tgt = torch.randint(4, vocab, (batch, length), device=device)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-9)  # the step's cost only
            steps[arch] = functools.partial(train_step, model, src, tgt, optimizer)
        medians = timed_together(steps, reps)
        for arch in tasks:
            speeds[arch][length] = 2 * batch * length / medians[arch]
        row = " ".join(f"{a} {speeds[a][length]:,.0f}" for a in tasks)
        print(f"L={length}: tokens/s {row}", flush=True)
    for _, model in tasks.values():
        model.cpu().eval()
    return speeds


def bleu_plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = [b for b in table if b != "all"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arch, style in zip(ARCHS, ("o--", "s-", "^-")):
        ax.plot(buckets, [table[b][arch] or 0 for b in buckets], style, label=arch)
    ax.set_xlabel("source length (Spanish words)")
    ax.set_ylabel("BLEU (test books: Acts, James)")
    ax.set_title("Translation quality against sentence length")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out: Path, info: dict, results: dict, table: dict, speeds: dict, rows, args) -> str:
    lines = [f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
             f"{info['torch_threads']} threads, load average {info['load_average'][0]:.1f}; "
             f"tokens/s measured on {args.speed_device}",
             f"budget: {args.steps} steps x {args.batch_size} verses, lr {args.lr}, size "
             f"{args.size}, max_length {args.max_length} tokens, BPE vocabulary {args.vocab_size}",
             "", "| model | parameters | train wall time (s) | last loss |",
             "|---|---|---|---|"]  # fmt: skip
    for arch, r in results.items():
        lines.append(f"| {arch} | {r['parameters']:,} | {r['train_seconds']:.0f} | "
                     f"{r['final_loss']:.2f} |")  # fmt: skip
    lines += ["", "| source words | verses | " + " | ".join(ARCHS) + " |", "|---" * 5 + "|"]
    for name, row in table.items():
        cells = " | ".join(f"{row[a]:.2f}" if row[a] is not None else "-" for a in ARCHS)
        lines.append(f"| {name} | {row['verses']} | {cells} |")
    lines += ["", "| length | " + " | ".join(f"{a} tok/s" for a in ARCHS)
              + " | transformer / rnnsearch |", "|---" * 5 + "|"]  # fmt: skip
    for length in speeds["transformer"]:
        cells = " | ".join(f"{speeds[a][length]:,.0f}" for a in ARCHS)
        ratio = speeds["transformer"][length] / speeds["rnnsearch"][length]
        lines.append(f"| {length} | {cells} | {ratio:.1f}x |")
    lines += ["", "Examples (test verses):", ""]
    for row in rows:
        lines += [f"- **es**: {row['source']}", f"  - **reference**: {row['reference']}"]
        lines += [f"  - **{arch}**: {row[arch]}" for arch in ARCHS]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--max-length", type=int, default=80)
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--eval-limit", type=int, default=50, help="validation verses at eval")
    parser.add_argument("--test-limit", type=int, help="test verses (default: all 1,114)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--speed-batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--speed-device",
        default="cpu",
        help="where the tokens/s table is measured: cpu, or cuda when a GPU is at hand "
        "(training and translation stay on the CPU)",
    )
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="only the tokens/s table, on untrained models (a GPU session's few minutes)",
    )
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared 2-core machine a second thread waiting on the first "
        "made a tiny RNN's training step 5x slower)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/translation_length"))
    args = parser.parse_args(argv)
    if args.speed_device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--speed-device cuda: no CUDA device here")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    info = machine("sacrebleu")
    tasks, results = train_all(args, args.out)
    if args.speed_only:
        speeds = throughput(tasks, args.lengths, args.speed_batch, args.reps, args.speed_device)
        (args.out / "speed.json").write_text(
            json.dumps(
                {"machine": info, "settings": vars(args), "tokens_per_s": speeds},
                indent=1,
                default=str,
            )  # fmt: skip
        )
        return 0
    rows, table = test_translations(tasks, args.test_limit)
    bleu_plot(table, args.out / "bleu_by_length.png")
    speeds = throughput(tasks, args.lengths, args.speed_batch, args.reps, args.speed_device)
    # Examples: short-to-middling verses spread over the test set.
    fitting = [r for r in rows if 8 <= len(r["source"].split()) <= 25]
    examples = fitting[:: max(len(fitting) // max(args.examples, 1), 1)][: args.examples]
    task, model = tasks["rnnsearch"]
    found = explain_alignment(examples[0]["source"], model, task.tokenizer)
    heatmap_png(found.alignment, found.output_tokens, args.out / "alignment.png",
                f"RNNsearch: {found.text[:60]}", key_tokens=found.source_tokens)  # fmt: skip
    text = report(args.out, info, results, table, speeds, examples, args)
    everything = {"machine": info, "settings": vars(args), "training": results, "bleu": table,
                  "tokens_per_s": speeds, "translations": rows}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(everything, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
