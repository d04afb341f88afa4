"""The lexical side of the hybrid index: BM25 (bm25s) over Dutch-stemmed tokens (rag.text.tokens)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import bm25s
import numpy as np

from .text.idf import bm25_idf
from .text.tokens import tokenize


class BM25Index:
    """BM25 over the chunks of one index generation; row i belongs to ``chunk_ids[i]``."""

    def __init__(self, model: bm25s.BM25, chunk_ids: np.ndarray) -> None:
        self.model = model
        self.chunk_ids = chunk_ids
        self._row = {int(c): i for i, c in enumerate(chunk_ids)}
        self._df: np.ndarray | None = None

    @classmethod
    def build(cls, chunk_ids: Sequence[int], texts: Iterable[str]) -> BM25Index:
        corpus = [tokenize(t) or ["\u2205"] for t in texts]
        model = bm25s.BM25(k1=1.2, b=0.75)
        if corpus:
            model.index(corpus, show_progress=False)
        return cls(model, np.asarray(list(chunk_ids), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for the query (0 where no query term occurs)."""
        if not len(self.chunk_ids):
            return np.zeros(0, dtype=np.float32)
        vocab = self.model.vocab_dict
        terms = [t for t in tokenize(query) if t in vocab]
        if not terms:
            return np.zeros(len(self.chunk_ids), dtype=np.float32)
        return np.asarray(self.model.get_scores(terms), dtype=np.float32)

    def doc_freq(self, term: str) -> int:
        """In how many chunks the (already stemmed) term occurs."""
        vocab = getattr(self.model, "vocab_dict", None) or {}
        tid = vocab.get(term)
        if tid is None or not len(self.chunk_ids):
            return 0
        if self._df is None:
            self._df = np.diff(np.asarray(self.model.scores["indptr"]))
        return int(self._df[tid]) if tid < len(self._df) else 0

    def idf(self):
        """The BM25 IDF of a stemmed term over this generation's chunks (see rag.text.idf)."""
        return bm25_idf(self.doc_freq, len(self.chunk_ids))

    def rows_for(self, chunk_ids: Iterable[int]) -> np.ndarray:
        return np.asarray([self._row[int(c)] for c in chunk_ids if int(c) in self._row], dtype=np.int64)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if len(self.chunk_ids):
            self.model.save(str(folder))
        np.save(folder / "chunk_ids.npy", self.chunk_ids)
        (folder / "tokenizer.json").write_text(
            json.dumps({"stemmer": "snowball-dutch", "stopwords": "bm25s-dutch"}), encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        chunk_ids = np.load(folder / "chunk_ids.npy")
        model = bm25s.BM25.load(str(folder), mmap=False) if len(chunk_ids) else bm25s.BM25()
        return cls(model, chunk_ids)
