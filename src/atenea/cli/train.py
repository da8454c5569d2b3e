"""``atenea train``: the command-line front of ``atenea.training`` (``atenea evaluate`` is in
``cli/evaluate.py``).

    atenea train translate                         the built-in dates, sensible defaults
    atenea train classify --data reviews.csv --text-column review --label-column stars
    atenea train lm --data 'notes/**/*.md' --size small --steps 2000 --out runs/notes
    atenea train classify --data reviews.csv --init minilm      pretrained encoder, new head
    atenea train lm --out runs/notes --resume                   go on from the last checkpoint
    atenea evaluate --model runs/notes --data more_notes.txt

The output folder is a model folder (``--model OUT`` works for ``generate``, ``explain`` and
``evaluate``). The library writes the data of the run (``metrics.jsonl``, the model, the
checkpoints); this command then draws it: ``curves.png`` (loss and main metric against the step)
and, for translate, ``alignments/alignment-{i}.png`` (the cross-attention of a few validation
sources against the translations the model writes, as ``atenea explain`` captures it).

Under ``torchrun`` (``python -m torch.distributed.run --nproc_per_node=2 -m atenea train lm
...``) every rank runs this command and the loop shares the work; rank 0 draws.

``--out`` never replaces what atenea did not write (a folder of the user's, a file) unless
``--overwrite`` (``cli/outputs.py`` says how a run folder is recognised). Ctrl-C or SIGTERM
saves a checkpoint of the step reached (and one is saved every ``--save-minutes``), exits 130
and says how to go on; ``OUT/atenea-run.json`` keeps the run's state. ``--resume`` may raise
``--steps``: the schedule continues as if the run had been that long from the start.

Bad input (a missing file or column, a bad ``--set``, nothing to resume) ends with one line
``atenea train: ...`` and exit code 2; a run that fails while training (a non-finite loss)
with exit code 1. Never a traceback. The library's messages name its arguments; they are
shown as the flags that set them (``cli/errors.py``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from atenea.cli import evaluate, train_help
from atenea.cli.devices import add_device_arguments, device_of
from atenea.cli.train_pictures import draw_run
from atenea.training.tasks.settings import ARCHS, SIZES, TASKS

DEFAULT_OUT = "runs/{task}"
# Settings of the run that --resume takes from the saved run unless given again.
RUN_SETTINGS = ("steps", "batch_size", "accumulation", "lr", "warmup", "seed")


def add_parsers(subparsers) -> None:
    """Add ``train`` and ``evaluate`` to the ``atenea`` parser."""
    _add_train(subparsers)
    evaluate.add_parser(subparsers)


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a classifier, translator, language model, masked LM or image classifier",
        description="Train one of five tasks on your data (or on built-in data when --data is "
        "not given: sentiment sentences, dates, the Python standard library, Fashion-MNIST). "
        "The output folder is a model folder with metrics.jsonl, curves.png and checkpoints/ "
        "(images: also confusion.png).",
        add_help=False,
    )
    parser.add_argument("task", choices=TASKS, help="classify | translate | lm | mlm | images")
    train_help.add_help_flags(parser)  # TASK --help shows the task's defaults; --list-presets
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        nargs="+",
        metavar="PATH",
        help="classify/translate: a .csv, .tsv or .jsonl file; lm/mlm: text files, folders or "
        "globs; images: a folder with one subfolder per class, a CSV of path,label, or a "
        "built-in set (fashion-mnist, mnist-5k, digits); translate: bible-es-en for the "
        "built-in Spanish-English Bible (Debian's sword-text-sparv and sword-text-kjv; "
        "evaluate: bible-es-en:test, django-es-en) (default: built-in data)",
    )
    data.add_argument(
        "--validation", metavar="PATH", help="held-out data (default: 10%% of --data)"
    )
    data.add_argument("--text-column", default="text", help="classify: text column (text)")
    data.add_argument("--label-column", default="label", help="classify: label column (label)")
    data.add_argument("--source-column", default="source", help="translate: source column")
    data.add_argument("--target-column", default="target", help="translate: target column")
    model = parser.add_argument_group("model")
    model.add_argument("--size", default="tiny", choices=SIZES,
                       help="model size preset (tiny)")  # fmt: skip
    model.add_argument("--arch", choices=ARCHS,
                       help="translate: transformer (default), rnnsearch (Bahdanau et al. 2015) "
                            "or rnnencdec (the same RNN without attention)")  # fmt: skip
    model.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="change a model setting, e.g. --set num_layers=4 (repeatable)",
    )
    model.add_argument("--tokenizer", choices=("bpe", "wordpiece", "chars"),
                       help="tokenizer kind (default: per task)")  # fmt: skip
    model.add_argument("--vocab-size", type=int, help="tokenizer vocabulary size")
    model.add_argument("--max-length", type=int, help="longest sequence in tokens")
    model.add_argument(
        "--init", metavar="PATH", help="classify: start from an mlm checkpoint or 'minilm'"
    )
    model.add_argument(
        "--segment", type=int, metavar="L",
        help="lm: run the text in segments of L tokens (Transformer-XL)",
    )  # fmt: skip
    model.add_argument(
        "--memory", type=int, metavar="M",
        help="lm with --segment: keep the keys/values of the last M tokens per layer for the "
        "next segment (0: none). Training runs each example from an empty memory over "
        "ceil(M/L)+1 segments; --set carry_memory=true carries the memory from step to step "
        "instead (one segment a step, Transformer-XL's training; checkpoints keep it). "
        "Positions: rotary, or --set positions=alibi",
    )  # fmt: skip
    run = parser.add_argument_group("training (defaults: per task)")
    run.add_argument("--steps", type=int, help="optimizer steps")
    run.add_argument("--batch-size", type=int, help="examples per batch")
    run.add_argument("--accumulation", type=int, help="micro-batches per step (1)")
    run.add_argument("--lr", type=float, help="peak learning rate")
    run.add_argument("--warmup", type=int, help="linear warmup steps")
    run.add_argument("--eval-every", type=int, help="evaluate every N steps")
    run.add_argument("--save-every", type=int, help="checkpoint every N steps")
    run.add_argument(
        "--save-minutes",
        type=float,
        default=10.0,
        metavar="M",
        help="also checkpoint every M minutes (10; 0: off); Ctrl-C and SIGTERM always save",
    )
    run.add_argument("--seed", type=int, help="seed of the split, the model and the batches (0)")
    run.add_argument("--bf16", action="store_true", help="bfloat16 autocast (= --precision bf16)")
    run.add_argument("--out", help="output folder (runs/TASK)")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="train into --out even if it holds files atenea did not write, a trained model "
        "without checkpoints, or is a file",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="go on from the last checkpoint in --out; --steps may be raised (the schedule "
        "continues as if it had been that long from the start)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    run.add_argument(
        "--fsdp",
        action="store_true",
        help="under torchrun: shard the model and optimizer over the ranks (FSDP2) for models "
        "that do not fit one device",
    )
    add_device_arguments(parser, training=True)
    parser.set_defaults(run=run_train)


# -- train ------------------------------------------------------------------------------------


def run_train(args) -> int:
    from atenea.cli.errors import TRAINING_FLAGS, USER_ERRORS, fail
    from atenea.training import distributed
    from atenea.training.config import TrainingError

    try:
        distributed.setup()
        try:
            return _train(args)
        finally:
            distributed.teardown()
    except TrainingError as error:
        return fail("train", error, 1, flags=TRAINING_FLAGS)
    except USER_ERRORS as error:
        return fail("train", error, flags=TRAINING_FLAGS)
    except KeyboardInterrupt as error:
        stopped = getattr(error, "atenea_message", "interrupted")  # outside the loop: no save
        print(f"\natenea train: {stopped}", file=sys.stderr)
        return 130


def _check_numbers(args) -> None:
    for name in ("steps", "batch_size", "accumulation", "vocab_size", "max_length", "warmup",
                 "eval_every", "save_every", "seed"):  # fmt: skip
        value = getattr(args, name)
        lowest = 0 if name in ("warmup", "eval_every", "save_every", "seed") else 1
        if value is not None and value < lowest:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag}: expected an integer >= {lowest}, got {value}")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr: expected a number > 0, got {args.lr}")
    if not args.save_minutes >= 0:
        raise ValueError(f"--save-minutes: expected a number >= 0, got {args.save_minutes}")


def _resumed_task(args, out: Path):
    from atenea.training import tasks
    from atenea.training.state import latest_checkpoint

    checkpoint = latest_checkpoint(out)
    if checkpoint is None:
        raise ValueError(f"--resume: nothing to resume, no complete checkpoint in {out}")
    info = tasks.read_description(checkpoint)
    if info["task"] != args.task:
        raise ValueError(f"--resume: {out} holds a {info['task']} run, not {args.task}")
    saved_arch = (info.get("options") or {}).get("arch", "transformer")
    if args.arch is not None and args.arch != saved_arch:
        raise ValueError(f"--arch: {out} holds a {saved_arch} run, not {args.arch}")
    _refuse_changes(args, info, out)
    return tasks.from_description(info, checkpoint)


def _refuse_changes(args, info: dict, out: Path) -> None:
    """A resumed run's data, model and tokenizer are its checkpoint's: a flag that would change
    them is refused, not ignored (the same value, the first command line again, is fine).
    ``--vocab-size`` is compared with the size asked for, not the one learned (at most that
    many); runs saved before the request was recorded are not compared."""
    from atenea.training import tasks

    tokenizer = info.get("tokenizer") or {}
    data = [str(Path(p)) for p in args.data] if args.data else None
    fixed = (
        ("--size", args.size if args.size != "tiny" else None, info.get("size", "tiny")),
        ("--set", tasks.parse_overrides(args.overrides) or None, info.get("overrides") or {}),
        ("--data", data, [str(Path(p)) for p in info.get("data") or []] or None),
        ("--tokenizer", args.tokenizer, tokenizer.get("kind")),
        ("--max-length", args.max_length, info.get("max_length")),
        ("--init", args.init, info.get("init")),
    )
    if "requested" in tokenizer:
        fixed += (("--vocab-size", args.vocab_size, tokenizer["requested"]),)
    for flag, given, saved in fixed:
        if given is not None and given != saved:
            if isinstance(saved, dict):  # --set's items as typed
                saved = " ".join(f"{key}={value}" for key, value in saved.items())
            elif isinstance(saved, list):
                saved = " ".join(saved)
            raise ValueError(
                f"{flag}: {out} goes on with the model, data and tokenizer it was started with "
                f"({flag} {saved or 'not given'}); drop {flag}, or start a new run in another "
                f"--out"
            )


def _new_task(args, out: Path):
    from atenea.cli.outputs import check_run_output, make_output_folder
    from atenea.training import distributed, tasks
    from atenea.training.state import latest_checkpoint

    check_run_output(out, args.overwrite, delete=distributed.is_main())
    make_output_folder(out)
    if latest_checkpoint(out) is not None:
        raise ValueError(
            f"--out: {out} already holds a run; add --resume to go on with it, or choose "
            f"another --out"
        )
    return tasks.build_task(
        args.task, data=args.data, validation=args.validation, size=args.size,
        overrides=_overrides(args), max_length=args.max_length,
        tokenizer_kind=args.tokenizer, vocab_size=args.vocab_size, init=args.init,
        seed=args.seed or 0, text_column=args.text_column, label_column=args.label_column,
        source_column=args.source_column, target_column=args.target_column,
        arch=args.arch or "transformer",
    )  # fmt: skip


def _overrides(args) -> dict:
    """``--set`` items, with ``--segment`` / ``--memory`` as the settings they stand for."""
    from atenea.training import tasks

    overrides = tasks.parse_overrides(args.overrides)
    segment, memory = getattr(args, "segment", None), getattr(args, "memory", None)
    if (segment is not None or memory is not None) and args.task != "lm":
        raise ValueError(f"--segment: segment memory is for lm, not {args.task}")
    if memory is not None and not segment:
        raise ValueError("--memory: needs --segment L (the memory carries from segment to segment)")
    for flag, value, lowest in (("--segment", segment, 2), ("--memory", memory, 0)):
        if value is not None and value < lowest:
            raise ValueError(f"{flag}: expected an integer >= {lowest}, got {value}")
    if segment:
        overrides.update(segment=str(segment), memory_len=str(memory or 0))
    return overrides


def _train(args) -> int:
    from atenea.cli.outputs import train_recorded
    from atenea.training import distributed, loop, sampling, tasks
    from atenea.training.devices import uses_bf16

    _check_numbers(args)
    # One process trains on --device; under torchrun each rank takes its own GPU (or the CPU).
    device = device_of(args) if distributed.world().size == 1 else distributed.device()
    bf16 = args.bf16 or uses_bf16(args.precision, device)
    out = Path(args.out or DEFAULT_OUT.format(task=args.task))
    main = distributed.is_main()
    started = time.perf_counter()
    task = _resumed_task(args, out) if args.resume else _new_task(args, out)
    # Run settings: the flags, else (on --resume) the saved run's, else the task's defaults.
    saved = task.info.get("training", {})
    settings = {**tasks.DEFAULTS[args.task], "accumulation": 1, "seed": 0, **saved}
    for name in RUN_SETTINGS:
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    if not args.resume and args.batch_size is None:  # a default larger than the data shrinks
        note = train_help.fit_batch_size(settings, task.num_train_examples(),
                                         distributed.world().size)  # fmt: skip
        if note and main and not args.quiet:
            print(f"note: {note}")
    steps = settings["steps"]
    # At most half the run's steps: this run's on a fresh run (``saved`` then holds the task's
    # defaults, e.g. a built-in run's steps), the saved run's on --resume. The warmup actually
    # used is saved, so a resumed run that raises --steps keeps it.
    planned = (saved.get("steps") if args.resume else None) or steps
    settings["warmup"] = min(settings["warmup"], planned // 2)
    task.info["training"] = {name: settings[name] for name in RUN_SETTINGS}
    config = loop.TrainConfig(
        output=out, steps=steps, batch_size=settings["batch_size"],
        accumulation=settings["accumulation"], lr=settings["lr"],
        warmup=settings["warmup"], seed=settings["seed"], save_minutes=args.save_minutes,
        eval_every=args.eval_every if args.eval_every is not None else max(steps // 5, 1),
        save_every=args.save_every if args.save_every is not None else max(steps // 2, 1),
        bf16=bf16, compile=args.compile, fsdp=args.fsdp, progress=not args.quiet and main,
    )  # fmt: skip
    model = sampling.initial_model(task, settings["seed"])  # the same command, the same model
    model.to(device)
    if main and not args.quiet:
        print(train_help.run_summary(task, model, config, args.resume), flush=True)
    metrics = train_recorded(task, model, config, args.task, out, args.resume)
    if main:  # the run is complete: draw it
        draw_run(out, task)
        if not args.quiet:
            _summary(task, metrics, out, time.perf_counter() - started)
    return 0


def _summary(task, metrics: dict, out: Path, seconds: float) -> None:
    main = task.main_metric
    others = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != main)
    minutes, rest = divmod(int(round(seconds)), 60)
    value = metrics.get(main, float("nan"))
    extra = f" ({others})" if others else ""
    print(f"\ntrained {task.name} in {minutes}m{rest:02d}s: {main} {value:.4g}{extra}")
    print(f"model: {out}  (metrics.jsonl, curves.png, checkpoints/)")
    print("next:")
    if task.name == "images":
        example = (task.example_inputs(1) or ["IMAGE.png"])[0]
        print(f"  atenea explain --image {example} --model {out}")
        print(f"  atenea evaluate --model {out}")
        return
    example = _example_input(task)
    if task.name in ("translate", "lm"):
        print(f'  atenea generate --model {out} --prompt "{example}"')
    print(f'  atenea explain "{example}" --model {out}')
    # The held-out examples, never the training file (a model scores well on what it learned).
    validation = task.info.get("validation")
    if validation:
        print(f"  atenea evaluate --model {out} --data {validation}")
    else:
        print(f"  atenea evaluate --model {out}      (its held-out validation split)")


def _example_input(task) -> str:
    """A short input for the suggested commands: a validation input of the task."""
    text = task.example_inputs(1)[0]
    if task.name != "translate":
        text = " ".join(text.split())[:60]
    return text.replace('"', "'") or "hello"
