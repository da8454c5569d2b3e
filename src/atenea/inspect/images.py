"""Pictures of a vision model: the confusion matrix of a classifier, and attention drawn over
the image it looked at (``atenea explain --image``)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from atenea.inspect.plots import _pyplot


def confusion_png(matrix: Tensor, classes: list[str], path, title: str) -> Path:
    """``matrix (K, K)`` counts (row: true class, column: predicted) as a heatmap of each row's
    share, the counts written in the cells."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = matrix.detach().cpu().long()
    shares = counts.float() / counts.sum(1, keepdim=True).clamp(min=1)
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
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
