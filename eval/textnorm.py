"""Text normalisation and key-fact matching shared by the gold-set checks and the metrics.

A key fact matches an answer when its normalised form occurs in the normalised answer:

- Unicode NFKC, lower case, curly quotes -> straight, every dash (– — ‑ −) -> ``-``;
- thousand separators dropped from numbers (``1.500`` / ``1,500`` / ``1 500`` -> ``1500``;
  a Dutch decimal ``1,5`` is kept);
- spaces around ``-`` and ``/`` removed (``0 - 23`` == ``0-23``), ``€ 105`` -> ``€105``,
  other whitespace collapsed;
- word boundaries: the fact must start at a word boundary, and when it ends in a digit also end
  at one (``12`` does not match ``2012`` or ``120``; ``verdubbeld`` matches ``verdubbelde``);
- alternatives: ``"1-7-2022 | 1 juli 2022"`` matches either (`` | `` with spaces separates).
"""

from __future__ import annotations

import re
import unicodedata

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-")
_QUOTES = {
    ord("\u2018"): "'",
    ord("\u2019"): "'",
    ord("\u201a"): "'",
    ord("\u201c"): '"',
    ord("\u201d"): '"',
    ord("\u201e"): '"',
    ord("\u00b4"): "'",
    ord("`"): "'",
}
_THOUSANDS = re.compile(r"(?<![\d.,])(\d{1,3})((?:[.,\u00a0 ]\d{3})+)(?![\d]|[.,]\d)")
_AROUND = re.compile(r"\s*([-/])\s*")
_SPACE = re.compile(r"\s+")
ALT_SEP = " | "


def normalise(text: str) -> str:
    t = unicodedata.normalize("NFKC", text or "").translate(_DASHES).translate(_QUOTES).lower()
    t = t.replace("\u00a0", " ")

    def _join(m: re.Match) -> str:
        return m.group(1) + re.sub(r"[.,\u00a0 ]", "", m.group(2))

    t = _THOUSANDS.sub(_join, t)
    t = _AROUND.sub(r"\1", t)
    t = re.sub(r"€\s+", "€", t)
    return _SPACE.sub(" ", t).strip()


def alternatives(fact: str) -> list[str]:
    return [a.strip() for a in fact.split(ALT_SEP) if a.strip()]


def _find(needle: str, hay: str) -> bool:
    if not needle:
        return False
    start = r"(?<![0-9a-zà-ÿ])" if needle[0].isalnum() else ""
    end = r"(?![0-9])" if needle[-1].isdigit() else ""
    return re.search(start + re.escape(needle) + end, hay) is not None


def contains_fact(text: str, fact: str) -> bool:
    """True when any alternative of ``fact`` occurs in ``text`` (both normalised)."""
    hay = normalise(text)
    return any(_find(normalise(a), hay) for a in alternatives(fact))


def contains_verbatim(text: str, snippet: str) -> bool:
    """Whitespace-tolerant verbatim containment (the gold passage check)."""
    return _SPACE.sub(" ", snippet).strip() in _SPACE.sub(" ", text)
