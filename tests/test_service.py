"""The HTTP service with FastAPI's TestClient: auth and roles, ACL leak tests, validation,
rate limit, LLM gate, feedback, audit log, metrics, OpenAI compatibility, documents.

A real rag.pipeline.Pipeline runs over a tiny corpus with HashEmbedder and a fake LLM
(service.testing.FakeLLM), so everything is fast and needs no model."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from rag.index import read_current
from rag.settings import Settings
from service.app import create_app
from service.auth import Caller, KeyStore
from service.config import ServiceSettings
from service.feedback import FeedbackStore
from service.limits import GateFull, LLMGate, RateLimiter
from service.logging import AuditLog
from service.testing import PUBLIC_DOCS, RESTRICTED, FakeLLM, build_index, make_pipeline
from tests.conftest import HashEmbedder

pytestmark = pytest.mark.timeout(120)

FIN_WORD = RESTRICTED["financien"][1]  # "zwavelkoepel"
SOC_WORD = RESTRICTED["sociaal"][1]  # "kwartelhof"
FIN_DOC = "financien/vertrouwelijk-grondexploitatie"
SOC_DOC = "sociaal/vertrouwelijk-casusoverleg"
N_PUBLIC = len(PUBLIC_DOCS)


def _settings(root: Path) -> Settings:
    # HashEmbedder cosines are low: let the pipeline answer instead of refusing
    return Settings(index_dir=root / "index", models_dir=root / "models", refusal_min_score=0.0)


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("svc")
    build_index(root / "corpus", _settings(root), HashEmbedder())
    return root


class Env:
    """An app with keys for: admin, fin (group financien), soc (group sociaal), pub (no groups).

    ``database_url``: the service's state (keys, feedback, audit log, rate limits) in that
    PostgreSQL database (tests/test_pg_state.py; the index stays the embedded one);
    ``add_keys=False``: a second replica on a database that already has the keys."""

    def __init__(
        self,
        root: Path,
        data_dir: Path,
        llm: FakeLLM | None = None,
        database_url: str = "",
        add_keys: bool = True,
        **cfg,
    ) -> None:
        self.settings = _settings(root)
        self.llm = llm or FakeLLM()
        self.pipeline = make_pipeline(self.settings, HashEmbedder(), self.llm)
        cfg.setdefault("rate_limit_per_minute", 0)
        self.cfg = ServiceSettings(data_dir=data_dir, **cfg)
        app_settings = self.settings.model_copy(update={"database_url": SecretStr(database_url)})
        self.app = create_app(app_settings, self.pipeline, service_settings=self.cfg)
        keys = self.app.state.vb.keys
        self.keys: dict[str, str] = {}
        if add_keys:
            self.keys = {
                "admin": keys.add("admin", "admin"),
                "fin": keys.add("fin", "reader", "financien"),
                "soc": keys.add("soc", "reader", "sociaal"),
                "pub": keys.add("pub", "reader"),
            }

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture
def make_env(corpus_root, tmp_path):
    made = []

    def make(**kw) -> Env:
        env = Env(corpus_root, tmp_path / f"data{len(made)}", **kw)
        made.append(env)
        return env

    return make


@pytest.fixture
def env(make_env) -> Env:
    return make_env()


@pytest.fixture
def client(env):
    with TestClient(env.app) as c:
        yield c


def _sse_events(text: str) -> list[tuple[str, dict | str]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            raw = "\n".join(data)
            out.append((event, raw if raw == "[DONE]" else json.loads(raw)))
    return out


# --------------------------------------------------------------------------- health, docs


def test_health_ready_metrics_and_docs(client, env):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and body["index_generation"].startswith("gen-")
    assert body["llm"] == "fake-llm"
    assert "count" not in json.dumps(body)  # no document counts for anonymous callers
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text  # Swagger UI from local files
    js = docs.text.split('src="')[1].split('"')[0]
    assert client.get(js).status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in (
        "/v1/ask",
        "/v1/ask/stream",
        "/v1/chat/completions",
        "/v1/documents",
        "/v1/documents/{doc_id}",
        "/v1/feedback",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert p in paths, p
    m = client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert "vraagbaak_llm_queue_depth" in m.text
    assert r.headers["x-request-id"]


def test_readyz_while_loading(tmp_path, monkeypatch):
    """Without an injected pipeline the models load in the background; until then /readyz
    and the answer endpoints say 503 and /healthz says ok."""
    import service.app as app_mod

    started = threading.Event()
    release = threading.Event()

    class SlowPipeline:
        @classmethod
        def from_settings(cls, settings):
            started.set()
            release.wait(10)
            raise RuntimeError("no models here")

    import rag.pipeline

    monkeypatch.setattr(rag.pipeline, "Pipeline", SlowPipeline)
    cfg = ServiceSettings(data_dir=tmp_path / "data")
    app = app_mod.create_app(Settings(index_dir=tmp_path / "index"), service_settings=cfg)
    key = app.state.vb.keys.add("k", "reader")
    with TestClient(app) as c:
        assert started.wait(5)
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        r = c.post("/v1/ask", json={"question": "Wat is een motie?"}, headers={"X-API-Key": key})
        assert r.status_code == 503 and r.headers["retry-after"]
        release.set()
        for _ in range(100):
            if app.state.vb.load_error:
                break
            time.sleep(0.05)
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "error"
        assert "no models here" not in r.text


def test_service_waits_for_an_index_then_loads(tmp_path, monkeypatch):
    """Started before `vraagbaak ingest`: not ready, then ready once an index appears."""
    import rag.pipeline
    import service.app as app_mod
    from rag.index import IndexNotFoundError
    from rag.retrieve import Retriever

    settings = _settings(tmp_path)
    real = rag.pipeline.Pipeline
    llm = FakeLLM()

    class LazyPipeline:
        @classmethod
        def from_settings(cls, s):
            if read_current(s.index_dir) is None:
                raise IndexNotFoundError("No index")
            return real(s, Retriever(s, HashEmbedder()), llm)

    monkeypatch.setattr(rag.pipeline, "Pipeline", LazyPipeline)
    monkeypatch.setattr(app_mod, "INDEX_POLL_SECONDS", 0.05)
    app = app_mod.create_app(settings, service_settings=ServiceSettings(data_dir=tmp_path / "data"))
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 503
        build_index(tmp_path / "corpus", settings, HashEmbedder())
        for _ in range(200):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        assert c.get("/readyz").json()["status"] == "ready"
        # before it said ready, the fixed prompt parts were evaluated once (llama_cpp, the default)
        assert len(llm.prompts) == 2 and "Zelfstandige vraag:" in llm.prompts[1][-1]["content"]


def test_a_failed_warm_up_does_not_keep_the_service_from_starting(tmp_path, monkeypatch):
    import rag.pipeline
    import service.app as app_mod
    from rag.retrieve import Retriever

    settings = _settings(tmp_path)
    build_index(tmp_path / "corpus", settings, HashEmbedder())
    real = rag.pipeline.Pipeline

    class BrokenLLM(FakeLLM):
        def stream_chat(self, messages, params):
            raise RuntimeError("llama_decode returned -1")

    class ColdPipeline:
        @classmethod
        def from_settings(cls, s):
            return real(s, Retriever(s, HashEmbedder()), BrokenLLM())

    monkeypatch.setattr(rag.pipeline, "Pipeline", ColdPipeline)
    app = app_mod.create_app(settings, service_settings=ServiceSettings(data_dir=tmp_path / "data"))
    with TestClient(app) as c:
        for _ in range(200):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        assert c.get("/readyz").json()["status"] == "ready"


# --------------------------------------------------------------------------- auth


def test_auth_required_and_key_headers(client, env):
    q = {"question": "Wat is een motie?"}
    r = client.post("/v1/ask", json=q)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "unauthorized"
    assert client.post("/v1/ask", json=q, headers={"Authorization": "Bearer vbk_000000000000_nope"}).status_code == 401
    assert client.post("/v1/ask", json=q, headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.post("/v1/ask", json=q, headers={"X-API-Key": "garbage"}).status_code == 401
    assert client.get("/v1/documents", headers={"X-API-Key": env.keys["pub"]}).status_code == 200
    assert client.get("/v1/documents", headers=env.h("pub")).status_code == 200
    # a revoked key stops working at once (the store is read per request)
    KeyStore(env.cfg.keys_db).revoke("pub")
    assert client.get("/v1/documents", headers=env.h("pub")).status_code == 401


def test_roles_reader_cannot_administer(client, env):
    files = {"file": ("nieuw.txt", b"Een nieuw document over de haven.", "text/plain")}
    r = client.post("/v1/documents", files=files, headers=env.h("fin"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.delete(f"/v1/documents/{FIN_DOC}", headers=env.h("fin")).status_code == 403
    assert client.get("/v1/feedback/export", headers=env.h("fin")).status_code == 403
    assert client.get("/v1/feedback/export", headers=env.h("admin")).status_code == 200


def test_dev_mode_anonymous_only_from_loopback(make_env):
    env = make_env(dev_mode=True)
    with TestClient(env.app, client=("127.0.0.1", 5000)) as local:
        r = local.get("/v1/documents")
        assert r.status_code == 200
        assert r.json()["count"] == N_PUBLIC  # anonymous = reader without groups
        assert local.get("/v1/documents", headers={"X-API-Key": "wrong"}).status_code == 401
        assert local.post("/v1/documents", files={"file": ("a.txt", b"tekst", "text/plain")}).status_code == 403
        # a request relayed by a reverse proxy on the same machine is not a local user
        assert local.get("/v1/documents", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401
    with TestClient(env.app, client=("10.1.2.3", 5000)) as remote:
        assert remote.get("/v1/documents").status_code == 401
    off = make_env()
    with TestClient(off.app, client=("127.0.0.1", 5000)) as local:
        assert local.get("/v1/documents").status_code == 401  # dev mode is off by default


def test_keystore_stores_only_hashes(tmp_path):
    check_keystore(KeyStore(tmp_path / "keys.sqlite"), lambda: b"".join(p.read_bytes() for p in tmp_path.iterdir()))


def check_keystore(store, stored_bytes) -> None:
    """The key store's behaviour (also run on PostgreSQL: tests/test_pg_state.py);
    ``stored_bytes()``: everything the store wrote, which must not hold the key."""
    key = store.add("balie", "reader", "b, a")
    assert key.startswith("vbk_")
    raw = stored_bytes()
    assert key.encode() not in raw and key.split("_", 2)[2].encode() not in raw
    assert store.verify(key) == Caller("balie", "reader", ("a", "b"))
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.verify("") is None
    with pytest.raises(ValueError):
        store.add("balie")  # still active
    with pytest.raises(ValueError):
        store.add("x", role="boss")
    with pytest.raises(ValueError):
        store.add("y", groups="ok,not ok")
    store.revoke("balie")
    assert store.verify(key) is None
    assert [k.name for k in store.list(include_revoked=False)] == []


def test_keys_cli(tmp_path):
    import typer
    from typer.testing import CliRunner

    from service.cli import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    d = str(tmp_path / "data")
    args = ["keys", "add", "balie", "--role", "reader", "--groups", "sociaal,financien", "--data-dir", d]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[0]
    assert key.startswith("vbk_")
    r = runner.invoke(app, ["keys", "list", "--json", "--data-dir", d])
    assert r.exit_code == 0 and key not in r.stdout
    rows = json.loads(r.stdout)
    assert rows[0]["name"] == "balie" and rows[0]["groups"] == ["financien", "sociaal"]
    assert runner.invoke(app, ["keys", "revoke", "balie", "--data-dir", d]).exit_code == 0
    assert runner.invoke(app, ["keys", "revoke", "balie", "--data-dir", d]).exit_code == 1
    assert runner.invoke(app, ["keys", "add", "x", "--role", "boss", "--data-dir", d]).exit_code == 1
    assert KeyStore(tmp_path / "data" / "keys.sqlite").verify(key) is None


# --------------------------------------------------------------------------- ACL leak tests

LEAK_CASES = [
    # (caller, restricted word it must never see, restricted doc id)
    ("soc", FIN_WORD, FIN_DOC),
    ("fin", SOC_WORD, SOC_DOC),
    ("pub", FIN_WORD, FIN_DOC),
    ("pub", SOC_WORD, SOC_DOC),
]


def _ask_everywhere(client, headers, question, **extra) -> list[str]:
    """Every way to get an answer; returns the raw response texts."""
    texts = []
    r = client.post("/v1/ask", json={"question": question, **extra}, headers=headers)
    assert r.status_code == 200, r.text
    texts.append(r.text)
    with client.stream("POST", "/v1/ask/stream", json={"question": question, **extra}, headers=headers) as r:
        assert r.status_code == 200
        texts.append(r.read().decode())
    msgs = [{"role": "user", "content": question}]
    r = client.post("/v1/chat/completions", json={"messages": msgs, **extra}, headers=headers)
    assert r.status_code == 200, r.text
    texts.append(r.text)
    with client.stream(
        "POST", "/v1/chat/completions", json={"messages": msgs, "stream": True, **extra}, headers=headers
    ) as r:
        assert r.status_code == 200
        texts.append(r.read().decode())
    return texts


@pytest.mark.parametrize("who,word,doc_id", LEAK_CASES)
def test_restricted_passages_never_leak(client, env, who, word, doc_id):
    h = env.h(who)
    n_prompts = len(env.llm.prompts)
    questions = [
        f"Wat staat er over {word}?",
        f"{word}",
        f"Wat levert de grondexploitatie {word} op en wat bespreekt het casusoverleg {word}?",
    ]
    texts = []
    for q in questions:
        texts += _ask_everywhere(client, h, q)
    # filters can only narrow: asking for the restricted document by id finds nothing
    texts += _ask_everywhere(client, h, f"Wat staat er over {word}?", filters={"doc_ids": [doc_id]})
    texts += _ask_everywhere(client, h, f"Wat staat er over {word}?", filters={"source_prefix": doc_id.split("/")[0]})
    for t in texts:
        assert doc_id not in t
        # Answer.question echoes the caller's own question; the word must appear nowhere else
        assert word not in json.dumps(_strip_questions(t), ensure_ascii=False).lower(), t[:500]
    # the restricted passage never even reached the model
    for prompt in env.llm.prompts[n_prompts:]:
        context = prompt[-1]["content"]
        assert RESTRICTED[doc_id.split("/")[0]][2].split("\n")[4][:40] not in context
        assert word not in context.split("Vraag:")[0].lower()

    # listings, counts and lookups
    listing = client.get("/v1/documents", headers=h).json()
    assert word not in json.dumps(listing).lower() and doc_id not in json.dumps(listing)
    visible = N_PUBLIC + (1 if who in ("fin", "soc") else 0)
    assert listing["count"] == visible == len(listing["documents"])
    missing = client.get("/v1/documents/does/not-exist", headers=h)
    hidden = client.get(f"/v1/documents/{doc_id}", headers=h)
    assert hidden.status_code == missing.status_code == 404
    strip = lambda r: {k: v for k, v in r.json()["error"].items() if k != "request_id"}  # noqa: E731
    assert strip(hidden) == strip(missing)  # indistinguishable from a document that does not exist


def _strip_questions(text: str):
    """Parse the response(s) and drop the fields that echo the caller's own question."""
    objs = []
    if text.lstrip().startswith("{"):
        objs.append(json.loads(text))
    else:
        objs += [d for _e, d in _sse_events(text) if isinstance(d, dict)]

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if k not in ("question", "standalone_question")}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    return [clean(o) for o in objs]


def test_acl_positive_control(client, env):
    """The same questions DO find the restricted passages for a member of the group, so the
    leak test above would catch a leak."""
    for who, word, doc_id in (("fin", FIN_WORD, FIN_DOC), ("soc", SOC_WORD, SOC_DOC)):
        r = client.post("/v1/ask", json={"question": f"Wat staat er over {word}?"}, headers=env.h(who))
        ans = r.json()
        assert any(c["doc_id"] == doc_id for c in ans["citations"]), ans
        assert word in ans["answer"].lower()
        listing = client.get("/v1/documents", headers=env.h(who)).json()
        assert doc_id in [d["doc_id"] for d in listing["documents"]]
        assert listing["documents"][0].get("groups") is None  # groups are shown to admins only
        d = client.get(f"/v1/documents/{doc_id}", headers=env.h(who)).json()
        assert d["doc_id"] == doc_id and word in d["chunks"][0]["text"].lower()
        assert "path" not in d["metadata"]
    admin = client.get("/v1/documents", headers=env.h("admin")).json()
    assert admin["count"] == N_PUBLIC + len(RESTRICTED)
    groups = {d["doc_id"]: d["groups"] for d in admin["documents"]}
    assert groups[FIN_DOC] == ["financien"] and groups[SOC_DOC] == ["sociaal"]


# --------------------------------------------------------------------------- validation


def test_validation_errors_are_422_with_clear_messages(client, env):
    h = env.h("pub")

    def err(payload, path="/v1/ask"):
        r = client.post(path, json=payload, headers=h)
        assert r.status_code == 422, r.text
        e = r.json()["error"]
        assert e["code"] == "validation_error" and e["request_id"]
        return e["message"]

    assert "question" in err({"question": "x" * 2001}) and "2000" in err({"question": "x" * 2001})
    assert "question" in err({"question": "   "})
    assert "question" in err({})
    turns = [{"role": "user", "content": "vraag"}] * (env.cfg.max_history_turns + 1)
    assert "history" in err({"question": "Wat?", "history": turns})
    assert "history" in err({"question": "Wat?", "history": [{"role": "system", "content": "x"}]})
    assert "top_k" in err({"question": "Wat?", "top_k": 999})
    assert "groups" in err({"question": "Wat?", "filters": {"groups": ["financien"]}})  # no self-granted access
    assert "extra" in err({"question": "Wat?", "vraag": "x"}).lower()
    r = client.post("/v1/ask", content=b'{"question": ', headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]["message"]
    # the question is never echoed back in an error
    r = client.post("/v1/ask", json={"question": "geheim " * 400}, headers=h)
    assert r.status_code == 422 and "geheim" not in r.text
    # chat completions: the last message must be the user's question
    assert "user" in err({"messages": [{"role": "assistant", "content": "Hallo"}]}, "/v1/chat/completions")
    assert "2000" in err({"messages": [{"role": "user", "content": "x" * 2001}]}, "/v1/chat/completions")
    assert "rating" in err({"answer_id": "abc", "rating": "meh"}, "/v1/feedback")
    assert "answer_id" in err({"answer_id": "../../etc", "rating": "up"}, "/v1/feedback")


def test_body_size_limit(make_env):
    env = make_env(max_body_bytes=4096)
    with TestClient(env.app) as c:
        r = c.post(
            "/v1/ask",
            content=b'{"question": "' + b"a" * 5000 + b'"}',
            headers={**env.h("pub"), "Content-Type": "application/json"},
        )
        assert r.status_code == 413
        assert "too large" in r.json()["error"]["message"]


def test_request_limits_come_from_the_settings(corpus_root, tmp_path):
    """The request bodies are module-level (service.schemas); the bounds they are validated
    against, and that the OpenAPI document states, are the serving app's settings."""
    import pydantic

    from service.schemas import AskRequest, RequestLimits, request_limits

    settings = Settings(
        index_dir=corpus_root / "index", models_dir=corpus_root / "models", refusal_min_score=0.0, max_question_chars=50
    )
    cfg = ServiceSettings(data_dir=tmp_path / "data", rate_limit_per_minute=0, max_top_k=3, max_history_turns=1)
    app = create_app(settings, make_pipeline(settings, HashEmbedder(), FakeLLM()), service_settings=cfg)
    h = {"X-API-Key": app.state.vb.keys.add("k", "reader")}
    turn = {"role": "user", "content": "vraag"}
    with TestClient(app) as c:
        assert c.post("/v1/ask", json={"question": "x" * 50}, headers=h).status_code == 200
        too_much = (
            {"question": "x" * 51},
            {"question": "Wat?", "top_k": 4},
            {"question": "Wat?", "history": [turn] * 2},
        )
        for body in too_much:
            r = c.post("/v1/ask", json=body, headers=h)
            assert r.status_code == 422, body
        assert "50" in c.post("/v1/ask", json={"question": "x" * 51}, headers=h).json()["error"]["message"]
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 51}]}, headers=h)
        assert r.status_code == 422 and "50" in r.json()["error"]["message"]
        ask = c.get("/openapi.json").json()["components"]["schemas"]["AskRequest"]["properties"]
        assert ask["question"]["maxLength"] == 50 and ask["history"]["maxItems"] == 1
    # outside the service: the settings' defaults, or the limits given
    assert AskRequest(question="x" * 2000).question
    with pytest.raises(pydantic.ValidationError, match="at most 2000 characters"):
        AskRequest(question="x" * 2001)
    with request_limits(RequestLimits(max_question_chars=10)), pytest.raises(pydantic.ValidationError):
        AskRequest(question="x" * 11)


# --------------------------------------------------------------------------- rate limit, gate


def test_rate_limit_per_key_429_with_retry_after(make_env):
    env = make_env(rate_limit_per_minute=6, rate_limit_burst=3)
    with TestClient(env.app) as c:
        codes = [c.get("/v1/documents", headers=env.h("pub")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/v1/documents", headers=env.h("pub"))
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 10
        assert r.json()["error"]["code"] == "rate_limited"
        assert c.get("/v1/documents", headers=env.h("fin")).status_code == 200  # per key
        assert c.get("/healthz").status_code == 200  # health is never limited
        assert "vraagbaak_rate_limited_total 2.0" in c.get("/metrics").text


def test_rate_limiter_refills():
    check_rate_limiter_refills(RateLimiter(per_minute=60, burst=2))
    assert RateLimiter(per_minute=0, burst=1).hit("k") == 0  # disabled


def check_rate_limiter_refills(rl) -> None:
    """A limiter of 60/minute, burst 2 (also run on PostgreSQL: tests/test_pg_state.py)."""
    assert rl.hit("k", now=0.0) == 0 and rl.hit("k", now=0.0) == 0
    assert rl.hit("k", now=0.0) == pytest.approx(1.0)
    assert rl.hit("k", now=1.01) == 0


def _in_thread(fn):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn()), daemon=True)
    t.start()
    return t, out


def _wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_llm_gate_full_is_503_with_retry_after(make_env):
    llm = FakeLLM(delay=0.05, extra_tokens=30)  # ~2 s per answer
    env = make_env(llm=llm, llm_concurrency=1, llm_queue=0)
    with TestClient(env.app) as c:
        q = {"question": "Hoeveel geld gaat naar jeugdhulp?"}
        t, out = _in_thread(lambda: c.post("/v1/ask", json=q, headers=env.h("pub")))
        _wait_for(lambda: llm.active == 1)
        r = c.post("/v1/ask", json=q, headers=env.h("fin"))
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "llm_busy"
        r = c.post("/v1/ask/stream", json=q, headers=env.h("fin"))  # no stream is started
        assert r.status_code == 503 and r.headers["retry-after"]
        t0 = time.perf_counter()
        assert c.get("/healthz").status_code == 200
        assert time.perf_counter() - t0 < 1.0
        t.join(10)
        assert out["r"].status_code == 200
        assert llm.max_active == 1
        assert 'vraagbaak_llm_rejected_total{reason="queue_full"} 2.0' in c.get("/metrics").text
        # the slot is free again
        assert c.post("/v1/ask", json=q, headers=env.h("fin")).status_code == 200


def test_llm_queue_waits_then_times_out(make_env):
    llm = FakeLLM(delay=0.05, extra_tokens=40)
    env = make_env(llm=llm, llm_concurrency=1, llm_queue=1, llm_queue_timeout=0.3)
    with TestClient(env.app) as c:
        q = {"question": "Hoeveel geld gaat naar jeugdhulp?"}
        t, out = _in_thread(lambda: c.post("/v1/ask", json=q, headers=env.h("pub")))
        _wait_for(lambda: llm.active == 1)
        r = c.post("/v1/ask", json=q, headers=env.h("fin"))  # waits 0.3 s in the queue
        assert r.status_code == 503 and r.headers["retry-after"]
        assert "waited" in r.json()["error"]["message"]
        t.join(10)
        assert 'reason="queue_timeout"} 1.0' in c.get("/metrics").text


def test_gate_unit_fifo_and_bounds():
    import asyncio

    asyncio.run(_gate_unit())


async def _gate_unit():
    import asyncio

    gate = LLMGate(capacity=1, max_waiting=1, timeout=5)
    t1 = await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.01)
    assert gate.waiting == 1
    with pytest.raises(GateFull) as exc:
        await gate.acquire()
    assert exc.value.reason == "queue_full" and exc.value.retry_after >= 1
    gate.release(t1)
    t2 = await asyncio.wait_for(waiter, 1)
    assert gate.in_flight == 1 and gate.waiting == 0
    gate.release(t2)
    assert gate.in_flight == 0


def test_llm_unavailable_is_503_or_error_event(make_env):
    env = make_env(llm=FakeLLM(unavailable=True, retry_after=7))
    with TestClient(env.app) as c:
        q = {"question": "Hoeveel geld gaat naar jeugdhulp?"}
        r = c.post("/v1/ask", json=q, headers=env.h("pub"))
        assert r.status_code == 503 and r.headers["retry-after"] == "7"
        assert r.json()["error"]["code"] == "llm_unavailable"
        with c.stream("POST", "/v1/ask/stream", json=q, headers=env.h("pub")) as s:
            events = _sse_events(s.read().decode())
        assert [e for e, _ in events] == ["sources", "error"]
        assert events[-1][1]["code"] == "llm_unavailable" and events[-1][1]["retry_after"] == 7
        msgs = [{"role": "user", "content": "Wat?"}]
        r = c.post("/v1/chat/completions", json={"messages": msgs}, headers=env.h("pub"))
        assert r.status_code == 503
        assert 'reason="llm_unavailable"} 3.0' in c.get("/metrics").text


def test_internal_error_is_500_with_request_id_and_no_details(make_env):
    env = make_env()

    def boom(*a, **k):
        raise RuntimeError("secret internal detail /srv/vraagbaak")
        yield  # pragma: no cover

    env.pipeline.stream = boom
    with TestClient(env.app, raise_server_exceptions=False) as c:
        r = c.post("/v1/ask", json={"question": "Wat?"}, headers=env.h("pub"))
        assert r.status_code == 500
        assert "secret" not in r.text and "/srv" not in r.text
        assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
        with c.stream("POST", "/v1/ask/stream", json={"question": "Wat?"}, headers=env.h("pub")) as s:
            events = _sse_events(s.read().decode())
        assert events[-1][0] == "error" and events[-1][1]["code"] == "internal"
        assert "secret" not in json.dumps(events)


# --------------------------------------------------------------------------- answers


def test_ask_returns_the_answer_schema(client, env):
    r = client.post(
        "/v1/ask", json={"question": "Wat levert de grondexploitatie zwavelkoepel op?"}, headers=env.h("fin")
    )
    assert r.status_code == 200
    a = r.json()
    assert set(a) >= {"answer", "refused", "citations", "timings", "model", "id"}
    assert a["citations"][0]["marker"] == 1 and "[1]" in a["answer"]
    assert a["model"] == {"llm": "fake-llm", "embedder": "test-hash-embedder"}


def test_sse_stream_event_order(client, env):
    with client.stream(
        "POST", "/v1/ask/stream", json={"question": "Wat bespreekt het casusoverleg kwartelhof?"}, headers=env.h("soc")
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(r.read().decode())
    kinds = [e for e, _ in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and set(kinds[1:-1]) == {"token"}
    tokens = "".join(d["text"] for e, d in events if e == "token")
    done = events[-1][1]["answer"]
    assert tokens.replace(" [1]", "").strip(". ") in done["answer"]
    assert done["citations"][0]["doc_id"] == SOC_DOC


def test_chat_completions_shape(client, env):
    msgs = [
        {"role": "system", "content": "Je bent een piraat."},  # ignored
        {"role": "user", "content": "Wat is het casusoverleg?"},
        {"role": "assistant", "content": "Een overleg."},
        {"role": "user", "content": [{"type": "text", "text": "Wat bespreekt kwartelhof?"}]},
    ]
    n = len(env.llm.prompts)
    r = client.post(
        "/v1/chat/completions", json={"model": "gpt-4o", "messages": msgs, "temperature": 0.3}, headers=env.h("soc")
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "fake-llm"
    msg = body["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["content"] == body["vraagbaak"]["answer"]
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["vraagbaak"]["citations"] and body["usage"]["completion_tokens"] > 0
    usage = body["usage"]
    assert usage["prompt_tokens"] > 100 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # the earlier turns became history: the pipeline condensed the follow-up
    prompts = env.llm.prompts[n:]
    assert any("Zelfstandige vraag:" in p[-1]["content"] for p in prompts)
    assert not any("piraat" in m["content"] for p in prompts for m in p)

    with client.stream(
        "POST", "/v1/chat/completions", json={"messages": msgs[-1:], "stream": True}, headers=env.h("soc")
    ) as s:
        events = _sse_events(s.read().decode())
    assert events[-1][1] == "[DONE]"
    chunks = [d for _e, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0]["vraagbaak"]["sources"][0]["doc_id"] == SOC_DOC
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["vraagbaak"]["answer"]["citations"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "kwartelhof" in text.lower()

    models = client.get("/v1/models", headers=env.h("pub")).json()
    assert models["object"] == "list" and models["data"][0]["id"] == "fake-llm"


def test_openai_client_library_can_connect(client, env):
    """The official openai package talks to the endpoint (non-streaming and streaming)."""
    openai = pytest.importorskip("openai")
    oc = openai.OpenAI(base_url="http://testserver/v1", api_key=env.keys["soc"], http_client=client)
    msgs = [{"role": "user", "content": "Wat bespreekt kwartelhof?"}]
    res = oc.chat.completions.create(model="vraagbaak", messages=msgs)
    assert "kwartelhof" in res.choices[0].message.content.lower()
    assert res.model_extra["vraagbaak"]["citations"]
    stream = oc.chat.completions.create(
        model="vraagbaak", messages=[{"role": "user", "content": "Wat bespreekt kwartelhof?"}], stream=True
    )
    text = "".join((ch.choices[0].delta.content or "") for ch in stream if ch.choices)
    assert "kwartelhof" in text.lower()


# --------------------------------------------------------------------------- feedback, audit, logs


def test_feedback_stored_and_exported(client, env):
    a = client.post("/v1/ask", json={"question": "Wat bespreekt kwartelhof?"}, headers=env.h("soc")).json()
    r = client.post(
        "/v1/feedback", json={"answer_id": a["id"], "rating": "down", "comment": "Te kort."}, headers=env.h("soc")
    )
    assert r.status_code == 201 and r.json()["status"] == "stored"
    client.post("/v1/feedback", json={"answer_id": a["id"], "rating": "up"}, headers=env.h("pub"))
    lines = client.get("/v1/feedback/export", headers=env.h("admin")).text.strip().splitlines()
    rows = [json.loads(x) for x in lines]
    got = [(x["rating"], x["comment"], x["caller"]) for x in rows]
    assert got == [("down", "Te kort.", "soc"), ("up", None, "pub")]
    assert rows[0]["answer_id"] == a["id"] and rows[0]["question"] is None  # audit log is off
    assert FeedbackStore(env.cfg.feedback_db).count() == 2


def test_feedback_is_one_verdict_per_caller_and_answer(tmp_path):
    """The widget sends the thumb, then the comment; a user may flip the thumb. One row each."""
    check_feedback_store(FeedbackStore(tmp_path / "fb.sqlite"))


def check_feedback_store(store) -> None:
    """The feedback store's behaviour (also run on PostgreSQL: tests/test_pg_state.py)."""
    first = store.add("a1", "up", None, "soc")
    assert store.add("a1", "down", None, "soc") == first  # thumb changed
    assert store.add("a1", "down", "Bedrag klopt niet.", "soc") == first  # comment after the thumb
    assert store.add("a1", "up", None, "soc") == first  # comment survives a later thumb
    other = store.add("a1", "down", None, "pub")  # another caller: own row
    anon = store.add("a2", "up", None, None)
    assert store.add("a2", "down", None, None) == anon  # no caller name: still one row
    rows = [(r["id"], r["answer_id"], r["rating"], r["comment"], r["caller"]) for r in store.rows()]
    assert rows == [
        (first, "a1", "up", "Bedrag klopt niet.", "soc"),
        (other, "a1", "down", None, "pub"),
        (anon, "a2", "down", None, None),
    ]
    with pytest.raises(ValueError):
        store.add("a1", "meh", None, "soc")
    assert store.count() == 3
    store.close()


def test_logs_are_json_without_question_text(make_env, caplog):
    import io

    from service.logging import configure_logging

    env = make_env()
    stream = io.StringIO()
    configure_logging("INFO", True, stream=stream)
    try:
        with TestClient(env.app) as c:
            secret_q = "Wat weet u over mevrouw Jansen aan de Dorpsstraat 12?"
            a = c.post("/v1/ask", json={"question": secret_q}, headers=env.h("pub")).json()
            c.post(
                "/v1/feedback",
                json={"answer_id": a["id"], "rating": "down", "comment": "privé opmerking"},
                headers=env.h("pub"),
            )
    finally:
        for name in ("vraagbaak", "uvicorn", "rag"):
            lg = logging.getLogger(name)
            lg.handlers = [h for h in lg.handlers if not getattr(h, "_vraagbaak", False)]
            lg.propagate = True
        logging.getLogger("uvicorn.access").disabled = False
    lines = [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]
    reqs = [x for x in lines if x["msg"] == "request"]
    assert any(x["endpoint"] == "/v1/ask" and x["status"] == 200 and x["caller"] == "pub" for x in reqs)
    text = stream.getvalue()
    assert "Jansen" not in text and "Dorpsstraat" not in text and "privé" not in text
    assert a["answer"][:30] not in text
    assert env.keys["pub"] not in text


def test_audit_log_opt_in_with_retention(make_env):
    env = make_env(audit_log=True, audit_retention_days=7)
    check_audit_log(env, lambda: AuditLog(env.cfg.audit_db, 7))
    # off by default: no audit database at all
    assert not make_env().cfg.audit_db.exists()


def check_audit_log(env, open_audit) -> None:
    """An app with the audit log on (7 days): feedback export joined with it, retention
    (also run on PostgreSQL: tests/test_pg_state.py)."""
    with TestClient(env.app) as c:
        a = c.post("/v1/ask", json={"question": "Wat bespreekt kwartelhof?"}, headers=env.h("soc")).json()
        c.post("/v1/feedback", json={"answer_id": a["id"], "rating": "up"}, headers=env.h("soc"))
        row = json.loads(c.get("/v1/feedback/export", headers=env.h("admin")).text.splitlines()[0])
    assert row["question"] == "Wat bespreekt kwartelhof?" and row["answer"] == a["answer"]
    assert row["citations"][0]["doc_id"] == SOC_DOC
    audit = open_audit()
    assert [r["caller"] for r in audit.rows()] == ["soc"]
    assert audit.purge(now=time.time() + 6 * 86400) == 0
    assert audit.purge(now=time.time() + 8 * 86400) == 1
    assert list(audit.rows()) == []


def test_metrics_after_traffic(client, env):
    client.post("/v1/ask", json={"question": "Wat bespreekt kwartelhof?"}, headers=env.h("soc"))
    client.post("/v1/ask", json={"question": "x" * 3000}, headers=env.h("soc"))
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'vraagbaak_http_requests_total{endpoint="/v1/ask",method="POST",status="200"} 1.0' in text
    assert 'vraagbaak_http_requests_total{endpoint="/v1/ask",method="POST",status="422"} 1.0' in text
    assert 'endpoint="unmatched"' in text and "/no/such/path" not in text  # bounded label values
    assert "vraagbaak_http_request_duration_seconds_bucket" in text
    assert "vraagbaak_llm_time_to_first_token_seconds_count 1.0" in text
    assert "vraagbaak_llm_tokens_per_second_count 1.0" in text
    assert 'vraagbaak_answers_total{endpoint="ask",refused="false"} 1.0' in text
    assert "vraagbaak_llm_in_flight 0.0" in text


def test_refusals_are_counted(make_env):
    env = make_env()
    env.pipeline.settings = env.pipeline.settings.model_copy(update={"refusal_min_score": 0.99})
    with TestClient(env.app) as c:
        a = c.post("/v1/ask", json={"question": "Wat bespreekt kwartelhof?"}, headers=env.h("soc")).json()
        assert a["refused"] is True
        assert 'vraagbaak_answers_refused_total{reason="no_relevant_passages"} 1.0' in c.get("/metrics").text


# --------------------------------------------------------------------------- CORS


def test_cors_allow_list(make_env):
    env = make_env(cors_origins="https://www.gemeente.nl, https://widget.gemeente.nl")
    with TestClient(env.app) as c:
        pre = {
            "Origin": "https://www.gemeente.nl",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        r = c.options("/v1/ask", headers=pre)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://www.gemeente.nl"
        assert "access-control-allow-credentials" not in r.headers
        r = c.options("/v1/ask", headers={**pre, "Origin": "https://evil.example"})
        assert r.headers.get("access-control-allow-origin") is None
        r = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        # errors carry the CORS headers too, so the widget can read them
        r = c.post("/v1/ask", json={"question": "Wat?"}, headers={"Origin": "https://widget.gemeente.nl"})
        assert r.status_code == 401
        assert r.headers["access-control-allow-origin"] == "https://widget.gemeente.nl"
        assert "retry-after" in r.headers.get("access-control-expose-headers", "").lower()


def test_cors_wildcard_with_credentials_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot be combined"):
        ServiceSettings(data_dir=tmp_path, cors_origins=["*"], cors_allow_credentials=True)
    with pytest.raises(ValueError, match="http"):
        ServiceSettings(data_dir=tmp_path, cors_origins="www.gemeente.nl")


def test_service_settings_from_env_and_toml(tmp_path, monkeypatch):
    toml = tmp_path / "vraagbaak.toml"
    toml.write_text('llm_queue = 9\ncors_origins = ["https://a.nl"]\nindex_dir = "x"\n')
    monkeypatch.setenv("VRAAGBAAK_CONFIG", str(toml))
    monkeypatch.setenv("VRAAGBAAK_PORT", "9123")
    monkeypatch.setenv("VRAAGBAAK_DEV_MODE", "true")
    s = ServiceSettings()
    assert (s.port, s.dev_mode, s.llm_queue, s.cors_origins) == (9123, True, 9, ["https://a.nl"])
    monkeypatch.setenv("VRAAGBAAK_CORS_ORIGINS", "https://b.nl,https://c.nl")
    assert ServiceSettings().cors_origins == ["https://b.nl", "https://c.nl"]


# --------------------------------------------------------------------------- documents


@pytest.fixture
def doc_env(tmp_path):
    """An env with its own index (these tests change it)."""
    root = tmp_path / "own"
    build_index(root / "corpus", _settings(root), HashEmbedder())
    env = Env(root, tmp_path / "data")
    with TestClient(env.app) as c:
        yield env, c


def test_upload_with_groups_then_delete(doc_env):
    env, c = doc_env
    text = "Havenplan Oosterkade\n\nHet havenplan oosterkade kost 12 miljoen euro en loopt tot 2030.\n"
    r = c.post(
        "/v1/documents",
        files={"file": ("havenplan oosterkade.txt", text.encode(), "text/plain")},
        data={"groups": "financien"},
        headers=env.h("admin"),
    )
    assert r.status_code == 201, r.text
    res = r.json()
    doc_id = res["doc_ids"][0]
    assert doc_id == "uploads/havenplan-oosterkade" and res["added"] == [doc_id] and res["chunks_embedded"] >= 1
    assert (env.cfg.uploads_dir / "havenplan oosterkade.txt").is_file()
    # visible and answerable for the group, invisible for others
    assert c.get(f"/v1/documents/{doc_id}", headers=env.h("fin")).status_code == 200
    assert c.get(f"/v1/documents/{doc_id}", headers=env.h("soc")).status_code == 404
    a = c.post("/v1/ask", json={"question": "Wat kost het havenplan oosterkade?"}, headers=env.h("fin")).json()
    assert any(x["doc_id"] == doc_id for x in a["citations"])
    a = c.post("/v1/ask", json={"question": "Wat kost het havenplan oosterkade?"}, headers=env.h("soc")).json()
    assert "12 miljoen" not in json.dumps(a)
    # delete
    r = c.delete(f"/v1/documents/{doc_id}", headers=env.h("admin"))
    assert r.status_code == 200 and r.json() == {"removed": doc_id}
    assert c.get(f"/v1/documents/{doc_id}", headers=env.h("admin")).status_code == 404
    assert not (env.cfg.uploads_dir / "havenplan oosterkade.txt").exists()
    assert c.delete(f"/v1/documents/{doc_id}", headers=env.h("admin")).status_code == 404


def test_bad_upload_is_422_and_changes_nothing(doc_env):
    env, c = doc_env
    before = read_current(env.settings.index_dir)
    count = c.get("/v1/documents", headers=env.h("admin")).json()["count"]
    cases = [
        ("leeg.txt", b"   \n", "empty"),
        ("kapot.pdf", b"%PDF-1.4 this is not a pdf", "pdf"),
        ("programma.exe", b"MZ\x90\x00", "unsupported file type"),
        ("../../etc/passwd", b"root:x:0:0", "unsupported file type"),
    ]
    for name, data, reason in cases:
        r = c.post("/v1/documents", files={"file": (name, data, "application/octet-stream")}, headers=env.h("admin"))
        assert r.status_code == 422, (name, r.text)
        assert reason in r.json()["error"]["message"].lower(), r.text
    assert read_current(env.settings.index_dir) == before  # no new index generation
    assert c.get("/v1/documents", headers=env.h("admin")).json()["count"] == count
    assert not any(env.cfg.uploads_dir.glob("*")) if env.cfg.uploads_dir.exists() else True
    r = c.post(
        "/v1/documents",
        files={"file": ("a.txt", b"tekst", "text/plain")},
        data={"groups": "a b"},
        headers=env.h("admin"),
    )
    assert r.status_code == 422 and "group" in r.json()["error"]["message"]


def test_upload_size_limit(tmp_path):
    root = tmp_path / "own"
    build_index(root / "corpus", _settings(root), HashEmbedder())
    env = Env(root, tmp_path / "data", max_upload_bytes=2048)
    with TestClient(env.app) as c:
        r = c.post(
            "/v1/documents", files={"file": ("groot.txt", b"woord " * 2000, "text/plain")}, headers=env.h("admin")
        )
        assert r.status_code == 413


def test_document_listing_pagination(client, env):
    full = client.get("/v1/documents", headers=env.h("admin")).json()
    page = client.get("/v1/documents?offset=1&limit=2", headers=env.h("admin")).json()
    assert page["count"] == full["count"] and page["documents"] == full["documents"][1:3]
    assert client.get("/v1/documents?limit=0", headers=env.h("admin")).status_code == 422


def test_sqlite_files_hold_no_plain_keys(env):
    db = sqlite3.connect(env.cfg.keys_db)
    cols = [r[1] for r in db.execute("PRAGMA table_info(api_keys)")]
    assert "key_hash" in cols and "key" not in cols
    for key in env.keys.values():
        assert db.execute("SELECT COUNT(*) FROM api_keys WHERE key_hash = ?", (key,)).fetchone()[0] == 0


def test_worker_threads_run_at_lower_cpu_priority(env):
    """Answers, model loading and ingest run in threads with a higher nice value, so the
    event loop (health checks, refusals) always gets the CPU first."""
    import os
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread priorities are Linux-only")
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker = (
        env.app.state.vb.get_executor()
        .submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        .result()
    )
    assert worker == max(mine, env.cfg.worker_nice) and worker > mine
