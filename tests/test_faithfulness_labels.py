"""The hand labels of the faithfulness metric (eval/faithfulness_labels.py)."""

from __future__ import annotations

import json

import pytest

from eval.faithfulness_labels import LABELS, agreement, load_labels, pairs_from_run


def test_kappa_and_rates_on_a_known_table():
    pairs = (
        [{"sentence": "De opvang heeft 40 bedden.", "passage": "De opvang heeft 40 bedden.", "supported": True}] * 6
        + [{"sentence": "De opvang heeft 50 bedden.", "passage": "De opvang heeft 40 bedden.", "supported": False}] * 2
        # the metric's blind spot: the same words, another meaning
        + [{"sentence": "De opvang heeft geen 40 bedden.", "passage": "De opvang heeft 40 bedden.", "supported": False}]
        + [{"sentence": "Bedden opvang 40.", "passage": "De opvang heeft 40 bedden.", "supported": True}]
    )
    a, disagreements = agreement(pairs)
    assert (a.n, a.labelled_unsupported, a.metric_unsupported, a.both_unsupported) == (10, 3, 2, 2)
    assert a.rate == pytest.approx(0.9) and a.recall_unsupported == pytest.approx(2 / 3)
    assert a.precision_unsupported == 1.0
    assert a.kappa == pytest.approx((0.9 - (0.3 * 0.2 + 0.7 * 0.8)) / (1 - (0.3 * 0.2 + 0.7 * 0.8)))
    assert [d["sentence"] for d in disagreements] == ["De opvang heeft geen 40 bedden."]


def test_pairs_are_taken_from_a_run(tmp_path):
    row = {
        "id": "q1",
        "question": "Hoeveel bedden?",
        "answer": {
            "text": "De opvang heeft 40 bedden [1]. Ze is open in de winter [2].",
            "refused": False,
            "citations": [
                {"marker": 1, "title": "Brief", "section": "Opvang", "snippet": "De opvang heeft 40 bedden."},
                {"marker": 2, "title": "Brief", "section": "", "snippet": "Open van november tot maart."},
            ],
        },
    }
    refused = {"id": "q2", "question": "x", "answer": {"text": "Dat staat er niet.", "refused": True, "citations": []}}
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(refused) + "\n", encoding="utf-8")
    pairs = pairs_from_run(tmp_path)
    assert [(p["id"], p["marker"], p["sentence"]) for p in pairs] == [
        ("q1", 1, "De opvang heeft 40 bedden."),
        ("q1", 2, "Ze is open in de winter."),
    ]
    assert pairs[0]["passage"] == "Brief\nOpvang\nDe opvang heeft 40 bedden."


def test_the_committed_labels():
    labels = load_labels(LABELS)
    assert len(labels) >= 100
    assert all(isinstance(p["supported"], bool) and p["sentence"] and p["passage"] for p in labels)
    assert all(p["note"] for p in labels if not p["supported"])  # every "not supported" says why
    assert len({p["run"] for p in labels}) >= 2  # from more than one run
