"""The ``Mask`` base class, the algebra (``&``, ``|``, ``~``) and ``Dense`` (any boolean
tensor). The rules built on positions and lengths are in ``rules.py``; the public constructors
and the conventions (polarity, bottom-right alignment, tile kinds) in the package docstring."""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.attention.transfer import to_device

EMPTY, PARTIAL, FULL = 0, 1, 2


def _bottom_right_offset(q_len: int, kv_len: int) -> int:
    """Absolute position of query row 0: the queries are the last ``q_len`` positions."""
    return kv_len - q_len


def _tile_bounds(
    length: int, tile: int, offset: int = 0, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """First and last (inclusive) absolute position of each tile along one axis: ``(n,)`` each,
    on ``device`` (the CPU by default)."""
    starts = torch.arange(0, length, tile, device=device)
    ends = torch.clamp(starts + tile, max=length) - 1
    return starts + offset, ends + offset


class Mask:
    """Base class of every mask. ``True`` = may attend (see the module docstring).

    Subclasses implement ``allowed``, ``tile_kinds``, ``batch_heads`` and ``validate``.
    """

    #: True when ``allowed`` depends only on ``q_pos - k_pos`` (causal, sliding window): then
    #: every tile at the same distance from the diagonal has the same mask, and the tiled
    #: backend builds it once.
    shift_invariant = False

    # -- the three capabilities -------------------------------------------------------------
    def allowed(self, rows: Tensor, cols: Tensor, q_len: int, kv_len: int) -> Tensor:
        """Boolean block ``(Bm, Hm, len(rows), len(cols))``: ``True`` where query ``rows[i]`` may
        attend to key ``cols[j]``. ``rows`` are query row indices (``0 .. Lq-1``), ``cols`` key
        indices (``0 .. Lk-1``); both 1-D int64 tensors on the device wanted for the result."""
        raise NotImplementedError

    def tile_kinds(self, q_len: int, kv_len: int, q_tile: int, k_tile: int) -> Tensor:
        """Kind of every tile, int8 ``(Bm, Hm, ceil(Lq/q_tile), ceil(Lk/k_tile))`` with values
        ``EMPTY`` (0, no pair may attend), ``PARTIAL`` (1) or ``FULL`` (2, every pair may attend).
        Costs O(number of tiles), not O(Lq x Lk), for every structured mask. On the device of
        the mask's tensors (ids, lengths, a dense mask), the CPU for a rule of numbers alone:
        a table from a GPU's ids is built there, with nothing read back to the host."""
        raise NotImplementedError

    def batch_heads(self) -> tuple[int, int]:
        """``(Bm, Hm)``: the batch and head sizes this mask carries (1 = broadcast)."""
        return 1, 1

    def validate(self, batch: int, heads: int, q_len: int, kv_len: int) -> None:
        """Raise ``ValueError`` naming the argument when the mask cannot apply to a call with
        these sizes. The default checks that batch and head dimensions broadcast."""
        mask_batch, mask_heads = self.batch_heads()
        if mask_batch not in (1, batch):
            raise ValueError(
                f"mask: {self!r} carries a batch of {mask_batch} but the attention batch is "
                f"{batch}; expected 1 or {batch}"
            )
        if mask_heads not in (1, heads):
            raise ValueError(
                f"mask: {self!r} carries {mask_heads} heads but the queries have {heads}; "
                f"expected 1 or {heads}"
            )

    # -- conveniences built on the three ----------------------------------------------------
    def materialize(
        self, q_len: int, kv_len: int, device: torch.device | str | None = None
    ) -> Tensor:
        """The whole boolean mask ``(Bm, Hm, Lq, Lk)``; ``True`` = may attend. Builds the
        ``Lq x Lk`` matrix: meant for small inputs, the dense backend, pictures and tests. The
        result is remembered for the last sizes asked (every layer of a model asks for the same
        one) and must not be modified."""

        def compute():
            rows = torch.arange(q_len, device=device)
            cols = torch.arange(kv_len, device=device)
            return self.allowed(rows, cols, q_len, kv_len)

        return self._remember(("allowed", q_len, kv_len, str(device)), compute)

    def empty_rows(self, q_len: int, kv_len: int, device=None) -> Tensor | None:
        """Queries that may attend to nothing, ``(Bm, Hm, Lq)`` bool, or None when there are
        none on the CPU (remembered like ``materialize``)."""

        def compute():
            empty = ~self.materialize(q_len, kv_len, device).any(-1)
            # Reading the flag back is free on the CPU and spares callers a fill; on a GPU it
            # would stall for the device every call, so there callers fill with the tensor.
            if empty.device.type == "cpu" and not bool(empty.any()):
                return None
            return empty

        return self._remember(("empty", q_len, kv_len, str(device)), compute)

    def _remember(self, key, compute):
        if torch.compiler.is_compiling():
            # Inside a compiled graph (a CUDA-graph decode step) the computation is traced
            # once; a dict kept on the object is not something dynamo can trace.
            return compute()
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            if len(memo) > 4:  # one model call asks for one or two sizes: stay small
                memo.clear()
            memo[key] = compute()
        return memo[key]

    def __and__(self, other: Mask | Tensor) -> Mask:
        return And(self, as_mask(other))

    def __rand__(self, other: Tensor) -> Mask:
        return And(as_mask(other), self)

    def __or__(self, other: Mask | Tensor) -> Mask:
        return Or(self, as_mask(other))

    def __ror__(self, other: Tensor) -> Mask:
        return Or(as_mask(other), self)

    def __invert__(self) -> Mask:
        return Not(self)


def as_mask(mask: Mask | Tensor) -> Mask:
    """Accept a ``Mask`` or a boolean tensor (``True`` = may attend) and return a ``Mask``."""
    if isinstance(mask, Mask):
        return mask
    if isinstance(mask, Tensor):
        return Dense(mask)
    if callable(mask) and getattr(mask, "__module__", None) == "atenea.attention.masks":
        raise TypeError(
            f"mask: got the function masks.{mask.__name__} itself; call it to make a mask, "
            f"e.g. mask=masks.{mask.__name__}(...)"
        )
    raise TypeError(
        f"mask: expected an atenea mask (atenea.masks.causal(), ...) or a boolean tensor "
        f"where True means 'may attend', got {type(mask).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# Any boolean tensor
# ---------------------------------------------------------------------------------------------


class Dense(Mask):
    """Any pattern, given as a boolean tensor broadcastable to ``(B, H, Lq, Lk)``.
    ``True`` = may attend (the opposite of ``torch.nn.MultiheadAttention``'s ``key_padding_mask``,
    where ``True`` means *ignore*)."""

    def __init__(self, allowed: Tensor):
        if not isinstance(allowed, Tensor):
            raise TypeError(
                f"dense: expected a boolean tensor (True = may attend), "
                f"got {type(allowed).__name__}"
            )
        if allowed.dtype != torch.bool:
            raise TypeError(
                f"dense: expected a boolean tensor where True means 'may attend', got dtype "
                f"{allowed.dtype}; for an additive float bias use a score_mod instead"
            )
        if allowed.dim() > 4:
            raise ValueError(
                f"dense: the mask must broadcast to (B, H, Lq, Lk), got {allowed.dim()} "
                f"dimensions (shape {tuple(allowed.shape)})"
            )
        self.tensor = allowed.reshape((1,) * (4 - allowed.dim()) + tuple(allowed.shape))

    def batch_heads(self):
        return self.tensor.shape[0], self.tensor.shape[1]

    def validate(self, batch, heads, q_len, kv_len):
        super().validate(batch, heads, q_len, kv_len)
        rows, cols = self.tensor.shape[-2:]
        if rows not in (1, q_len) or cols not in (1, kv_len):
            raise ValueError(
                f"mask: a dense mask of shape {tuple(self.tensor.shape)} cannot broadcast to "
                f"(B={batch}, H={heads}, Lq={q_len}, Lk={kv_len}); its last two dimensions must "
                f"be (Lq or 1, Lk or 1)"
            )

    def allowed(self, rows, cols, q_len, kv_len):
        t = to_device(self.tensor, cols.device)
        t = t[:, :, rows] if t.shape[-2] > 1 else t.expand(-1, -1, rows.numel(), -1)
        t = t[:, :, :, cols] if t.shape[-1] > 1 else t.expand(-1, -1, -1, cols.numel())
        return t

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        t = self.tensor
        n_q, n_k = -(-q_len // q_tile), -(-kv_len // k_tile)
        # A broadcast (size-1) axis has the same kind on every tile along it.
        q_step = q_tile if t.shape[-2] > 1 else 1
        k_step = k_tile if t.shape[-1] > 1 else 1
        pad = (0, -t.shape[-1] % k_step, 0, -t.shape[-2] % q_step)

        def reduce_tiles(padding_value: bool, reduce) -> Tensor:
            padded = torch.nn.functional.pad(t, pad, value=padding_value)
            tiles = padded.reshape(
                *t.shape[:2], padded.shape[-2] // q_step, q_step, padded.shape[-1] // k_step, k_step
            )
            return reduce(reduce(tiles, 5), 3)

        full = reduce_tiles(True, torch.all)
        empty = ~reduce_tiles(False, torch.any)
        return _kinds(full, empty).expand(-1, -1, n_q, n_k)

    def __repr__(self):
        return f"dense(shape {tuple(self.tensor.shape)})"


# ---------------------------------------------------------------------------------------------
# Algebra
# ---------------------------------------------------------------------------------------------


def _broadcast_sizes(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return max(a[0], b[0]), max(a[1], b[1])


class And(Mask):
    """Both masks allow. ``True`` = may attend."""

    def __init__(self, left: Mask, right: Mask):
        self.left, self.right = left, right
        self.shift_invariant = left.shift_invariant and right.shift_invariant

    def batch_heads(self):
        return _broadcast_sizes(self.left.batch_heads(), self.right.batch_heads())

    def validate(self, batch, heads, q_len, kv_len):
        self.left.validate(batch, heads, q_len, kv_len)
        self.right.validate(batch, heads, q_len, kv_len)

    def allowed(self, rows, cols, q_len, kv_len):
        return self.left.allowed(rows, cols, q_len, kv_len) & self.right.allowed(
            rows, cols, q_len, kv_len
        )

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        return torch.minimum(*_together(self.left, self.right, q_len, kv_len, q_tile, k_tile))

    def __repr__(self):
        return f"({self.left!r} & {self.right!r})"


class Or(And):
    """Either mask allows. ``True`` = may attend."""

    def allowed(self, rows, cols, q_len, kv_len):
        return self.left.allowed(rows, cols, q_len, kv_len) | self.right.allowed(
            rows, cols, q_len, kv_len
        )

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        return torch.maximum(*_together(self.left, self.right, q_len, kv_len, q_tile, k_tile))

    def __repr__(self):
        return f"({self.left!r} | {self.right!r})"


class Not(Mask):
    """Allows exactly what the inner mask forbids. ``True`` = may attend."""

    def __init__(self, inner: Mask):
        self.inner = inner
        self.shift_invariant = inner.shift_invariant

    def batch_heads(self):
        return self.inner.batch_heads()

    def validate(self, batch, heads, q_len, kv_len):
        self.inner.validate(batch, heads, q_len, kv_len)

    def allowed(self, rows, cols, q_len, kv_len):
        return ~self.inner.allowed(rows, cols, q_len, kv_len)

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        return FULL - self.inner.tile_kinds(q_len, kv_len, q_tile, k_tile)

    def __repr__(self):
        return f"~{self.inner!r}"


def _together(left: Mask, right: Mask, *sizes: int) -> tuple[Tensor, Tensor]:
    """Both masks' tile tables on one device: a CPU table (a rule of numbers) joins the other's
    device (a GPU's ids), copied there without the host waiting; never the other way round."""
    a, b = left.tile_kinds(*sizes), right.tile_kinds(*sizes)
    if a.device.type == "cpu" and b.device.type != "cpu":
        return to_device(a, b.device), b
    if b.device.type == "cpu" and a.device.type != "cpu":
        return a, to_device(b, a.device)
    return a, b


def _kinds(full: Tensor, empty: Tensor) -> Tensor:
    """Encode two (broadcastable) boolean tile maps as EMPTY=0 / PARTIAL=1 / FULL=2 (int8).
    A tile is never both full and empty, so ``1 + full - empty`` is exact."""
    return PARTIAL + full.to(torch.int8) - empty.to(torch.int8)
