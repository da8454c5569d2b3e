"""The seven steps of self-attention as plain tensors, on random weights or on one head of a real
model, for ``atenea steps`` and the examples: nothing here prints.

    X (L, d_model) -> Q = X W_Q + b_Q, K = X W_K + b_K, V = X W_V + b_V   (L, d_k) each
    -> scores = Q K^T (L, L) -> scaled = scores / sqrt(d_k) -> masked -> weights = softmax(rows)
    -> Y = weights V (L, d_k) -> this head's share of the layer's output: Y W_O^h (L, d_model)

``Lesson`` holds the inputs (tokens, X and the layer's projections); ``seven_steps`` returns
every intermediate tensor by name; ``split_heads`` does the same for every head of the layer
and the concatenation through W_O.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

from atenea.attention import masks
from atenea.nn.positions import RotaryEmbedding, sinusoidal_table

POSITION_KINDS = ("none", "sinusoidal", "learned", "rope")


class LessonError(ValueError):
    """Bad input for the steps (shown to the user as a one-line message)."""


@dataclass
class Lesson:
    """What the steps start from.

    ``x (L, d_model)``: the rows attention reads (step 1); ``w_q, w_k, w_v (d_model, H * d_k)``
    and ``b_q, b_k, b_v (H * d_k,)`` or None: the layer's projections as matrices acting on
    rows (``Q = X @ w_q + b_q``); ``w_o (H * d_k, d_model)``, ``b_o``: the output projection.
    ``head``: the head the seven steps follow. ``embeddings`` and ``position_table``: the two
    parts of X when it is their sum (None otherwise). ``rotary``: RoPE applied to q and k.
    """

    tokens: list[str]
    x: Tensor
    w_q: Tensor
    w_k: Tensor
    w_v: Tensor
    w_o: Tensor
    num_heads: int = 1
    head: int = 0
    b_q: Tensor | None = None
    b_k: Tensor | None = None
    b_v: Tensor | None = None
    b_o: Tensor | None = None
    causal: bool = False
    rotary: RotaryEmbedding | None = None
    embeddings: Tensor | None = None
    position_table: Tensor | None = None
    source: str = "random"  # "random" or the model's name
    layer: int = 0
    norm_first: bool = False  # X is the block's input normalised (a pre-norm block)

    @property
    def d_k(self) -> int:
        return self.w_q.shape[1] // self.num_heads

    def head_slice(self, head: int) -> slice:
        return slice(head * self.d_k, (head + 1) * self.d_k)

    def with_tokens(self, order: list[int]) -> Lesson:
        """The same lesson on the tokens reordered by ``order`` (random weights: each word keeps
        its embedding; the position table, if any, stays where it is)."""
        if self.embeddings is None:
            raise LessonError("--permute needs random weights (a model's X already mixes context)")
        tokens = [self.tokens[i] for i in order]
        embeddings = self.embeddings[order]
        x = embeddings if self.position_table is None else embeddings + self.position_table
        return Lesson(**{**self.__dict__, "tokens": tokens, "x": x, "embeddings": embeddings})


def word_embedding(word: str, d_model: int) -> Tensor:
    """A fixed pseudo-random vector per word (seeded by a hash of the word): the same word gets
    the same embedding in every sentence and every run, as in a real embedding table."""
    generator = torch.Generator().manual_seed(zlib.crc32(word.lower().encode("utf-8")))
    return torch.randn(d_model, generator=generator)


def random_lesson(
    tokens: list[str],
    *,
    d_model: int = 8,
    d_k: int = 4,
    num_heads: int = 1,
    seed: int = 0,
    causal: bool = False,
    positions: str = "none",
) -> Lesson:
    """Random projections (as before training) on hashed word embedding, with ``positions``:
    ``none``, ``sinusoidal`` (the fixed table added to X), ``learned`` (a random table added to
    X, as a learned one starts) or ``rope`` (q and k rotated by position)."""
    if positions not in POSITION_KINDS:
        raise LessonError(f"--positions: expected one of {', '.join(POSITION_KINDS)}")
    if positions == "rope" and d_k % 2:
        raise LessonError(
            f"--positions rope rotates pairs of dimensions: --d-k must be even, got {d_k}"
        )
    generator = torch.Generator().manual_seed(seed)
    width = num_heads * d_k

    def projection(rows: int, cols: int) -> Tensor:
        return torch.randn(rows, cols, generator=generator) / math.sqrt(rows)

    w_q, w_k, w_v = (projection(d_model, width) for _ in range(3))
    w_o = projection(width, d_model)
    embeddings = torch.stack([word_embedding(t, d_model) for t in tokens])  # (L, d_model)
    index = torch.arange(len(tokens))
    table = None
    if positions == "sinusoidal":
        table = sinusoidal_table(index, d_model)
    elif positions == "learned":
        table = torch.randn(len(tokens), d_model, generator=generator) * 0.5
    x = embeddings if table is None else embeddings + table
    return Lesson(
        tokens=tokens,
        x=x,
        w_q=w_q,
        w_k=w_k,
        w_v=w_v,
        w_o=w_o,
        num_heads=num_heads,
        causal=causal,
        rotary=RotaryEmbedding(d_k) if positions == "rope" else None,
        embeddings=embeddings,
        position_table=table,
    )


def project(lesson: Lesson, head: int) -> tuple[Tensor, Tensor, Tensor]:
    """Q, K, V ``(L, d_k)`` of one head (rotated by RoPE when the lesson has it)."""
    part = lesson.head_slice(head)

    def one(w: Tensor, b: Tensor | None) -> Tensor:
        out = lesson.x @ w[:, part]
        return out if b is None else out + b[part]

    q, k, v = one(lesson.w_q, lesson.b_q), one(lesson.w_k, lesson.b_k), one(lesson.w_v, lesson.b_v)
    if lesson.rotary is not None:
        index = torch.arange(len(lesson.tokens))
        q = lesson.rotary(q[None, None], index)[0, 0]
        k = lesson.rotary(k[None, None], index)[0, 0]
    return q, k, v


def seven_steps(lesson: Lesson, head: int | None = None) -> dict[str, Tensor]:
    """Every intermediate tensor of one head, literally: ``q, k, v (L, d_k)``, ``scores``,
    ``scaled``, ``allowed`` (bool), ``masked``, ``weights`` (all ``(L, L)``), ``y (L, d_k)``
    and ``head_output (L, d_model)`` = ``y`` through this head's rows of W_O."""
    head = lesson.head if head is None else head
    q, k, v = project(lesson, head)
    length = len(lesson.tokens)
    scores = q @ k.T  # (L, L): row = query, column = key
    scaled = scores / math.sqrt(q.shape[-1])
    if lesson.causal:
        allowed = masks.causal().materialize(length, length)[0, 0]
    else:
        allowed = torch.ones(length, length, dtype=torch.bool)
    masked = scaled.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(masked, dim=-1)
    y = weights @ v  # (L, d_k)
    head_output = y @ lesson.w_o[lesson.head_slice(head)]
    return dict(
        q=q,
        k=k,
        v=v,
        scores=scores,
        scaled=scaled,
        allowed=allowed,
        masked=masked,
        weights=weights,
        y=y,
        head_output=head_output,
    )


def split_heads(lesson: Lesson) -> dict[str, Tensor]:
    """Every head of the layer side by side: ``weights (H, L, L)``, ``heads (H, L, d_k)``, their
    concatenation ``concat (L, H * d_k)`` and the layer's output ``concat @ W_O + b_O``."""
    steps = [seven_steps(lesson, head) for head in range(lesson.num_heads)]
    concat = torch.cat([s["y"] for s in steps], dim=-1)
    output = concat @ lesson.w_o + (0 if lesson.b_o is None else lesson.b_o)
    return {
        "weights": torch.stack([s["weights"] for s in steps]),
        "heads": torch.stack([s["y"] for s in steps]),
        "concat": concat,
        "output": output,
    }


def module_output(lesson: Lesson, module=None) -> Tensor:
    """The same layer through ``atenea.nn.MultiHeadAttention`` (a module built from the lesson's
    matrices, or the model's own ``module``): ``(L, d_model)``, for the check."""
    from atenea.nn.attention import MultiHeadAttention

    if module is None:
        d_model, width = lesson.w_q.shape
        module = MultiHeadAttention(
            d_model, lesson.num_heads, head_dim=lesson.d_k, bias=False, rotary=lesson.rotary
        )
        with torch.no_grad():
            for name, w in (
                ("q_proj", lesson.w_q),
                ("k_proj", lesson.w_k),
                ("v_proj", lesson.w_v),
                ("o_proj", lesson.w_o),
            ):
                getattr(module, name).weight.copy_(w.T)  # Linear stores (out, in)
    length = len(lesson.tokens)
    with torch.no_grad():
        out = module(
            lesson.x[None],
            mask=masks.causal() if lesson.causal else None,
            positions=torch.arange(length)[None],
        )
    return out[0]


def permutation_check(lesson: Lesson, order: list[int]) -> dict[str, float]:
    """Attention on the tokens in another ``order``: how far its output is from the original
    output permuted the same way (``equivariance``: 0 when order does not matter), and how far
    it is from the original itself."""
    moved = lesson.with_tokens(order)
    y = seven_steps(lesson)["y"]
    y_moved = seven_steps(moved)["y"]
    return {
        "equivariance": float((y_moved - y[order]).abs().max()),
        "largest": float(y.abs().max()),
    }


def attention_layers_of(model, name: str):
    """The encoder or decoder whose blocks the steps read (inside a task head if need be); a
    ``LessonError`` for any other model (an encoder-decoder has two stacks and cross-attention:
    ``atenea explain`` shows those)."""
    from atenea.inspect.capture import base_model
    from atenea.models.decoder import DecoderModel
    from atenea.models.encoder import EncoderModel

    base = base_model(model)
    if not isinstance(base, (EncoderModel, DecoderModel)):
        raise LessonError(
            f"--model {name}: steps reads encoder and decoder models, not "
            f"{type(base).__name__} (atenea explain shows its attention)"
        )
    return base


def model_lesson(model, tokenizer, text: str, layer: int, head: int, name: str) -> Lesson:
    """One head of a real encoder or decoder: X is what layer ``layer``'s attention reads (the
    block's input, normalised first in a pre-norm block), the projections are the layer's own
    (grouped key/value heads repeated per query head), and RoPE when the model rotates."""
    from atenea.inspect.tokens import token_labels
    from atenea.models.decoder import DecoderModel

    base = attention_layers_of(model, name)
    blocks = base.layers
    if not 0 <= layer < len(blocks):
        raise LessonError(f"--layer {layer}: this model has layers 0..{len(blocks) - 1}")
    attn = blocks[layer].attention
    if not 0 <= head < attn.num_heads:
        raise LessonError(f"--head {head}: this model has heads 0..{attn.num_heads - 1}")
    if attn.score_mod is not None:
        raise LessonError(
            f"{name}: its scores carry a modifier (ALiBi or a relative bias), which the seven "
            "steps leave out"
        )
    ids = tokenizer(text)["input_ids"]
    tokens, _ = token_labels(tokenizer, ids[0])
    norm_first = blocks[layer].config.norm_position == "pre"
    with torch.no_grad():
        x = base(ids, output_hidden_states=True).hidden_states[layer]
        if norm_first:
            x = blocks[layer].attention_norm(x)
    w_q, w_k, w_v, b_q, b_k, b_v = _projections(attn)
    o = attn.o_proj
    return Lesson(
        tokens=tokens,
        x=x[0].detach().float(),
        w_q=w_q,
        w_k=w_k,
        w_v=w_v,
        w_o=o.weight.detach().T.float(),
        b_o=None if o.bias is None else o.bias.detach().float(),
        b_q=b_q,
        b_k=b_k,
        b_v=b_v,
        num_heads=attn.num_heads,
        head=head,
        causal=isinstance(base, DecoderModel),
        rotary=attn.rotary,
        source=name,
        layer=layer,
        norm_first=norm_first,
    )


def _projections(attn) -> tuple:
    """``w_q, w_k, w_v (d_model, H * d_k)`` and their biases (or None) of a
    ``MultiHeadAttention``, key/value heads repeated so that column block ``h`` serves query
    head ``h`` (grouped-query attention)."""
    q_width = attn.num_heads * attn.head_dim
    kv_width = attn.num_kv_heads * attn.head_dim
    if attn.fused_qkv:
        weights = attn.qkv_proj.weight.detach().split([q_width, kv_width, kv_width])
        bias = attn.qkv_proj.bias
        biases = (None,) * 3 if bias is None else bias.detach().split([q_width, kv_width, kv_width])
    else:
        layers = (attn.q_proj, attn.k_proj, attn.v_proj)
        weights = [p.weight.detach() for p in layers]
        biases = [None if p.bias is None else p.bias.detach() for p in layers]
    group = attn.num_heads // attn.num_kv_heads

    def per_query_head(t: Tensor | None, is_query: bool) -> Tensor | None:
        if t is None:
            return None
        t = t.float()
        if is_query or group == 1:
            return t
        return (
            t.unflatten(0, (attn.num_kv_heads, attn.head_dim))
            .repeat_interleave(group, 0)
            .flatten(0, 1)
        )

    w = [per_query_head(t, i == 0).T for i, t in enumerate(weights)]  # Linear stores (out, in)
    b = [per_query_head(t, i == 0) for i, t in enumerate(biases)]
    return (*w, *b)
