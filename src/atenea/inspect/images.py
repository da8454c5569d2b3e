"""Attention drawn over the image a vision model looked at (``atenea explain --image``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from atenea.inspect.analysis import rollout
from atenea.inspect.plots import _pyplot, save_png
from atenea.inspect.tokens import ExplainError

# -- what a ViT looks at ------------------------------------------------------------------------


@dataclass
class ImageExplanation:
    """One image through a ViT. ``image (C, H, W)`` in [0, 1] as the model saw it (resized);
    ``grid``: patch rows and columns; ``maps (layers, heads, T, T)``: the attention weights
    (token 0 is [CLS], then the patches row by row); ``rollout (rows, cols)``: the attention
    rollout of [CLS] over the patches, renormalised to sum to 1; ``cls_maps (layers, heads,
    rows, cols)``: each head's [CLS] attention over the patches; ``distances (layers, heads)``:
    mean distance in patches from each patch to the patches it attends to; ``baseline``: that
    distance for uniform attention. ``top``: ``[(class, probability), ...]`` (best first) of a
    classifier, empty for an encoder alone."""

    image: Tensor
    grid: tuple[int, int]
    maps: Tensor
    rollout: Tensor
    cls_maps: Tensor
    distances: Tensor
    baseline: float
    top: list[tuple[str, float]] = field(default_factory=list)

    def head_kind(self, layer: int, head: int) -> str:
        """``near`` (attends to neighbouring patches), ``far`` (as spread as uniform attention
        or more) or ``mid``."""
        ratio = float(self.distances[layer, head]) / max(self.baseline, 1e-9)
        return "near" if ratio < 0.6 else "far" if ratio > 0.9 else "mid"


def patch_distances(rows: int, cols: int) -> Tensor:
    """``(N, N)`` Euclidean distances between patch centres, in patches (row-major order)."""
    y, x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    centres = torch.stack([y.flatten(), x.flatten()], dim=1).to(torch.float64)
    return torch.cdist(centres, centres)


def mean_patch_distance(maps: Tensor, rows: int, cols: int) -> Tensor:
    """``(layers, heads)``: for ``maps (layers, heads, 1 + N, 1 + N)`` ([CLS] first), how far
    in patches each patch's attention reaches, on average over the patches, counting only the
    weight on patches (renormalised: [CLS] has no place in the grid)."""
    between = maps[:, :, 1:, 1:].double()
    between = between / between.sum(-1, keepdim=True).clamp(min=1e-12)
    return (between * patch_distances(rows, cols)).sum(-1).mean(-1)


def explain_image(model, image: Tensor) -> ImageExplanation:
    """Run ``image (C, H, W)`` (values in [0, 1]) through a ``ViTModel`` or
    ``ViTForImageClassification``, resized to the model's training size and normalised as
    it was trained, and read its attention."""
    from atenea.models.vit import pixels

    config = model.config
    if image.dim() != 3 or image.shape[0] != config.num_channels:
        raise ExplainError(f"image: expected ({config.num_channels}, H, W), got "
                           f"{tuple(image.shape)}")  # fmt: skip
    batch = pixels(image[None].float(), config).to(next(model.parameters()).device)
    with torch.no_grad():
        out = model(batch, output_attentions=True)
    maps = torch.stack([a[0] for a in out.attentions]).double().cpu()  # (layers, heads, T, T)
    rows = cols = config.image_size // config.patch_size
    flow = rollout(maps)[0, 1:]  # [CLS]'s row, patches only
    cls_maps = maps[:, :, 0, 1:]
    cls_maps = cls_maps / cls_maps.sum(-1, keepdim=True).clamp(min=1e-12)
    distances = mean_patch_distance(maps, rows, cols)
    top = []
    if out.logits is not None:
        probabilities = out.logits[0].float().cpu().softmax(-1)
        values, indices = probabilities.topk(min(5, probabilities.numel()))
        top = [(model.labels[int(i)], float(v)) for v, i in zip(values, indices)]
    shown = F.interpolate(image[None].float(), size=(config.image_size,) * 2, mode="bilinear",
                          antialias=True)[0].clamp(0, 1)  # fmt: skip
    return ImageExplanation(
        image=shown, grid=(rows, cols), maps=maps.float(),
        rollout=(flow / flow.sum()).reshape(rows, cols).float(),
        cls_maps=cls_maps.reshape(*cls_maps.shape[:2], rows, cols).float(),
        distances=distances.float(), baseline=float(patch_distances(rows, cols).mean()), top=top,
    )  # fmt: skip


def head_lines(e: ImageExplanation) -> list[str]:
    """One line per layer: which heads look near, which far (mean distance in patches)."""
    lines = []
    for layer in range(e.distances.shape[0]):
        kinds = {"near": [], "mid": [], "far": []}
        for head in range(e.distances.shape[1]):
            kinds[e.head_kind(layer, head)].append(f"H{head} {float(e.distances[layer, head]):.1f}")
        shown = "; ".join(f"{kind}: {', '.join(heads)}" for kind, heads in kinds.items() if heads)
        lines.append(f"L{layer}  {shown}")
    return lines


def _show(ax, image: Tensor, overlay: Tensor | None = None, title: str = "") -> None:
    """The image (grey or colour) with ``overlay (rows, cols)`` upsampled over it."""
    picture = image.permute(1, 2, 0).numpy()
    if picture.shape[-1] == 1:
        ax.imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(picture)
    if overlay is not None:
        height, width = picture.shape[:2]
        ax.imshow(overlay.numpy(), cmap="inferno", alpha=0.6,
                  extent=(-0.5, width - 0.5, height - 0.5, -0.5),  # pixel edges, as the image
                  interpolation="nearest")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)


def rollout_png(e: ImageExplanation, path, title: str) -> Path:
    """The image, and the [CLS] rollout over it (brighter: drawn on more)."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.4))
    predicted = f"{e.top[0][0]} ({e.top[0][1]:.0%})" if e.top else "no classifier"
    _show(axes[0], e.image, None, f"input ({e.grid[0]}x{e.grid[1]} patches): {predicted}")
    _show(axes[1], e.image, e.rollout, "attention rollout from [CLS]")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    plt.close(fig)
    return path


def heads_png(e: ImageExplanation, path, title: str) -> Path:
    """A grid, layers down and heads across: each head's [CLS] attention over the image, its
    mean patch-to-patch distance and kind (near / mid / far) in the panel's title."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layers, heads = e.cls_maps.shape[:2]
    fig, axes = plt.subplots(layers, heads, figsize=(1.5 * heads + 0.5, 1.6 * layers + 0.6),
                             squeeze=False)  # fmt: skip
    for layer in range(layers):
        for head in range(heads):
            kind = e.head_kind(layer, head)
            label = f"L{layer} H{head} {kind} {float(e.distances[layer, head]):.1f}"
            _show(axes[layer, head], e.image, e.cls_maps[layer, head], label)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # room for the title
    save_png(fig, path, dpi=100)
    plt.close(fig)
    return path
