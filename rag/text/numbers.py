"""Numbers in text: digits, number words and scaled amounts, normalised for comparison.

One list of number words (``NUMBER_WORDS``: the cardinals without the article "een") serves
both attribution (:func:`numbers_in`: which numbers a sentence claims) and the answer-kind
check (``COUNT_WORD``: does a sentence give a count, for a how-many question), which also
accepts the accented numeral "één" and words of quantity ("helft", "procent", "miljoen").
"""

from __future__ import annotations

import re
from decimal import Decimal

NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def normalise_number(raw: str) -> str:
    """'1.000' / '1,000' -> '1000', '3,2' -> '3.2', '2.500.000' -> '2500000', '007' -> '7'."""
    s = raw.rstrip(".,")
    if re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?", s):  # Dutch thousands with dots
        s = s.replace(".", "").replace(",", ".")
    elif re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", s):  # English thousands with commas
        s = s.replace(",", "")
    else:
        s = s.replace(",", ".")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s.lstrip("0") or "0"


# Cardinal number words and their values. Left out on purpose: "één"/"one", Dutch "ten"
# ("ten minste"); "acht" after "in" ("in acht nemen") is skipped by numbers_in.
CARDINALS: dict[str, str] = {
    "een": "1", "twee": "2", "drie": "3", "vier": "4", "vijf": "5", "zes": "6", "zeven": "7", "acht": "8",
    "negen": "9", "tien": "10", "elf": "11", "twaalf": "12", "dertien": "13", "veertien": "14", "vijftien": "15",
    "zestien": "16", "zeventien": "17", "achttien": "18", "negentien": "19", "twintig": "20",
    "dertig": "30", "veertig": "40", "vijftig": "50", "zestig": "60", "zeventig": "70", "tachtig": "80",
    "negentig": "90", "honderd": "100", "duizend": "1000",
    "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
    "eleven": "11", "twelve": "12",
}  # fmt: skip

# "een" is mostly the article ("een vergunning"): numbers_in does not read it as 1.
NOT_COUNTED_IN_NUMBERS = frozenset({"een"})

# Number words that numbers_in reads as their value, so that "tien gemeenten" is checked
# against "12 gemeenten" and "twaalf" supports "12".
NUMBER_WORDS: dict[str, str] = {w: v for w, v in CARDINALS.items() if w not in NOT_COUNTED_IN_NUMBERS}

# Words that show a sentence gives a count, for "does this sentence answer a how-many
# question": the same number words, the numeral "één" (accented: not the article "een", which
# made "een deel van de gezinnen" an answer to "hoeveel gezinnen"), and words of quantity that
# are no number of their own.
COUNT_WORDS = frozenset(NUMBER_WORDS) | {"één"}
QUANTITY_WORDS = frozenset({"miljoen", "miljard", "verdubbeld", "gehalveerd", "helft", "procent"})
COUNT_WORD = re.compile(r"\b(" + "|".join(sorted(COUNT_WORDS | QUANTITY_WORDS)) + r")\b", re.IGNORECASE)

_NUMBER_WORD = re.compile(
    r"(?<![\w-])(in\s+)?(" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")(?![\w-])", re.IGNORECASE
)

_SCALE = {"duizend": 10**3, "thousand": 10**3, "miljoen": 10**6, "mln": 10**6, "million": 10**6,
          "miljard": 10**9, "mld": 10**9, "billion": 10**9}  # fmt: skip
_SCALED = re.compile(r"\s*(" + "|".join(_SCALE) + r")\b\.?", re.IGNORECASE)


def _scaled(value: str, scale: str) -> str:
    n = Decimal(value) * _SCALE[scale.lower()]
    return str(n.to_integral_value()) if n == n.to_integral_value() else normalise_number(f"{n:f}")


def numbers_in(text: str, claimed: bool = False) -> set[str]:
    """The numbers in ``text``, normalised: digits ("1.000" -> "1000"), number words
    ("twaalf" -> "12") and scaled amounts ("€ 2,5 miljoen" -> "2500000").

    ``claimed=True`` is for an answer sentence: a scaled amount counts only as its full value,
    so "€ 100 miljoen" is not backed by a passage that has "100" and "miljoen" apart. A passage
    (the default) offers both, so "€ 100 miljoen" there still backs a sentence saying "100".
    """
    found = [
        (m.start(2), m.end(), NUMBER_WORDS[m.group(2).lower()])
        for m in _NUMBER_WORD.finditer(text)
        if not (m.group(1) and m.group(2).lower() == "acht")
    ]  # "in acht nemen": not a number
    found += [(m.start(), m.end(), normalise_number(m.group())) for m in NUMBER.finditer(text)]
    out: set[str] = set()
    scale_end = -1  # "10 duizend": "duizend" is the scale here, not a number of its own
    for start, end, value in sorted(found):
        if start < scale_end:
            continue
        scale = _SCALED.match(text, end)
        if scale:
            scale_end = scale.end()
            out.add(_scaled(value, scale.group(1)))
            if claimed:
                continue
        out.add(value)
    return out
