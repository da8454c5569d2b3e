"""PNG pictures of attention (matplotlib): heatmaps of one map (a head, the heads' mean, the
rollout, the weights of ``atenea steps``, a translation's alignment), the model view, the
cost of attention against length (``atenea cost``), and a classifier's confusion matrix. Every
picture atenea draws is drawn here."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files only: no window, no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the pictures need matplotlib: pip install 'atenea[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Every PNG atenea draws carries this text chunk, so a command can tell its own pictures (which
# it may draw again) from a file of the user's of the same name (which it must not replace).
PNG_SOFTWARE = "atenea"
_PNG_MARK = b"tEXtSoftware\x00" + PNG_SOFTWARE.encode()
_PNG_HEAD = 4096  # the text chunks come before the pixels (IDAT), right after the header


def save_png(figure, path: Path, dpi=None) -> Path:
    """Write ``figure`` to ``path`` as a PNG that says it was drawn by atenea."""
    figure.savefig(path, dpi=dpi, format="png", metadata={"Software": PNG_SOFTWARE})
    return path


def is_atenea_png(path) -> bool:
    """Whether the file ``path`` is a picture atenea drew (``save_png``'s mark)."""
    try:
        with open(path, "rb") as handle:
            return _PNG_MARK in handle.read(_PNG_HEAD)
    except OSError:
        return False


def png_path(path) -> Path:
    """The file a picture goes to: ``path`` as given when it ends in ``.png``, with ``.png``
    added when it has no suffix (so the name printed is the name written); another suffix
    (``out.csv``) is a ValueError, never a file of one format under another's name."""
    path = Path(path)
    if not path.suffix:
        return path.with_name(path.name + ".png")
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: pictures are written as PNG; give a name that ends in .png")
    return path


def title_text(text: str, width: int = 60) -> str:
    """``text`` for a picture's title: whole words up to ``width`` characters, then "…"."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width + 1].rsplit(" ", 1)[0] if " " in text[:width] else text[:width]
    return cut.rstrip(" ,.;:") + "…"


def _tick_label(token: str) -> str:
    """A token as a tick label: its spaces as ``␣`` (a character model's space, or the space a
    byte-level piece starts with, would otherwise be a blank tick)."""
    return token.replace(" ", "\u2423") if token.strip() else "\u2423" * max(len(token), 1)


def heatmap_png(
    weights: Tensor, tokens: list[str], path, title: str, causal: bool = False,
    key_tokens: list[str] | None = None, *, allowed: Tensor | None = None,
    show_values: bool = False, vmax: float | None = None,
    axis_labels: tuple[str, str] = ("key (attended to)", "query (attending)"),
) -> Path:  # fmt: skip
    """``weights (Lq, Lk)`` with the query ``tokens`` down the side and the keys (``key_tokens``,
    default the same) along the top. Cells a query may not attend are grey: above the diagonal
    when ``causal``, and where ``allowed (Lq, Lk)`` (bool) is False. ``show_values`` writes each
    weight in its cell (for small maps); ``vmax`` fixes the top of the colour scale (default:
    the largest weight). Raises ImportError when matplotlib is missing."""
    path = png_path(path)
    plt = _pyplot()
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    key_tokens = tokens if key_tokens is None else key_tokens
    cell = 0.6 if show_values else 0.28  # inches: room for a number, or compact
    width = min(4 + cell * len(key_tokens), 24)
    height = min(4 + cell * len(tokens), 24)
    fig, ax = plt.subplots(figsize=(width + 1.5, height))
    values = weights.detach().float().cpu().numpy()
    hidden = np.zeros_like(values, dtype=bool)
    if causal:
        hidden |= np.triu(np.ones_like(values, dtype=bool), 1)
    if allowed is not None:
        hidden |= ~allowed.cpu().numpy()
    cmap = plt.get_cmap("viridis").with_extremes(bad="#e4e4e4")
    shown = np.ma.masked_array(values, mask=hidden)
    image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
    if show_values:
        for (i, j), value in np.ndenumerate(values):
            if not hidden[i, j]:  # dark text on the light (high) end of the scale
                colour = "black" if image.norm(value) > 0.6 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color=colour)
    columns, rows = [_tick_label(t) for t in key_tokens], [_tick_label(t) for t in tokens]
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    plt.close(fig)
    return path


def confusion_png(counts, classes: list[str], path, title: str) -> Path:
    """``counts (K, K)`` (a tensor or nested lists; row: true class, column: predicted) as a
    heatmap of each row's share (its recall on the diagonal), the counts written in the cells;
    the title ends with the number of examples and the accuracy. ``atenea evaluate`` (a text
    classifier) and ``atenea train images`` draw it."""
    import torch

    path = png_path(path)
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = torch.as_tensor(counts).detach().cpu().long()
    shares = counts.float() / counts.sum(1, keepdim=True).clamp(min=1)
    total = int(counts.sum())
    accuracy = int(counts.diag().sum()) / max(total, 1)
    size = min(3 + 0.6 * len(classes), 16)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if counts[i, j]:
                dark = shares[i, j] > 0.6
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true class")
    ax.set_title(f"{title} ({total} examples, accuracy {accuracy:.3f})", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    plt.close(fig)
    return path


def model_view_png(maps: Tensor, path, title: str) -> Path:
    """Every head of every layer as a thumbnail grid: ``maps (layers, heads, L, L)``."""
    path = png_path(path)
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    layers, heads = maps.shape[:2]
    fig, axes = plt.subplots(layers, heads, figsize=(heads * 1.1, layers * 1.1), squeeze=False)
    for i in range(layers):
        for j in range(heads):
            ax = axes[i][j]
            ax.imshow(maps[i, j].float().numpy(), cmap="viridis", vmin=0.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"H{j}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"L{i}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path, dpi=100)
    plt.close(fig)
    return path


def training_curves_png(records: list[dict], main_metric: str, path) -> Path:
    """Two panels of a training run: the training loss against the step, and the validation
    ``main_metric`` against the step. ``records``: the lines of ``metrics.jsonl``
    (``{"step", "loss", ...}`` for training steps, ``{"step", "eval": {...}}`` for evaluations)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [r for r in records if "loss" in r]
    evaluations = [r for r in records if main_metric in r.get("eval", {})]
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)  # a figure of its own: no pyplot state shared with other pictures
    left, right = figure.subplots(1, 2)
    left.plot([r["step"] for r in steps], [r["loss"] for r in steps], linewidth=1)
    left.set(title="training loss", xlabel="step", ylabel="loss")
    right.plot(
        [r["step"] for r in evaluations],
        [r["eval"][main_metric] for r in evaluations],
        marker="o",
    )
    right.set(title=f"validation {main_metric}", xlabel="step", ylabel=main_metric)
    for axes in (left, right):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    path = png_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(figure, path)
    return path


def cost_png(
    run, path, title: str = "one head of attention",
    axis_labels: tuple[str, str, str] = ("time (s)", "peak memory (MiB)", "length L"),
) -> Path:  # fmt: skip
    """``atenea cost``'s picture: time and peak memory against L, log-log, one line per path
    with its fitted exponent. ``run``: an ``atenea.inspect.cost.CostRun``; ``axis_labels``:
    time, memory, length (in the reader's language)."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(p.path for p in run.points):
        mine = [p for p in run.points if p.path == name]
        lengths = [p.length for p in mine]
        time_exp, memory_exp = run.exponents.get(name, (float("nan"), float("nan")))
        left.plot(lengths, [p.seconds for p in mine], "o-", label=f"{name} (L^{time_exp:.2f})")
        right.plot(lengths, [p.peak_bytes / 2**20 for p in mine], "o-",
                   label=f"{name} (L^{memory_exp:.2f})")  # fmt: skip
    for axis, label in ((left, axis_labels[0]), (right, axis_labels[1])):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel(axis_labels[2])
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    path = png_path(path)  # the name printed is the name written
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(figure, path, dpi=110)
    plt.close(figure)
    return path
