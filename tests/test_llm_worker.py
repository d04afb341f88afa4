"""The LLM in a worker process (rag/llm/worker.py): answers stream through it, an early close
stops it, and a crash of the worker (a real SIGSEGV of a real child process) becomes
LLMUnavailableError — 503 with Retry-After from a real uvicorn — while the API lives on and
the next question is answered by a new worker."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from rag.llm import GenerationParams, LLMError, LLMUnavailableError, load_llm
from rag.llm.base import backend_target, register_backend, unregister_backend
from rag.llm.worker import ProcessLLM, describe_exit
from rag.settings import Settings

pytestmark = pytest.mark.timeout(120)

TARGET = "tests.llm_doubles:WordsLLM"


def _msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "x"}, {"role": "user", "content": text}]


@pytest.fixture
def worker(tmp_path):
    llm = ProcessLLM(TARGET, Settings(index_dir=tmp_path / "index"), restart_backoff=0.5)
    yield llm
    llm.close()


def test_answers_stream_through_the_worker(worker):
    assert worker.model_id == "words-llm" and worker.context_window == 2048
    assert worker.keeps_prefix is False  # WordsLLM does not say it keeps one
    assert worker.pid is not None and worker.pid != os.getpid()
    assert list(worker.stream_chat(_msgs("de raad besluit"), GenerationParams())) == ["de", " raad", " besluit"]
    assert worker.chat(_msgs("een twee drie vier"), GenerationParams(max_tokens=2)) == "een twee"
    assert worker.count_tokens("een twee drie") == 3 and worker.count_tokens("") == 0
    # the backend really runs in the child
    assert worker.chat(_msgs("PID"), GenerationParams()) == str(worker.pid)


def test_the_worker_passes_on_whether_the_backend_keeps_its_prefix(tmp_path):
    llm = ProcessLLM("tests.llm_doubles:PrefixWordsLLM", Settings(index_dir=tmp_path / "index"))
    try:
        assert llm.keeps_prefix is True  # so the service warms it up (Pipeline.warm_up)
    finally:
        llm.close()


def test_a_scripted_error_keeps_its_type_and_the_worker(worker):
    pid = worker.pid
    with pytest.raises(LLMError, match="scripted failure"):
        worker.chat(_msgs("een FAIL"), GenerationParams())
    with pytest.raises(LLMUnavailableError, match="scripted timeout") as err:
        worker.chat(_msgs("BUSY"), GenerationParams())
    assert err.value.retry_after == 9.0  # a subclass of "unavailable" stays a 503 with its Retry-After
    assert worker.pid == pid and worker.chat(_msgs("nog"), GenerationParams()) == "nog"


def test_crash_becomes_unavailable_and_the_next_call_restarts(worker):
    first = worker.pid
    got: list[str] = []
    with pytest.raises(LLMUnavailableError) as err:
        for delta in worker.stream_chat(_msgs("een twee CRASH drie"), GenerationParams()):
            got.append(delta)
    assert got == ["een", " twee"]  # what came before the crash was delivered
    assert "SIGSEGV" in str(err.value) and err.value.retry_after and err.value.retry_after > 0
    assert worker.deaths == ["signal SIGSEGV"]
    assert worker.chat(_msgs("weer goed"), GenerationParams()) == "weer goed"
    assert worker.pid not in (None, first) and worker.restarts == 1
    # count_tokens after an abort also restarts, after the pause for a second quick death
    with pytest.raises(LLMUnavailableError, match="SIGABRT"):
        worker.chat(_msgs("ABORT"), GenerationParams())
    with pytest.raises(LLMUnavailableError, match="restarting in"):
        worker.count_tokens("een twee")
    time.sleep(2 * worker.restart_backoff + 0.1)
    assert worker.count_tokens("een twee") == 2 and worker.deaths == ["signal SIGSEGV", "signal SIGABRT"]


def test_a_worker_that_keeps_dying_is_restarted_after_a_pause(tmp_path):
    llm = ProcessLLM(TARGET, Settings(index_dir=tmp_path / "i"), restart_backoff=3.0)
    try:
        for _ in range(2):
            with pytest.raises(LLMUnavailableError):
                llm.chat(_msgs("CRASH"), GenerationParams())
        # two deaths soon after start: no restart for a while, Retry-After says how long
        t0 = time.monotonic()
        with pytest.raises(LLMUnavailableError, match="restarting in") as err:
            llm.chat(_msgs("een"), GenerationParams())
        assert time.monotonic() - t0 < 1.0 and 0 < err.value.retry_after <= 6.0
        time.sleep(err.value.retry_after + 0.1)
        assert llm.chat(_msgs("een"), GenerationParams()) == "een"
    finally:
        llm.close()


def test_early_close_stops_the_worker_before_the_next_caller(tmp_path, monkeypatch):
    monkeypatch.setenv("WORDS_LLM_DELAY", "0.05")
    llm = ProcessLLM(TARGET, Settings(index_dir=tmp_path / "i"))
    try:
        gen = llm.stream_chat(_msgs(" ".join(["woord"] * 400)), GenerationParams(max_tokens=400))
        assert [next(gen) for _ in range(3)] == ["woord", " woord", " woord"]
        t0 = time.monotonic()
        gen.close()  # 400 words would take 20 s
        assert time.monotonic() - t0 < 2.0
        # the next caller gets the model at once, and a count runs beside a generation
        gen2 = llm.stream_chat(_msgs("a b c d e f g h"), GenerationParams())
        assert next(gen2) == "a"
        assert llm.count_tokens("x y") == 2
        assert "".join(gen2) == " b c d e f g h"
    finally:
        llm.close()


def test_one_generation_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setenv("WORDS_LLM_DELAY", "0.02")
    llm = ProcessLLM(TARGET, Settings(index_dir=tmp_path / "i"), lock_timeout=0.2)
    try:
        gen = llm.stream_chat(_msgs("a b c d e f g h i j"), GenerationParams())
        next(gen)
        with pytest.raises(LLMUnavailableError, match="busy"):
            llm.stream_chat(_msgs("x"), GenerationParams())
        gen.close()
        assert llm.chat(_msgs("x"), GenerationParams()) == "x"
    finally:
        llm.close()


def test_load_errors_surface_at_start(tmp_path):
    with pytest.raises(LLMError, match="cannot load BROKEN"):
        ProcessLLM(TARGET, Settings(index_dir=tmp_path / "i", llm="BROKEN"))
    with pytest.raises(LLMError, match="No module named"):
        ProcessLLM("tests.no_such_module:X", Settings(index_dir=tmp_path / "i"))


def test_describe_exit():
    assert describe_exit(-signal.SIGSEGV) == "signal SIGSEGV"
    assert describe_exit(1) == "exit status 1" and describe_exit(None) == "still running"


def test_load_llm_chooses_where_the_backend_runs(tmp_path):
    register_backend("words", TARGET)
    register_backend("words-object", lambda s: object())
    try:
        s = Settings(index_dir=tmp_path / "i", llm_backend="words", llm_worker="process")
        llm = load_llm(s)
        try:
            assert isinstance(llm, ProcessLLM) and llm.chat(_msgs("ja"), GenerationParams()) == "ja"
        finally:
            llm.close()
        # auto: only the native built-ins (llama_cpp) go to a worker
        assert not isinstance(load_llm(Settings(llm_backend="words", llm_worker="auto")), ProcessLLM)
        assert not isinstance(load_llm(Settings(llm_backend="words", llm_worker="inline")), ProcessLLM)
        with pytest.raises(LLMError, match="registered as an object"):
            load_llm(Settings(llm_backend="words-object", llm_worker="process"))
        assert backend_target("llama_cpp") == "rag.llm.llama_cpp:LlamaCppBackend"
    finally:
        unregister_backend("words")
        unregister_backend("words-object")


def test_llm_worker_setting_is_checked():
    with pytest.raises(ValueError):
        Settings(llm_worker="thread")


# --------------------------------------------------------------------------- through the API


@pytest.fixture
def live_crashing(tmp_path):
    """A real uvicorn whose pipeline's LLM is a WordsLLM in a worker process; the fixed
    answer below is what the pipeline's prompt makes it echo (the last user message)."""
    from service.app import create_app
    from service.config import ServiceSettings
    from service.testing import LiveServer, build_index, make_pipeline
    from tests.conftest import HashEmbedder

    settings = Settings(index_dir=tmp_path / "index", models_dir=tmp_path / "models", refusal_min_score=0.0)
    emb = HashEmbedder()
    build_index(tmp_path / "corpus", settings, emb)
    llm = ProcessLLM(TARGET, settings, restart_backoff=0.5)
    app = create_app(
        settings,
        make_pipeline(settings, emb, llm),
        service_settings=ServiceSettings(data_dir=tmp_path / "data", rate_limit_per_minute=0),
    )
    admin = app.state.vb.keys.add("admin", "admin")
    try:
        with LiveServer(app) as url:
            yield {"url": url, "h": {"Authorization": f"Bearer {admin}"}, "llm": llm}
    finally:
        llm.close()


def test_api_answers_503_on_a_worker_crash_and_lives_on(live_crashing):
    try:
        import httpx2 as httpx
    except ImportError:  # pragma: no cover
        import httpx

    url, h, llm = live_crashing["url"], live_crashing["h"], live_crashing["llm"]

    # the prompt's last message holds the question: a question with CRASH kills the worker
    r = httpx.post(url + "/v1/ask", json={"question": "Wat besluit de raad CRASH?"}, headers=h, timeout=60)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "llm_unavailable" and float(r.headers["Retry-After"]) > 0
    assert llm.deaths == ["signal SIGSEGV"]
    assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    # a stream that meets a crash ends with an error event, not a dropped connection
    with httpx.stream(
        "POST", url + "/v1/ask/stream", json={"question": "Wat besluit de raad CRASH?"}, headers=h, timeout=60
    ) as resp:
        assert resp.status_code == 200
        events = [json.loads(line[5:]) for line in resp.iter_lines() if line.startswith("data:")]
    assert events[-1]["type"] == "error" and events[-1]["code"] == "llm_unavailable"
    # and the next question is answered by a new worker
    time.sleep(1.1)  # two quick deaths: the restart pause
    r = httpx.post(url + "/v1/ask", json={"question": "Wat besluit de raad?"}, headers=h, timeout=60)
    assert r.status_code == 200, r.text
    assert llm.restarts >= 1
