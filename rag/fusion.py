"""Fusion of the dense and lexical candidate scores into ranked ``Hit``s, shared by every index
backend (rag/retrieve.py for the embedded index, rag/store/postgres.py for PostgreSQL), so that
the same candidate scores give the same hits whatever stores them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .types import Hit

RRF_K = 60


def fuse(
    dense: dict[int, float],
    bm25: dict[int, float],
    bm25_max: float,
    fusion: str,
    weight_bm25: float,
    dense_scores_for: Callable[[list[int]], dict[int, float]] | None = None,
) -> dict[int, float]:
    """chunk id -> fused score. ``dense_scores_for`` (``score`` fusion) gives the cosine of the
    BM25 candidates that the dense side did not return; ``dense`` is updated with them."""
    if fusion == "dense":
        return dense
    if fusion == "bm25":
        return bm25
    if fusion == "rrf":
        fused: dict[int, float] = {}
        w = weight_bm25
        for r, cid in enumerate(sorted(dense, key=lambda c: dense[c], reverse=True)):
            fused[cid] = fused.get(cid, 0.0) + (1 - w) / (RRF_K + r + 1)
        for r, cid in enumerate(sorted(bm25, key=lambda c: bm25[c], reverse=True)):
            if bm25[cid] > 0:
                fused[cid] = fused.get(cid, 0.0) + w / (RRF_K + r + 1)
        return fused
    # score
    missing = [c for c in bm25 if c not in dense]
    if dense_scores_for is not None:
        dense.update(dense_scores_for(missing))
    w = weight_bm25
    return {
        cid: (1 - w) * dense.get(cid, 0.0) + w * (bm25.get(cid, 0.0) / bm25_max if bm25_max > 0 else 0.0)
        for cid in set(dense) | set(bm25)
    }


def best_ids(fused: Mapping[int, float], top_k: int) -> list[int]:
    """The ``top_k`` best chunk ids, ties broken by chunk id."""
    return sorted(fused, key=lambda c: (-fused[c], c))[:top_k]


def build_hits(
    best: Iterable[int],
    fused: Mapping[int, float],
    rows_by_id: Mapping[int, Any],  # chunk id -> a row read by column name (sqlite3.Row, dict)
    dense: Mapping[int, float],
    bm25: Mapping[int, float],
) -> list[Hit]:
    """``Hit``s for the ranked ids from their chunk rows (a chunk without a row is skipped:
    it cannot happen in a published generation or a committed transaction)."""
    hits: list[Hit] = []
    for r, cid in enumerate(best, start=1):
        row = rows_by_id.get(cid)
        if row is None:
            continue
        hits.append(
            Hit(
                chunk_id=cid,
                doc_id=row["doc_id"],
                title=row["title"],
                source=row["source"],
                text=row["text"],
                heading_path=json.loads(row["heading_path"]),
                page=row["page"],
                score=fused[cid],
                doc_type=row["doc_type"],
                date=row["date"],
                year=row["year"],
                dense_score=dense.get(cid),
                bm25_score=bm25.get(cid),
                rank=r,
                position=row["position"],
                char_start=row["char_start"],
                char_end=row["char_end"],
                page_end=row["page_end"],
            )
        )
    return hits
