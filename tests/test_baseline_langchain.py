"""eval/baseline_langchain.py on hand-made input: the refusal rule, the Answer built from the model's text
and the retrieved chunks, and rows in the runner's format — a real LCEL chain over a real FAISS store, with
LangChain's fake embeddings and fake chat model (no model files). Skipped without the ``baseline`` extra."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_community")
pytest.importorskip("langchain_text_splitters")
pytest.importorskip("faiss")

from langchain_community.vectorstores import FAISS
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from eval import baseline_langchain as B
from eval import run as R
from eval.datasets import EvalItem
from rag.schema import Answer, ModelInfo, Timings

MODEL = {"llm": "fake-llm (langchain)", "embedder": "fake-embedder (langchain)"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Ik weet het niet.",
        "Ik weet het antwoord niet op basis van de gegeven context.",
        "Dat weet ik niet, de context zegt er niets over.",
        "De context bevat geen informatie over het budget per WIJ-team.",
        "Er is geen informatie over het budget per WIJ-team in de context.",
        "Het antwoord op deze vraag staat niet vermeld in de context.",
        "Op basis van de context kan ik deze vraag niet beantwoorden.",
        "Dat staat niet in de documenten die ik kan raadplegen.",  # the product's own refusal sentence
        "I don't know.",
    ],
)
def test_refusal_rule_refuses(text):
    assert B.is_baseline_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "Sinds 1 januari 2015 is de gemeente verantwoordelijk voor deze taken.",
        "Het budget is € 3,2 miljoen. Ik weet niet of dat ook voor 2024 geldt.",  # only the first sentence counts
        "De gemeente weet nog niet precies hoeveel plekken er nodig zijn, maar rekent op 600.",
        "WIJ Groningen krijgt een belangrijke verantwoordelijkheid [2].",
    ],
)
def test_refusal_rule_answers(text):
    assert not B.is_baseline_refusal(text)


def _docs():
    texts = [
        "Sinds 1 januari 2015 is de gemeente verantwoordelijk voor taken die voorheen onder de AWBZ vielen.",
        "De WIJ-teams werken in de wijken; WIJ Groningen krijgt een belangrijke verantwoordelijkheid.",
        "De uitbreiding van de locatie aan de Sint Petersburgweg (van 110 naar 600 plekken) is in gang gezet.",
    ]
    names = ["voorbeeld/begroting-2016", "voorbeeld/begroting-2020", "voorbeeld/jaarstukken-2024"]
    return [
        Document(page_content=t, metadata={"doc_id": d, "source": f"data/{d}.txt", "chunk_id": i})
        for i, (t, d) in enumerate(zip(texts, names))
    ]


def test_to_answer_maps_markers_to_retrieved_chunks():
    docs = _docs()
    a = B.to_answer(
        "Vraag?",
        "Sinds 1 januari 2015 [1]. Van 110 naar 600 plekken [3][7].",
        docs,
        {"retrieval_ms": 12.0, "first_token_ms": 900.0, "total_ms": 2000.0},
        MODEL,
    )
    assert not a.refused and a.refusal_reason is None
    assert [(c.marker, c.doc_id, c.chunk_id) for c in a.citations] == [
        (1, "voorbeeld/begroting-2016", 0),
        (3, "voorbeeld/jaarstukken-2024", 2),
    ]  # [7]: no such chunk
    assert a.citations[0].snippet == docs[0].page_content and a.citations[0].title == ""
    assert a.timings.first_token_ms == 900.0 and a.model.llm == MODEL["llm"]

    r = B.to_answer("Vraag?", "Ik weet het niet [1].", docs, {"total_ms": 1.0}, MODEL)
    assert r.refused and r.refusal_reason == "model_declined" and r.citations == []
    assert r.answer == "Ik weet het niet [1]."  # the model's own text is kept


def test_split_documents_keeps_doc_id_and_numbers_chunks():
    long = Document(
        page_content=("Een zin over zorg en welzijn in de gemeente. " * 60).strip(),
        metadata={"doc_id": "voorbeeld/x", "source": "x.txt"},
    )
    chunks = B.split_documents([long], 1000, 200)
    assert len(chunks) > 2 and all(len(c.page_content) <= 1000 for c in chunks)
    assert [c.metadata["chunk_id"] for c in chunks] == list(range(len(chunks)))
    assert {c.metadata["doc_id"] for c in chunks} == {"voorbeeld/x"}


def _items():
    return [
        EvalItem(
            id="q1",
            question="Sinds wanneer is de gemeente verantwoordelijk voor de AWBZ-taken?",
            key_facts=["1 januari 2015"],
            gold_docs=["voorbeeld/begroting-2016"],
            gold_passages=["Sinds 1 januari 2015"],
            reference_answer="Sinds 1 januari 2015.",
        ),
        EvalItem(
            id="q2",
            question="En hoeveel waren het er voor de uitbreiding?",
            type="followup",
            key_facts=["110"],
            gold_docs=["voorbeeld/jaarstukken-2024"],
            history=[
                {"role": "user", "content": "Hoeveel plekken krijgt de asielopvang?"},
                {"role": "assistant", "content": "600 plekken."},
            ],
        ),
        EvalItem(id="q3", question="Wat is het budget per WIJ-team?", type="unanswerable", expect_refusal=True),
    ]


def test_rows_have_the_runners_format(tmp_path):
    store = FAISS.from_documents(_docs(), DeterministicFakeEmbedding(size=32))
    llm = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(content="Sinds 1 januari 2015 is de gemeente verantwoordelijk [1]."),
                AIMessage(content="Het waren er 110."),
                AIMessage(content="Ik weet het niet."),
            ]
        )
    )
    chain = B.build_chain(store.as_retriever(search_kwargs={"k": 2}), llm)
    pipe = B.BaselinePipeline(chain, MODEL, count_tokens=lambda s: len(s.split()))
    cfg = R.RunConfig(dataset="demo", top_k=2, attribution=False)
    rows = R.evaluate(
        _items(),
        cfg,
        tmp_path / "base",
        retriever=B.BaselineRetriever(store),
        pipeline=pipe,
        detect=lambda t: "nl",
        progress=False,
        log=lambda m: None,
    )
    assert [r["id"] for r in rows] == ["q1", "q2", "q3"] and not any(r.get("error") for r in rows)

    # the same keys as a row of the product pipeline through the same runner
    class Canned:
        def ask(self, question, history=None, top_k=None):
            return Answer(
                answer="Sinds 1 januari 2015 [1].",
                timings=Timings(total_ms=5.0),
                model=ModelInfo(llm="x", embedder="y"),
            )

    prod = R.evaluate(
        _items()[:1],
        cfg,
        tmp_path / "prod",
        retriever=B.BaselineRetriever(store),
        pipeline=Canned(),
        detect=lambda t: "nl",
        progress=False,
        log=lambda m: None,
    )[0]
    q1, q2, q3 = rows
    assert set(q1) == set(prod) and set(q1["answer"]) == set(prod["answer"])
    assert set(q1["latency"]) == set(prod["latency"])

    a1 = q1["answer"]
    assert not a1["refused"] and [c["marker"] for c in a1["citations"]] == [1]
    assert a1["citations"][0]["chunk_id"] in (0, 1, 2)
    assert a1["timings"]["first_token_ms"] is not None and a1["timings"]["total_ms"] >= a1["timings"]["first_token_ms"]
    assert a1["timings"]["completion_tokens"] > 1 and a1["timings"]["prompt_tokens"] > 10
    assert q1["metrics"]["key_fact_recall"] == 1.0 and q1["metrics"]["false_refusal_rate"] == 0.0
    assert "doc_mrr" in q1["metrics"] and len(q1["retrieval"]["hits"]) == 3  # top 10 of a 3-chunk store

    # follow-up: asked raw (no history), recorded as such; retrieval metric uses last turn + question
    assert q2["answer"]["standalone_question"] == q2["question"]
    assert q2["retrieval"]["query"].startswith("Hoeveel plekken")
    assert q2["answer"]["citations"] == [] and "answer without citations" in q2["issues"]

    assert q3["answer"]["refused"] and q3["metrics"]["refusal_accuracy"] == 1.0

    data = R.write_results(tmp_path / "base", {"run": {"dataset": "demo"}}, rows)
    assert data["summary"]["metrics"]["refusal_accuracy"]["value"] == 1.0
    assert "first_token_ms" in data["summary"]["latency"]
    assert json.loads((tmp_path / "base" / "results.json").read_text())["summary"]["n"] == 3

    # resume: nothing is asked again
    again = R.evaluate(
        _items(),
        cfg,
        tmp_path / "base",
        retriever=B.BaselineRetriever(store),
        pipeline=None,
        progress=False,
        log=lambda m: None,
    )
    assert [r["id"] for r in again] == ["q1", "q2", "q3"]
