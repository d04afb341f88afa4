"""Which year a source speaks for: the year a question names first, else the newest.

A council's corpus holds the budget of 2016, 2020 and 2023 and the annual report of 2024; on
"Met hoeveel gemeenten werkt Groningen samen voor de jeugdhulp?" the 2020 budget says twelve and
the 2023 budget ten. Two rules, applied to the retrieved candidates before the context is built:

* a question that names a document's year ("de begroting 2020", "the 2016 budget") gets the
  passages of documents of that year first, when they are nearly as relevant as the best one
  (``year_margin``); a year that dates an event ("in 2015", "in december 2024") is not a
  document's year and changes nothing;
* a question that names no year gets, among the passages about as relevant as the best one
  (``recency_margin``), the newest first — off by default: on the demo set it changed five
  contexts and lost one right answer (q014), won none.

And the answer says which source it speaks for: when the passages the model was given come from
documents of more than one year, each answer sentence names its sources' type and year before
its marker ("… 960 plekken (jaarstukken 2024) [1]."), unless the sentence already names that
year.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .schema import Citation
from .text.documents import DOC_YEAR
from .text.markers import MARKER
from .text.sentences import split_sentences
from .types import Hit

_I = re.IGNORECASE
_ANY_YEAR = re.compile(r"\b(?:19|20)\d{2}\b")
_CLAUSE = re.compile(r"\s*[,;:]\s+|\s+[–—-]\s+")
_SET_ASIDE = re.compile(
    r"^\s*(?:(?:maar|but|en|and)\s+)?(?:negeer|vergeet|laat\s+\w+\s+buiten|zonder|behalve|niet|ignore|forget|"
    r"except|without|not|leaving out)\b",
    _I,
)
_MARKER_RUN = re.compile(r"(?:\s*" + MARKER.pattern + r")+")
_SENTENCE_END = re.compile(r"[.!?]\s")


def named_years(question: str) -> set[int]:
    """The years of documents the question names ("begroting 2020" → {2020}); a document it sets
    aside ("Vergeet de begroting van 2016; …", "behalve de begroting 2020") is not one of them."""
    kept = [c for s in split_sentences(question) for c in _CLAUSE.split(s) if not _SET_ASIDE.match(c)]
    return {int(a or b) for c in kept for a, b in DOC_YEAR.findall(c)}


def reorders(question: str, year_margin: float, recency_margin: float) -> bool:
    """Can :func:`order_by_year` change anything for this question (then the search fetches more
    candidates than the answer uses)?"""
    if named_years(question):
        return year_margin > 0
    return recency_margin > 0 and not _ANY_YEAR.search(question)


def _relevance(hit: Hit) -> float:
    return float(hit.dense_score if hit.dense_score is not None else hit.score)


def order_by_year(
    hits: Sequence[Hit], question: str, top_k: int, year_margin: float, recency_margin: float
) -> list[Hit]:
    """The ``top_k`` passages to answer from, out of the ranked candidates ``hits``."""
    if not hits:
        return []
    best = max(_relevance(h) for h in hits)
    years = named_years(question)
    if years and year_margin > 0:
        first = [h for h in hits if h.year in years and _relevance(h) >= best - year_margin]
    elif not _ANY_YEAR.search(question) and recency_margin > 0:
        near = [h for h in hits if _relevance(h) >= best - recency_margin]
        first = sorted(near, key=lambda h: -(h.year or 0)) if len({h.year for h in near}) > 1 else []
    else:
        first = []
    chosen = [*first, *(h for h in hits if h not in first)][:top_k]
    for rank, h in enumerate(chosen, start=1):
        h.rank = rank
    return chosen


def source_label(citation: Citation) -> str | None:
    """ "jaarstukken 2024", "begroting 2023"; None when the document has no type or year."""
    if not citation.doc_type or not citation.year:
        return None
    return f"{citation.doc_type} {citation.year}"


def label_sources(text: str, citations: Sequence[Citation], given: Sequence[Citation]) -> str:
    """``text`` with its sentences' sources named before their markers, when the passages the
    model was given (``given``) come from more than one year."""
    if len({c.year for c in given if c.year}) < 2:
        return text
    labels = {c.marker: source_label(c) for c in citations}

    def one(m: re.Match[str]) -> str:
        run = m.group()
        names = [labels.get(int(n)) for n in re.findall(r"\d+", run)]
        ends = [e.end() for e in _SENTENCE_END.finditer(text, 0, m.start())]
        sentence = text[ends[-1] if ends else 0 : m.start()]
        new = [n for n in dict.fromkeys(names) if n and n.rsplit(" ", 1)[-1] not in sentence]
        return f" ({', '.join(new)}){run}" if new else run

    return _MARKER_RUN.sub(one, text)
