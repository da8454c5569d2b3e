"""``explain`` for encoder-decoder (translation) models: a source, a target (given, or generated
greedily), and three kinds of attention captured in one forward pass.

- encoder self-attention ``(layers, heads, S, S)`` over the source tokens;
- decoder self-attention ``(layers, heads, T, T)`` over the decoder's inputs (causal);
- cross-attention ``(layers, heads, T, S)``: each target position over the source tokens --
  not square. Row ``t`` is the step that *produces* target token ``t`` (its decoder input is
  the token before it, BOS first), so a row reads as Bahdanau's alignment of that word.

The decoder reads ``[BOS, y1, ..., y(n-1)]`` and produces ``[y1, ..., yn]`` (``yn`` is EOS when
the target ended): exactly what greedy generation fed it, so the maps are those of the steps
that wrote the translation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from atenea.generation import generate
from atenea.inspect.analysis import HeadDescription, describe_heads, rollout, top_targets
from atenea.inspect.capture import record
from atenea.inspect.tokens import REPORT_MAX_CELLS, ExplainError, check_text, plain, token_labels
from atenea.models.encoder_decoder import EncoderDecoderModel

# The longest target generated when none is given (``atenea explain --max-new-tokens``).
DEFAULT_MAX_NEW_TOKENS = 64


@dataclass
class Seq2SeqExplanation:
    """What ``explain_seq2seq`` found for one source.

    ``encoder_maps (Le, H, S, S)``, ``decoder_maps (Ld, H, T, T)``, ``cross_maps (Ld, H, T, S)``
    (float32, every weight); ``rollout (S, S)``: the encoder's; ``sharpest_layer``: the decoder
    layer whose head-averaged cross-attention rows have the lowest entropy.
    """

    text: str
    target: str
    generated: bool
    source_tokens: list[str]
    source_special: list[bool]
    decoder_tokens: list[str]  # the decoder's inputs: BOS, y1, ..., y(n-1)
    decoder_special: list[bool]
    output_tokens: list[str]  # what each decoder position produces: y1, ..., yn
    encoder_maps: Tensor
    decoder_maps: Tensor
    cross_maps: Tensor
    rollout: Tensor
    encoder_descriptions: list[HeadDescription]
    decoder_descriptions: list[HeadDescription]
    cross_descriptions: list[HeadDescription]
    sharpest_layer: int
    notice: str | None = None
    summary: list[str] = field(default_factory=list)

    @property
    def maps(self) -> Tensor:
        """The cross-attention maps (what ``atenea explain --layer / --head`` select first)."""
        return self.cross_maps


def explain_seq2seq(
    text: str,
    model: EncoderDecoderModel,
    tokenizer,
    *,
    target: str | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    max_tokens: int | None = None,
) -> Seq2SeqExplanation:
    """Tokenize the source ``text`` as ``atenea generate`` does, take ``target`` (tokenized
    without special tokens, between the model's BOS and EOS) or generate it greedily (at most
    ``max_new_tokens``), run the model once on the pair and capture all three attentions."""
    pair = source_and_target(text, model, tokenizer, target, max_new_tokens, max_tokens,
                             model.config.max_positions)  # fmt: skip
    src_ids, src_mask, decoder_ids, output_ids = pair.tensors
    notice = pair.notice
    with torch.no_grad():
        inter = record(model, src_ids, src_mask, target_ids=decoder_ids[None])

    def maps(records) -> Tensor:
        return torch.stack([r.weights()[0] for r in records]).float().cpu()

    encoder_maps, decoder_maps = maps(inter.encoder_attention), maps(inter.attention)
    cross_maps = maps(inter.cross_attention)
    source_tokens, source_special = token_labels(tokenizer, src_ids[0])
    decoder_tokens, decoder_special = token_labels(tokenizer, decoder_ids)
    output_tokens, _ = token_labels(tokenizer, output_ids)
    explanation = Seq2SeqExplanation(
        text=text, target=tokenizer.decode(output_ids), generated=target is None,
        source_tokens=source_tokens, source_special=source_special,
        decoder_tokens=decoder_tokens, decoder_special=decoder_special,
        output_tokens=output_tokens,
        encoder_maps=encoder_maps, decoder_maps=decoder_maps, cross_maps=cross_maps,
        rollout=rollout(encoder_maps).float(),
        encoder_descriptions=describe_heads(encoder_maps, source_special),
        decoder_descriptions=describe_heads(decoder_maps, decoder_special),
        cross_descriptions=describe_cross(cross_maps, source_special),
        sharpest_layer=sharpest_layer(cross_maps), notice=notice,
    )  # fmt: skip
    explanation.summary = alignment_lines(explanation)
    return explanation


@dataclass
class SourceAndTarget:
    """A source tokenized as ``atenea generate`` does, and the target the decoder read:
    ``src_ids, src_mask (1, S)``; ``decoder_ids`` = BOS, y1 .. y(n-1) and ``output_ids`` =
    y1 .. yn, ``(T,)`` each; ``notice``: what was cut, if anything."""

    src_ids: Tensor
    src_mask: Tensor
    decoder_ids: Tensor
    output_ids: Tensor
    notice: str | None

    @property
    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.src_ids, self.src_mask, self.decoder_ids, self.output_ids


def source_and_target(
    text: str, model, tokenizer, target: str | None, max_new_tokens: int,
    max_tokens: int | None, positions: int | None,
) -> SourceAndTarget:  # fmt: skip
    """What ``explain`` shows of a translator (Transformer or RNN): the source cut to
    ``max_tokens`` and the model's ``positions`` (None: no limit but the report's), and
    ``target`` (tokenized between BOS and EOS) or a greedy translation of at most
    ``max_new_tokens``, generated on the model's device."""
    check_text(text)
    if max_new_tokens < 1:
        raise ExplainError(f"max_new_tokens: expected an integer >= 1, got {max_new_tokens}")
    if target is not None and not target.strip():
        raise ExplainError("target: the target is empty; leave it out to generate one")
    config = model.config
    positions = positions or REPORT_MAX_CELLS
    limit = min(max_tokens or positions, positions)
    full_length = len(tokenizer.encode(text))
    batch = tokenizer(text, max_length=limit)
    src_ids, src_mask = batch["input_ids"], batch["attention_mask"]
    if src_ids.shape[1] == 0:
        raise ExplainError("the tokenizer turned the text into no tokens")
    notice = None
    if full_length > src_ids.shape[1]:
        notice = f"The source has {full_length} tokens; it was cut to the first {src_ids.shape[1]}."
    _check_length("source", src_ids.shape[1], "max_tokens")
    if target is None:
        cap = min(max_new_tokens, positions - 1, REPORT_MAX_CELLS)
        device = next(model.parameters()).device
        with torch.no_grad():
            sequence = generate(
                model, src_ids.to(device), attention_mask=src_mask.to(device), max_new_tokens=cap
            )[0].cpu()
    else:
        ids = tokenizer.encode(target, add_special_tokens=False)
        sequence = torch.tensor([config.bos_token_id, *ids, config.eos_token_id])
        if len(sequence) - 1 > positions:
            raise ExplainError(
                f"target: {len(ids)} tokens; the model reads at most {positions - 1}"
            )
    if len(sequence) < 2:
        raise ExplainError("max_new_tokens: the model generated no token; raise it")
    decoder_ids, output_ids = sequence[:-1], sequence[1:]
    _check_length("target", len(decoder_ids), "target" if target else "max_new_tokens")
    return SourceAndTarget(src_ids, src_mask, decoder_ids, output_ids, notice)


def _check_length(name: str, length: int, argument: str) -> None:
    """Refuse a map wider than the report draws, naming the argument that shortens it."""
    if length > REPORT_MAX_CELLS:
        raise ExplainError(
            f"{argument}: the {name} has {length} tokens; explain draws encoder-decoder maps of "
            f"at most {REPORT_MAX_CELLS}"
        )


def _row_entropy(rows: Tensor) -> Tensor:
    """Entropy of each row ``(..., S)``, divided by ``log S`` (0 = one key, 1 = uniform)."""
    keys = max(rows.shape[-1], 2)
    return -torch.special.xlogy(rows, rows).sum(-1) / torch.log(torch.tensor(float(keys)))


def sharpest_layer(cross_maps: Tensor) -> int:
    """The layer whose head-averaged cross-attention is most concentrated (lowest mean row
    entropy): the layer that aligns target words to source words most clearly."""
    return int(_row_entropy(cross_maps.mean(1)).mean(-1).argmin())


def describe_cross(maps: Tensor, special: list[bool], threshold: float = 0.5):
    """A ``HeadDescription`` per head of cross-attention ``maps (layers, heads, T, S)``.
    Self / previous / next shares mean nothing across two sequences (None); ``mean_distance``
    is the distance from the diagonal (row ``t`` of ``T`` expected near source position
    ``t * (S - 1) / (T - 1)``): small for a head that follows the source in order."""
    layers, heads, rows, keys = maps.shape
    diagonal = torch.arange(rows).float() * (keys - 1) / max(rows - 1, 1)
    distance = (diagonal.view(-1, 1) - torch.arange(keys).float().view(1, -1)).abs()
    flags = torch.tensor((special + [False] * keys)[:keys])
    out = []
    for layer in range(layers):
        for head in range(heads):
            w = maps[layer, head].float()
            d = HeadDescription(
                layer=layer, head=head, entropy=float(_row_entropy(w).mean()),
                mean_distance=float((w * distance).sum(-1).mean()), self_share=None,
                previous_share=None, next_share=None,
                special_share=float(w[:, flags].sum(-1).mean()), first_share=float(w[:, 0].mean()),
                pattern="", text="",
            )  # fmt: skip
            d.pattern, d.text = _cross_in_words(d, threshold, keys)
            out.append(d)
    return out


def _cross_in_words(d: HeadDescription, threshold: float, keys: int) -> tuple[str, str]:
    if d.special_share >= threshold:
        return "special", (
            f"{d.name} attends mostly to the source's special tokens (a resting head; "
            f"{d.special_share:.0%} of its weight)"
        )
    if d.entropy >= 0.8:
        return "broad", f"{d.name} spreads its attention over the source (entropy {d.entropy:.2f})"
    if d.mean_distance <= max(1.0, 0.1 * keys):
        return "diagonal", (
            f"{d.name} follows the source in order (mean distance from the diagonal "
            f"{d.mean_distance:.1f} tokens)"
        )
    return "content", (
        f"{d.name} aligns by content (mean distance from the diagonal {d.mean_distance:.1f} "
        f"tokens, entropy {d.entropy:.2f})"
    )


def alignment_lines(e: Seq2SeqExplanation, k: int = 3, mark=plain) -> list[str]:
    """For each target token, the source tokens it attends to most: cross-attention averaged
    over the heads of the last layer and, when another, of the sharpest layer. ``mark(token)``
    wraps every token (``tokens.isolate`` for the HTML report)."""
    last = e.cross_maps.shape[0] - 1
    layers = [last] if e.sharpest_layer == last else [last, e.sharpest_layer]
    width = min(max(len(t) for t in e.output_tokens), 16)
    lines = []
    for t, token in enumerate(e.output_tokens):
        parts = []
        for layer in layers:
            row = e.cross_maps[layer, :, t].mean(0)
            best = ", ".join(
                f"{mark(s)} {w:.2f}" for _, s, w in top_targets(row, e.source_tokens, k)
            )
            parts.append(f"L{layer}: {best}")
        lines.append(f"{mark(f'{token:>{width}}')} -> " + " | ".join(parts))
    return lines
