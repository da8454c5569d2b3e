"""``atenea`` command line. Each subcommand is a thin front over a library function; bad input
ends with a one-line message and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys

from atenea import __version__
from atenea.cli import generate


def _add_steps(subparsers) -> None:
    from atenea.cli.steps import DEFAULT_TEXT

    parser = subparsers.add_parser(
        "steps",
        help="self-attention by hand on a few words, one printed step at a time",
        description="Compute self-attention on a few words and print every step: embeddings, "
        "Q/K/V, scores, scaling, mask, softmax, output; then draw the weights as a heatmap.",
    )
    parser.add_argument(
        "text", nargs="?", default=DEFAULT_TEXT, help=f'the words (default: "{DEFAULT_TEXT}")'
    )
    parser.add_argument(
        "--causal",
        action="store_true",
        help="apply a causal mask (each word sees only itself and earlier words)",
    )
    parser.add_argument("--d-model", type=int, default=8, help="embedding size (default 8)")
    parser.add_argument("--d-k", type=int, default=4, help="query/key/value size (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of W_Q, W_K, W_V (default 0)")
    parser.add_argument(
        "--png",
        default="attention_steps.png",
        help="where to write the heatmap (default attention_steps.png)",
    )
    parser.add_argument("--no-png", action="store_true", help="do not write the heatmap")
    parser.set_defaults(run=_run_steps)


def _run_steps(args) -> int:
    from atenea.cli.steps import StepsError, run_steps

    try:
        run_steps(
            args.text,
            causal=args.causal,
            d_model=args.d_model,
            d_k=args.d_k,
            seed=args.seed,
            png=None if args.no_png else args.png,
        )
    except StepsError as error:
        print(f"atenea steps: {error}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atenea",
        description="atenea: attention and the transformers built on it.",
    )
    parser.add_argument("--version", action="version", version=f"atenea {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_steps(subparsers)
    generate.add_parser(subparsers)
    from atenea.cli import explain

    explain.add_parser(subparsers)
    from atenea.cli import train

    train.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (silences the flush at exit)
        return 0


if __name__ == "__main__":
    sys.exit(main())
