"""Hybrid retrieval: dense (FAISS) + BM25, filtered before ranking, then fused.

Filters (document type, year, source, doc ids, access groups) are applied to the candidate
set *before* either retriever ranks, so a filtered-out passage can never be returned: the
allowed chunk ids become a FAISS ID selector for every vector index type (flat: checked per
vector; ivf_sq8: checked per scanned vector, with more lists scanned the fewer vectors the
filter allows, see ``rag.index.search_params``) and a mask over the BM25 scores.

Fusion methods (``Settings.fusion``), chosen by measurement (see eval/retrieval_benchmark.py
and the README):

- ``dense``  dense cosine only;
- ``bm25``   BM25 only;
- ``rrf``    weighted reciprocal-rank fusion, weight ``fusion_weight_bm25`` for BM25;
- ``score``  convex combination ``(1-w)·cos + w·bm25/max(bm25)`` over the union of both
  candidate lists, every candidate scored by both retrievers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from .embed import Embedder
from .fusion import RRF_K, best_ids, build_hits, fuse
from .index import IndexReader, IndexSnapshot, check_embedder, search_params
from .settings import Settings
from .store import open_reader
from .types import Hit

FUSION_METHODS = ("dense", "bm25", "rrf", "score")
__all__ = ["FUSION_METHODS", "RRF_K", "Filters", "Retriever", "SearchResult", "rank"]


@dataclass
class Filters:
    """Metadata filters; all given conditions must hold. ``groups`` is the caller's access:
    a document with no groups is for everyone, otherwise it needs one group in common."""

    doc_types: list[str] | None = None
    years: list[int] | None = None
    source_prefix: str | None = None
    doc_ids: list[str] | None = None
    groups: list[str] | None = None  # None = no access filtering (trusted caller)

    def is_empty(self) -> bool:
        return not any(
            v is not None for v in (self.doc_types, self.years, self.source_prefix, self.doc_ids, self.groups)
        )

    def sql(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.doc_types is not None:
            clauses.append(f"d.doc_type IN ({','.join('?' * len(self.doc_types))})" if self.doc_types else "0")
            params += self.doc_types
        if self.years is not None:
            clauses.append(f"d.year IN ({','.join('?' * len(self.years))})" if self.years else "0")
            params += self.years
        if self.source_prefix:
            clauses.append("d.source LIKE ? ESCAPE '\\'")
            esc = self.source_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(esc + "%")
        if self.doc_ids is not None:
            clauses.append(f"d.doc_id IN ({','.join('?' * len(self.doc_ids))})" if self.doc_ids else "0")
            params += self.doc_ids
        if self.groups is not None:
            ors = ["d.groups = '[]'"]
            for g in self.groups:
                ors.append("EXISTS (SELECT 1 FROM json_each(d.groups) WHERE json_each.value = ?)")
                params.append(g)
            clauses.append("(" + " OR ".join(ors) + ")")
        return (" AND ".join(clauses) or "1"), params


@dataclass
class SearchResult:
    query: str
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    generation: str = ""


class Retriever:
    """Searches the live index generation. Thread-safe for concurrent searches."""

    def __init__(self, settings: Settings, embedder: Embedder, reader: IndexReader | Any | None = None) -> None:
        self.settings = settings
        self.embedder = embedder
        # the embedded IndexReader over index_dir, or rag.store.postgres.PgReader (database_url)
        self.reader = reader or open_reader(settings)
        if settings.search_threads:
            faiss.omp_set_num_threads(settings.search_threads)
        snap = self.reader.snapshot()
        check_embedder(snap.manifest, embedder.model_id, embedder.dim)

    def search(
        self,
        query: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        fusion: str | None = None,
        query_vector: np.ndarray | None = None,
    ) -> SearchResult:
        top_k = top_k or self.settings.top_k
        fusion = fusion or self.settings.fusion
        if fusion not in FUSION_METHODS:
            raise ValueError(f"unknown fusion '{fusion}', choose from {FUSION_METHODS}")
        t0 = time.perf_counter()
        qv = (
            query_vector
            if query_vector is not None
            else (None if fusion == "bm25" else self.embedder.embed_query(query))
        )
        t1 = time.perf_counter()
        snap = self.reader.snapshot()
        hits = rank(
            snap,
            query,
            qv,
            top_k=top_k,
            filters=filters,
            fusion=fusion,
            weight_bm25=self.settings.fusion_weight_bm25,
            candidates=self.settings.candidates,
            nprobe=self.settings.ivf_nprobe,
        )
        t2 = time.perf_counter()
        return SearchResult(
            query=query,
            hits=hits,
            timings={"embed_ms": (t1 - t0) * 1000, "search_ms": (t2 - t1) * 1000},
            generation=snap.name,
        )


def _allowed_ids(snap: IndexSnapshot, filters: Filters | None) -> np.ndarray | None:
    if filters is None or filters.is_empty():
        return None
    where, params = filters.sql()
    return snap.filtered_chunk_ids(where, params)


def _dense_candidates(
    snap: IndexSnapshot, qv: np.ndarray, n: int, allowed: np.ndarray | None, nprobe: int | None = None
) -> dict[int, float]:
    index = snap.vectors
    if index.ntotal == 0 or n <= 0:
        return {}
    if allowed is not None and len(allowed) == 0:
        return {}
    q = np.ascontiguousarray(qv.reshape(1, -1), dtype=np.float32)
    params = search_params(index, allowed, nprobe)
    k = min(n, index.ntotal)
    scores, ids = index.search(q, k, params=params)
    return {int(i): float(s) for s, i in zip(scores[0], ids[0]) if i >= 0}


def _bm25_scores(snap: IndexSnapshot, query: str, allowed: np.ndarray | None) -> np.ndarray:
    scores = snap.bm25.scores(query)
    if allowed is not None and len(scores):
        mask = np.zeros(len(scores), dtype=bool)
        mask[snap.bm25.rows_for(allowed)] = True
        scores = np.where(mask, scores, 0.0)
    return scores


def _dense_scores_for(snap: IndexSnapshot, qv: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
    if not ids:
        return {}
    vecs = np.vstack([snap.vectors.reconstruct(int(i)) for i in ids])
    return {int(i): float(s) for i, s in zip(ids, vecs @ qv.astype(np.float32))}


def rank(
    snap: IndexSnapshot,
    query: str,
    qv: np.ndarray | None,
    top_k: int,
    filters: Filters | None = None,
    fusion: str = "score",
    weight_bm25: float = 0.2,
    candidates: int = 50,
    nprobe: int | None = None,
) -> list[Hit]:
    """Rank the chunks of one snapshot for a query. ``qv`` is the normalised query vector;
    ``nprobe`` overrides the IVF lists scanned (None: the value stored in the index).

    A snapshot of another store (rag/store: PostgreSQL) ranks itself, with the same fusion."""
    store_rank = getattr(snap, "rank", None)
    if store_rank is not None:
        return store_rank(query, qv, top_k, filters, fusion, weight_bm25, candidates)
    allowed = _allowed_ids(snap, filters)
    n = max(candidates, top_k)

    dense: dict[int, float] = {}
    if fusion != "bm25" and qv is not None:
        dense = _dense_candidates(snap, qv, n, allowed, nprobe)

    bm25: dict[int, float] = {}
    bm25_max = 0.0
    if fusion != "dense":
        scores = _bm25_scores(snap, query, allowed)
        if len(scores):
            top = np.argsort(-scores)[:n]
            bm25 = {int(snap.bm25.chunk_ids[r]): float(scores[r]) for r in top if scores[r] > 0}
            bm25_max = float(scores.max())
            if fusion == "score":  # every dense candidate also needs its BM25 score
                for cid in dense:
                    rows = snap.bm25.rows_for([cid])
                    if len(rows):
                        bm25[cid] = float(scores[rows[0]])

    fused = fuse(
        dense,
        bm25,
        bm25_max,
        fusion,
        weight_bm25,
        (lambda ids: _dense_scores_for(snap, qv, ids)) if qv is not None else None,
    )
    best = best_ids(fused, top_k)
    return build_hits(best, fused, snap.chunk_rows(best), dense, bm25)
