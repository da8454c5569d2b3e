"""``atenea steps``: self-attention computed by hand on a few words, one printed step at a time.

The same steps as ``atenea.attention(..., backend="reference")``, on tensors small enough to
read: embeddings X, projections Q/K/V, scores, scaling, mask, softmax, output, and a heatmap
of the weights. The last line checks the hand computation against ``atenea.attention``.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch

import atenea
from atenea import masks
from atenea.cli.errors import fail
from atenea.inspect.plots import heatmap_png

DEFAULT_TEXT = "el banco cerró temprano"
MAX_TOKENS = 16


class StepsError(ValueError):
    """Bad input for ``atenea steps`` (shown to the user as a one-line message)."""


def add_parser(subparsers) -> None:
    """Add the ``steps`` subcommand to the ``atenea`` parser."""
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
    parser.set_defaults(run=run)


def run(args) -> int:
    from atenea.inspect.plots import png_path

    try:
        if not args.no_png:
            try:  # before the steps print: a picture cannot go to out.csv
                args.png = png_path(args.png)
            except ValueError as error:
                raise StepsError(f"--png: {error}") from None
        run_steps(
            args.text,
            causal=args.causal,
            d_model=args.d_model,
            d_k=args.d_k,
            seed=args.seed,
            png=None if args.no_png else args.png,
        )
    except StepsError as error:
        return fail("steps", error)
    return 0


def word_embedding(word: str, d_model: int) -> torch.Tensor:
    """A fixed pseudo-random vector per word (seeded by a hash of the word): the same word gets
    the same embedding in every sentence and every run, as in a real embedding table."""
    generator = torch.Generator().manual_seed(zlib.crc32(word.lower().encode("utf-8")))
    return torch.randn(d_model, generator=generator)


def _label(token: str, width: int) -> str:
    return token if len(token) <= width else token[: width - 1] + "…"


def format_matrix(matrix: torch.Tensor, rows: list[str], cols: list[str], digits: int = 2) -> str:
    """A labelled, aligned text table of a 2-D tensor (``-inf`` printed as ``-inf``)."""
    width = max(7, digits + 5, *(len(_label(c, 9)) + 1 for c in cols))
    label_width = max(len(_label(r, 12)) for r in rows) + 2
    head = " " * label_width + "".join(f"{_label(c, 9):>{width}}" for c in cols)
    lines = [head]
    for name, row in zip(rows, matrix.tolist()):
        cells = "".join(
            f"{'-inf':>{width}}" if value == float("-inf") else f"{value:>{width}.{digits}f}"
            for value in row
        )
        lines.append(f"{_label(name, 12):<{label_width}}{cells}")
    return "\n".join(lines)


def run_steps(
    text: str = DEFAULT_TEXT,
    *,
    causal: bool = False,
    d_model: int = 8,
    d_k: int = 4,
    seed: int = 0,
    png: str | Path | None = "attention_steps.png",
    echo=print,
) -> dict[str, torch.Tensor]:
    """Print the seven steps for ``text`` and return every intermediate tensor by name."""
    tokens = text.split()
    if not tokens:
        raise StepsError('give at least one word, e.g. atenea steps "el banco cerró temprano"')
    if len(tokens) > MAX_TOKENS:
        raise StepsError(
            f"{len(tokens)} words is too many to print as matrices; give at most {MAX_TOKENS}"
        )
    if not 1 <= d_model <= 64 or not 1 <= d_k <= 64:
        raise StepsError(f"--d-model and --d-k must lie in 1..64, got {d_model} and {d_k}")

    length = len(tokens)
    generator = torch.Generator().manual_seed(seed)
    w_q = torch.randn(d_model, d_k, generator=generator) / math.sqrt(d_model)
    w_k = torch.randn(d_model, d_k, generator=generator) / math.sqrt(d_model)
    w_v = torch.randn(d_model, d_k, generator=generator) / math.sqrt(d_model)
    dims = [f"d{i}" for i in range(d_model)]
    kdims = [f"d{i}" for i in range(d_k)]

    echo("atenea steps: self-attention by hand")
    echo(
        f"tokens: {' | '.join(tokens)}   (L = {length}, d_model = {d_model}, d_k = {d_k}, "
        f"seed = {seed})"
    )
    echo("")

    x = torch.stack([word_embedding(t, d_model) for t in tokens])  # (L, d_model)
    echo(f"Step 1. Input X: one embedding per token, shape (L, d_model) = ({length}, {d_model})")
    echo(format_matrix(x, tokens, dims))
    echo("")

    q, k, v = x @ w_q, x @ w_k, x @ w_v  # (L, d_k) each
    echo(
        f"Step 2. Projections Q = X W_Q, K = X W_K, V = X W_V, each ({length}, {d_k}); "
        f"W_* are random (seed {seed}), as before training"
    )
    for name, t in (
        ("Q (what each token looks for)", q),
        ("K (what each token offers)", k),
        ("V (what each token passes on)", v),
    ):
        echo(name)
        echo(format_matrix(t, tokens, kdims))
    echo("")

    scores = q @ k.T  # (L, L)
    echo(f"Step 3. Scores = Q K^T, shape ({length}, {length}): row = query, column = key")
    echo(format_matrix(scores, tokens, tokens))
    scaled = scores / math.sqrt(d_k)
    echo(
        f"        Scaled scores = scores / sqrt(d_k) = scores / {math.sqrt(d_k):.2f}, so the "
        f"softmax does not saturate as d_k grows"
    )
    echo(format_matrix(scaled, tokens, tokens))
    echo("")

    if causal:
        allowed = masks.causal().materialize(length, length)[0, 0]
        masked = scaled.masked_fill(~allowed, float("-inf"))
        echo(
            "Step 4. Causal mask: a token may attend to itself and the tokens before it "
            "(1 = True = may attend)"
        )
        echo(format_matrix(allowed.float(), tokens, tokens, digits=0))
        echo(
            "        Masked scores: where the mask is False the score becomes -inf "
            "(weight 0 after the softmax)"
        )
        echo(format_matrix(masked, tokens, tokens))
    else:
        allowed = torch.ones(length, length, dtype=torch.bool)
        masked = scaled
        echo("Step 4. Mask: none (every token may attend to every token; try --causal)")
    echo("")

    weights = torch.softmax(masked, dim=-1)  # (L, L)
    sums = weights.sum(-1)
    echo("Step 5. Softmax over each row: the attention weights, each row a distribution")
    echo(format_matrix(weights, tokens, tokens, digits=3))
    ok = bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-6))
    echo(
        "        row sums: "
        + ", ".join(f"{s:.6f}" for s in sums.tolist())
        + ("  (each is 1: ok)" if ok else "  (NOT 1: this is a bug)")
    )
    echo("")

    y = weights @ v  # (L, d_k)
    echo(
        f"Step 6. Output Y = weights V, shape ({length}, {d_k}): each row mixes the values "
        f"of the tokens it attends to"
    )
    echo(format_matrix(y, tokens, kdims))
    echo("")

    echo("Step 7. Inspect the weights: what each token attends to most")
    for i, token in enumerate(tokens):
        top = torch.topk(weights[i], k=min(3, int(allowed[i].sum())))
        parts = [f"{tokens[j]} {w:.2f}" for w, j in zip(top.values.tolist(), top.indices.tolist())]
        echo(f"        {token:<12} -> " + ", ".join(parts))
    if png is not None:
        title = "attention weights" + ("" if bool(allowed.all()) else " (grey: masked)")
        try:
            written = heatmap_png(
                weights, tokens, png, title, allowed=allowed, show_values=True, vmax=1.0
            )
        except ImportError:
            echo("        (no heatmap: matplotlib is not installed; pip install 'atenea[plot]')")
        except OSError as error:
            raise StepsError(
                f"cannot write the heatmap to {png}: {error.strerror or error}"
            ) from None
        else:
            echo(f"        heatmap written to {written}")
    echo("")

    library = atenea.attention(
        q[None, None],
        k[None, None],
        v[None, None],
        mask=masks.causal() if causal else None,
        backend="auto",
    )[0, 0]
    difference = float((library - y).abs().max())
    echo(
        f"Check: atenea.attention(q, k, v{', mask=masks.causal()' if causal else ''}) gives the "
        f"same Y (largest difference {difference:.1e})"
    )
    return {
        "x": x,
        "q": q,
        "k": k,
        "v": v,
        "scores": scores,
        "scaled": scaled,
        "allowed": allowed,
        "weights": weights,
        "y": y,
        "library": library,
    }
