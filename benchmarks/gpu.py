"""atenea on one NVIDIA GPU, against its peers in the same run.

Written to fit the GPU issue's 8 minutes on an H100/H200 (benchmarks/gpu_session.sh runs it
with the tests and the other GPU benchmarks in one lent machine's minutes).

    python benchmarks/gpu.py [--quick] [--json bench-results/gpu.json]

1. Attention, B=1, H=16, D=128, bf16, L = 4k / 16k / 32k, masks causal, sliding window 1024 and
   8 packed documents (causal within each): atenea ``auto``, ``flex`` and ``triton`` (when the
   backend exists), PyTorch SDPA (a dense boolean mask for the sparse ones; skipped at 32k, where
   the mask alone is 1 GiB), and compiled FlexAttention with its own ``create_block_mask``.
   Forward and forward+backward in ms and TFLOP/s over the pairs the mask keeps (fwd 4*D per
   pair per head, bwd 2.5x that); the first call at a new length (compile included) apart.
2. The log-sum-exp at 32k causal: ``return_lse=True`` and 64 rows of weights from it, against
   the plain forward.
3. Greedy decoding, GPT-2 124M (random weights), bf16, batch 1 and 8, 128 new tokens: atenea
   eager and compiled (CUDA graph) against Hugging Face ``generate``, with the bandwidth limit
   (weights read once per step).
4. A training step, GPT-2 124M, B=8, L=1024, bf16 autocast, AdamW: atenea against Hugging
   Face, time and peak memory.

Median times from ``triton.testing.do_bench`` (CUDA events). Ratios > 1 mean atenea is faster.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

import atenea
from atenea import masks

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from gpu_masks import mask_of  # noqa: E402, F401 (the sweep and routing read gpu.mask_of)

B, H, D = 1, 16, 128
LENGTHS = (4096, 16384, 32768)
# HBM bandwidth (bytes/s) by GPU name, for the decode limit
BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}


def require_cuda(script: str) -> None:
    """Stop with one line when there is no GPU (every gpu*.py benchmark needs one)."""
    if not torch.cuda.is_available():
        raise SystemExit(f"benchmarks/{script}: needs a CUDA GPU (none here)")


def bench(fn, quick: bool) -> float:
    """Median milliseconds of ``fn()`` on the GPU."""
    from triton.testing import do_bench

    return do_bench(fn, warmup=5 if quick else 25, rep=20 if quick else 100)


def first_call_seconds(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


# -- 1. attention ----------------------------------------------------------------------------------


# --impls: short names of the contenders (a label starting with the value's text)
IMPLS = {"auto": "atenea auto", "atenea-flex": "atenea flex", "triton": "atenea triton",
         "flex": "FlexAttention", "sdpa": "SDPA"}  # fmt: skip


def attention_contenders(name: str, length: int, impls=None):
    """``{label: fn(q, k, v)}``; ``impls``: the ``IMPLS`` names to keep (None: all)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    mask, mask_mod, _ = mask_of(name, length)
    runs = {
        "atenea auto": lambda q, k, v: atenea.attention(q, k, v, mask=mask),
        "atenea flex": lambda q, k, v: atenea.attention(q, k, v, mask=mask, backend="flex"),
    }
    if not impls or "flex" in impls:  # (its compile and block mask only where it is timed)
        compiled_flex = torch.compile(flex_attention)
        block_mask = create_block_mask(mask_mod, None, None, length, length, device="cuda")
        runs["FlexAttention"] = lambda q, k, v: compiled_flex(q, k, v, block_mask=block_mask)
    if _has_triton_backend():
        runs["atenea triton"] = lambda q, k, v: atenea.attention(q, k, v, mask=mask,
                                                                 backend="triton")  # fmt: skip
    if name == "causal":
        runs["SDPA"] = lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True
        )
    elif length < 32768 and (not impls or "sdpa" in impls):
        dense = mask.materialize(length, length, "cuda")
        runs["SDPA (dense mask)"] = lambda q, k, v: (
            torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense)
        )
    if impls:
        wanted = tuple(IMPLS[short] for short in impls)
        runs = {label: fn for label, fn in runs.items() if label.startswith(wanted)}
    return runs


def _has_triton_backend() -> bool:
    from atenea.attention.problem import BACKENDS

    return "triton" in BACKENDS


def measure(fn, q, k, v, grad, quick: bool) -> dict:
    """Times of one contender: first call, forward, forward+backward (and TFLOP/s later)."""
    row = {"first_call_s": first_call_seconds(lambda: fn(q, k, v))}
    row["fwd_ms"] = bench(lambda: fn(q, k, v), quick)
    row["fwd_bwd_ms"] = bench(lambda: fn(q, k, v).backward(grad), quick)
    q.grad = k.grad = v.grad = None
    return row


def attention_rows(
    quick: bool, head_dim: int = D, lengths=None, impls=None, tuning=None
) -> list[dict]:
    """The table's rows; ``tuning``: backward fields the Triton calls of this table take
    (``--backward-tuning``; the other sections keep the library's), recorded in their rows."""
    if tuning:
        from triton_tuning import agreement, with_backward

        checks = agreement(tuning, head_dim)  # (its builds have run no test here)
        print("\n".join(json.dumps(row) for row in checks), flush=True)
        with_backward(tuning)
        try:
            rows = attention_rows(quick, head_dim, lengths, impls)
        finally:
            with_backward({})
        for row in rows:
            if row["impl"] == "atenea triton":  # (auto's backward is FlexAttention's)
                row["backward_tuning"] = tuning
        return checks + rows
    rows = []
    lengths = lengths or (LENGTHS[:2] if quick else LENGTHS)
    # Lengths outside, masks inside: a run stopped at its time limit keeps every mask's rows
    # at the shorter lengths.
    for length in lengths:
        for name in ("causal", "window", "documents"):
            shape = (B, H, length, head_dim)
            q, k, v = [
                torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                for _ in range(3)
            ]
            grad = torch.randn_like(q)
            fwd_flops = 4 * B * H * head_dim * mask_of(name, length)[2]
            for label, fn in attention_contenders(name, length, impls).items():
                row = {"mask": name, "L": length, "impl": label, "D": head_dim}
                try:
                    row.update(measure(fn, q, k, v, grad, quick))
                    row["fwd_tflops"] = fwd_flops / row["fwd_ms"] / 1e9
                    row["fwd_bwd_tflops"] = 3.5 * fwd_flops / row["fwd_bwd_ms"] / 1e9
                except Exception as error:  # noqa: BLE001 - a row that fails says why
                    row["error"] = f"{type(error).__name__}: {str(error)[:120]}"
                rows.append(row)
                print(json.dumps(row), flush=True)
            del q, k, v, grad
            torch.cuda.empty_cache()
    return rows


# -- 2. the log-sum-exp ----------------------------------------------------------------------------


def lse_rows(quick: bool) -> list[dict]:
    length = 16384 if quick else 32768
    q, k, v = (torch.randn(B, H, length, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    mask = masks.causal()
    plain = bench(lambda: atenea.attention(q, k, v, mask=mask), quick)
    with_lse = bench(lambda: atenea.attention(q, k, v, mask=mask, return_lse=True), quick)
    _, lse = atenea.attention(q, k, v, mask=mask, return_lse=True)
    rows_64 = torch.arange(length - 64, length, device="cuda")
    weights = bench(lambda: atenea.attention_weights(q, k, lse=lse, mask=mask, rows=rows_64), quick)
    result = [{"what": "plain forward", "L": length, "ms": plain},
              {"what": "forward + return_lse", "L": length, "ms": with_lse,
               "ratio_to_plain": with_lse / plain},
              {"what": "64 rows of weights from the lse", "L": length, "ms": weights}]  # fmt: skip
    for row in result:
        print(json.dumps(row), flush=True)
    return result


# -- 3. decoding -----------------------------------------------------------------------------------


def decode_rows(folder: Path, quick: bool) -> list[dict]:
    from transformers import GPT2LMHeadModel

    new = 32 if quick else 128
    hf = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.bfloat16).cuda().eval()
    hf.generation_config.eos_token_id, hf.generation_config.pad_token_id = None, 0
    ours = atenea.load_pretrained(folder, dtype=torch.bfloat16)[0].cuda().eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    name = torch.cuda.get_device_name()
    bandwidth = next((bw for key, bw in BANDWIDTH.items() if key in name), None)
    rows = []
    for batch in (1, 8):
        ids = torch.randint(0, 50257, (batch, 16), device="cuda")
        runs = {
            "HF generate": lambda ids=ids: hf.generate(ids, do_sample=False, max_new_tokens=new),
            "atenea eager": lambda ids=ids: atenea.generate(
                ours, ids, eos_token_id=[], max_new_tokens=new
            ),
            "atenea compiled": lambda ids=ids: atenea.generate(
                ours, ids, eos_token_id=[], max_new_tokens=new, compile=True
            ),
        }
        outputs = {}
        for label, fn in runs.items():
            first = first_call_seconds(fn)
            seconds = min(first_call_seconds(fn) for _ in range(2 if quick else 5))
            outputs[label] = fn()
            row = {"batch": batch, "impl": label, "tokens_per_s": batch * new / seconds,
                   "first_call_s": first}  # fmt: skip
            if bandwidth:
                row["bandwidth_limit_tokens_per_s"] = batch * bandwidth / weight_bytes
            rows.append(row)
            print(json.dumps(row), flush=True)
        same = torch.equal(outputs["atenea eager"], outputs["atenea compiled"])
        rows.append({"batch": batch, "compiled_tokens_equal_eager": same})
    return rows


# -- 4. a training step ----------------------------------------------------------------------------


def training_rows(folder: Path, quick: bool) -> list[dict]:
    from transformers import GPT2LMHeadModel

    ids = torch.randint(0, 50257, (8, 1024), device="cuda")
    rows = []
    for label in ("HF", "atenea"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        if label == "HF":
            model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="sdpa")
        else:
            model = atenea.load_pretrained(folder)[0]
        model = model.cuda()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

        def step(m=model, o=optimizer):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = m(ids, labels=ids).loss  # both shift the labels, not the logits
            loss.backward()
            o.step()
            o.zero_grad(set_to_none=True)

        ms = bench(step, quick)
        rows.append({"impl": label, "ms_per_step": ms,
                     "peak_gib": torch.cuda.max_memory_allocated() / 2**30})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
        del model, optimizer
    return rows


# -- report ----------------------------------------------------------------------------------------


def report(results: dict) -> str:
    lines = [
        "## Attention (B=1, H=16, D=128, bf16)",
        "",
        "x Flex = compiled FlexAttention's time / this time (> 1: faster than Flex)",
        "",
    ]
    lines.append(
        "| mask | L | impl | fwd ms | TF/s | x Flex | fwd+bwd ms | TF/s | x Flex | 1st call s |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    flex = {(r["mask"], r["L"]): r for r in results["attention"]
            if r.get("impl") == "FlexAttention" and "error" not in r}  # fmt: skip
    for r in results["attention"]:
        if "check" in r:  # --backward-tuning's numbers against the defaults' first
            verdict = "agree" if r["agrees"] else f"DISAGREE: do not ship {r.get('error', '')}"
            lines.append(f"| {r['mask']} | {r['L']} | {r['check']}: {verdict}, relative max "
                         f"diff {r['relative_max_diff']:.1e} ||||||")  # fmt: skip
            continue
        if "error" in r:
            lines.append(f"| {r['mask']} | {r['L']} | {r['impl']} | {r['error']} ||||||")
            continue
        peer = flex.get((r["mask"], r["L"]))
        fwd_x = f"{peer['fwd_ms'] / r['fwd_ms']:.2f}" if peer else "-"
        bwd_x = f"{peer['fwd_bwd_ms'] / r['fwd_bwd_ms']:.2f}" if peer else "-"
        lines.append(
            f"| {r['mask']} | {r['L']} | {r['impl']} | {r['fwd_ms']:.3f} | {r['fwd_tflops']:.0f}"
            f" | {fwd_x} | {r['fwd_bwd_ms']:.3f} | {r['fwd_bwd_tflops']:.0f} | {bwd_x}"
            f" | {r['first_call_s']:.2f} |"
        )
    lines += ["", "## Log-sum-exp", ""]
    lines += [f"- {r['what']} (L={r['L']}): {r['ms']:.2f} ms" for r in results["lse"]]
    lines += ["", "## Greedy decoding, GPT-2 124M bf16, tokens/s", ""]
    for r in results["decode"]:
        if "impl" in r:
            limit = r.get("bandwidth_limit_tokens_per_s")
            extra = f" (bandwidth limit {limit:,.0f})" if limit else ""
            lines.append(f"- batch {r['batch']}, {r['impl']}: {r['tokens_per_s']:,.0f}{extra}")
        else:
            lines.append(f"- batch {r['batch']}: compiled tokens equal eager: "
                         f"{r['compiled_tokens_equal_eager']}")  # fmt: skip
    lines += ["", "## Training step, GPT-2 124M, B=8, L=1024, bf16", ""]
    lines += [f"- {r['impl']}: {r['ms_per_step']:.1f} ms, peak {r['peak_gib']:.2f} GiB"
              for r in results["training"]]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4k/16k only, fewer repetitions")
    parser.add_argument("--json", default="bench-results/gpu.json")
    parser.add_argument("--only", choices=("attention", "lse", "decode", "training"))
    parser.add_argument(
        "--head-dim", type=int, default=D,
        help="attention rows at this head size (128; the Triton issue also wants a 64 run: "
        "--only attention --head-dim 64)",
    )  # fmt: skip
    parser.add_argument("--lengths", type=int, nargs="+", help="attention rows at these lengths")
    parser.add_argument("--impls", nargs="+", choices=sorted(IMPLS),
                        help="attention contenders to time (default: all)")  # fmt: skip
    parser.add_argument(
        "--backward-tuning", metavar="FILE",
        help="the Triton backward's blocks from gpu_backward_sweep.py --winners FILE",
    )  # fmt: skip
    args = parser.parse_args()
    tuning = None
    if args.backward_tuning:
        from triton_tuning import load_backward

        tuning = load_backward(args.backward_tuning, args.head_dim)
        print(f"Triton backward tuning: {tuning or 'the defaults won'}", flush=True)
    require_cuda("gpu.py")
    # Each mask and length is a compile of FlexAttention; past dynamo's default limit of 8 it
    # runs unfused (what atenea's flex backend prevents the same way, with this limit).
    import torch._dynamo as dynamo

    from atenea.attention.backends.flex import RECOMPILE_LIMIT

    dynamo.config.recompile_limit = RECOMPILE_LIMIT
    warnings.filterwarnings("ignore")
    info = {**benchlib.machine("transformers", "triton"), "gpu": torch.cuda.get_device_name()}
    print(f"machine: {info}", flush=True)
    results: dict = {"machine": info}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(folder)
        sections = {
            "attention": lambda: attention_rows(
                args.quick, args.head_dim, args.lengths, args.impls, tuning
            ),
            "lse": lambda: lse_rows(args.quick),
            "decode": lambda: decode_rows(Path(folder), args.quick),
            "training": lambda: training_rows(Path(folder), args.quick),
        }
        for name, run in sections.items():
            if args.only in (None, name):
                results[name] = run()
    results["seconds"] = time.perf_counter() - started
    for name in ("attention", "lse", "decode", "training"):
        results.setdefault(name, [])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")  # (before the report)
    print("\n" + report(results))
    print(f"\n{math.ceil(results['seconds'])} s; results in {args.json}")


if __name__ == "__main__":
    main()
