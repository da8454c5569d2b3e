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
    knn = parser.add_argument_group("kNN-LM (lm models)")
    knn.add_argument(
        "--knn", metavar="DATASTORE",
        help="interpolate with a kNN datastore of the model's hidden states (built from its "
        "training texts, and saved there, if missing)",
    )  # fmt: skip
    knn.add_argument("--lambda", dest="knn_lambda", type=float, default=0.25,
                     help="weight of the kNN distribution (0.25)")  # fmt: skip
    knn.add_argument("--knn-k", type=int, default=16, help="neighbours per token (16)")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from atenea.cli.errors import TRAINING_FLAGS, USER_ERRORS, fail

    try:
        return _evaluate(args)
    except USER_ERRORS as error:
        return fail("evaluate", error, flags=TRAINING_FLAGS)


def _evaluate(args) -> int:
    import atenea
    from atenea.training import tasks

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit: expected an integer >= 1, got {args.limit}")
    folder = Path(args.model)
    if not folder.is_dir():
        raise ValueError(f"--model: {folder}: no such folder")
    task = tasks.from_description(tasks.read_description(folder), folder, data=args.data)
    model, _ = atenea.load_pretrained(folder)
    if getattr(args, "knn", None):
        from atenea.cli.retrieval import evaluate_with_knn

        metrics = evaluate_with_knn(args, task, model)
    else:
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
