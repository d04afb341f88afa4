"""Content words: the tokens that BM25, evidence ranking and attribution compare."""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

_WORD = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("dutch")


@lru_cache(maxsize=1)
def dutch_stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_DUTCH

    return frozenset(STOPWORDS_DUTCH)


# words that point at a term instead of saying something about it ("de zgn. zelfmelders")
_FILLER = frozenset(
    {
        "zgn",
        "zogenaamd",
        "zogenaamde",
        "genoemd",
        "genoemde",
        "bovengenoemd",
        "bovengenoemde",
        "betreffend",
        "betreffende",
        "desbetreffend",
        "desbetreffende",
        "aldus",
    }
)


def novel_terms(text: str, question: str) -> list[str]:
    """The content words (stems) of ``text`` that the question does not already hold: what an
    answer adds. An answer with none only restates the question ("Het college heeft de brief
    ondertekend", asked who signed it)."""
    asked = set(tokenize(question)) | _filler_stems()
    return [t for t in dict.fromkeys(tokenize(text)) if t not in asked]


@lru_cache(maxsize=1)
def _filler_stems() -> frozenset[str]:
    return frozenset(_stemmer().stemWords(list(_FILLER)))


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers, Dutch stop words removed, Snowball-stemmed. A hyphenated
    compound counts as itself and as its parts: "Wmo-begeleiding" (as a question spells it) is
    as often written "Wmo begeleiding" in the documents, "EU-lidstaat" as "EU lidstaat". A
    typographic apostrophe is a plain one: "thema’s" (as word processors write it) and
    "thema's" (as people type it) are both "thema"."""
    stop = dutch_stopwords()
    words: list[str] = []
    for w in _WORD.findall(text.lower().replace("’", "'")):
        if w in stop:
            continue
        words.append(w)
        if "-" in w:
            words.extend(part for part in w.split("-") if len(part) > 1 and part not in stop)
    return _stemmer().stemWords(words)
