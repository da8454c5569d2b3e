"""Synthetic movie-review sentiment whose label needs attention across distance.

The reviews are made by this module from templates (nothing is downloaded). The rule that
decides the label:

1. A review is one clause, or two joined by contrast ("X, but Y", "X. However, Y",
   "Although X, Y"): only the **last** clause counts, the first always says the opposite.
2. A clause's polarity is its adjective's ("good", "boring", ...) **flipped by a negation**
   ("not", "never", "didn't", "nobody") before it, however many filler words sit in between
   ("I would not say, after thinking about it for a while, that it was great" -> negative;
   "it was not bad at all" -> positive). Intensifiers ("really", "truly") change nothing.

So the same words come with both labels ("good, but the ending ruined it" is negative, "it
was slow at first, but in the end it was good" positive): a bag of words cannot be perfect,
a model must relate the negator and the contrast word to the adjective they govern.
"""

from __future__ import annotations

import random

from atenea.training.data import Split

LABELS = ("negative", "positive")  # index = polarity (0 negative, 1 positive)

ADJECTIVES = (
    ("bad", "boring", "awful", "dull", "terrible", "disappointing", "weak", "tedious"),
    ("good", "great", "wonderful", "brilliant", "excellent", "moving", "fun", "gripping"),
)
SUBJECTS = (
    "the movie", "the film", "it", "the acting", "the plot", "the script", "the ending",
    "the soundtrack", "the cast", "the story", "the direction", "the first hour",
)  # fmt: skip
INTENSIFIERS = ("", "", "", "really ", "truly ", "very ", "quite ", "absolutely ")
FILLERS = (
    "",
    "",
    "to be honest, ",
    "after thinking about it for a while, ",
    "despite what my friends told me, ",
    "and I watched it twice, ",
    "even with the popcorn and the big screen, ",
    "if I am completely honest with myself, ",
)
# Noun phrases with a polarity (only as the first part of a contrast: "a slow start, but ...").
NOUN_PHRASES = (
    ("a slow start", "a weak script", "a confusing first act", "some clumsy dialogue"),
    ("a promising start", "some good moments", "a great soundtrack", "a beautiful first act"),
)  # fmt: skip
# Whole clauses with a polarity and no adjective slot: "good, but the ending ruined it".
CLAUSES = (
    ("the ending ruined it", "the middle dragged on", "the dialogue fell flat",
     "I almost left halfway", "I regret buying the ticket"),
    ("it won me over", "I loved every minute", "it stayed with me for days",
     "I would watch it again", "the last scene made up for everything"),
)  # fmt: skip


def _plain(polarity: int, rng: random.Random) -> str:
    """A clause meaning ``polarity`` with no negation: "the plot was really good"."""
    adjective = rng.choice(ADJECTIVES[polarity])
    return f"{rng.choice(SUBJECTS)} was {rng.choice(INTENSIFIERS)}{adjective}"


def _negated(polarity: int, rng: random.Random) -> str:
    """A clause meaning ``polarity`` through a negated adjective of the other polarity, with
    filler between the negator and the adjective so the distance varies."""
    adjective = rng.choice(ADJECTIVES[1 - polarity])
    subject = rng.choice(SUBJECTS)
    filler = rng.choice(FILLERS)
    intensifier = rng.choice(INTENSIFIERS)
    templates = (
        f"{subject} was not {intensifier}{adjective}",
        f"{subject} was not {adjective} at all",
        f"I would not say, {filler}that {subject} was {intensifier}{adjective}",
        f"I did not think, {filler}that {subject} was {adjective}",
        f"I never felt that {subject} was {intensifier}{adjective}",
        f"{subject} didn't seem {intensifier}{adjective} to me",
        f"nobody could honestly call {subject} {adjective}",
    )
    return rng.choice(templates)


def _clause(polarity: int, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.1:
        return rng.choice(CLAUSES[polarity])
    return (_plain if roll < 0.45 else _negated)(polarity, rng)


def _opening(polarity: int, rng: random.Random) -> str:
    """The first clause of a contrast (meaning ``polarity``): a clause or a noun phrase."""
    return rng.choice(NOUN_PHRASES[polarity]) if rng.random() < 0.25 else _clause(polarity, rng)


def review(label: str, rng: random.Random) -> str:
    """One review whose label (by the module's rule) is ``label``."""
    polarity = LABELS.index(label)
    last = _clause(polarity, rng)
    roll = rng.random()
    if roll < 0.4:
        text = last
    else:
        # "although" wants a full clause, the others also take a noun phrase.
        first = _opening(1 - polarity, rng) if roll < 0.9 else _clause(1 - polarity, rng)
        if roll < 0.6:
            text = f"{first}, but {last}"
        elif roll < 0.75:
            text = f"{first}, but in the end {last}"
        elif roll < 0.9:
            text = f"{first}. However, {last}"
        else:
            text = f"although {first}, {last}"
    return text[0].upper() + text[1:] + "."


def make(n: int, seed: int = 0, exclude=None) -> list[dict]:
    """``n`` reviews ``{"text", "label"}``, half "positive" and half "negative" (the odd one
    out at random), in random order. ``exclude``: texts never to produce."""
    if n < 0:
        raise ValueError(f"n: expected a count >= 0, got {n}")
    rng = random.Random(f"atenea-sentiment-{seed}")
    labels = [LABELS[i % 2] for i in range(n)]
    if n % 2:
        labels[-1] = rng.choice(LABELS)
    rng.shuffle(labels)
    exclude = set(exclude or ())
    examples = []
    for label in labels:
        text = review(label, rng)
        for _ in range(1000):  # the templates make millions of texts: collisions are rare
            if text not in exclude:
                break
            text = review(label, rng)
        else:
            raise ValueError("exclude: cannot make a review that is not excluded")
        examples.append({"text": text, "label": label})
    return examples


def split(n_train: int, n_validation: int, seed: int = 0) -> Split:
    """Train and validation reviews with no text in both (validation is drawn first and its
    texts are excluded from train)."""
    validation = make(n_validation, seed=seed + 1_000_003)
    train = make(n_train, seed=seed, exclude={e["text"] for e in validation})
    return Split(train, validation)
