"""Passages near the best match only (rag/pipeline.py: within_margin, context_score_margin)."""

from __future__ import annotations

from rag.pipeline import within_margin
from rag.types import Hit


def _hit(chunk_id: int, doc_id: str, dense: float | None) -> Hit:
    return Hit(
        chunk_id=chunk_id,
        doc_id=doc_id,
        title=doc_id,
        source=f"{doc_id}.txt",
        text=f"tekst {chunk_id}",
        heading_path=[],
        page=None,
        score=dense or 0.0,
        dense_score=dense,
    )


def _ids(hits: list[Hit]) -> list[int]:
    return [h.chunk_id for h in hits]


def test_a_clear_best_match_loses_the_other_documents_far_below_it():
    hits = [_hit(1, "woning-kopen", 0.63), _hit(2, "komen-wonen", 0.56), _hit(3, "werkgever", 0.53)]
    assert _ids(within_margin(hits, 0.06)) == [1]


def test_passages_within_the_margin_stay_in_their_order():
    hits = [_hit(1, "a", 0.70), _hit(2, "b", 0.66), _hit(3, "c", 0.63)]
    assert _ids(within_margin(hits, 0.06)) == [1, 2]
    assert _ids(within_margin(hits, 0.10)) == [1, 2, 3]


def test_neighbours_from_a_kept_document_stay_however_low():
    # the rest of the best page (its next chunk holds the rest of the answer)
    hits = [_hit(1, "a", 0.78), _hit(2, "b", 0.60), _hit(3, "a", 0.55)]
    assert _ids(within_margin(hits, 0.06)) == [1, 3]


def test_the_first_hit_stays_when_a_rule_put_it_first():
    # a defining passage or the named year's passage, ranked first by a rule, not by its score
    hits = [_hit(1, "definitie", 0.40), _hit(2, "b", 0.70), _hit(3, "c", 0.50)]
    assert _ids(within_margin(hits, 0.06)) == [1, 2]


def test_off_and_without_dense_scores_nothing_is_dropped():
    hits = [_hit(1, "a", 0.8), _hit(2, "b", 0.5)]
    assert _ids(within_margin(hits, 0.0)) == [1, 2]
    lexical = [_hit(1, "a", None), _hit(2, "b", None)]
    assert _ids(within_margin(lexical, 0.06)) == [1, 2]
    assert within_margin([], 0.06) == []
