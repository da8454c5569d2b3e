"""``atenea evaluate``: score a model folder written by ``atenea train`` on a data file.

    atenea evaluate --model runs/notes --data more_notes.txt

Without ``--data`` the model is scored on the validation set it was trained with (its
held-out split, never the training examples). A classifier also gets precision, recall and F1
per label and its confusion matrix (printed; ``--png`` or ``--out`` draw it), and so does an
image classifier; a label the model never learned is counted, not fatal. A translator whose
references are mostly shorter than four words is read by exact match and chrF first (BLEU has no
4-grams to count there; a note says so). ``--predictions FILE`` writes each example's prediction
(training.evaluation). An existing ``--predictions`` file, or a file at ``--png`` or in ``--out``
that atenea did not write, is replaced only with ``--overwrite`` (checked before the model runs).
"""

from __future__ import annotations

import json
from pathlib import Path

from atenea.cli.devices import add_device_arguments, device_of


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model folder written by atenea train on a data file",
        description="Score a trained model on a data file of its task (default: the "
        "held-out validation set it was trained with) and print the metrics; a classifier also "
        "gets precision, recall and F1 per label and its confusion matrix.",
    )
    parser.add_argument("--model", required=True, help="a folder written by atenea train")
    parser.add_argument("--data", nargs="+", metavar="PATH", help="the data to score")
    parser.add_argument("--limit", type=int, help="score at most N examples")
    parser.add_argument(
        "--out", help="also write OUT/metrics.json (and OUT/confusion.png for a classifier)"
    )
    parser.add_argument(
        "--predictions", metavar="CSV", help="write each example's prediction (classify, translate)"
    )
    parser.add_argument(
        "--png", metavar="PATH", help="classify, images: the confusion matrix as a PNG"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --predictions file, and files in --out or at --png that atenea "
        "did not write",
    )
    for column in ("text", "label", "source", "target"):
        parser.add_argument(f"--{column}-column", metavar="NAME", help=f"the data's {column} "
                            "column (default: as in training)")  # fmt: skip
    knn = parser.add_argument_group("kNN-LM (lm models)")
    knn.add_argument(
        "--knn", metavar="DATASTORE",
        help="interpolate with a kNN datastore of the model's hidden states (built from its "
        "training texts, and saved there, if missing)",
    )  # fmt: skip
    knn.add_argument("--lambda", dest="knn_lambda", type=float, default=0.25,
                     help="weight of the kNN distribution (0.25)")  # fmt: skip
    knn.add_argument("--knn-k", type=int, default=16, help="neighbours per token (16)")
    add_device_arguments(parser)
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from atenea.cli.errors import TRAINING_FLAGS, USER_ERRORS, fail

    try:
        return _evaluate(args)
    except USER_ERRORS as error:
        return fail("evaluate", error, flags=TRAINING_FLAGS)


def _evaluate(args) -> int:
    from atenea.cli.evaluation_report import print_evaluation, write_predictions
    from atenea.cli.outputs import check_finished
    from atenea.inspect.plots import confusion_png
    from atenea.training.evaluation import evaluate_folder

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit: expected an integer >= 1, got {args.limit}")
    device = device_of(args)  # a device that is not there: said before anything is read
    folder = Path(args.model)
    if not folder.is_dir():
        raise ValueError(f"--model: {folder}: no such folder")
    check_finished(folder)  # an interrupted run says so, and how to go on
    _check_outputs(args, folder)  # before the work: nothing atenea did not write is replaced
    if getattr(args, "knn", None):
        metrics = _evaluate_with_knn(args, folder, device)
        if args.out:
            _save_metrics(args, folder, metrics)
        return 0
    columns = {c: getattr(args, f"{c}_column") for c in ("text", "label", "source", "target")}
    wanted = {k: v for k, v in columns.items() if v}
    result = evaluate_folder(folder, args.data, wanted, args.limit, device=device, progress=True)
    print_evaluation(result)
    metrics = result.metrics
    pictures = [Path(args.png)] if args.png else []
    if args.out and result.confusion:
        pictures.append(Path(args.out) / "confusion.png")
    if pictures or args.predictions:
        print()  # the files written, apart from the numbers
    for path in pictures:
        try:
            written = confusion_png(result.confusion, result.labels, path, "confusion matrix")
            print(f"confusion matrix: {written}")
        except ImportError as error:  # matplotlib missing: the numbers are printed already
            raise ValueError(f"--png: {error}") from None
    if args.predictions:
        if not result.rows:
            raise ValueError(f"--predictions: a {result.task} model has no per-example predictions")
        print(f"predictions: {write_predictions(result.rows, Path(args.predictions))}")
    if args.out:
        _save_metrics(args, folder, metrics)
    return 0


CONFUSION_TASKS = ("classify", "images")  # the tasks whose evaluation has a confusion matrix


def _check_outputs(args, folder: Path) -> None:
    """Raise ``ValueError`` when an output cannot be written: ``--png`` for a model without a
    confusion matrix, or a file atenea did not write in the way (``cli/outputs.py``)."""
    from atenea.cli.outputs import check_file_output, check_picture_output
    from atenea.inspect.plots import png_path
    from atenea.training.tasks import read_description

    task = read_description(folder).get("task")
    if args.png:
        if task not in CONFUSION_TASKS:
            raise ValueError(f"--png: draws a classifier's confusion matrix (classify, images); "
                             f"{folder} holds a model of the {task} task")  # fmt: skip
        args.png = str(png_path(args.png))  # a picture cannot go to out.csv
        check_picture_output([args.png], "--png", args.overwrite)
    if args.predictions:
        check_file_output(Path(args.predictions), "--predictions", args.overwrite)
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out: {out} is a file; give a folder for metrics.json")
        check_file_output(out / "metrics.json", "--out", args.overwrite, _our_metrics)
        if task in CONFUSION_TASKS and not getattr(args, "knn", None):
            check_picture_output([out / "confusion.png"], "--out", args.overwrite)


def _our_metrics(path: Path) -> bool:
    """Whether ``path`` is a ``metrics.json`` that ``atenea evaluate --out`` wrote."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(value, dict) and {"model", "data", "limit"} <= set(value)


def _evaluate_with_knn(args, folder: Path, device) -> dict:
    """An lm run scored with its distribution interpolated with a kNN datastore's."""
    import atenea
    from atenea.cli.retrieval import evaluate_with_knn
    from atenea.training import tasks

    task = tasks.from_description(tasks.read_description(folder), folder, data=args.data)
    model, _ = atenea.load_pretrained(folder)
    metrics = evaluate_with_knn(args, task, model.to(device))
    width = max(len(k) for k in metrics)
    for name, value in metrics.items():
        marker = "  (main)" if name == task.main_metric else ""
        print(f"{name:<{width}}  {value:.4f}{marker}")
    return metrics


def _save_metrics(args, folder: Path, metrics: dict) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = {"model": str(folder), "data": args.data, "limit": args.limit, **metrics}
    (out / "metrics.json").write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
