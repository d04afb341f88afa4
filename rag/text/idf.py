"""Term weights for coverage scores: uniform, or BM25's IDF over an index generation."""

from __future__ import annotations

import math
from collections.abc import Callable

IdfFn = Callable[[str], float]


def uniform_idf(_term: str) -> float:
    return 1.0


def bm25_idf(doc_freq: Callable[[str], int], n_docs: int) -> IdfFn:
    """The BM25 (Robertson–Spärck Jones) IDF, always positive."""

    def idf(term: str) -> float:
        df = doc_freq(term)
        return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))

    return idf
