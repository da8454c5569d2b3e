"""Honest help for ``atenea train``: what a task does with no flags, what the sizes mean, and a
summary of every run before it starts.

    atenea train classify --help      the flags, then classify's defaults and sizes
    atenea train --list-presets       every task's defaults and sizes, as a table

The numbers are read from ``training.tasks.settings`` (``DEFAULTS``, ``SIZE_PRESETS``), the
ones a run uses, so the help cannot drift from them.
"""

from __future__ import annotations

import argparse
from collections import Counter

from atenea.training.tasks.settings import (
    DEFAULTS,
    MODEL_CONFIGS,
    SIZE_PRESETS,
    SIZES,
    TASKS,
    model_shape,
)


def add_help_flags(parser: argparse.ArgumentParser) -> None:
    """``-h/--help`` that adds the named task's defaults, and ``--list-presets``."""
    parser.add_argument(
        "-h", "--help", action=_TaskHelp, nargs=0, help="this help (after TASK: with its defaults)"
    )
    parser.add_argument(
        "--list-presets", action=_ListPresets, nargs=0,
        help="every task's default settings and model sizes, then exit",
    )  # fmt: skip


class _TaskHelp(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        task = getattr(namespace, "task", None)
        print("\n" + (task_defaults(task) if task in TASKS else _hint()))
        parser.exit()


class _ListPresets(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print("\n\n".join(task_defaults(task) for task in TASKS))
        parser.exit()


def _hint() -> str:
    return "Each task's defaults: atenea train TASK --help, or atenea train --list-presets."


def _shape(task: str, size: str) -> str:
    shape = model_shape(MODEL_CONFIGS[task], size)
    layers = shape.get("num_layers")
    if layers is None:
        layers = f"{shape['num_encoder_layers']} enc + {shape['num_decoder_layers']} dec"
    preset, changes = SIZE_PRESETS[MODEL_CONFIGS[task]][size]
    # "small" is bert-base's recipe at a quarter of its width: say it is resized, lest a
    # reader take the 256-wide model for bert-base itself.
    resized = changes != {k: getattr(MODEL_CONFIGS[task].from_name(preset), k) for k in changes}
    origin = f"the {preset} preset" + (", resized" if resized else "")
    return (f"dim {shape['dim']}, layers {layers}, heads {shape['num_heads']}, "
            f"ffn {shape['ffn_hidden']}  ({origin})")  # fmt: skip


def task_defaults(task: str) -> str:
    """A few lines: the run settings a task uses with no flags, and its sizes."""
    d = DEFAULTS[task]
    lines = [
        f"{task} defaults (a run with no flags):",
        f"  --steps {d['steps']}  --batch-size {d['batch_size']}  --lr {d['lr']:g}  "
        f"--warmup {d['warmup']} (at most steps/2)",
        # text tasks: their tokenizer; images: pictures, no tokens
        *(
            [
                f"  --max-length {d['max_length']}  --tokenizer {d['tokenizer']}  "
                f"--vocab-size {d['vocab_size']}"
            ]
            if "max_length" in d
            else []
        ),
        "  --eval-every steps/5  --save-every steps/2  --save-minutes 10  --seed 0",
        f"{task} sizes (--size; --set KEY=VALUE changes one field):",
    ]
    lines += [f"  {size:<6} {_shape(task, size)}" + ("  [default]" if size == "tiny" else "")
              for size in SIZES]  # fmt: skip
    return "\n".join(lines)


def fit_batch_size(settings: dict, examples: int, world_size: int = 1) -> str | None:
    """A default batch larger than the training data would be an error (a step needs that many
    examples): take the whole data a step instead, a multiple of the world size. Changes
    ``settings["batch_size"]``; returns the note to show, or None when the default fits."""
    group = settings["batch_size"] * settings["accumulation"]
    if examples >= group:
        return None
    fitted = examples // settings["accumulation"] // world_size * world_size
    if fitted < 1:
        return None  # too little data for even one example a rank: the loop's error says so
    settings["batch_size"] = fitted
    return (f"{examples} training examples, fewer than the default batch of {group}: "
            f"batch size {fitted} (--batch-size sets it)")  # fmt: skip


# -- the summary a run starts with ------------------------------------------------------------


def run_summary(task, model, config, resumed: bool) -> str:
    """What is about to happen: data, labels, model size, device, precision, where it goes."""
    examples = "rows" if task.name in ("lm", "mlm") else "examples"
    count = task.num_validation_examples()
    lines = [
        f"atenea train {task.name}: {task.num_train_examples()} training {examples}, "
        f"{count if count is not None else '?'} validation",
    ]
    builtin = task.info.get("builtin") or {}
    if builtin.get("name"):
        instead = builtin.get("instead_of")
        lines.append(
            f"  data: the built-in {builtin['name']}"
            + (f" ({instead} is not installed: make data, or pass --data)" if instead else "")
        )
    labels = getattr(task, "train_labels", None)
    if labels is not None:
        names = task.info.get("labels", [])
        counts = Counter(names[i] for i in labels)
        lines.append("  labels: " + ", ".join(f"{n} {counts[n]}" for n in names))
    parameters = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device  # where the command put it (--device)
    every = f"every {config.save_every} steps" if config.save_every else "at the end"
    if config.save_minutes:
        every += f" and every {config.save_minutes:g} minutes"
    lines += [
        f"  model: {type(model).__name__}, {parameters / 1e6:.2f}M parameters, on {device}, "
        f"{'bfloat16 autocast' if config.bf16 else 'float32'}",
        f"  run: {'resumed, to ' if resumed else ''}{config.steps} steps of "
        f"{config.batch_size * config.accumulation} examples, lr {config.lr:g}, warmup "
        f"{config.warmup}, seed {config.seed}",
        f"  output: {config.output}  (checkpoints {every}, and on Ctrl-C)",
    ]
    return "\n".join(lines)
