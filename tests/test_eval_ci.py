"""The CI subset of the evaluation, with the real default models (marked slow).

- retrieval on the whole Dutch gold set (92 questions over data/voorbeeld; 108 chunks to embed once);
- retrieval on the fixed FAQ subset (eval/gold/faq-ci-subset.json: 40 questions, 60 pages, ~121 chunks);
- five real-LLM answers from the gold set (skipped when rag.pipeline or the LLM is missing).

Thresholds sit a little under the values measured when they were set (see eval/README.md); a
clear regression fails the build. Indexes are cached under eval/runs/_indexes/ (ignored by git),
so only the first run pays for the embedding. The full evaluation is a documented command, not CI.
"""

from __future__ import annotations

import importlib.util

import pytest

from eval import run as R

pytestmark = pytest.mark.slow

# Thresholds a little under the values measured on 2026-11-28 (embeddinggemma-300m, chunk 600, fusion score
# w=0.2); measured values in the comments. A drop of 4+ questions on the gold set fails.
DEMO_RETRIEVAL_MIN = {
    "doc_hit@1": 0.93,  # 0.986 (74 answerable/follow-up/injection items with a gold document)
    "doc_hit@5": 0.97,  # 1.000
    "doc_mrr": 0.95,  # 0.993
    "psg_hit@5": 0.93,  # 0.986
    "psg_mrr": 0.90,  # 0.959
}
FAQ_CI_RETRIEVAL_MIN = {
    "doc_hit@1": 0.85,  # 0.925 (40 questions, 60 pages)
    "doc_hit@5": 0.95,  # 1.000
    "doc_mrr": 0.90,  # 0.958
}
# q-ids of the real-LLM check: three answerable (numbers), one unanswerable, one injection
LLM_IDS = ["q038", "q043", "q060", "q073", "q089"]


@pytest.fixture(scope="module")
def settings():
    from rag.settings import Settings

    return Settings()


@pytest.fixture(scope="module")
def embedder(settings):
    from rag.embed import load_embedder
    from rag.models import ModelError

    try:
        return load_embedder(settings)
    except ModelError as exc:
        pytest.skip(f"embedder not installed: {exc}")


def _check(summary: dict, minimum: dict[str, float]) -> list[str]:
    bad = []
    for k, lo in minimum.items():
        v = summary["metrics"][k]["value"]
        if v is None or v < lo:
            bad.append(f"{k} = {v} < {lo}")
    return bad


def test_demo_retrieval(tmp_path, settings, embedder):
    cfg = R.RunConfig(dataset="demo", only="retrieval")
    _, res = R.run(
        cfg, run_dir=tmp_path / "demo", settings=settings, embedder=embedder, progress=False, log=lambda m: None
    )
    assert res["summary"]["n"] >= 60 and not res["summary"]["errors"]
    assert not _check(res["summary"], DEMO_RETRIEVAL_MIN), _check(res["summary"], DEMO_RETRIEVAL_MIN)


def test_faq_ci_retrieval(tmp_path, settings, embedder):
    cfg = R.RunConfig(dataset="faq-ci", only="retrieval")
    _, res = R.run(
        cfg, run_dir=tmp_path / "faq", settings=settings, embedder=embedder, progress=False, log=lambda m: None
    )
    assert res["summary"]["n"] == 40 and not res["summary"]["errors"]
    assert not _check(res["summary"], FAQ_CI_RETRIEVAL_MIN), _check(res["summary"], FAQ_CI_RETRIEVAL_MIN)


def test_real_llm_answers(tmp_path, settings, embedder):
    if importlib.util.find_spec("rag.pipeline") is None:
        pytest.skip("rag.pipeline is not there yet")
    from rag.llm import LLMError, load_llm
    from rag.models import ModelError

    try:
        llm = load_llm(settings)
    except (LLMError, ModelError, ImportError) as exc:
        pytest.skip(f"LLM not available: {exc}")
    cfg = R.RunConfig(dataset="demo", only="answers", ids=LLM_IDS)
    _, res = R.run(
        cfg, run_dir=tmp_path / "llm", settings=settings, embedder=embedder, llm=llm, progress=False, log=lambda m: None
    )
    rows = {r["id"]: r for r in res["rows"]}
    assert len(rows) == 5 and not res["summary"]["errors"], [r.get("error") for r in rows.values()]
    m = res["summary"]["metrics"]
    assert m["dutch"]["value"] == 1.0, [r["answer"]["text"] for r in rows.values()]
    assert m["key_fact_recall"]["value"] >= 0.6, {i: r["answer"]["text"] for i, r in rows.items()}
    assert m["false_refusal_rate"]["value"] <= 1 / 3
    assert rows["q073"]["answer"]["refused"], rows["q073"]["answer"]["text"]  # parking permit: not in the texts
    assert rows["q089"]["metrics"]["injection_ok"] == 1.0, rows["q089"]["answer"]["text"]
    assert m["faithfulness"]["value"] is None or m["faithfulness"]["value"] >= 0.8
