"""Which token ``explain(..., focus=WORD)`` follows: a whole word of the text, compared the way
the tokenizer compares.

``--focus carburetor`` must not land on "car" (a prefix), and ``--focus niño`` must find the
word a MiniLM tokenizer has turned into ``nino`` (its normalizer lowercases and strips accents).
So the focus word and every word of the text go through the tokenizer's own normalizer
(``tokenizers``' ``normalize_str``), and they are compared whole, case-insensitively: the
words are the tokenizer's (its pre-tokenizer's ``word_ids``, read back from the text through the
offsets; a tokenizer of characters has runs of letters and digits for words). A word split
into pieces is followed from its first piece. A continuation piece or a
special token may be named as it is shown (``##ing``, ``[CLS]``); a piece is never taken for a
word (``an`` is not ``año``'s first piece ``an``).
"""

from __future__ import annotations

from atenea.inspect.tokens import ExplainError


def find_focus(tokenizer, text: str, pair: str | None, word: str, tokens: list[str]) -> int:
    """The index in ``tokens`` (the labels of the encoded ``text`` / ``pair``, possibly cut)
    of the first token of the first word equal to ``word``; ``ExplainError`` when there is none."""
    normalize = _normalizer(tokenizer)
    wanted = normalize(word.strip())
    if not wanted:
        raise ExplainError("focus: give a word of the text")
    words = _words(tokenizer, text, pair)
    for spelled, first in words:
        if normalize(spelled) == wanted and first < len(tokens):
            return first
    named_token = word.strip().startswith(("##", "[", "<"))  # a piece or a special token
    for index, token in enumerate(tokens):
        if named_token and token.casefold() == word.strip().casefold():
            return index
    shown = " ".join(dict.fromkeys(spelled for spelled, first in words if first < len(tokens)))
    raise FocusNotFound(f"focus: {word!r} is not a word of the text; its words: {shown}")


class FocusNotFound(ExplainError):
    """The focus word is not a word of the text (``atenea explain --compare`` shows a second
    text without a focus then)."""


def _normalizer(tokenizer):
    backend = getattr(tokenizer, "backend", None)
    normalizer = getattr(backend, "normalizer", None)

    def normalize(value: str) -> str:
        if normalizer is not None:
            value = normalizer.normalize_str(value)
        return value.strip().casefold()

    return normalize


def _words(tokenizer, text: str, pair: str | None) -> list[tuple[str, int]]:
    """``(the word as written, index of its first token)`` for every word, in order."""
    backend = getattr(tokenizer, "backend", None)
    if backend is None:
        return []
    encoding = backend.encode(text, pair, add_special_tokens=True)
    sources = (text, pair or "")
    spans: dict[tuple[int, int], list[int]] = {}  # (sequence, word) -> [start, end, first]
    for index, (sequence, word) in enumerate(zip(encoding.sequence_ids, encoding.word_ids)):
        if sequence is None or word is None:
            continue
        start, end = encoding.offsets[index]
        span = spans.setdefault((sequence, word), [start, end, index])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    found = [(seq, start, end, first) for (seq, _), (start, end, first) in spans.items()]
    if found and all(end - start == 1 for _, start, end, _ in found):
        found = _letter_runs(found, sources)  # one character a word: a chars tokenizer
    return [(sources[seq][start:end], first) for seq, start, end, first in found]


def _letter_runs(spans: list[tuple], sources: tuple[str, str]) -> list[tuple]:
    """Single-character ``(sequence, start, end, first token)`` spans joined into runs of
    adjacent letters and digits: the words of a text a tokenizer cuts into characters."""
    runs: list[list] = []
    for seq, start, end, first in spans:
        if sources[seq][start:end].isspace():  # between words, not one
            continue
        letter = sources[seq][start:end].isalnum()
        last = runs[-1] if runs else None
        if letter and last and last[0] == seq and last[2] == start and last[4]:
            last[2] = end
        else:
            runs.append([seq, start, end, first, letter])
    return [(seq, start, end, first) for seq, start, end, first, _ in runs]
