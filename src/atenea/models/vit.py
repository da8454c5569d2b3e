"""The Vision Transformer (Dosovitskiy et al. 2020): attention over the patches of an image.

    pixels (B, C, H, W) -> patches (a strided convolution) -> (B, N, dim)
                        -> [CLS] + patches, + learned positions      (B, 1 + N, dim)
                        -> num_layers pre-norm blocks -> LayerNorm   (B, 1 + N, dim)
    classifier: Linear on the [CLS] state -> logits (B, num_labels)

An image of another size than the one the model was trained on gets its grid of position
vectors resized by bicubic interpolation (as DINO and Hugging Face do), so a model trained on
224 x 224 reads 160 x 240 too. The blocks are ``atenea.nn.TransformerBlock`` s, so every
attention backend and the inspection path (``output_attentions``, ``Intermediates``) apply.

Conventions follow Hugging Face's ``ViTModel`` (``hidden_states``: the embeddings and each
block's output, the last one before the final norm), so its checkpoints load one to one
(``models/pretrained/vit.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atenea.models.common import init_weights, recorded, recording, run_blocks
from atenea.models.config import _Presets, block_config
from atenea.models.outputs import ModelOutput
from atenea.nn.block import BlockConfig, TransformerBlock
from atenea.nn.linear import Linear

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class ViTConfig(_Presets):
    """A Vision Transformer. Defaults are ViT-B/16's (224 x 224 RGB, 16 x 16 patches).

    ``image_mean`` / ``image_std``: the per-channel normalisation the model was trained with
    (pixels in [0, 1] -> ``(x - mean) / std``), which ``pixels`` applies."""

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_hidden: int = 3072
    activation: str = "gelu"
    norm_eps: float = 1e-12
    dropout: float = 0.0
    attention_dropout: float = 0.0
    pooler: bool = False  # Hugging Face ViTModel's dense + tanh on the [CLS] state
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])

    PRESETS = {
        # 28 x 28 grey images (Fashion-MNIST): 7 x 7 patches of 4 x 4 pixels + [CLS] = 50 tokens.
        "vit-tiny": dict(image_size=28, patch_size=4, num_channels=1, dim=64, num_layers=4,
                         num_heads=4, ffn_hidden=128, norm_eps=1e-6, image_mean=[0.5],
                         image_std=[0.5]),
        "vit-s-16": dict(dim=384, num_layers=12, num_heads=6, ffn_hidden=1536,
                         image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD),
        "vit-b-16": dict(image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD),
    }  # fmt: skip

    def __post_init__(self):
        self._check_ranges()
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size: {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        for name in ("image_mean", "image_std"):
            if len(getattr(self, name)) != self.num_channels:
                raise ValueError(
                    f"{name}: expected {self.num_channels} values (one per channel), got "
                    f"{getattr(self, name)}"
                )

    @property
    def grid_size(self) -> int:
        """Patches along each side of a training image."""
        return self.image_size // self.patch_size

    def block(self) -> BlockConfig:
        return block_config(self, norm="layernorm", bias=True, norm_position="pre")


def resize_positions(table: Tensor, grid: tuple[int, int]) -> Tensor:
    """The patch position vectors ``table (S*S, dim)`` of a square ``S x S`` grid, resized to
    ``grid = (rows, cols)`` by bicubic interpolation: ``(rows * cols, dim)``."""
    side = math.isqrt(table.shape[0])
    square = table.reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, dim, S, S)
    resized = F.interpolate(square, size=grid, mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)


def resize_table(table: Tensor, grid: tuple[int, int]) -> Tensor:
    """A whole position table ``(1, 1 + S*S, dim)`` for another patch grid: [CLS]'s vector
    kept, the patches' resized -> ``(1, 1 + rows * cols, dim)``."""
    patches = resize_positions(table[0, 1:], grid)
    return torch.cat([table[:, :1], patches.unsqueeze(0)], dim=1)


def pixels(images: Tensor, config: ViTConfig, size: tuple[int, int] | None = None) -> Tensor:
    """Model input from images with values in [0, 1]: ``images (B, C, h, w)`` resized
    (bilinear, antialiased) to ``size`` (default: the training size) and normalised by the
    config's mean and std -> ``(B, C, H, W)``."""
    size = size or (config.image_size, config.image_size)
    if tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True)
    mean = torch.tensor(config.image_mean, dtype=images.dtype, device=images.device)
    std = torch.tensor(config.image_std, dtype=images.dtype, device=images.device)
    return (images - mean[:, None, None]) / std[:, None, None]


class ViTModel(nn.Module):
    """``pixel_values (B, C, H, W)`` -> ``last_hidden_state (B, 1 + N, dim)``: position 0 is
    [CLS], then the ``N = (H / patch) * (W / patch)`` patches row by row."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        c = self.config = config
        self.patch_embedding = nn.Conv2d(
            c.num_channels, c.dim, kernel_size=c.patch_size, stride=c.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.position_embedding = nn.Parameter(torch.zeros(1, 1 + c.grid_size**2, c.dim))
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList([TransformerBlock(c.block()) for _ in range(c.num_layers)])
        self.final_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.pooler = Linear(c.dim, c.dim) if c.pooler else None
        self.apply(init_weights)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.position_embedding, std=0.02)

    def check_pixels(self, pixel_values: Tensor) -> tuple[int, int]:
        """The patch grid ``(rows, cols)`` of a valid ``(B, C, H, W)`` batch; a one-line error
        naming what is wrong otherwise."""
        c = self.config
        if not isinstance(pixel_values, Tensor) or not pixel_values.is_floating_point():
            raise TypeError("pixel_values: expected a floating-point (B, C, H, W) tensor")
        if pixel_values.dim() != 4 or pixel_values.shape[1] != c.num_channels:
            raise ValueError(
                f"pixel_values: expected shape (B, {c.num_channels}, H, W), got "
                f"{tuple(pixel_values.shape)}"
            )
        height, width = pixel_values.shape[-2:]
        if height % c.patch_size or width % c.patch_size:
            raise ValueError(
                f"pixel_values: height and width must be multiples of the patch size "
                f"{c.patch_size}, got {height} x {width}"
            )
        return height // c.patch_size, width // c.patch_size

    def positions(self, grid: tuple[int, int]) -> Tensor:
        """Position vectors ``(1, 1 + rows * cols, dim)`` for a patch grid: the learned ones,
        or the patch part resized when the grid is not the training one."""
        table = self.position_embedding
        side = self.config.grid_size
        return table if grid == (side, side) else resize_table(table, grid)

    def embed(self, pixel_values: Tensor) -> Tensor:
        """Patch embeddings with [CLS] in front and positions added: ``(B, 1 + N, dim)``."""
        grid = self.check_pixels(pixel_values)
        patches = self.patch_embedding(pixel_values)  # (B, dim, rows, cols)
        patches = patches.flatten(2).transpose(1, 2)  # (B, N, dim), row by row
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        x = torch.cat([cls, patches], dim=1) + self.positions(grid)
        return self.dropout(x)

    def forward(
        self,
        pixel_values: Tensor,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        intermediates=None,
    ) -> ModelOutput:
        """``pixel_values (B, C, H, W)``, normalised as the model was trained
        (``config.image_mean`` / ``image_std``). ``attentions``: one ``(B, H, 1 + N, 1 + N)``
        tensor per layer, from the fast path."""
        inter = recording(output_attentions, output_hidden_states, intermediates)
        # The final norm is applied here, not by run_blocks, so the last hidden state kept is
        # the last block's output, as Hugging Face keeps it.
        x = self.final_norm(run_blocks(self.layers, self.embed(pixel_values), inter))
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        return ModelOutput(
            last_hidden_state=x,
            pooled=pooled,
            **recorded(inter, output_attentions, output_hidden_states, intermediates),
        )


class ViTForImageClassification(nn.Module):
    """``ViTModel`` + a linear classifier on the final [CLS] state. ``labels``: the class
    names (default ``"0"``, ``"1"``, ...); ``forward(..., labels=(B,) class indices)`` adds
    the cross-entropy ``loss``."""

    def __init__(self, config: ViTConfig, num_labels: int, labels: list[str] | None = None):
        super().__init__()
        if labels is not None and len(labels) != num_labels:
            raise ValueError(f"labels: expected {num_labels} names, got {len(labels)}")
        self.config, self.num_labels = config, num_labels
        self.labels = list(labels) if labels is not None else [str(i) for i in range(num_labels)]
        self.vit = ViTModel(config)
        self.classifier = Linear(config.dim, num_labels)
        init_weights(self.classifier)

    def forward(self, pixel_values: Tensor, *, labels: Tensor | None = None, **kwargs):
        out = self.vit(pixel_values, **kwargs)
        out.logits = self.classifier(out.last_hidden_state[:, 0])
        if labels is not None:
            out.loss = F.cross_entropy(out.logits, labels)
        return out
