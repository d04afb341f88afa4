"""Faults of the running service, against a real uvicorn in a subprocess (a fake LLM, the hash
embedder): SIGTERM drains (the stream in flight finishes, new requests get 503 with
Retry-After, the process exits within the bound), SIGKILL mid-stream loses nothing (the
restarted service serves at once with the same index, keys and feedback)."""

from __future__ import annotations

import time

import pytest

from eval.fault_drills import drill_damaged, drill_sigkill, drill_sigterm, markdown

pytestmark = pytest.mark.timeout(180)

QUESTION = "Hoeveel geld gaat er naar mantelzorgondersteuning?"


def _free_port() -> int:
    from service.testing import free_port

    return free_port()


def test_sigterm_drains_the_stream_in_flight_and_refuses_new_requests(tmp_path):
    r = drill_sigterm(tmp_path / "svc")
    assert r["stream_status"] == 200 and r["stream_finished"], r  # the stream in flight ended with done
    assert r["new_request_status"] == 503 and r["new_request_code"] == "shutting_down"
    assert r["retry_after"] == "5"
    assert r["healthz_during"] == 200 and r["readyz_during"] == "draining"
    assert r["exit_code"] == 0 and r["exit_s"] < r["grace_s"]


def test_sigkill_mid_stream_loses_nothing_and_the_restart_serves_at_once(tmp_path):
    r = drill_sigkill(tmp_path / "svc")
    assert r["stream_cut"], r
    assert r["restart_ready_s"] < 30
    assert r["same_generation"] and r["key_still_valid"] and r["same_answer"] and r["same_citations"]
    assert r["feedback_kept"]


def test_the_drills_print_a_table(tmp_path):
    """eval/fault_drills.py's table, on the figures of a damaged-index drill."""
    rows = drill_damaged(tmp_path)
    assert [r["detected"] for r in rows] == [True] * 4
    assert all(r["served"] == "gen-000001" and r["next_ingest_repairs"] for r in rows)
    fake = {
        "sigterm": [
            {
                "stream_finished": True,
                "exit_code": 0,
                "new_request_status": 503,
                "new_request_code": "shutting_down",
                "retry_after": "5",
                "healthz_during": 200,
                "readyz_during": "draining",
                "exit_s": 2.0,
                "grace_s": 20.0,
            }
        ],
        "sigkill": [
            {
                "stream_cut": True,
                "same_generation": True,
                "same_answer": True,
                "same_citations": True,
                "feedback_kept": True,
                "restart_ready_s": 3.0,
            }
        ],
        "damaged": rows,
        "disk_full": {"skipped": "test"},
    }
    table = markdown(fake)
    assert table.count("\n") == 1 + 2 + 4 + 1 and "flip vectors.faiss" in table


# --------------------------------------------------------------------------- the LLM server goes away


@pytest.mark.slow
@pytest.mark.timeout(900)  # two starts of a real llama.cpp server and three answers on 2 cores
def test_llm_server_going_away_mid_answer_and_coming_back(tmp_path):
    """A real llama.cpp server (``python -m llama_cpp.server``, the default GGUF) behind the
    openai backend: killed while it streams an answer, the stream ends with an error event;
    while it is gone asks get 503 + Retry-After; started again, the same Vraagbaak process
    answers without a restart."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] extras are not installed")
    from fastapi.testclient import TestClient

    from rag.llm import load_llm
    from rag.settings import Settings
    from service.app import create_app
    from service.config import ServiceSettings
    from service.testing import build_index, make_pipeline
    from tests.conftest import HashEmbedder
    from tests.llama_server import LlamaServer
    from tests.test_llm import _gguf_path

    server = LlamaServer(_gguf_path(), _free_port(), tmp_path / "llama.log")
    server.start()
    try:
        settings = Settings(
            index_dir=tmp_path / "index",
            models_dir=tmp_path / "models",
            refusal_min_score=0.0,
            llm_backend="openai",
            llm_base_url=server.url,
            llm_timeout=60,
        )
        emb = HashEmbedder()
        build_index(tmp_path / "corpus", settings, emb)
        app = create_app(
            settings,
            make_pipeline(settings, emb, load_llm(settings)),
            service_settings=ServiceSettings(data_dir=tmp_path / "data", rate_limit_per_minute=0),
        )
        key = app.state.vb.keys.add("k", "reader")
        h = {"Authorization": f"Bearer {key}"}
        with TestClient(app) as client:
            ok = client.post("/v1/ask", json={"question": QUESTION}, headers=h)
            assert ok.status_code == 200, ok.text
            # killed mid-answer: the stream ends with an error event, not a hang
            events: list[str] = []
            with client.stream("POST", "/v1/ask/stream", json={"question": QUESTION}, headers=h) as r:
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        events.append(line[6:].strip())
                        if events[-1] == "token" and events.count("token") == 2:
                            server.kill()
            assert events[-1] in ("error", "done"), events[-5:]
            assert "error" in events or events.count("token") > 2
            # gone: 503 with Retry-After, quickly (no waiting for a timeout)
            t0 = time.monotonic()
            down = client.post("/v1/ask", json={"question": QUESTION}, headers=h)
            assert down.status_code == 503 and down.headers.get("retry-after"), down.text
            assert down.json()["error"]["code"] == "llm_unavailable"
            assert time.monotonic() - t0 < 15
            # back: the same service answers again
            server.start()
            back = client.post("/v1/ask", json={"question": QUESTION}, headers=h)
            assert back.status_code == 200 and back.json()["answer"], back.text
    finally:
        server.stop()
