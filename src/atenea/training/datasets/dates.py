"""Synthetic date translation, the classic attention demo: a date written by a person, in
Spanish or English, in words or numbers, translated to ISO ``YYYY-MM-DD``.

    "veintiuno de noviembre de 2026"     -> "2026-11-21"
    "domingo, 21 de noviembre de 2026"   -> "2026-11-21"
    "the twenty-first of November 2026"  -> "2026-11-21"
    "nov 21 2026"                        -> "2026-11-21"

The data is made by this module (nothing is downloaded): dates uniform between 1900-01-01
and 2099-12-31, each in one of many formats, the weekday (when written) always the right one.
Numeric day/month formats are always day first (``21/11/2026``) and years always have four
digits, so no source is ambiguous. The translation model has to look at the day, month and
year pieces wherever the format puts them: its cross-attention maps show exactly that.
"""

from __future__ import annotations

import datetime
import random

from atenea.training.data import Split

FIRST_DAY = datetime.date(1900, 1, 1)
LAST_DAY = datetime.date(2099, 12, 31)
_SPAN_DAYS = (LAST_DAY - FIRST_DAY).days + 1

MONTHS_ES = (
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre"
).split()
MONTHS_EN = (
    "January February March April May June July August September October November December"
).split()
# Monday first, like date.weekday().
WEEKDAYS_ES = "lunes martes miércoles jueves viernes sábado domingo".split()
WEEKDAYS_EN = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

_UNITS_ES = "uno dos tres cuatro cinco seis siete ocho nueve".split()
_TEENS_ES = "diez once doce trece catorce quince dieciséis diecisiete dieciocho diecinueve".split()
_TWENTIES_ES = (
    "veinte veintiuno veintidós veintitrés veinticuatro veinticinco veintiséis veintisiete "
    "veintiocho veintinueve"
).split()
# Spanish day numbers 1..31 in words (index = day).
DAYS_ES = ["", *_UNITS_ES, *_TEENS_ES, *_TWENTIES_ES, "treinta", "treinta y uno"]

_ORDINAL_UNITS_EN = "first second third fourth fifth sixth seventh eighth ninth".split()
_ORDINAL_TEENS_EN = (
    "tenth eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
    "nineteenth"
).split()
# English ordinals 1..31 in words (index = day).
DAYS_EN = [
    "",
    *_ORDINAL_UNITS_EN,
    *_ORDINAL_TEENS_EN,
    "twentieth",
    *(f"twenty-{unit}" for unit in _ORDINAL_UNITS_EN),
    "thirtieth",
    "thirty-first",
]


def _suffix(day: int) -> str:
    """English ordinal suffix: 1st 2nd 3rd 4th ... 11th 12th 13th ... 21st 22nd 23rd."""
    if 11 <= day <= 13:
        return f"{day}th"
    return f"{day}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th') }"


def _day_es(day: int, rng: random.Random) -> str:
    # The first of the month is "uno" or, just as often in speech, "primero".
    return rng.choice(("uno", "primero")) if day == 1 else DAYS_ES[day]


def _year_es(year: int) -> str:
    # "del 2026" is common for this century, "de 1984" for the last one.
    return f"del {year}" if year >= 2000 else f"de {year}"


# Each format: (date, rng) -> text; rng picks the variants inside a format (uno / primero).
_FORMATS_ES = (
    lambda d, r: f"{_day_es(d.day, r)} de {MONTHS_ES[d.month - 1]} de {d.year}",
    lambda d, r: f"{d.day} de {MONTHS_ES[d.month - 1]} de {d.year}",
    lambda d, r: f"{d.day} de {MONTHS_ES[d.month - 1][:3]}. de {d.year}",
    lambda d, r: f"{WEEKDAYS_ES[d.weekday()]}, {d.day} de {MONTHS_ES[d.month - 1]} de {d.year}",
    lambda d, r: (
        f"{WEEKDAYS_ES[d.weekday()]} {_day_es(d.day, r)} de {MONTHS_ES[d.month - 1]} "
        f"{_year_es(d.year)}"
    ),
    lambda d, r: f"el {d.day} de {MONTHS_ES[d.month - 1]} {_year_es(d.year)}",
    lambda d, r: f"{d.day:02d}/{d.month:02d}/{d.year}",
    lambda d, r: f"{d.day}/{d.month}/{d.year}",
    lambda d, r: f"{d.day}-{d.month}-{d.year}",
    lambda d, r: f"{d.day:02d}.{d.month:02d}.{d.year}",
)
_FORMATS_EN = (
    lambda d, r: f"{_suffix(d.day)} of {MONTHS_EN[d.month - 1]}, {d.year}",
    lambda d, r: f"{MONTHS_EN[d.month - 1]} {d.day}, {d.year}",
    lambda d, r: f"{MONTHS_EN[d.month - 1][:3]} {d.day} {d.year}",
    lambda d, r: f"{WEEKDAYS_EN[d.weekday()]}, {MONTHS_EN[d.month - 1]} {_suffix(d.day)} {d.year}",
    lambda d, r: f"the {DAYS_EN[d.day]} of {MONTHS_EN[d.month - 1]} {d.year}",
    lambda d, r: f"{d.day} {MONTHS_EN[d.month - 1]} {d.year}",
    lambda d, r: f"{WEEKDAYS_EN[d.weekday()][:3]} {d.day} {MONTHS_EN[d.month - 1][:3]} {d.year}",
    lambda d, r: f"{MONTHS_EN[d.month - 1]} the {DAYS_EN[d.day]}, {d.year}",
    lambda d, r: f"{d.year}-{d.month:02d}-{d.day:02d}",
)
FORMATS = _FORMATS_ES + _FORMATS_EN


def _vary_case(text: str, rng: random.Random) -> str:
    """Mostly as written, sometimes all lowercase or with a capital first letter."""
    roll = rng.random()
    if roll < 0.2:
        return text.lower()
    if roll < 0.35:
        return text[:1].upper() + text[1:]
    return text


def write(date: datetime.date, rng: random.Random) -> str:
    """``date`` written in a format drawn from ``rng``."""
    return _vary_case(rng.choice(FORMATS)(date, rng), rng)


def _draw_date(rng: random.Random, exclude: set[str]) -> datetime.date:
    if len(exclude) >= _SPAN_DAYS:
        raise ValueError("exclude: every date from 1900 to 2099 is excluded")
    while True:  # exclusions are a small fraction of 73k days: a few draws at most
        date = FIRST_DAY + datetime.timedelta(days=rng.randrange(_SPAN_DAYS))
        if date.isoformat() not in exclude:
            return date


def make(n: int, seed: int = 0, exclude=None) -> list[dict]:
    """``n`` examples ``{"source": written date, "target": "YYYY-MM-DD"}``.

    Args:
        n: how many examples.
        seed: the same seed gives the same examples.
        exclude: ISO dates (``"2026-11-21"``) never to generate.
    """
    if n < 0:
        raise ValueError(f"n: expected a count >= 0, got {n}")
    exclude = set(exclude or ())
    rng = random.Random(f"atenea-dates-{seed}")
    examples = []
    for _ in range(n):
        date = _draw_date(rng, exclude)
        examples.append({"source": write(date, rng), "target": date.isoformat()})
    return examples


def split(n_train: int, n_validation: int, seed: int = 0) -> Split:
    """Train and validation examples whose dates never meet: the ``n_validation`` validation
    dates are drawn first (distinct, from the seed), then train is drawn excluding them, so
    validation measures translating unseen dates."""
    if n_validation > _SPAN_DAYS // 2:
        raise ValueError(
            f"n_validation: at most {_SPAN_DAYS // 2} distinct dates, got {n_validation}"
        )
    rng = random.Random(f"atenea-dates-validation-{seed}")
    days = rng.sample(range(_SPAN_DAYS), n_validation)
    dates = [FIRST_DAY + datetime.timedelta(days=day) for day in days]
    validation = [{"source": write(d, rng), "target": d.isoformat()} for d in dates]
    train = make(n_train, seed=seed, exclude={d.isoformat() for d in dates})
    return Split(train, validation)
