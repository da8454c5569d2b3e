"""``atenea evaluate``: score a model folder written by ``atenea train`` on a data file.

    atenea evaluate --model runs/notes --data more_notes.txt

Without ``--data`` the model is scored on the validation set it was trained with.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model folder written by atenea train on a data file",
        description="Score a trained model on a data file of its task (default: the "
        "validation set it was trained with) and print the metrics.",
    )
    parser.add_argument("--model", required=True, help="a folder written by atenea train")
    parser.add_argument("--data", nargs="+", metavar="PATH", help="the data to score")
    parser.add_argument("--limit", type=int, help="score at most N examples")
    parser.add_argument("--out", help="also write the metrics to OUT/metrics.json")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from atenea.cli.errors import TRAINING_FLAGS, USER_ERRORS, fail

    try:
        return _evaluate(args)
    except USER_ERRORS as error:
        return fail("evaluate", error, flags=TRAINING_FLAGS)


def _evaluate(args) -> int:
    import atenea
    from atenea.cli.outputs import check_finished
    from atenea.training import tasks

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit: expected an integer >= 1, got {args.limit}")
    folder = Path(args.model)
    if not folder.is_dir():
        raise ValueError(f"--model: {folder}: no such folder")
    check_finished(folder)  # an interrupted run says so, and how to go on
    task = tasks.from_description(tasks.read_description(folder), folder, data=args.data)
    model, _ = atenea.load_pretrained(folder)
    metrics = task.evaluate(model, limit=args.limit)
    width = max(len(k) for k in metrics)
    for name, value in metrics.items():
        marker = "  (main)" if name == task.main_metric else ""
        print(f"{name:<{width}}  {value:.4f}{marker}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        saved = {"model": str(folder), "data": args.data, "limit": args.limit, **metrics}
        (out / "metrics.json").write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    return 0
