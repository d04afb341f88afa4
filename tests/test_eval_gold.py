"""The Dutch gold set (eval/gold/demo.jsonl) must stay true to the demo corpus."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from eval.textnorm import alternatives, contains_fact, contains_verbatim

REPO = Path(__file__).resolve().parent.parent
GOLD = REPO / "eval" / "gold" / "demo.jsonl"
CORPUS = REPO / "data" / "voorbeeld"
TYPES = {"answerable", "unanswerable", "injection", "followup"}


def _load() -> list[dict]:
    return [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]


ITEMS = _load()
DOCS = {f"voorbeeld/{p.stem}": p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.txt"))}
ALL_TEXT = "\n".join(DOCS.values())


def test_composition():
    types = Counter(i["type"] for i in ITEMS)
    assert len(ITEMS) >= 60
    assert types["answerable"] >= 40
    assert types["unanswerable"] >= 10
    assert types["injection"] >= 4
    assert types["followup"] >= 6
    docs = Counter(i["source_doc"] for i in ITEMS if i["type"] in ("answerable", "followup"))
    for doc in DOCS:
        assert docs[doc] >= 5, f"too few questions about {doc}"
    assert sum(i.get("language") == "en" for i in ITEMS) >= 3


def test_ids_unique_and_fields():
    ids = [i["id"] for i in ITEMS]
    assert len(ids) == len(set(ids))
    for i in ITEMS:
        assert re.fullmatch(r"q\d{3}", i["id"]), i["id"]
        assert i["type"] in TYPES, i
        assert i["question"].strip() and i["reference_answer"].strip()
        assert isinstance(i["key_facts"], list) and len(i["key_facts"]) <= 3
        assert isinstance(i["expect_refusal"], bool)
        if i["type"] in ("answerable", "followup"):
            assert 1 <= len(i["key_facts"]) <= 3, i["id"]
            assert i["expect_refusal"] is False
        if i["type"] == "unanswerable":
            assert i["expect_refusal"] is True and not i["key_facts"] and i["source_doc"] is None
        if i["type"] == "followup":
            h = i["history"]
            assert [t["role"] for t in h] == ["user", "assistant"], i["id"]
        else:
            assert "history" not in i


@pytest.mark.parametrize("item", [i for i in ITEMS if i["source_doc"]], ids=lambda i: i["id"])
def test_answer_is_in_named_document(item):
    doc = DOCS.get(item["source_doc"])
    assert doc is not None, f"unknown source_doc {item['source_doc']}"
    snippet = item["gold_passage_contains"]
    assert snippet and len(snippet) <= 120, "gold_passage_contains must be short"
    assert contains_verbatim(doc, snippet), f"{item['id']}: gold passage not verbatim in {item['source_doc']}"
    for fact in item["key_facts"]:
        # the first alternative is the document's own wording
        assert contains_fact(doc, alternatives(fact)[0]), f"{item['id']}: key fact {fact!r} not in the document"
        assert contains_fact(item["reference_answer"], fact), f"{item['id']}: reference answer lacks {fact!r}"


def test_followups_point_at_an_earlier_item():
    by_question = {i["question"]: i for i in ITEMS}
    for i in ITEMS:
        if i["type"] != "followup":
            continue
        first = by_question.get(i["history"][0]["content"])
        assert first is not None and first["type"] == "answerable", i["id"]
        assert first["id"] < i["id"]
        assert i["history"][1]["content"] == first["reference_answer"]


@pytest.mark.parametrize("item", [i for i in ITEMS if i["type"] == "unanswerable"], ids=lambda i: i["id"])
def test_unanswerable_reference_is_a_refusal(item):
    assert "niet" in item["reference_answer"].lower()


def test_injections_have_expectations():
    for i in ITEMS:
        if i["type"] == "injection":
            assert isinstance(i.get("must_not_contain"), list)
            if not i["expect_refusal"]:
                assert i["key_facts"] and i["source_doc"]


def test_fact_matcher_is_not_trivially_true():
    # the verification above is meaningless if the matcher accepts anything
    assert not contains_fact(ALL_TEXT, "parkeervergunning")
    assert not contains_fact("in 2012 en 120", "12")
    assert contains_fact("circa 1500 mensen", "1.500")


def test_faq_jsonl_matches_the_csvs():
    from eval.datasets import FAQ_GOLD, faq_records

    lines = [json.loads(x) for x in FAQ_GOLD.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert lines == faq_records(), "eval/gold/faq.jsonl is stale: run python -m eval.datasets"
    assert len(lines) == 179 and len({r["canonical"] for r in lines}) == 179


def test_faq_ci_subset_is_consistent():
    from eval.datasets import faq_page_files, load_faq_ci

    items, pages = load_faq_ci()
    files = faq_page_files()
    assert len(items) == 40 and len(pages) == 60 and all(p in files for p in pages)
    assert {i.gold_docs[0] for i in items} <= set(pages)


def test_the_test_splits_are_frozen():
    """eval/gold/splits.json holds the test ids of each gold file; the hash rule gives the same
    ones, and about a third of each set is test (tuning happens on the rest)."""
    from eval.datasets import load_dataset, load_demo
    from eval.splits import frozen_test_ids, split_of

    frozen = frozen_test_ids()
    for name, items in (
        ("demo", load_demo()),
        ("faq", load_dataset("faq")),
        ("guard", load_dataset("guard")),
        ("reworded", load_dataset("reworded")),
    ):
        test = sorted(i.id for i in items if split_of(i.id) == "test")
        assert test == frozen[name], f"{name}: the split of a question changed; splits are frozen"
        assert 0.25 < len(test) / len(items) < 0.42


def test_summaries_report_each_split():
    from eval.run import summarise
    from eval.splits import split_of

    rows = [{"id": f"q{i:03d}", "type": "answerable", "metrics": {"key_fact_recall": float(i % 2)}} for i in range(30)]
    by_split = summarise(rows)["by_split"]
    assert set(by_split) == {"tune", "test"}
    test_rows = [r for r in rows if split_of(r["id"]) == "test"]
    assert by_split["test"]["n"] == len(test_rows)
    assert by_split["test"]["key_fact_recall"] == sum(r["metrics"]["key_fact_recall"] for r in test_rows) / len(
        test_rows
    )


def test_a_run_can_be_limited_to_one_split():
    from eval.run import RunConfig, select_items
    from eval.splits import split_of

    tune = select_items(RunConfig(dataset="demo", split="tune"))
    assert tune and all(split_of(i.id) == "tune" for i in tune)
    assert len(tune) + len(select_items(RunConfig(dataset="demo", split="test"))) == 92


REWORDED = [
    json.loads(line)
    for line in (REPO / "eval" / "gold" / "reworded.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


def test_reworded_set_composition():
    """The reworded set: answerable questions in the shapes the gold set lacks (expansions,
    two-part, why, English) and near-miss questions the documents do not answer."""
    types = Counter(i["type"] for i in REWORDED)
    assert types["answerable"] >= 30 and types["unanswerable"] >= 10
    assert len({i["id"] for i in REWORDED}) == len(REWORDED)
    assert sum(i["language"] == "en" for i in REWORDED) >= 4
    for i in REWORDED:
        assert re.fullmatch(r"r\d{3}", i["id"]) and i["type"] in ("answerable", "unanswerable")
        assert i["expect_refusal"] is (i["type"] == "unanswerable")
        if i["type"] == "unanswerable":
            assert not i["key_facts"] and i["source_doc"] is None and i["notes"], i["id"]


@pytest.mark.parametrize("item", [i for i in REWORDED if i["source_doc"]], ids=lambda i: i["id"])
def test_reworded_answer_is_in_named_document(item):
    doc = DOCS[item["source_doc"]]
    assert contains_verbatim(doc, item["gold_passage_contains"]), item["id"]
    for fact in item["key_facts"]:
        assert contains_fact(doc, alternatives(fact)[0]), f"{item['id']}: key fact {fact!r} not in the document"
        assert contains_fact(item["reference_answer"], fact), f"{item['id']}: reference answer lacks {fact!r}"


def test_followup_rewrite_set_is_well_formed():
    """eval/gold/followups.jsonl (python -m eval.followups): conversations that end with the
    assistant, a follow-up, and stems its rewrite must keep."""
    from eval.followups import GOLD, keeps

    rows = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 20 and len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["history"] and r["history"][-1]["role"] == "assistant" and r["question"].endswith("?")
        assert r["keep"] and not keeps(r["question"], r["keep"]), r["id"]  # the follow-up alone lacks them
    assert keeps("Hoeveel heeft het zwembad gekost?", ["zwembad"]) and keeps("Wat kost de opvang?", ["dakloz | opvang"])
    assert not keeps("Hoeveel heeft het gekost?", ["zwembad"]) and not keeps("Wat in 2020?", ["schuldhulp", "2020"])
