"""eval/replica_loadtest.py: the consistency checks on scripted records, the /proc/locks
parser, and the scripted OpenAI-compatible LLM server behind the real ``openai`` backend.
Fast: no models, no replicas (the full run is ``python -m eval.replica_loadtest``)."""

from __future__ import annotations

import pytest

from eval.replica_loadtest import FakeOpenAIServer, check_records, flock_waiters, gen_number

NEW = {"new-a": "nieuw/doc-a", "new-b": "nieuw/doc-b"}
SWITCH = 100.0


def rec(seq, replica, qid, gen, started, *, cited=(), sources=None, refused=False, status=200, error=None):
    return {
        "seq": seq,
        "replica": replica,
        "qid": qid,
        "generation": gen,
        "started": started,
        "finished": started + 1,
        "cited": list(cited),
        "sources": None if sources is None else list(sources),
        "refused": refused,
        "refusal_reason": "no_relevant_passages" if refused else None,
        "status": status,
        "error": error,
    }


def consistent_run():
    return [
        rec(0, 0, "base", "gen-000001", 1.0, cited=["voorbeeld/x"], sources=["voorbeeld/x"]),
        rec(1, 1, "new-a", "gen-000001", 2.0, refused=True, sources=[]),
        rec(2, 0, "new-b", "gen-000001", 3.0, cited=["voorbeeld/y"]),
        # in flight across the switch: replica 1 still on the old generation, that is fine
        rec(3, 1, "new-b", "gen-000001", SWITCH + 0.5, refused=True),
        rec(4, 0, "new-a", "gen-000002", SWITCH + 5, cited=["nieuw/doc-a"], sources=["nieuw/doc-a", "voorbeeld/x"]),
        rec(5, 1, "new-a", "gen-000003", SWITCH + 6, cited=["nieuw/doc-a"]),
        rec(6, 0, "new-b", "gen-000002", SWITCH + 7, cited=["nieuw/doc-b"], sources=["nieuw/doc-b"]),
        rec(7, 1, "new-b", "gen-000002", SWITCH + 8, cited=["nieuw/doc-b"]),
    ]


def run_checks(records):
    checks = check_records(records, new_docs=NEW, first_new_gen=2, switch_time=SWITCH, replicas=[0, 1])
    return {c["name"]: c for c in checks}


def test_gen_number():
    assert gen_number("gen-000007") == 7
    assert gen_number(None) is None and gen_number("gen-x") is None


def test_consistent_run_passes():
    checks = run_checks(consistent_run())
    assert all(c["ok"] for c in checks.values()), checks
    assert set(checks) == {
        "no_errors",
        "generation_reported",
        "old_generation_never_sees_new_docs",
        "new_generation_retrieves_new_doc",
        "no_stale_generation_after_switch",
        "both_generations_seen",
        "new_docs_answerable_on_every_replica",
    }


@pytest.mark.parametrize(
    "change, failing",
    [
        # an old generation cannot know the new document: citing or retrieving it is a leak
        (lambda rs: rs[2].update(cited=["nieuw/doc-b"]), "old_generation_never_sees_new_docs"),
        (lambda rs: rs[1].update(sources=["nieuw/doc-a"]), "old_generation_never_sees_new_docs"),
        # started well after the switch but answered from the old generation
        (lambda rs: rs.append(rec(8, 0, "base", "gen-000001", SWITCH + 9)), "no_stale_generation_after_switch"),
        # the new generation did not even retrieve the new document
        (lambda rs: rs[4].update(sources=["voorbeeld/x"]), "new_generation_retrieves_new_doc"),
        # replica 1 refused the new document afterwards: not answerable on every replica
        (lambda rs: rs[7].update(refused=True, cited=[]), "new_docs_answerable_on_every_replica"),
        (lambda rs: rs.pop(5), "new_docs_answerable_on_every_replica"),
        # a 500 (or a 503 that never cleared) is an error; so is a missing generation
        (lambda rs: rs[0].update(status=500, error="HTTP 500"), "no_errors"),
        (lambda rs: rs[0].update(generation=None), "generation_reported"),
        # the switch was never observed by a new-document question on the old generation
        (lambda rs: [rs.pop(i) for i in (3, 2, 1)], "both_generations_seen"),
    ],
)
def test_violations_are_flagged(change, failing):
    records = consistent_run()
    change(records)
    checks = run_checks(records)
    bad = {name for name, c in checks.items() if not c["ok"]}
    assert bad == {failing}, checks


def test_no_published_generation_fails():
    checks = check_records(consistent_run(), new_docs=NEW, first_new_gen=None, switch_time=None, replicas=[0])
    assert {c["name"]: c["ok"] for c in checks}["new_generation_published"] is False


def test_flock_waiters_parses_proc_locks():
    text = (
        "1: FLOCK  ADVISORY  WRITE 4242 00:2e:1234 0 EOF\n"
        "1: -> FLOCK  ADVISORY  WRITE 4343 00:2e:1234 0 EOF\n"
        "2: POSIX  ADVISORY  READ 99 08:01:77 0 EOF\n"
    )
    assert flock_waiters(text) == {4343}
    assert flock_waiters("") == set()


def test_fake_server_through_the_openai_backend():
    from rag.llm import GenerationParams
    from rag.llm.openai_compat import OpenAIBackend

    prompt = "[1] Raadsbrief — Besluit\nEr komen 48 deelbakfietsen. De proef kost geld.\n\nVraag: hoeveel?"
    with FakeOpenAIServer(model="fake-llm") as srv:
        b = OpenAIBackend(srv.base_url, timeout=10.0)
        deltas = list(b.stream_chat([{"role": "user", "content": prompt}], GenerationParams(max_tokens=50)))
        assert "".join(deltas) == "Er komen 48 deelbakfietsen. [1]" and len(deltas) > 3
        assert b.model_name == "fake-llm"  # listed by /v1/models
        assert b.count_tokens("abcdefgh") == 2  # /extras/tokenize/count
        assert b.chat([{"role": "user", "content": prompt}], GenerationParams(max_tokens=2)) == "Er komen"
        assert srv.requests["/v1/chat/completions"] == 2


def test_answer_names_the_generation_it_used(tmp_path, settings, hash_embedder):
    """Answer.index_generation is the snapshot the retriever searched: a new document is
    cited only from the generation that contains it."""
    from rag.indexing import ingest_paths
    from service.testing import FakeLLM, make_pipeline

    old, new = tmp_path / "oud", tmp_path / "nieuw"
    old.mkdir()
    new.mkdir()
    (old / "begroting-2023-zorg.md").write_text(
        "# Zorg\n\n## Mantelzorg\n\nVoor mantelzorgondersteuning is in 2023 twee miljoen euro beschikbaar.\n",
        encoding="utf-8",
    )
    (new / "raadsbrief-2025-zwemvierdaagse.md").write_text(
        "# Zwemvierdaagse\n\n## Kosten\n\nDeelname aan de kikkerdril zwemvierdaagse kost zeven euro per kind.\n",
        encoding="utf-8",
    )
    settings.refusal_min_score = 0.05
    ingest_paths([old], settings, hash_embedder)
    pipeline = make_pipeline(settings, hash_embedder, FakeLLM())
    question = "Wat kost de kikkerdril zwemvierdaagse per kind?"

    before = pipeline.ask(question)
    assert before.index_generation == "gen-000001"
    assert all(c.doc_id != "nieuw/raadsbrief-2025-zwemvierdaagse" for c in before.citations)

    report = ingest_paths([new], settings, hash_embedder)
    after = pipeline.ask(question)
    assert report.generation == 2 and after.index_generation == "gen-000002"
    assert not after.refused and [c.doc_id for c in after.citations] == ["nieuw/raadsbrief-2025-zwemvierdaagse"]
    assert after.model_dump()["index_generation"] == "gen-000002"  # in the API/CLI JSON too


def test_load_client_reads_generation_from_both_endpoints(tmp_path, settings, hash_embedder):
    """The load script's client against a live API (fake LLM): /v1/ask and /v1/ask/stream both
    give the generation, the refusal and the citations; the stream also the passages."""
    import time

    from eval.replica_loadtest import Record, ask, httpx
    from rag.indexing import ingest_paths
    from service.app import create_app
    from service.config import ServiceSettings
    from service.testing import FakeLLM, LiveServer, make_pipeline

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "begroting-2023-zorg.md").write_text(
        "# Zorg\n\n## Jeugd\n\nVoor jeugdhulp is in 2023 veertig miljoen euro begroot.\n", encoding="utf-8"
    )
    settings.refusal_min_score = 0.05
    ingest_paths([docs], settings, hash_embedder)
    pipeline = make_pipeline(settings, hash_embedder, FakeLLM())
    cfg = ServiceSettings(data_dir=tmp_path / "data", dev_mode=True, rate_limit_per_minute=0)
    t0 = time.monotonic()
    with LiveServer(create_app(settings, pipeline, service_settings=cfg)) as url, httpx.Client(timeout=30) as http:
        got = {}
        for endpoint in ("ask", "stream"):
            rec = Record(seq=0, client=0, replica=0, endpoint=endpoint, qid="q", kind="base")
            ask(
                http,
                url,
                "Hoeveel geld is er begroot voor jeugdhulp?",
                rec,
                lambda: time.monotonic() - t0,
                3,
                time.monotonic() + 60,
            )
            got[endpoint] = rec
    for rec in got.values():
        assert rec.status == 200 and rec.error is None, rec
        assert rec.generation == "gen-000001" and rec.refused is False
        assert rec.cited == ["docs/begroting-2023-zorg"] and rec.finished >= rec.started
    assert got["stream"].sources == ["docs/begroting-2023-zorg"] and got["ask"].sources is None
