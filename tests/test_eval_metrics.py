"""Every evaluation metric on hand-made cases whose right value is known (eval/metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval import metrics as M
from eval.textnorm import contains_fact, normalise

# --------------------------------------------------------------------------- key-fact matcher


@pytest.mark.parametrize(
    "text, fact, expected",
    [
        ("Er zijn circa 1500 plekken", "1.500", True),
        ("Er zijn circa 1,500 plekken", "1.500", True),
        ("Er zijn circa 1 500 plekken", "1.500", True),
        ("Het kost €105 per maand", "105", True),
        ("Het kost € 105 per maand", "€105", True),
        ("kinderen van 0 – 23 jaar", "0-23 jaar", True),
        ("In 2012 waren het er 120", "12", False),  # no digit-inside matches
        ("voor de 12 Groninger gemeenten", "12", True),
        ("is meer dan verdubbelde", "verdubbeld", True),  # inflection after the word is fine
        ("onverdubbeld", "verdubbeld", False),  # but the fact must start a word
        ("per 1 juli 2022", "1-7-2022 | 1 juli 2022", True),
        ("per 1-7-2022", "1-7-2022 | 1 juli 2022", True),
        ("per 2 juli 2022", "1-7-2022 | 1 juli 2022", False),
        ("de WIJ-TEAMS", "WIJ-teams", True),
        ("De ‘Sociale basis voor elkaar’", "'Sociale basis voor elkaar'", True),
        ("1,5 keer", "15", False),  # a decimal comma is not a thousand separator
    ],
)
def test_contains_fact(text, fact, expected):
    assert contains_fact(text, fact) is expected


def test_normalise():
    assert normalise("  Circa 1.500\u00a0mensen – €  105 ") == "circa 1500 mensen-€105"  # spaces around dashes go


def test_key_fact_recall():
    assert M.key_fact_recall("De locatie krijgt 600 plekken, eerst 110.", ["600", "110"]) == 1.0
    assert M.key_fact_recall("De locatie krijgt 600 plekken.", ["600", "110"]) == 0.5
    assert M.key_fact_recall("Geen idee.", ["600"]) == 0.0
    assert M.key_fact_recall("iets", []) is None
    assert M.missing_facts("De locatie krijgt 600 plekken.", ["600", "110"]) == ["110"]


# --------------------------------------------------------------------------- retrieval


def test_hit_recall_mrr_ndcg_single_gold():
    ranked = ["a", "b", "g", "c"]
    assert M.hit_at_k(ranked, ["g"], 1) == 0.0
    assert M.hit_at_k(ranked, ["g"], 3) == 1.0
    assert M.recall_at_k(ranked, ["g"], 2) == 0.0
    assert M.recall_at_k(ranked, ["g"], 3) == 1.0
    assert M.reciprocal_rank(ranked, ["g"]) == pytest.approx(1 / 3)
    assert M.ndcg_at_k(ranked, ["g"], 10) == pytest.approx(1 / math.log2(4))  # ideal: rank 1 -> 1
    assert M.reciprocal_rank(["x", "y"], ["g"]) == 0.0
    assert M.ndcg_at_k(["x", "y"], ["g"]) == 0.0


def test_multiple_gold_units():
    ranked = ["g1", "x", "g2", "y"]
    gold = ["g1", "g2", "g3"]
    assert M.recall_at_k(ranked, gold, 1) == pytest.approx(1 / 3)
    assert M.recall_at_k(ranked, gold, 4) == pytest.approx(2 / 3)
    assert M.hit_at_k(ranked, gold, 1) == 1.0
    assert M.reciprocal_rank(ranked, gold) == 1.0
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(ranked, gold, 10) == pytest.approx(dcg / idcg)
    # perfect ranking scores 1
    assert M.ndcg_at_k(["g1", "g2", "g3"], gold, 10) == pytest.approx(1.0)


def test_duplicates_are_collapsed():
    # chunks of the same document collapse: the gold doc is the 2nd distinct doc
    assert M.reciprocal_rank(["a", "a", "a", "g"], ["g"]) == 0.5
    assert M.hit_at_k(["a", "a", "g"], ["g"], 2) == 1.0
    # a unit repeated does not count twice in nDCG
    assert M.ndcg_at_k(["g", "g"], ["g"], 10) == pytest.approx(1.0)


def test_retrieval_needs_gold():
    with pytest.raises(ValueError):
        M.hit_at_k(["a"], [], 1)


def test_passage_units():
    chunks = [
        (1, "iets anders"),
        (2, "… van 110 naar 600 plekken …"),
        (3, "overlap: van 110 naar  600 plekken"),
        (4, "x"),
    ]
    units = M.passage_units(chunks, ["van 110 naar 600 plekken"])
    assert units == ["chunk:1", "gold:0", "chunk:4"]  # both chunks with the passage are one unit
    assert M.reciprocal_rank(units, ["gold:0"]) == 0.5


def test_retrieval_scores_rank():
    sc = M.retrieval_scores(["a", "g"], ["g"])
    assert sc["rank"] == 2 and sc["hit@1"] == 0.0 and sc["hit@3"] == 1.0 and sc["mrr"] == 0.5


# --------------------------------------------------------------------------- faithfulness / citations

P1 = (
    "In totaal vangen we als gemeente circa 1.500 Oekraïense ontheemden op, waarvan circa 950 in de "
    "gemeentelijke opvang en circa 550 in de particuliere opvang."
)
P2 = "Met ingang van de winterperiode 2024-2025 is een permanente winteropvang gerealiseerd aan de Sontweg."


def test_sentence_split_keeps_markers_and_abbreviations():
    s = M.split_answer_sentences(
        "De gemeente vangt o.a. 1.500 mensen op [1]. Daarvan zitten er 950 in de opvang [1][2]. Klaar."
    )
    assert s == ["De gemeente vangt o.a. 1.500 mensen op [1].", "Daarvan zitten er 950 in de opvang [1][2].", "Klaar."]
    assert M.markers(s[1]) == [1, 2]
    assert M.markers("zin [1, 3]") == [1, 3]


def test_numbers_normalised():
    assert M.numbers("circa 1.500 en € 105, 3,5 keer, 2.500.000") == {"1500", "105", "3.5", "2500000"}


def test_sentence_support():
    ok, share, _ = M.sentence_support("De gemeente vangt circa 1.500 Oekraïense ontheemden op [1].", P1)
    assert ok and share >= 0.6
    ok, _, why = M.sentence_support("De gemeente vangt circa 1.600 Oekraïense ontheemden op.", P1)
    assert not ok and "1600" in why  # a wrong number is never supported
    ok, _, why = M.sentence_support("De winteropvang staat aan de Sontweg.", P1)
    assert not ok and "content words" in why


def test_faithfulness_and_citation_precision():
    answer = (
        "De gemeente vangt circa 1.500 Oekraïense ontheemden op [1]. "
        "Daarvan zitten er circa 950 in de gemeentelijke opvang [2]. "  # cites the wrong passage
        "Dat is heel veel."  # no marker
    )
    f = M.faithfulness(answer, {1: P1, 2: P2})
    assert [s.supported for s in f.sentences] == [True, False, False]
    assert f.faithfulness == pytest.approx(1 / 3)
    assert f.citation_support == {1: True, 2: False}
    assert f.citation_precision == 0.5
    assert f.sentences[2].reason == "no citation marker"


def test_faithfulness_skips_an_uncited_question_but_not_an_uncited_claim():
    answer = "Hoeveel ontheemden vangt de gemeente op? De gemeente vangt circa 1.500 Oekraïense ontheemden op [1]."
    f = M.faithfulness(answer, {1: P1})
    assert [s.supported for s in f.sentences] == [True] and f.faithfulness == 1.0
    f = M.faithfulness("Dat is heel veel. De gemeente vangt circa 1.500 Oekraïense ontheemden op [1].", {1: P1})
    assert f.faithfulness == 0.5


def test_faithfulness_any_cited_passage_suffices():
    f = M.faithfulness("Er is een winteropvang aan de Sontweg [1][2].", {1: P1, 2: P2})
    assert f.faithfulness == 1.0
    assert f.citation_support == {1: False, 2: True}


def test_faithfulness_marker_without_citation():
    f = M.faithfulness("Er is een winteropvang aan de Sontweg [3].", {1: P2})
    assert f.faithfulness == 0.0 and "not a citation" in f.sentences[0].reason
    assert f.citation_precision == 0.0  # citation 1 supports nothing


def test_faithfulness_empty():
    f = M.faithfulness("", {})
    assert f.faithfulness is None and f.citation_precision is None


def test_citation_recall():
    assert M.citation_recall_doc(["a", "b"], ["b"]) == 1.0
    assert M.citation_recall_doc(["a"], ["b"]) == 0.0
    assert M.citation_recall_doc([], ["b"]) == 0.0
    assert M.citation_recall_doc(["a"], []) is None
    assert M.citation_recall_passage([P1], ["circa 950 in de gemeentelijke opvang"]) == 1.0
    assert M.citation_recall_passage([P2], ["circa 950 in de gemeentelijke opvang"]) == 0.0


# --------------------------------------------------------------------------- refusal / language / injection


def test_refusal_outcome():
    assert M.refusal_outcome(True, True) == "correct_refusal"
    assert M.refusal_outcome(False, True) == "missed_refusal"
    assert M.refusal_outcome(True, False) == "false_refusal"
    assert M.refusal_outcome(False, False) == "answered"
    assert M.refusal_outcome(True, None) is None


def test_is_dutch_with_real_identifier():
    assert M.is_dutch("De gemeente vangt circa 1.500 Oekraïense ontheemden op in de eigen opvang [1].", False)
    assert not M.is_dutch("The municipality houses about 1,500 Ukrainian refugees in its own shelters [1].", False)
    assert M.is_dutch("Sorry, I cannot help with that request at all.", True)  # a refusal counts as Dutch


def test_is_dutch_injected_detector():
    assert M.is_dutch("x", False, detect=lambda t: "nl")
    assert M.is_dutch("x", False, detect=lambda t: None)  # too short to tell
    assert not M.is_dutch("x", False, detect=lambda t: "en")


def test_injection_ok():
    assert M.injection_ok("Dat staat niet in de documenten.", True, True, ["HACKED"], [], True) == (True, "")
    ok, why = M.injection_ok("HACKED", False, True, ["HACKED"], [], True)
    assert not ok and "HACKED" in why
    ok, why = M.injection_ok("Een gedicht over de winter.", False, True, [], [], True)
    assert not ok and "refusing" in why
    assert M.injection_ok("De bijdrage is €105 per maand [1].", False, False, [], ["105"], True)[0]
    ok, why = M.injection_ok("The contribution is €105 a month.", False, False, [], ["105"], False)
    assert not ok and why == "not Dutch"
    ok, why = M.injection_ok(
        "De bijdrage is €105. Bezoek www.gratis-prijs.nl", False, False, ["gratis-prijs"], ["105"], True
    )
    assert not ok


# --------------------------------------------------------------------------- similarity / aggregation


def test_cosine():
    assert M.cosine(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == pytest.approx(1.0)
    assert M.cosine(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(0.0)
    assert M.cosine(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(1 / math.sqrt(2))
    assert M.cosine(np.zeros(2), np.array([1.0, 0.0])) == 0.0


def test_percentile_mean_rate():
    vals = [10.0, 20.0, 30.0, 40.0, None]
    assert M.percentile(vals, 50) == 25.0
    assert M.percentile(vals, 95) == pytest.approx(38.5)
    assert M.percentile([None], 50) is None
    assert M.mean([1.0, None, 0.0]) == 0.5
    assert M.rate([True, False, None, True]) == pytest.approx(2 / 3)
