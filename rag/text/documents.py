"""Council documents named in running text: "begroting 2023", "de jaarstukken van 2024",
"2016 budget". Used where a question names the year of a document (rag/recency.py) and where a
year in an answer names a document rather than a moment (rag/evidence.py: "in de begroting 2022
staat …" does not say when something happened)."""

from __future__ import annotations

import re

DOC_WORDS = (
    r"(?:programma)?begroting|jaarstukken|jaarrekening|jaarverslag|raadsbrief|brief|voorjaarsnota|kadernota|"
    r"najaarsnota|nota|verordening|beleidsplan|budget|annual report|annual accounts"
)
_YEAR_OF = r"\s+(?:van\s+|of\s+|uit\s+|for\s+)?"
# a document and its year, the year captured (group 1 or 2)
DOC_YEAR = re.compile(
    rf"\b(?:{DOC_WORDS}){_YEAR_OF}((?:19|20)\d{{2}})\b|\b((?:19|20)\d{{2}})\s+(?:{DOC_WORDS})\b",
    re.IGNORECASE,
)
# the same with a span of years ("programmabegroting 2020-2023"), for taking it out of a text
_DOC_NAME = re.compile(
    rf"\b(?:{DOC_WORDS}){_YEAR_OF}(?:19|20)\d{{2}}(?:\s*[-–]\s*(?:19|20)?\d{{2}})?\b|\b(?:19|20)\d{{2}}\s+(?:{DOC_WORDS})\b",
    re.IGNORECASE,
)


def without_document_names(text: str) -> str:
    """``text`` with the documents it names by year taken out."""
    return _DOC_NAME.sub(" ", text)
