"""``atenea predict``: what a trained model says about new inputs.

    atenea predict --model runs/reviews "a great film"           label and probabilities
    atenea predict --model runs/dates "3 de mayo de 1999"        the translation
    atenea predict --model runs/notes "import os"                the continuation
    atenea predict --model runs/reviews --data new.csv --output preds.csv

Inputs are the texts given, or a file: a ``.csv``/``.tsv``/``.jsonl`` table (the column the
model was trained on: ``--text-column`` for classify, ``--source-column`` for translate; or
``--column``) or a ``.txt`` file with one input per line. The predictions are printed, or
written as a CSV (``--output``): ``input``, ``prediction`` and, for classify, one
``p(LABEL)`` column per label. An existing ``--output`` is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from atenea.cli.devices import add_device_arguments, device_of
from atenea.cli.errors import USER_ERRORS, check_utf8, fail

PREDICT_FLAGS = {"model": "--model", "max_new_tokens": "--max-new-tokens", "input": "TEXT",
                 "device": "--device"}  # fmt: skip


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict with a trained model: labels, translations, continuations, image classes",
        description="Run a model folder written by atenea train on new inputs: a classifier "
        "gives the label and every label's probability, a translator the translation, a "
        "language model the continuation, an image classifier each image file's class. Give "
        "the inputs, or --data FILE (a .txt with one per line, or a table's column).",
    )
    parser.add_argument(
        "texts", nargs="*", metavar="TEXT", help="inputs to predict (images: image files)"
    )
    parser.add_argument("--model", required=True, help="a folder written by atenea train")
    parser.add_argument(
        "--data", metavar="FILE", help="inputs from a .csv/.tsv/.jsonl table or a .txt file"
    )
    parser.add_argument(
        "--column", help="the table's input column (default: the one the model trained on)"
    )
    parser.add_argument("--output", metavar="CSV", help="write the predictions to this CSV")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument(
        "--max-new-tokens", type=int, default=40, help="lm: continuation length at most (40)"
    )
    add_device_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    try:
        return _predict(args)
    except USER_ERRORS as error:
        return fail("predict", error, flags=PREDICT_FLAGS)


def _inputs(args, columns: dict, images: bool = False) -> list[str]:
    from atenea.retrieval.files import read_column

    if bool(args.texts) == bool(args.data):
        raise ValueError("give the texts to predict, or --data FILE (one of the two)")
    if args.texts:
        for text in args.texts if not images else ():  # image paths may hold any bytes
            check_utf8("TEXT", text)
        if not all(text.strip() for text in args.texts):
            raise ValueError("TEXT: an input is empty")
        return list(args.texts)
    path = Path(args.data)
    if path.suffix.lower() == ".txt":
        from atenea.retrieval.files import read_text

        lines = [line for line in read_text(path).splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"--data: {path} has no inputs (one per line)")
        return lines
    default = columns.get("text") or columns.get("source") or ("path" if images else "text")
    return read_column(path, args.column or default)


def _predict(args) -> int:
    from atenea.cli.outputs import check_file_output, check_finished
    from atenea.training.predict import Predictor
    from atenea.training.tasks import read_description

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens: expected an integer >= 1, got {args.max_new_tokens}")
    device = device_of(args)  # a device that is not there: said before anything is read
    folder = Path(args.model)
    if not folder.is_dir():
        raise ValueError(f"--model: {folder}: no such folder")
    check_finished(folder)
    if args.output:
        check_file_output(Path(args.output), "--output", args.overwrite)
    info = read_description(folder)
    texts = _inputs(args, info.get("columns") or {}, images=info.get("task") == "images")
    predictor = Predictor.from_folder(folder, max_new_tokens=args.max_new_tokens, device=device)
    results = predictor.predict(texts, progress=True)
    if args.output:
        _write_csv(Path(args.output), results)
        print(f"{len(results)} predictions: {args.output}")
    else:
        for result in results:
            print(_line(result, several=len(results) > 1))
    return 0


def _line(result: dict, several: bool) -> str:
    """``good  0.93  (bad 0.07)``; translations and continuations as they are."""
    text = result["prediction"]
    if "probabilities" in result:
        ranked = sorted(result["probabilities"].items(), key=lambda item: -item[1])
        others = ", ".join(f"{label} {p:.2f}" for label, p in ranked[1:])
        text = f"{ranked[0][0]}  {ranked[0][1]:.2f}" + (f"  ({others})" if others else "")
    return f"{result['input']}\t{text}" if several else text


def _write_csv(path: Path, results: list[dict]) -> None:
    labels = list(results[0].get("probabilities", {}))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["input", "prediction", *(f"p({label})" for label in labels)])
            for r in results:
                chances = [f"{r['probabilities'][label]:.6f}" for label in labels]
                writer.writerow([r["input"], r["prediction"], *chances])
    except OSError as error:
        raise ValueError(f"--output: cannot write {path}: {error.strerror or error}") from None
