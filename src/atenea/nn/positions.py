"""Positional information: attention alone does not know the order of its inputs.

- ``SinusoidalPositions``: the fixed encoding of "Attention is all you need", added to the
  token embeddings.
- ``LearnedPositions``: one trained vector per position (BERT, GPT-2), added likewise.
- ``RotaryEmbedding``: RoPE rotates each query/key pair of dimensions by an angle proportional
  to the position, so ``q . k`` depends on the *distance* (Llama, GPT-NeoX, GPT-J). Both pairing
  layouts and Llama-3 frequency scaling.
- ALiBi and T5 relative buckets bias the scores instead: ``atenea.scores.alibi`` and
  ``atenea.scores.relative_bias``.

Positions are integer tensors ``(B, L)`` (or ``(L,)``): with left padding each row has its own.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def working_dtype(dtype: torch.dtype | None) -> torch.dtype:
    """Position tables are computed in float32 (as the checkpoints' own code does), float64 for
    a float64 model: float32 sines differ between the CPU and a GPU in the last bit, which a
    float64 model would otherwise carry into every result."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def sinusoidal_table(
    positions: Tensor, dim: int, base: float = 10000.0, dtype: torch.dtype | None = None
) -> Tensor:
    """``PE[p, 2i] = sin(p / base^(2i/dim))``, ``PE[p, 2i+1] = cos(p / base^(2i/dim))``:
    ``(..., dim)`` float32 (float64 when ``dtype`` is) for integer positions ``(...)``."""
    work = working_dtype(dtype)
    half = torch.arange(0, dim, 2, dtype=work, device=positions.device)
    frequencies = torch.exp(-math.log(base) * half / dim)  # 1 / base^(2i/dim)
    angles = positions.to(work).unsqueeze(-1) * frequencies  # (..., ceil(dim/2))
    table = torch.zeros(*positions.shape, dim, dtype=work, device=positions.device)
    table[..., 0::2] = torch.sin(angles)
    table[..., 1::2] = torch.cos(angles[..., : dim // 2])
    return table


class SinusoidalPositions(nn.Module):
    """The fixed sine/cosine encoding (Vaswani et al. 2017): no parameters, any length."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.dim, self.base = dim, base

    def forward(self, positions: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """``positions (B, L)`` -> ``(B, L, dim)`` float32 (float64 for ``dtype=float64``)."""
        return sinusoidal_table(positions, self.dim, self.base, dtype)

    def extra_repr(self):
        return f"dim={self.dim}, base={self.base}"


class LearnedPositions(nn.Module):
    """One trained vector per position up to ``max_positions`` (BERT, GPT-2)."""

    def __init__(self, max_positions: int, dim: int):
        super().__init__()
        self.max_positions = max_positions
        self.table = nn.Embedding(max_positions, dim)

    def forward(self, positions: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """``positions (B, L)`` -> ``(B, L, dim)`` in the table's dtype (``dtype`` is taken for
        the sinusoidal encoding's sake and not needed here)."""
        # The check reads a value back to the host, which a compiled graph cannot do; compiled
        # callers (generation) check the lengths before they start; meta tensors hold no values.
        readable = positions.device.type != "meta" and not torch.compiler.is_compiling()
        checking = positions.numel() and readable
        if checking:
            low, high = torch.stack(torch.aminmax(positions)).tolist()  # one read, not two
            if low < 0:
                raise ValueError(f"positions: a position is an index >= 0, got {low}")
            if high >= self.max_positions:
                raise ValueError(
                    f"positions: this model has learned positions 0..{self.max_positions - 1}, "
                    f"got position {high}; shorten the input to at most {self.max_positions} "
                    f"tokens"
                )
        return self.table(positions)


def llama3_scaled_frequencies(
    inv_freq: Tensor,
    factor: float,
    low_freq_factor: float,
    high_freq_factor: float,
    original_max_positions: int,
) -> Tensor:
    """Llama 3.1 context extension: wavelengths longer than ``original / low_freq_factor`` are
    slowed by ``factor``, shorter than ``original / high_freq_factor`` are kept, and the band in
    between is interpolated smoothly."""
    wavelength = 2 * math.pi / inv_freq
    low_wavelength = original_max_positions / low_freq_factor
    high_wavelength = original_max_positions / high_freq_factor
    smooth = (original_max_positions / wavelength - low_freq_factor) / (
        high_freq_factor - low_freq_factor
    )
    interpolated = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    scaled = torch.where(wavelength > low_wavelength, inv_freq / factor, inv_freq)
    in_between = (wavelength >= high_wavelength) & (wavelength <= low_wavelength)
    return torch.where(in_between, interpolated, scaled)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021), applied to queries and keys.

    Dimension pairs ``(a, b)`` are rotated by ``position * frequency_i``:
    ``(a, b) -> (a cos - b sin, b cos + a sin)``. Which dimensions pair up is the *layout*:

    - ``"half"`` (GPT-NeoX / Llama / Hugging Face): dimension ``i`` pairs with ``i + rd/2``;
    - ``"interleaved"`` (GPT-J / Meta's original Llama): dimension ``2i`` pairs with ``2i + 1``.

    The same weights need the same layout; the two differ by a fixed permutation of the q/k
    projection rows. ``rotary_dim < head_dim`` rotates only the first ``rotary_dim`` dimensions
    (partial rotary). ``scaling``: ``{"rope_type": "llama3", "factor", "low_freq_factor",
    "high_freq_factor", "original_max_position_embeddings"}`` or ``{"rope_type": "linear",
    "factor"}``.
    """

    def __init__(
        self,
        head_dim: int,
        base: float = 10000.0,
        layout: str = "half",
        rotary_dim: int | None = None,
        scaling: dict | None = None,
    ):
        super().__init__()
        if layout not in ("half", "interleaved"):
            raise ValueError(f"rotary: layout must be 'half' or 'interleaved', got {layout!r}")
        rotary_dim = head_dim if rotary_dim is None else rotary_dim
        if rotary_dim % 2 or not 0 < rotary_dim <= head_dim:
            raise ValueError(
                f"rotary: rotary_dim must be even and in (0, head_dim={head_dim}], got {rotary_dim}"
            )
        self.head_dim, self.rotary_dim, self.base, self.layout = head_dim, rotary_dim, base, layout
        self.scaling = dict(scaling or {})
        kind = self.scaling.get("rope_type", self.scaling.get("type"))
        if kind not in (None, "default", "llama3", "linear"):
            raise ValueError(f"rotary: unknown scaling type {kind!r} (known: llama3, linear)")

        def frequencies(dtype: torch.dtype) -> Tensor:
            exponents = torch.arange(0, rotary_dim, 2, dtype=torch.int64).to(dtype) / rotary_dim
            inv_freq = 1.0 / base**exponents
            if kind == "llama3":
                inv_freq = llama3_scaled_frequencies(
                    inv_freq,
                    self.scaling["factor"],
                    self.scaling["low_freq_factor"],
                    self.scaling["high_freq_factor"],
                    self.scaling["original_max_position_embeddings"],
                )
            elif kind == "linear":
                inv_freq = inv_freq / self.scaling["factor"]
            return inv_freq

        # float64: a float64 model rotates by the exact frequencies; the usual models by the
        # frequencies computed in float32, as the checkpoints' code computes them (rounding the
        # float64 ones instead put 18 of 64 one ulp off Llama's: 1e-3 at position 32k). Both are
        # kept, so that a layer's rotation casts nothing (a model cast whole, .to(bfloat16),
        # casts these buffers too: angles then casts them back, from bf16-rounded frequencies).
        self.register_buffer("inv_freq", frequencies(torch.float64), persistent=False)
        self.register_buffer("inv_freq32", frequencies(torch.float32), persistent=False)

    def angles(self, positions: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """cos and sin ``(B, 1, L, rotary_dim / 2)`` in float32 (float64 for ``dtype=float64``)
        for ``positions (B, L)``."""
        work = working_dtype(dtype)
        frequencies = self.inv_freq if work == torch.float64 else self.inv_freq32
        angles = positions.to(work).unsqueeze(-1) * frequencies.to(work)  # (B, L, rd/2)
        return torch.cos(angles).unsqueeze(1), torch.sin(angles).unsqueeze(1)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotate ``x (B, H, L, head_dim)`` for ``positions (B, L)`` (or ``(L,)``)."""
        return self.rotate_pair(x, None, positions)[0]

    def rotate_pair(
        self, q: Tensor, k: Tensor | None, positions: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """Rotate queries ``q (B, Hq, L, head_dim)`` and keys ``k (B, Hk, L, head_dim)`` (or
        None) for the same ``positions (B, L)`` (or ``(L,)``): the angles are computed once for
        both (a layer's attention needs them twice, at every decoding step), in q's working
        precision (q and k share a dtype in every layer)."""
        if positions.dim() == 1:
            positions = positions.unsqueeze(0)
        cos, sin = self.angles(positions, q.dtype)
        return self._rotate(q, cos, sin), (self._rotate(k, cos, sin) if k is not None else None)

    def _rotate(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        rotated, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        rotated = rotated.to(cos.dtype)  # half precision rotates in float32
        if self.layout == "half":
            a, b = rotated.chunk(2, dim=-1)
            out = torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
        else:
            a, b = rotated[..., 0::2], rotated[..., 1::2]
            out = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)
        return torch.cat([out.to(x.dtype), rest], dim=-1)

    def extra_repr(self):
        return (
            f"head_dim={self.head_dim}, rotary_dim={self.rotary_dim}, base={self.base}, "
            f"layout={self.layout!r}" + (f", scaling={self.scaling}" if self.scaling else "")
        )


def positions_in_documents(
    document_ids: Tensor, previous: Tensor | None = None, offset: Tensor | None = None
) -> Tensor:
    """``(B, L)`` position of every token within its document (0 at each document start),
    for packed sequences whose documents are contiguous runs of one id.

    A segment that continues a text (segment memory): ``previous (B,)`` is the document the
    last segment ended in and ``offset (B,)`` the position its next token has; a first run of
    that same document counts on from ``offset`` instead of starting at 0."""
    index = torch.arange(document_ids.shape[1], device=document_ids.device)
    index = index.expand_as(document_ids)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    if previous is not None:
        starts[:, 0] = document_ids[:, 0] != previous
    start_index = torch.where(starts, index, -1).cummax(dim=1).values
    carried = 0 if offset is None else offset[:, None]
    return torch.where(start_index >= 0, index - start_index, carried + index)


def positions_from_mask(attention_mask: Tensor, start: Tensor | int = 0) -> Tensor:
    """Positions ``(B, L)`` of the real tokens of a padded batch: a row's first real token is
    position ``start`` wherever padding puts it (left padding shifts nothing). Padding positions
    get 0 (they are masked anyway). ``start``: an int, or one per row ``(B,)``."""
    mask = attention_mask.long()
    if isinstance(start, Tensor) and start.dim() == 1:
        start = start[:, None]  # a row's own start, along its length
    return ((mask.cumsum(-1) - 1).clamp(min=0) + start) * mask
