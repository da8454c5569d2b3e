"""Where ``"auto"`` should send a CUDA call: atenea's Triton kernel against the backend ``auto``
picks without it (FlexAttention, or ``blocks`` under dropout), in the same run.

    python benchmarks/gpu_routing.py [--lengths 4096 16384] [--head-dim 128] [--json FILE]

The calls ``benchmarks/gpu.py`` does not time: the masks beyond causal / window / documents
(``Lq < Lk`` causal, key padding, prefix LM, a window inside documents, a union that needs
bitmaps), the fused score modifiers (ALiBi, softcap, T5 relative bias) and dropout. B=2, H=16,
bf16; forward and forward+backward, median ms of ``triton.testing.do_bench``; ``x`` is the
other backend's time over Triton's (> 1: Triton is faster). Each row also checks the two
outputs against each other (``max |diff|``; not under dropout, whose draws differ).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

import atenea
from atenea import masks, scores
from atenea.attention.backends import flex

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import gpu  # noqa: E402
from gpu import measure  # noqa: E402

B, H = 2, 16


def cases(length: int) -> dict:
    """name -> (mask, score_mod, dropout_p, Lq) at key length ``length``."""
    ids = (torch.arange(length, device="cuda") * 8) // length
    window = masks.sliding_window(1024)
    return {
        "causal Lq=L/4": (masks.causal(), None, 0.0, length // 4),
        "key padding": (
            masks.key_padding(torch.tensor([length, 3 * length // 4])),
            None,
            0.0,
            length,
        ),  # fmt: skip
        "prefix LM L/4": (masks.prefix_lm(length // 4), None, 0.0, length),
        "window & documents": (window & masks.document(ids), None, 0.0, length),
        "documents or window (bitmap)": (masks.document(ids) | window, None, 0.0, length),
        "causal + ALiBi": (masks.causal(), scores.alibi(H), 0.0, length),
        "causal + softcap 30": (masks.causal(), scores.softcap(30.0), 0.0, length),
        "causal + T5 bias": (
            masks.causal(),
            scores.relative_bias(H, bidirectional=False),
            0.0,
            length,
        ),  # fmt: skip
        "window + dropout 0.1": (window, None, 0.1, length),
    }


def rows_for(length: int, head_dim: int) -> list[dict]:
    from atenea.attention.core import select_backend
    from atenea.attention.problem import check_call

    rows = []
    for name, (mask, mod, dropout, q_len) in cases(length).items():
        if mod is not None:
            mod = mod.cuda()
        q = torch.randn(B, H, q_len, head_dim, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(B, H, length, head_dim, device="cuda", dtype=torch.bfloat16)
                for _ in range(2))  # fmt: skip
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        grad = torch.randn_like(q)
        problem = check_call(q, k, v, mask, mod, None, dropout, "auto")
        today = select_backend(problem, "auto")
        if today == "triton":  # once auto routes here: time what it would pick otherwise
            today = "flex" if flex.why_not(problem) is None else "blocks"
        row = {"case": name, "L": length, "Lq": q_len, "D": head_dim, "other": today}
        outputs = {}
        for label, backend in (("triton", "triton"), ("other", today)):
            options = dict(mask=mask, score_mod=mod, dropout_p=dropout, backend=backend)

            def call(q, k, v, options=options):
                return atenea.attention(q, k, v, **options)

            try:
                times = measure(call, q, k, v, grad, quick=True)
                row.update({f"{label}_{key}": value for key, value in times.items()})
                outputs[label] = call(q, k, v).detach()
            except Exception as error:  # noqa: BLE001 - a row that fails says why
                row[f"{label}_error"] = f"{type(error).__name__}: {str(error)[:160]}"
        if "triton_fwd_ms" in row and "other_fwd_ms" in row:
            row["x_fwd"] = row["other_fwd_ms"] / row["triton_fwd_ms"]
            row["x_fwd_bwd"] = row["other_fwd_bwd_ms"] / row["triton_fwd_bwd_ms"]
            if dropout == 0.0:
                diff = (outputs["triton"].float() - outputs["other"].float()).abs()
                row["max_diff"] = diff.nan_to_num(nan=float("inf")).max().item()
        rows.append(row)
        print(json.dumps(row), flush=True)
        del q, k, v, grad, outputs
        torch.cuda.empty_cache()
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| case | L | D | other | triton fwd ms | x | fwd+bwd ms | x | 1st call s | max diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "x_fwd" not in r:
            error = r.get("triton_error") or r.get("other_error")
            lines.append(f"| {r['case']} | {r['L']} | {r['D']} | {r['other']} | {error} |||||")
            continue
        lines.append(
            f"| {r['case']} | {r['L']} | {r['D']} | {r['other']} | {r['triton_fwd_ms']:.3f} | "
            f"{r['x_fwd']:.2f} | {r['triton_fwd_bwd_ms']:.3f} | {r['x_fwd_bwd']:.2f} | "
            f"{r['triton_first_call_s']:.2f} | {r.get('max_diff', float('nan')):.3g} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--json", default="bench-results/gpu_routing.json")
    args = parser.parse_args()
    gpu.require_cuda("gpu_routing.py")
    warnings.filterwarnings("ignore")
    info = {**benchlib.machine("triton"), "gpu": torch.cuda.get_device_name()}
    print(f"machine: {info}", flush=True)
    rows = [row for length in args.lengths for row in rows_for(length, args.head_dim)]
    print("\n" + table(rows))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
