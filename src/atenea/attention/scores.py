"""Score modifiers: functions applied to the attention scores before the softmax.

A score modifier is any callable ``mod(score, batch, head, q_pos, k_pos) -> score`` (the
FlexAttention convention). The arguments broadcast together:

- ``score``  ``(B, H, Lq', Lk')`` the scaled scores ``q . k / sqrt(D)`` of one tile (or of the
  whole matrix on the reference path);
- ``batch``  ``(B, 1, 1, 1)`` batch indices;
- ``head``   ``(1, H, 1, 1)`` *query* head indices (the real ones when a caller selects heads);
- ``q_pos``  ``(1, 1, Lq', 1)`` absolute query positions (bottom-right aligned, see ``masks``);
- ``k_pos``  ``(1, 1, 1, Lk')`` absolute key positions.

It must return a tensor of the shape of ``score``. Because it sees only indices, the tiled
backend evaluates it one tile at a time and never builds an ``L x L`` bias.

The modifiers here are ``torch.nn.Module`` s, so learned ones (``relative_bias``) register their
parameters with the model that owns them and receive gradients on every backend. A plain
function that captures a tensor needing a gradient (a learnable bias table) gets it too, on
every backend (``captured.py`` finds it). Compose them
with ``compose(a, b, ...)`` (applied left to right).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from atenea.attention.captured import captured_tensors

ScoreModFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


class ScoreMod(nn.Module):
    """Base class: ``forward(score, batch, head, q_pos, k_pos) -> score``."""

    def forward(self, score: Tensor, batch: Tensor, head: Tensor, q_pos: Tensor, k_pos: Tensor):
        raise NotImplementedError

    def then(self, other: ScoreModFn) -> Compose:
        """This modifier, then ``other``."""
        return Compose(self, other)


def alibi_slopes(num_heads: int) -> Tensor:
    """The ALiBi head slopes of Press et al. (2022), ``(num_heads,)`` float32.

    For ``n`` a power of two the slopes are the geometric sequence ``2^(-8/n), 2^(-16/n), ...``.
    Otherwise the paper takes the slopes of the closest power of two ``m < n`` and adds every
    other slope of ``2m`` until there are ``n``.
    """
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"alibi: num_heads must be an integer >= 1, got {num_heads!r}")

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = geometric(closest)
    if closest < num_heads:
        slopes += geometric(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBi(ScoreMod):
    """Attention with Linear Biases: ``score + slope[head] * (k_pos - q_pos)``.

    Past keys get a penalty growing linearly with distance. With ``symmetric=True`` the bias is
    ``-slope * |q_pos - k_pos|`` (for bidirectional encoders). Slopes from ``alibi_slopes``.
    """

    def __init__(self, num_heads: int, symmetric: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.symmetric = symmetric
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def forward(self, score, batch, head, q_pos, k_pos):
        # The bias in float32 at least, whatever the score's dtype: FlexAttention traces a
        # modifier with a score of the inputs' dtype (bf16) though its kernel adds in float32,
        # and bf16 rounds slope x distance (and distances past 256) to 8 bits.
        exact = torch.promote_types(score.dtype, torch.float32)
        distance = (k_pos - q_pos).to(exact)
        if self.symmetric:
            distance = -distance.abs()
        return score + self.slopes.to(score.device, exact)[head] * distance

    def extra_repr(self):
        return f"num_heads={self.num_heads}, symmetric={self.symmetric}"


class SoftCap(ScoreMod):
    """Soft capping (Gemma 2, Grok): ``cap * tanh(score / cap)`` keeps scores in ``(-cap, cap)``."""

    def __init__(self, cap: float):
        super().__init__()
        if not (isinstance(cap, (int, float)) and math.isfinite(cap) and cap > 0):
            raise ValueError(f"softcap: cap must be a finite number > 0, got {cap!r}")
        self.cap = float(cap)

    def forward(self, score, batch, head, q_pos, k_pos):
        return self.cap * torch.tanh(score / self.cap)

    def extra_repr(self):
        return f"cap={self.cap}"


def relative_position_bucket(
    relative_position: Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> Tensor:
    """T5's bucketing of ``k_pos - q_pos``: exact buckets for small distances, logarithmic
    buckets up to ``max_distance``, one bucket beyond. Bidirectional uses half the buckets for
    keys after the query."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log-spaced buckets between max_exact and max_distance (clamped to the last bucket)
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(
        max_distance / max_exact
    )
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class RelativeBias(ScoreMod):
    """T5-style learned relative position bias: ``score + table[bucket(k_pos - q_pos), head]``.

    ``table`` is an ``nn.Embedding(num_buckets, num_heads)`` and learns with the model; on the
    tiled backend it is gathered one tile at a time.
    """

    def __init__(
        self,
        num_heads: int,
        num_buckets: int = 32,
        max_distance: int = 128,
        bidirectional: bool = True,
    ):
        super().__init__()
        # the exact buckets below max_exact, the logarithmic ones from there to max_distance:
        # both must exist (T5's formula divides by max_exact and by log(max_distance/max_exact))
        side = num_buckets // 2 if bidirectional else num_buckets
        max_exact = side // 2
        if num_heads < 1 or max_exact < 1 or max_distance <= max_exact:
            raise ValueError(
                f"relative_bias: need num_heads >= 1, num_buckets >= {4 if bidirectional else 2}"
                f" and max_distance > {max(max_exact, 1)} (the exact buckets); got "
                f"num_heads={num_heads}, num_buckets={num_buckets}, max_distance={max_distance}"
            )
        self.num_heads = num_heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.table = nn.Embedding(num_buckets, num_heads)

    def forward(self, score, batch, head, q_pos, k_pos):
        bucket = relative_position_bucket(
            k_pos - q_pos, self.bidirectional, self.num_buckets, self.max_distance
        )
        bias = self.table.weight[bucket, head]  # (1, H, Lq', Lk') by broadcasting
        # at least float32, as ALiBi's bias (a bf16 cast rounded the learned values)
        return score + bias.to(torch.promote_types(score.dtype, torch.float32))

    def extra_repr(self):
        return (
            f"num_heads={self.num_heads}, num_buckets={self.num_buckets}, "
            f"max_distance={self.max_distance}, bidirectional={self.bidirectional}"
        )


class Compose(ScoreMod):
    """Apply several score modifiers in order."""

    def __init__(self, *mods: ScoreModFn):
        super().__init__()
        for mod in mods:
            if not callable(mod):
                raise TypeError(f"compose: every modifier must be callable, got {mod!r}")
        # Modules register so their parameters (relative_bias) are found and trained.
        self.mods = nn.ModuleList([m for m in mods if isinstance(m, nn.Module)])
        self._order = list(mods)

    def forward(self, score, batch, head, q_pos, k_pos):
        for mod in self._order:
            score = mod(score, batch, head, q_pos, k_pos)
        return score

    def __repr__(self):
        return "compose(" + ", ".join(repr(m) for m in self._order) + ")"


def alibi(num_heads: int, symmetric: bool = False) -> ALiBi:
    """ALiBi linear biases with the paper's slopes (any head count)."""
    return ALiBi(num_heads, symmetric)


def softcap(cap: float) -> SoftCap:
    """``cap * tanh(score / cap)``."""
    return SoftCap(cap)


def relative_bias(
    num_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True
) -> RelativeBias:
    """Learned T5-style bucketed relative position bias."""
    return RelativeBias(num_heads, num_buckets, max_distance, bidirectional)


def compose(*mods: ScoreModFn) -> Compose:
    """Apply ``mods`` one after the other (left to right)."""
    return Compose(*mods)


def modifiers_in(score_mod: ScoreModFn) -> list[ScoreModFn]:
    """The modifiers a ``compose`` applies, nested ones unfolded, in order (``[score_mod]`` for
    any other)."""
    if isinstance(score_mod, Compose):
        return [leaf for inner in score_mod._order for leaf in modifiers_in(inner)]
    return [score_mod]


def parameters_of(score_mod: ScoreModFn | None) -> list[Tensor]:
    """Tensors needing a gradient that a score modifier uses (those autograd must route
    gradients to): a module's parameters, and tensors a function captures (``captured.py``)."""
    return captured_tensors(score_mod)


__all__ = [
    "ScoreMod",
    "alibi",
    "alibi_slopes",
    "softcap",
    "relative_bias",
    "relative_position_bucket",
    "compose",
]
