"""``atenea`` command line. Each subcommand is a thin front over a library function, in its own
module (``add_parser`` and ``run``); bad input ends with a one-line message and exit code 2,
never a traceback."""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings

from atenea import __version__
from atenea.cli import convert, cost, explain, generate, predict, retrieval, steps, train


class Parser(argparse.ArgumentParser):
    """argparse, reading ``--lengths -5,10`` as a value: Python before 3.13 takes only a plain
    negative number after an option for its value, and "-5,10" for an unknown flag (the message
    "expected one argument" hides the range check that would name the mistake)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"-\.?\d")  # 3.13's own rule


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="atenea",
        description="atenea: attention and the transformers built on it.",
    )
    parser.add_argument("--version", action="version", version=f"atenea {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    steps.add_parser(subparsers)
    cost.add_parser(subparsers)
    generate.add_parser(subparsers)
    explain.add_parser(subparsers)
    train.add_parsers(subparsers)
    predict.add_parser(subparsers)
    retrieval.add_parsers(subparsers)
    convert.add_parser(subparsers)
    return parser


def _note(message, category, filename, lineno, line=None) -> str:
    """A warning as a command shows it: one line, not the library's file, line and source."""
    return f"note: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _note
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # --help and --list-presets print here
        if not hasattr(args, "run"):
            parser.print_help()
            return 2
        return args.run(args)
    except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (silences the flush at exit)
        return 0


if __name__ == "__main__":
    sys.exit(main())
