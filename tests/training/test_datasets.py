"""Built-in data: synthetic dates and sentiment, the standard library corpus."""

import datetime
import re
from collections import Counter, defaultdict

import pytest

from atenea.training.datasets import dates, sentiment, stdlib

# -- dates: an independent little parser, with its own word lists -----------------------------

MONTHS = {
    **{
        m: i + 1
        for i, m in enumerate(
            "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split()
        )
    },
    **{
        m: i + 1
        for i, m in enumerate(
            "january february march april may june july august september october november december".split()
        )
    },
}
ABBREVIATIONS = {name[:3]: number for name, number in MONTHS.items()}
WEEKDAYS = {
    **{d: i for i, d in enumerate("lunes martes miércoles jueves viernes sábado domingo".split())},
    **{
        d: i
        for i, d in enumerate("monday tuesday wednesday thursday friday saturday sunday".split())
    },
    **{d: i for i, d in enumerate("mon tue wed thu fri sat sun".split())},
}
SPANISH_DAYS = {
    "uno": 1, "primero": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7,
    "ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12, "trece": 13, "catorce": 14,
    "quince": 15, "dieciséis": 16, "diecisiete": 17, "dieciocho": 18, "diecinueve": 19,
    "veinte": 20, "veintiuno": 21, "veintidós": 22, "veintitrés": 23, "veinticuatro": 24,
    "veinticinco": 25, "veintiséis": 26, "veintisiete": 27, "veintiocho": 28, "veintinueve": 29,
    "treinta": 30, "treinta y uno": 31,
}  # fmt: skip
ORDINALS = "first second third fourth fifth sixth seventh eighth ninth".split()
ENGLISH_DAYS = {
    **{w: i + 1 for i, w in enumerate(ORDINALS)},
    **{w: i + 10 for i, w in enumerate("tenth eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth".split())},
    "twentieth": 20, "thirtieth": 30, "thirty-first": 31,
    **{f"twenty-{w}": 21 + i for i, w in enumerate(ORDINALS)},
}  # fmt: skip


def parse(source: str) -> tuple[datetime.date, int | None]:
    """(date, weekday written or None) of a generated source; fails on anything unexpected."""
    text = source.lower()
    numeric = re.fullmatch(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})", text)
    if numeric:  # always day first
        return datetime.date(int(numeric[4]), int(numeric[3]), int(numeric[1])), None
    iso = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text)
    if iso:
        return datetime.date(int(iso[1]), int(iso[2]), int(iso[3])), None
    years = re.findall(r"\b\d{4}\b", text)
    assert len(years) == 1, source
    text = text.replace(years[0], " ")
    weekday = None
    for name in sorted(WEEKDAYS, key=len, reverse=True):
        if re.match(rf"{name}\b", text):
            weekday, text = WEEKDAYS[name], text[len(name) :]
            break
    words = re.findall(r"[a-záéíóúñü-]+|\d+(?:st|nd|rd|th)?", text)
    months = [w for w in words if w in MONTHS] or [w for w in words if w in ABBREVIATIONS]
    assert len(months) == 1, source
    month = MONTHS.get(months[0]) or ABBREVIATIONS[months[0]]
    digits = [int(re.match(r"\d+", w)[0]) for w in words if w[0].isdigit()]
    named = [ENGLISH_DAYS[w] for w in words if w in ENGLISH_DAYS]
    if "treinta y uno" in text:
        named.append(31)
    else:
        named += [SPANISH_DAYS[w] for w in words if w in SPANISH_DAYS]
    days = digits + named
    assert len(days) == 1, source
    return datetime.date(int(years[0]), month, days[0]), weekday


def test_every_date_parses_back_to_its_target_with_the_right_weekday():
    examples = dates.make(3000, seed=7)
    weekdays = 0
    for example in examples:
        date, weekday = parse(example["source"])
        assert date.isoformat() == example["target"], example
        if weekday is not None:
            weekdays += 1
            assert weekday == date.weekday(), example
    assert weekdays > 200
    targets = [datetime.date.fromisoformat(e["target"]) for e in examples]
    assert min(targets).year < 1910 and max(targets).year > 2090


def test_dates_cover_formats_languages_and_cases():
    sources = [e["source"] for e in dates.make(2000, seed=1)]
    for expected in (
        "de noviembre de",
        "of November,",
        "/",
        "veintiuno de",
        "the twenty-",
        "primero de",
        "del 20",
    ):
        assert any(expected in s for s in sources), expected
    assert any(s[0].islower() and s[0].isalpha() for s in sources)
    assert any(s[0].isupper() for s in sources)
    assert len({re.sub(r"\w+", "w", s) for s in sources}) >= 10  # many shapes


def test_dates_deterministic_exclude_and_disjoint_split():
    assert dates.make(50, seed=3) == dates.make(50, seed=3)
    assert dates.make(50, seed=3) != dates.make(50, seed=4)
    excluded = {e["target"] for e in dates.make(500, seed=0)}
    assert not excluded & {e["target"] for e in dates.make(500, seed=0, exclude=excluded)}
    split = dates.split(2000, 300, seed=2)
    assert len(split.train) == 2000 and len(split.validation) == 300
    validation_dates = {e["target"] for e in split.validation}
    assert len(validation_dates) == 300
    assert not validation_dates & {e["target"] for e in split.train}
    assert split == dates.split(2000, 300, seed=2)


# -- sentiment ---------------------------------------------------------------------------------


def test_sentiment_balanced_and_deterministic():
    for n in (100, 101):
        counts = Counter(e["label"] for e in sentiment.make(n, seed=2))
        assert set(counts) == {"positive", "negative"}
        assert abs(counts["positive"] - counts["negative"]) <= 1
    assert sentiment.make(200, seed=2) == sentiment.make(200, seed=2)
    assert sentiment.make(200, seed=2) != sentiment.make(200, seed=3)


def test_sentiment_split_shares_no_text():
    split = sentiment.split(3000, 500, seed=0)
    assert len(split.train) == 3000 and len(split.validation) == 500
    assert not {e["text"] for e in split.train} & {e["text"] for e in split.validation}


def test_sentiment_needs_order_not_just_words():
    examples = sentiment.make(4000, seed=0)
    # polar words come with both labels often
    for word in ("good", "great", "bad", "boring"):
        labels = Counter(e["label"] for e in examples if re.search(rf"\b{word}\b", e["text"]))
        assert min(labels.values()) > 0.25 * sum(labels.values()), (word, labels)
    # the very same bag of words carries both labels
    bags = defaultdict(set)
    for e in examples:
        bags[tuple(sorted(re.findall(r"\w+", e["text"].lower())))].add(e["label"])
    assert sum(len(labels) == 2 for labels in bags.values()) >= 2
    # and a bag-of-words classifier stays far from perfect on held-out reviews
    feature_extraction = pytest.importorskip("sklearn.feature_extraction.text")
    linear_model = pytest.importorskip("sklearn.linear_model")
    split = sentiment.split(3000, 1000, seed=1)
    vectorizer = feature_extraction.CountVectorizer()
    features = vectorizer.fit_transform([e["text"] for e in split.train])
    model = linear_model.LogisticRegression(max_iter=1000)
    model.fit(features, [e["label"] for e in split.train])
    score = model.score(
        vectorizer.transform([e["text"] for e in split.validation]),
        [e["label"] for e in split.validation],
    )
    assert score < 0.75


NEGATORS = {"not", "never", "didn't", "nobody"}


def rule(text: str) -> str:
    """The label by the documented rule, computed from the text alone: the last clause's
    adjective (or fixed clause) polarity, flipped by a negator anywhere in that clause."""
    adjectives = {a: polarity for polarity, group in enumerate(sentiment.ADJECTIVES) for a in group}
    clauses = {
        c.lower(): polarity for polarity, group in enumerate(sentiment.CLAUSES) for c in group
    }
    text = text.lower().removesuffix(".")
    for marker in (", but ", ". however, "):
        if marker in text:
            text = text.split(marker)[1]
            break
    else:
        if text.startswith("although "):
            items = [m.end() for a in adjectives for m in re.finditer(rf"\b{a}\b", text)]
            items += [text.index(c) + len(c) for c in clauses if c in text]
            text = text[text.index(", ", min(items)) + 2 :]
    for clause, polarity in clauses.items():
        if clause in text:
            return sentiment.LABELS[polarity]
    words = re.findall(r"[\w']+", text)
    found = [adjectives[w] for w in words if w in adjectives]
    assert len(found) == 1, text
    negated = bool(NEGATORS & set(words))
    return sentiment.LABELS[found[0] ^ negated]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("The movie was not bad at all.", "positive"),
        ("The plot was really good.", "positive"),
        ("I would not say, to be honest, that the cast was great.", "negative"),
        ("The acting was good, but the ending ruined it.", "negative"),
        ("A slow start, but in the end the story was wonderful.", "positive"),
        ("Although I never felt that the plot was bad, the cast was not good at all.", "negative"),
    ],
)
def test_the_rule_on_hand_labelled_reviews(text, label):
    assert rule(text) == label


def test_every_generated_review_follows_the_rule():
    examples = sentiment.make(3000, seed=4)
    assert all(rule(e["text"]) == e["label"] for e in examples)
    texts = " ".join(e["text"] for e in examples)
    for shape in (
        ", but in the end",
        ". However,",
        "Although",
        "at all",
        "I would not say, after",
        "ruined it",
    ):
        assert shape in texts, shape


# -- stdlib ------------------------------------------------------------------------------------


def test_stdlib_documents():
    documents = stdlib.documents()
    sources = [d["source"] for d in documents]
    assert len(documents) > 100 and sources == sorted(sources)
    assert "json/decoder.py" in sources and "os.py" in sources
    for source in sources:
        parts = source.split("/")
        assert not {"test", "tests", "idlelib", "site-packages"} & set(parts[:-1]), source
    assert all(d["text"].strip() and len(d["text"].encode()) <= 200_000 for d in documents)


def test_stdlib_limit_is_deterministic_and_mixes_modules():
    small = stdlib.documents(limit=20)
    assert len(small) == 20 and small == stdlib.documents(limit=20)
    assert [d["source"] for d in small] == sorted(d["source"] for d in small)
    assert len({d["source"].split("/")[0] for d in small}) > 5
    split = stdlib.split(limit=60, validation_fraction=0.1)
    assert len(split.train) == 54 and len(split.validation) == 6
    assert not {d["source"] for d in split.train} & {d["source"] for d in split.validation}
    assert split == stdlib.split(limit=60, validation_fraction=0.1)
