"""Reading attention maps: rollout, top targets, and head descriptors in words.

All functions take maps ``(layers, heads, L, L)`` (rows = queries, each row sums to 1 or is all
zero for a query that attends to nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def rollout(maps: Tensor, residual: bool = True) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each output position draws on each
    input token through all layers. Per layer, average the heads; add the identity for the
    residual connection and renormalise the rows; multiply the layers together (first layer on
    the right). Returns ``(L, L)`` float64, rows summing to 1."""
    length = maps.shape[-1]
    identity = torch.eye(length, dtype=torch.float64)
    total = identity.clone()
    for layer in maps.to(torch.float64):
        mixed = layer.mean(0)  # (L, L): heads averaged
        if residual:
            mixed = mixed + identity
        mixed = mixed / mixed.sum(-1, keepdim=True).clamp(min=1e-12)
        total = mixed @ total
    return total


def top_targets(row: Tensor, tokens: list[str], k: int = 3) -> list[tuple[int, str, float]]:
    """The ``k`` keys a query row attends to most: ``[(index, token, weight), ...]``."""
    k = min(k, row.numel())
    values, indices = torch.topk(row.float(), k)
    return [(int(i), tokens[int(i)], float(v)) for v, i in zip(values, indices) if v > 0]


@dataclass
class HeadDescription:
    """What one head does, in numbers and in words."""

    layer: int
    head: int
    entropy: float  # mean row entropy / log(keys allowed): 0 = one key, 1 = uniform
    mean_distance: float  # mean |query - key| weighted by attention
    self_share: float  # weight on the query's own position
    previous_share: float  # on the position just before
    next_share: float  # on the position just after
    special_share: float  # on special tokens ([CLS], [SEP], BOS)
    first_share: float  # on position 0
    pattern: str  # previous | next | self | special | first | broad | content
    text: str

    @property
    def name(self) -> str:
        return f"L{self.layer} H{self.head}"


class LayerStats:
    """Running sums of the head descriptors of one layer, fed some query rows at a time (so a
    long input never needs its whole ``L x L`` map at once)."""

    NAMES = ("live", "entropy", "distance", "self", "previous", "next", "special", "first")

    def __init__(self, heads: int, special: list[bool], length: int):
        self.sums = torch.zeros(len(self.NAMES), heads, dtype=torch.float64)
        flags = (special + [False] * length)[:length]
        self.special_keys = torch.tensor(
            [i for i, flag in enumerate(flags) if flag], dtype=torch.long
        )

    def add(self, weights: Tensor, rows: Tensor) -> None:
        """``weights (heads, r, L)`` of the query rows ``rows (r,)`` (any positions)."""
        w = weights.float()
        heads, count, length = w.shape
        rows = rows.long()
        live = w.sum(-1) > 0  # (heads, r): queries that attend to something
        allowed = (w > 0).sum(-1).clamp(min=2).float()
        # p log p, 0 where p = 0: the clamp makes log finite there (xlogy does the same at
        # 2.5x the time).
        scratch = w.clamp_min(torch.finfo(w.dtype).tiny)  # the one (heads, r, L) tensor made here
        entropy = -scratch.log_().mul_(w).sum(-1) / torch.log(allowed)
        distance = (rows.view(-1, 1) - torch.arange(length).view(1, -1)).abs().float()
        distance_sum = torch.mul(w, distance, out=scratch).sum((-1, -2))
        index = torch.arange(count)

        def at(columns: Tensor) -> Tensor:  # weight of each row at one column (0 outside)
            inside = (columns >= 0) & (columns < length)
            return w[:, index, columns.clamp(0, length - 1)] * inside

        special = w[..., self.special_keys].sum(-1) if len(self.special_keys) else w[..., 0] * 0
        self.sums += torch.stack([
            live.sum(-1).float(), (entropy * live).sum(-1),
            distance_sum,
            at(rows).sum(-1), at(rows - 1).sum(-1), at(rows + 1).sum(-1), special.sum(-1),
            w[..., 0].sum(-1),
        ]).double()  # fmt: skip

    def descriptions(self, layer: int, threshold: float = 0.5) -> list[HeadDescription]:
        out = []
        for head in range(self.sums.shape[1]):
            live, entropy, distance, *shares = (float(v) for v in self.sums[:, head])
            rows = max(live, 1.0)
            d = HeadDescription(
                layer=layer, head=head, entropy=entropy / rows, mean_distance=distance / rows,
                self_share=shares[0] / rows, previous_share=shares[1] / rows,
                next_share=shares[2] / rows, special_share=shares[3] / rows,
                first_share=shares[4] / rows, pattern="", text="",
            )  # fmt: skip
            d.pattern, d.text = _in_words(d, threshold)
            out.append(d)
        return out


def describe_head(
    weights: Tensor, special: list[bool], layer: int = 0, head: int = 0, threshold: float = 0.5
) -> HeadDescription:
    """Descriptors of one head's ``(Lq, Lk)`` self-attention map."""
    stats = LayerStats(1, special, weights.shape[-1])
    stats.add(weights.unsqueeze(0), torch.arange(weights.shape[0]))
    description = stats.descriptions(layer, threshold)[0]
    description.head = head
    description.pattern, description.text = _in_words(description, threshold)
    return description


def _in_words(d: HeadDescription, threshold: float) -> tuple[str, str]:
    named = [
        ("previous", d.previous_share, "attends to the previous token"),
        ("next", d.next_share, "attends to the next token"),
        ("self", d.self_share, "attends to the token itself"),
        ("special", d.special_share,
         "attends mostly to special tokens ([CLS]/[SEP]: a resting head)"),
        ("first", d.first_share, "attends mostly to the first token (an attention sink)"),
    ]  # fmt: skip
    pattern, share, words = max(named, key=lambda item: item[1])
    if share >= threshold:
        return pattern, f"{d.name} {words} ({share:.0%} of its weight)"
    if d.entropy >= 0.8:
        return "broad", f"{d.name} spreads its attention broadly (entropy {d.entropy:.2f})"
    return "content", (
        f"{d.name} attends by content (mean distance {d.mean_distance:.1f} tokens, "
        f"entropy {d.entropy:.2f})"
    )


def describe_heads(maps: Tensor, special: list[bool]) -> list[HeadDescription]:
    """A ``HeadDescription`` for every head of ``maps (layers, heads, L, L)``."""
    descriptions = []
    for layer in range(maps.shape[0]):
        stats = LayerStats(maps.shape[1], special, maps.shape[-1])
        stats.add(maps[layer], torch.arange(maps.shape[-2]))
        descriptions += stats.descriptions(layer)
    return descriptions


def pool_map(weights: Tensor, size: int) -> Tensor:
    """Average-pool a ``(..., L, L)`` map to at most ``size x size`` (for long inputs in a
    report): each cell is the mean weight of a block of tokens."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size: expected at least 1 cell a side, got {size!r}")
    length = weights.shape[-1]
    if length <= size:
        return weights
    block = math.ceil(length / size)
    pad = -length % block
    padded = torch.nn.functional.pad(weights, (0, pad, 0, pad))
    cells = padded.unflatten(-1, (-1, block)).unflatten(-3, (-1, block))  # (.., n, b, n, b)
    # the last block may hold fewer tokens: divide by the real ones, not the padding too
    tokens = torch.full((cells.shape[-2],), float(block), dtype=weights.dtype)
    tokens[-1] = length - block * (cells.shape[-2] - 1)
    return cells.sum(dim=(-3, -1)) / torch.outer(tokens, tokens).to(weights.device)
