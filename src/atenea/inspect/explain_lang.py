"""The terminal summary of ``atenea explain`` in any language of ``atenea.inspect.lang``, written
from the numbers of an ``Explanation`` (encoder and decoder models), a ``Seq2SeqExplanation``
(encoder-decoder models) or an ``AlignmentExplanation`` (RNNsearch) -- not by translating the
English lines -- so every language carries the same numbers."""

from __future__ import annotations

from atenea.inspect.analysis import HeadDescription, top_targets
from atenea.inspect.explain import Explanation, notable_heads, strongest_link
from atenea.inspect.lang import say
from atenea.inspect.seq2seq import Seq2SeqExplanation
from atenea.inspect.tokens import plain

SHARES = {"previous": "previous_share", "next": "next_share", "self": "self_share",
          "special": "special_share", "first": "first_share"}  # fmt: skip


def _targets(row, tokens: list[str], mark=plain) -> str:
    return ", ".join(
        f"{mark(token)} {weight:.2f}" for _, token, weight in top_targets(row, tokens, 3)
    )


def head_text(d: HeadDescription, lang: str) -> str:
    """What one head does, in words (``analysis._in_words``'s pattern, in ``lang``)."""
    if d.pattern in SHARES:
        share = getattr(d, SHARES[d.pattern])
        return say(lang, f"head_{d.pattern}", name=d.name, share=share)
    if d.pattern == "broad":
        return say(lang, "head_broad", name=d.name, entropy=d.entropy)
    return say(lang, "head_content", name=d.name, distance=d.mean_distance, entropy=d.entropy)


def summary_lines(e: Explanation, lang: str, mark=plain) -> list[str]:
    """The focus token's strongest targets per layer, in the rollout, and its strongest link;
    ``mark(token)`` wraps every token (``tokens.isolate`` for the HTML report)."""
    if e.focus is None:
        return []
    word = mark(e.tokens[e.focus])
    lines = [
        say(lang, "explain_layer", layer=layer, word=word,
            targets=_targets(rows.mean(0), e.tokens, mark))
        for layer, rows in enumerate(e.focus_rows)
    ]  # fmt: skip
    blocks = "" if e.block == 1 else say(lang, "explain_blocks", block=e.block)
    rollout = _targets(e.rollout[e.focus // e.block], e.cell_tokens, mark)
    lines.append(say(lang, "explain_rollout", blocks=blocks, word=word, targets=rollout))
    layer, head, j, weight = strongest_link(e)
    if j is not None:
        lines.append(say(lang, "explain_link", layer=layer, head=head, share=weight, word=word,
                         target=mark(e.tokens[j])))  # fmt: skip
    return lines


def summary(
    explanations: list[Explanation], name: str, family: str, lang: str, extra=None
) -> list[str]:
    """Every line ``atenea explain`` prints before the report, in ``lang``; ``extra(e)``: more
    lines about each text after its note (a classifier's prediction)."""
    first = explanations[0]
    layers, heads = first.maps.shape[:2]
    out = [say(lang, "explain_title", name=name, family=family, layers=layers, heads=heads)]
    for e in explanations:
        out += ["", say(lang, "explain_text", text=e.text)]
        if e.notice:
            out.append(say(lang, "explain_note", notice=e.notice))
        if extra is not None:
            out += extra(e)
        out.append(say(lang, "explain_tokens", count=len(e.tokens), tokens=" ".join(e.tokens)))
        if e.focus is not None:
            out.append(say(lang, "explain_focus", word=repr(e.tokens[e.focus]), index=e.focus))
            out += [f"  {line}" for line in summary_lines(e, lang)]
        out.append(say(lang, "explain_heads"))
        out += [f"  {head_text(d, lang)}" for d in notable_heads(e, 5)]
    return out


def seq2seq_summary(
    explanations: list[Seq2SeqExplanation], name: str, config, lang: str
) -> list[str]:
    """Every line ``atenea explain`` prints for an encoder-decoder model, in ``lang``:
    source, target, the alignment of each target token, the cross-attention heads."""
    shape = say(lang, "s2s_shape", encoder=config.num_encoder_layers,
                decoder=config.num_decoder_layers, heads=config.num_heads)  # fmt: skip
    out = [say(lang, "s2s_title", name=name, shape=shape)]
    for e in explanations:
        out += translation_lines(e, lang)
        out.append(say(lang, "s2s_source_tokens", count=len(e.source_tokens),
                       tokens=" ".join(e.source_tokens)))  # fmt: skip
        out.append(say(lang, "s2s_target_tokens", count=len(e.output_tokens),
                       tokens=" ".join(e.output_tokens)))  # fmt: skip
        last = e.cross_maps.shape[0] - 1
        layers = say(lang, "s2s_last", layer=last)
        if e.sharpest_layer != last:
            layers += say(lang, "s2s_sharpest", layer=e.sharpest_layer)
        out.append(say(lang, "s2s_alignment", layers=layers))
        out += [f"  {line}" for line in e.summary]  # tokens and numbers only: any language
        out.append(say(lang, "s2s_heads"))
        for d in sorted(e.cross_descriptions, key=lambda d: d.entropy)[:5]:
            out.append(f"  {cross_head_text(d, lang)}")
    return out


def translation_lines(e, lang: str) -> list[str]:
    """The lines that open each translation's summary (an encoder-decoder's or RNNsearch's): a
    blank line, the source, its note, and the target (given, or generated greedily)."""
    out = ["", say(lang, "s2s_source", text=e.text)]
    if e.notice:
        out.append(say(lang, "explain_note", notice=e.notice))
    how = say(lang, "s2s_generated" if e.generated else "s2s_given")
    return out + [say(lang, "s2s_target", how=how, target=e.target)]


def alignment_summary(explanations, name: str, lang: str) -> list[str]:
    """Every line ``atenea explain`` prints for RNNsearch, in ``lang``: per source, the
    translation, the source tokens each target token read most, and what its one attention
    does."""
    out = [say(lang, "rnn_title", name=name)]
    for e in explanations:
        out += translation_lines(e, lang)
        out.append(say(lang, "rnn_alignment"))
        out += [f"  {line}" for line in e.summary]  # tokens and numbers only: any language
        out.append(f"  ({cross_head_text(e.description, lang)})")
    return out


def cross_head_text(d: HeadDescription, lang: str) -> str:
    """What one cross-attention head does (``seq2seq._cross_in_words``'s pattern, in ``lang``)."""
    return say(lang, f"cross_{d.pattern}", name=d.name, share=d.special_share,
               entropy=d.entropy, distance=d.mean_distance)  # fmt: skip
