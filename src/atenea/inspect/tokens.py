"""A text's tokens as ``explain`` shows them, shared by ``explain`` (encoder and decoder models)
and ``explain_seq2seq`` (encoder-decoder models): labels a reader can read, which tokens are
special, how many a report draws in full, and the error that bad input raises."""

from __future__ import annotations

from torch import Tensor

# The most rows or columns of a map the report draws in full: it holds every weight of every
# head, and a 512 x 512 map per head would make a report of hundreds of megabytes.
REPORT_MAX_CELLS = 160


class ExplainError(ValueError):
    """Bad input for ``explain`` or ``explain_seq2seq`` (shown to the user as one line)."""


def check_text(text: str) -> None:
    """Refuse an empty or blank text, before any model runs."""
    if not text or not text.strip():
        raise ExplainError("give a non-empty text to explain")


def isolate(text: str) -> str:
    """``text`` between U+2068 FIRST STRONG ISOLATE and U+2069 POP DIRECTIONAL ISOLATE, for a
    page that shows it among atenea's own words and numbers: a right-to-left token (Arabic,
    Hebrew) or one holding a direction override (U+202E) keeps its own direction inside, and
    cannot reorder what is around it (``0.99 -> robot: 0.017`` read backwards). Only for the
    HTML report: a terminal without bidi support may draw the two marks as odd glyphs."""
    return f"\u2068{text}\u2069"


def plain(text: str) -> str:
    """The identity: the ``mark`` of a line for the terminal (see ``isolate``)."""
    return text


def display_token(token: str) -> str:
    """A tokenizer's token as a reader expects it: no byte-level 'Ġ' or SentencePiece '▁'
    word-start marks, visible newlines."""
    for mark in ("Ġ", "▁"):
        if token.startswith(mark) and len(token) > 1:
            token = token[1:]
    return token.replace("Ċ", "\\n").replace("\n", "\\n")


def token_labels(tokenizer, ids: Tensor) -> tuple[list[str], list[bool]]:
    """The tokens of ``ids (L,)`` as labels for a reader, and whether each is one of the
    tokenizer's special tokens ([CLS], [SEP], BOS, ...)."""
    raw = tokenizer.tokens(ids)
    specials = set(tokenizer.special_tokens.values())
    decoder = getattr(getattr(tokenizer, "backend", None), "decoder", None)
    if type(decoder).__name__ == "ByteLevel":  # GPT-2-style pieces: bytes drawn as letters
        labels = [t if t in specials else _byte_level_label(decoder, t) for t in raw]
    else:
        labels = [display_token(token) for token in raw]
    return labels, [token in specials for token in raw]


def _byte_level_label(decoder, token: str) -> str:
    """A byte-level BPE piece as text: its bytes decoded (``ĠĠĠ`` is three spaces, ``Ã©`` is
    "é"), the space that starts a word dropped, a piece of only white space with ``␣`` per space,
    newlines and tabs as ``\\n`` and ``\\t``. A piece that is part of a character shows
    as U+FFFD."""
    text = decoder.decode([token])
    if text.startswith(" ") and text.strip():
        text = text[1:]
    if not text.strip():  # indentation, blank lines: every space shown
        text = text.replace(" ", "\u2423")
    return text.replace("\n", "\\n").replace("\t", "\\t")
