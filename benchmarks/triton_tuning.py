"""Trying the Triton kernel's backward block sizes on a GPU, for the benchmarks that do it.

One lent GPU's minutes should both *choose* the backward's blocks and *time the whole call*
with them: ``gpu_backward_sweep.py --winners F`` times the candidates of each pass and writes
the fastest (``best_backward``); ``gpu.py --backward-tuning F`` then times the issue's table
with it (``load_backward`` + ``with_backward``), beside FlexAttention in the same run.

The sweep's candidates are separate compilations (one per candidate and mask family), ~1-2 s
each: ``compile_ahead`` runs each one's first call in worker processes at once, which leaves
the kernels in Triton's on-disk cache, so the timing loop that follows loads them.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import atenea.attention.backends.triton as triton_backend
from atenea.attention.backends.triton import launch
from atenea.attention.backends.triton.configs import configs_for

# A candidate per pass, in the order of its fields: (rows a step, keys a program, warps,
# stages, queries down, Q and dO by TMA) for dK/dV; (query rows a program, keys a step, warps,
# stages, full tiles' K and V by TMA) for dQ.
FIELDS = {
    "dkdv": ("block_m1", "block_n1", "kv_warps", "kv_stages", "kv_direct", "kv_tma"),
    "dq": ("block_m2", "block_n2", "num_warps", "num_stages", "dq_tma"),
}
# A candidate replaces the default only when its time summed over the masks is this much
# lower: the sweep's means of five calls (the profiler's kernel times) move by about 1%.
MARGIN = 0.98


def use_configs(choose) -> None:
    """Make the next calls take their block sizes from ``choose`` (``configs_for``'s
    signature): the plans remembered with the old ones are dropped."""
    triton_backend.configs_for = choose
    triton_backend.forget_plans()


def with_backward(change: dict) -> None:
    """Make every call take the default configs with ``change`` (``BackwardConfig`` fields)
    applied to the backward's; ``{}`` restores the defaults."""
    if not change:
        use_configs(configs_for)
        return

    def patched(*args, **kwargs):
        forward, backward = configs_for(*args, **kwargs)
        return forward, replace(_pinned(backward), **change)

    use_configs(patched)


def _pinned(backward):
    """``backward`` (a ``BackwardConfig``) with the dK/dV pass's warps and stages written out:
    it takes the dQ pass's (``num_warps``, ``num_stages``) when it has none of its own, and a
    dQ candidate must not change it."""
    return replace(backward, kv_warps=backward.warps_kv, kv_stages=backward.stages_kv)


def change_of(pass_name: str, candidate) -> dict:
    """A candidate tuple of ``pass_name`` as ``BackwardConfig`` fields."""
    return dict(zip(FIELDS[pass_name], candidate, strict=True))


def candidate_of(pass_name: str, backward) -> tuple:
    """``backward``'s (a ``BackwardConfig``) blocks for ``pass_name``, as a candidate tuple."""
    pinned = _pinned(backward)
    return tuple(getattr(pinned, field) for field in FIELDS[pass_name])


def inputs(head_dim: int, group: int, length: int, device: str = "cuda", dtype=None):
    """The benchmarks' q, k, v: B=1, 16 query heads, ``16 // group`` key/value heads,
    ``(1, H, length, head_dim)`` in ``dtype`` (bfloat16 unless given), needing gradients."""
    import torch

    heads = (16, 16 // group, 16 // group)
    return tuple(torch.randn(1, h, length, head_dim, device=device, dtype=dtype or torch.bfloat16,
                             requires_grad=True) for h in heads)  # fmt: skip


class BoundsKept:
    """Within ``with BoundsKept():`` the dK/dV pass launches with ``EVEN=False`` whatever a
    call asks (the bounds-checking build is right for any lists: it checks every tile)."""

    def __enter__(self):
        self.real = launch.attention_backward_kv
        real = self.real

        class Launcher:
            def __getitem__(self, grid):
                def launch_kernel(*args, **kwargs):
                    return real[grid](*args, **{**kwargs, "EVEN": False})

                return launch_kernel

        launch.attention_backward_kv = Launcher()
        return self

    def __exit__(self, *exc):
        launch.attention_backward_kv = self.real


def best_backward(rows: list[dict], defaults: dict) -> dict:
    """The fastest candidate of each pass from the sweep's ``rows`` (``{"what": "dkdv" | "dq",
    "mask", "config": [...], "ms"}``; rows with an ``error`` or without ``config`` are not
    candidates). A candidate counts only when it was timed at every mask the pass's rows
    name, and it wins on its time summed over them, by ``MARGIN`` against the pass's default
    (``defaults[pass]``, a candidate tuple) when that was timed too. Returns ``{"change":
    BackwardConfig fields to apply (only the passes whose winner is not the default),
    "passes": {pass: {"whole", "default", "default_ms", "best", "best_ms", "ms": {config:
    {mask: ms}}}}}`` (times in ms per call, summed over masks; ``whole``: how many candidates
    were timed at every mask)."""
    change, passes = {}, {}
    for pass_name in FIELDS:
        timed: dict[tuple, dict] = {}
        for row in rows:
            if row.get("what") == pass_name and "ms" in row and isinstance(row.get("config"), list):
                timed.setdefault(tuple(row["config"]), {})[row["mask"]] = row["ms"]
        if not timed:
            continue
        masks = {mask for times in timed.values() for mask in times}
        totals = {config: sum(times.values()) for config, times in timed.items()
                  if set(times) == masks}  # fmt: skip
        default = tuple(defaults[pass_name])
        best = min(totals, key=totals.get) if totals else None
        if best is not None and default in totals and totals[best] > MARGIN * totals[default]:
            best = default  # within the noise: keep what the library ships
        passes[pass_name] = {
            "whole": len(totals),  # candidates timed at every mask, the default among them
            "default": list(default),
            "default_ms": round(totals[default], 4) if default in totals else None,
            "best": list(best) if best is not None else None,
            "best_ms": round(totals[best], 4) if best is not None else None,
            "ms": {str(list(config)): times for config, times in timed.items()},
        }
        if best is not None and best != default:
            change.update(change_of(pass_name, best))
    return {"change": change, "passes": passes}


def write_winners(path: str, rows: list[dict], defaults: dict, **chosen_for) -> dict | None:
    """``best_backward(rows, defaults)`` with what it was chosen for (``head_dim``, ``group``,
    ``length``), written to ``path`` as JSON; returns it. Writes nothing (returns None) when
    no pass had a candidate besides its default timed at every mask: a run stopped that early
    chose nothing, and a file saying "the defaults won" would send the next step to time the
    defaults again under a claim nothing supports."""
    winners = {**chosen_for, **best_backward(rows, defaults)}
    others = [info["whole"] - (info["default_ms"] is not None)  # whole ones beside the default
              for info in winners["passes"].values()]  # fmt: skip
    if not any(count >= 1 for count in others):
        return None
    Path(path).write_text(json.dumps(winners, indent=1) + "\n")
    return winners


def load_backward(path: str, head_dim: int, group: int = 1) -> dict:
    """The ``change`` of a winners file written by ``gpu_backward_sweep.py --winners``, after
    checking it was chosen for this head size and group (SystemExit with one line if not)."""
    try:
        winners = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"--backward-tuning {path}: cannot read it ({error})") from None
    if not isinstance(winners, dict) or not isinstance(winners.get("change"), dict):
        raise SystemExit(f"--backward-tuning {path}: no winners file (it has no \"change\"; "
                         "gpu_backward_sweep.py --winners writes one)")  # fmt: skip
    chosen_for = (winners.get("head_dim"), winners.get("group"))
    if chosen_for != (head_dim, group):
        raise SystemExit(
            f"--backward-tuning {path}: chosen for head size {chosen_for[0]}, group "
            f"{chosen_for[1]}; this run is head size {head_dim}, group {group}"
        )
    unknown = set(winners["change"]) - {field for fields in FIELDS.values() for field in fields}
    if unknown:
        raise SystemExit(f"--backward-tuning {path}: unknown fields {sorted(unknown)}")
    return winners["change"]


def warm(job: dict) -> str | None:
    """One forward+backward call of ``job`` (``head_dim``, ``group``, ``length``, ``mask``: a
    ``gpu_masks.mask_of`` name, ``change``: backward fields, ``bounds_kept``; ``device`` and
    ``dtype``, cuda and bfloat16 unless given), which compiles its kernels into Triton's
    cache. Returns None, or why the call failed. A fault on the device is sticky for the
    process: the call is synchronized inside (an asynchronous fault is this job's), and a job
    that finds its worker's device already broken by an earlier one returns None (not its
    fault: the timing process runs it)."""
    import torch

    import atenea
    import gpu_masks  # the benchmarks' folder is on sys.path (spawned workers inherit it)

    device, dtype = job.get("device", "cuda"), job.get("dtype", torch.bfloat16)
    on_cuda = torch.device(device).type == "cuda"
    try:
        if on_cuda:
            torch.cuda.synchronize()
    except Exception:  # noqa: BLE001 - an earlier job's fault, not this one's
        return None
    with_backward(job["change"])
    try:
        q, k, v = inputs(job["head_dim"], job["group"], job["length"], device, dtype)
        mask = gpu_masks.mask_of(job["mask"], job["length"], device)[0]
        if job.get("bounds_kept"):
            with BoundsKept():
                atenea.attention(q, k, v, mask=mask, backend="triton").sum().backward()
        else:
            atenea.attention(q, k, v, mask=mask, backend="triton").sum().backward()
        if on_cuda:
            torch.cuda.synchronize()
    except Exception as error:  # noqa: BLE001 - the timing loop reports it again, with the row
        return f"{type(error).__name__}: {str(error)[:100]}"
    finally:
        with_backward({})
    return None


def compile_ahead(jobs: list[dict], workers: int) -> list[str | None]:
    """``warm`` each job in ``workers`` spawned processes (CUDA needs spawn); their compiled
    kernels land in Triton's on-disk cache, where this process's calls find them."""
    if workers <= 1 or not jobs:
        return [None] * len(jobs)
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
        return list(pool.map(warm, jobs))


# Two block choices sum in other orders, in float32, then round to bf16: their results differ
# by a few bf16 steps of the largest value at most. A wrong kernel differs by the values.
AGREEMENT = 2e-2


def agreement(tuning: dict, head_dim: int, length: int = 4096, device: str = "cuda",
              dtype=None) -> list[dict]:  # fmt: skip
    """The Triton call's output and gradients with ``tuning`` against the defaults' (the ones
    the session's tests check against float64), per mask of ``gpu_masks.mask_of``, B=1, H=16, bf16:
    rows ``{"check", "mask", "L", "relative_max_diff", "agrees"}`` (largest difference over
    the largest value, per tensor, the worst of out, dq, dk, dv). A tuning the sweep crowned
    for its speed (TMA, blocks queries down: builds no test has run on this GPU) is timed only
    beside this. ``dtype``: bfloat16 unless given."""
    import torch

    import atenea
    import gpu_masks

    rows = []
    for name in ("causal", "window", "documents"):
        row = {"check": "tuned against the defaults", "mask": name, "L": length}
        torch.manual_seed(0)
        q, k, v = inputs(head_dim, 1, length, device, dtype)
        grad = torch.randn_like(q)
        mask = gpu_masks.mask_of(name, length, device)[0]
        results = []
        try:
            for change in ({}, tuning):
                with_backward(change)
                out = atenea.attention(q, k, v, mask=mask, backend="triton")
                results.append([out, *torch.autograd.grad(out, (q, k, v), grad)])
            worst = max(((got.float() - want.float()).abs().max()
                         / want.float().abs().max()).item()
                        for want, got in zip(*results))  # fmt: skip
            row.update(relative_max_diff=worst, agrees=worst < AGREEMENT)
        except Exception as error:  # noqa: BLE001 - a tuned build that fails disagrees
            row.update(relative_max_diff=float("inf"), agrees=False,
                       error=f"{type(error).__name__}: {str(error)[:100]}")  # fmt: skip
        finally:
            with_backward({})
        rows.append(row)
    return rows
