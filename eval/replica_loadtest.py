"""Multi-replica load test: N ``vraagbaak serve`` processes over ONE index folder, one
OpenAI-compatible LLM server, an ingest in the middle of the run. Loopback only, bounded.

What it starts (all on 127.0.0.1, all its own child processes, all stopped at the end):

* an index built from ``--corpus`` (``vraagbaak ingest``) in a temporary folder;
* one LLM server: ``python -m llama_cpp.server`` with the default GGUF (``--llm-threads``
  threads, ``--interrupt_requests false``), or with ``--fake-llm`` a scripted
  OpenAI-compatible server in this process (no model: it answers with the first sentence of
  passage [1]);
* ``--replicas`` ``vraagbaak serve --dev`` processes with ``VRAAGBAAK_LLM_BACKEND=openai``
  pointing at that server and the same ``--index-dir``.

What it does:

1. ``--clients`` clients ask questions round-robin over the replicas (``/v1/ask/stream`` and
   ``/v1/ask`` alternately): questions about the corpus and about two NEW documents that are
   not in the index yet. A 503 is retried after its ``Retry-After`` (the documented
   contract); anything else that is not a 200 is an error.
2. After ``--before`` answers, an ingest (``vraagbaak ingest NEW --json``) adds the two new
   documents. While it holds the writer lock it is paused (SIGSTOP) and two more ingests are
   started: one without ``--wait`` must fail with "Another ingest is running", one with
   ``--wait`` must block on the lock (seen in /proc/locks) and finish after the first one.
   Then the first ingest goes on and publishes the new generation.
3. The load goes on until ``--after`` answers were started after the switch, then every
   replica is asked each new-document question (those it has not yet answered on the new
   generation).

Every answer records: replica, endpoint, index generation (``Answer.index_generation``),
refused, cited doc ids, the doc ids of the passages (streamed answers), HTTP status, retries.
Checks (``check_records``): no errors; every answer names its generation; an answer on an
old generation never cites or retrieves a new document; a new-document question on the new
generation retrieves it; no answer started after the switch (+ the readers' 1 s check
interval + margin) used an old generation; afterwards each new document is answered (not
refused, cited) on EVERY replica; both generations were seen; the writer lock checks above.

    python -m eval.replica_loadtest                        # 3 replicas, real LLM (long: see deploy/README.md)
    python -m eval.replica_loadtest --fake-llm --replicas 2 --report /tmp/r.json   # no LLM
    bash scripts/replicas.sh [ARGS]                        # the same, at a lower CPU priority

Exit status 0 = every check passed, 1 = a check failed, 2 = it could not run.
Report: ``--report`` (default eval/reports/replicas-loadtest.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPORT = REPO / "eval" / "reports" / "replicas-loadtest.json"
LLM_ALIAS = "qwen2.5-coder-1.5b-instruct-q4_k_m"
READER_CHECK_INTERVAL = 1.0  # rag.index.IndexReader default
LOCK_MESSAGE = "Another ingest is running"

# questions about data/voorbeeld (eval/gold/demo.jsonl q010, q044, q063)
BASE_QUESTIONS = [
    ("q010", "Waar staat GON voor?"),
    ("q044", "Waar is de permanente winteropvang voor daklozen gekomen?"),
    ("q063", "Hoeveel maatregelen bevat het alcoholconvenant met de studenten?"),
]


@dataclass(frozen=True)
class NewDoc:
    qid: str
    filename: str
    question: str
    key_fact: str
    text: str

    @property
    def stem(self) -> str:
        return self.filename.rsplit(".", 1)[0]


NEW_DOCS = [
    NewDoc(
        qid="new-zwem",
        filename="raadsbrief-2025-kikkerdril-zwemvierdaagse.md",
        question="Wat kost deelname aan de Kikkerdril-zwemvierdaagse per kind?",
        key_fact="7 euro",
        text=(
            "# Raadsbrief Kikkerdril-zwemvierdaagse 2025\n\n## Aanleiding\n\n"
            "Het college informeert de raad over de nieuwe Kikkerdril-zwemvierdaagse. "
            "De Kikkerdril-zwemvierdaagse vindt van 16 tot en met 19 juni 2025 plaats in zwembad De Otterplas. "
            "Deelname aan de Kikkerdril-zwemvierdaagse kost 7 euro per kind.\n\n## Organisatie\n\n"
            "Sportbedrijf Waterwerk organiseert de Kikkerdril-zwemvierdaagse. "
            "Elke deelnemer zwemt per dag 500 meter.\n"
        ),
    ),
    NewDoc(
        qid="new-bakfiets",
        filename="beleidsnotitie-2025-deelbakfietsen-lindenhof.md",
        question="Hoeveel elektrische deelbakfietsen komen er bij de bibliotheek Lindenhof?",
        key_fact="48",
        text=(
            "# Beleidsnotitie deelbakfietsen Lindenhof 2025\n\n## Besluit\n\n"
            "Vanaf 1 september 2025 staan er 48 elektrische deelbakfietsen bij de bibliotheek Lindenhof. "
            "Inwoners met een Stadspas gebruiken een deelbakfiets het eerste uur gratis.\n\n## Kosten\n\n"
            "De gemeente betaalt 96.000 euro voor de proef met de deelbakfietsen bij de bibliotheek Lindenhof.\n"
        ),
    ),
]


# --------------------------------------------------------------------------- records and checks


@dataclass
class Record:
    """One answer request (after its 503 retries)."""

    seq: int
    client: int
    replica: int
    endpoint: str  # "ask" | "stream"
    qid: str
    kind: str  # "base" | "new"
    phase: str = "load"  # "load" | "final"
    started: float = 0.0  # monotonic, seconds since the run's t0
    finished: float = 0.0
    status: int | None = None
    attempts: int = 0
    retries_503: int = 0
    generation: str | None = None
    refused: bool | None = None
    refusal_reason: str | None = None
    cited: list[str] = field(default_factory=list)
    sources: list[str] | None = None  # streamed answers only
    answer: str = ""
    error: str | None = None


def gen_number(name: str | None) -> int | None:
    """``gen-000007`` -> 7."""
    m = re.fullmatch(r"gen-(\d+)", name or "")
    return int(m.group(1)) if m else None


def _check(name: str, ok: bool, detail: str = "", items: list | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "ok": bool(ok), "detail": detail}
    if items:
        out["examples"] = items[:10]
    return out


def check_records(
    records: Iterable[dict[str, Any]],
    *,
    new_docs: dict[str, str],
    first_new_gen: int | None,
    switch_time: float | None,
    replicas: Iterable[int],
    stale_margin: float = 2.0,
) -> list[dict[str, Any]]:
    """The consistency checks over the answer records (dicts as ``asdict(Record)``).

    ``new_docs``: question id -> doc id of the document it is about (the new documents);
    ``first_new_gen``: the generation the ingest published (generations >= it contain the new
    documents, older ones do not); ``switch_time``: when that ingest had finished (same clock
    as ``Record.started``); ``replicas``: every replica index that must answer at the end.
    """
    records = list(records)
    new_ids = set(new_docs.values())
    checks: list[dict[str, Any]] = []

    errors = [r for r in records if r.get("status") != 200 or r.get("error")]
    checks.append(
        _check(
            "no_errors",
            not errors,
            f"{len(errors)} of {len(records)} requests failed (non-2xx other than retried 503s, transport or stream errors)",
            [
                {"seq": r["seq"], "replica": r["replica"], "status": r.get("status"), "error": r.get("error")}
                for r in errors
            ],
        )
    )
    ok_records = [r for r in records if r.get("status") == 200 and not r.get("error")]

    no_gen = [r for r in ok_records if gen_number(r.get("generation")) is None]
    checks.append(
        _check(
            "generation_reported",
            not no_gen,
            f"{len(no_gen)} answers without a valid index_generation",
            [{"seq": r["seq"], "generation": r.get("generation")} for r in no_gen],
        )
    )
    if first_new_gen is None:
        checks.append(_check("new_generation_published", False, "the ingest published no generation"))
        return checks

    def is_new(r: dict[str, Any]) -> bool:
        n = gen_number(r.get("generation"))
        return n is not None and n >= first_new_gen

    old = [r for r in ok_records if gen_number(r.get("generation")) is not None and not is_new(r)]
    new = [r for r in ok_records if is_new(r)]

    leaks = [r for r in old if new_ids & set(r.get("cited") or []) or new_ids & set(r.get("sources") or [])]
    checks.append(
        _check(
            "old_generation_never_sees_new_docs",
            not leaks,
            f"{len(old)} answers on an older generation, {len(leaks)} cite or retrieve a new document",
            [{"seq": r["seq"], "generation": r["generation"], "cited": r.get("cited")} for r in leaks],
        )
    )

    missed = [
        r
        for r in new
        if r["qid"] in new_docs and r.get("sources") is not None and new_docs[r["qid"]] not in r["sources"]
    ]
    n_new_streamed = sum(1 for r in new if r["qid"] in new_docs and r.get("sources") is not None)
    checks.append(
        _check(
            "new_generation_retrieves_new_doc",
            not missed,
            f"{n_new_streamed} streamed new-document answers on the new generation, {len(missed)} without the document "
            "among their passages",
            [{"seq": r["seq"], "qid": r["qid"], "sources": r.get("sources")} for r in missed],
        )
    )

    if switch_time is not None:
        stale = [
            r for r in ok_records if r["started"] > switch_time + READER_CHECK_INTERVAL + stale_margin and not is_new(r)
        ]
        checks.append(
            _check(
                "no_stale_generation_after_switch",
                not stale,
                f"{len(stale)} answers started more than {READER_CHECK_INTERVAL + stale_margin:.0f} s after the switch "
                "used an older generation",
                [{"seq": r["seq"], "replica": r["replica"], "generation": r.get("generation")} for r in stale],
            )
        )

    new_q_old = [r for r in old if r["qid"] in new_docs]
    new_q_new = [r for r in new if r["qid"] in new_docs]
    checks.append(
        _check(
            "both_generations_seen",
            bool(new_q_old) and bool(new_q_new),
            f"new-document questions answered on the old generation: {len(new_q_old)}, on the new: {len(new_q_new)}",
        )
    )

    missing = []
    for rep in sorted(set(replicas)):
        for qid, doc_id in sorted(new_docs.items()):
            good = [
                r
                for r in new_q_new
                if r["replica"] == rep and r["qid"] == qid and not r.get("refused") and doc_id in (r.get("cited") or [])
            ]
            if not good:
                seen = [r for r in new_q_new if r["replica"] == rep and r["qid"] == qid]
                missing.append(
                    {
                        "replica": rep,
                        "qid": qid,
                        "doc_id": doc_id,
                        "got": [
                            {
                                "seq": r["seq"],
                                "refused": r.get("refused"),
                                "reason": r.get("refusal_reason"),
                                "cited": r.get("cited"),
                            }
                            for r in seen
                        ],
                    }
                )
    n_rep = len(set(replicas))
    checks.append(
        _check(
            "new_docs_answerable_on_every_replica",
            not missing,
            f"{n_rep * len(new_docs) - len(missing)} of {n_rep * len(new_docs)} (replica, new document) pairs answered "
            "citing the document on the new generation",
            missing,
        )
    )
    return checks


# --------------------------------------------------------------------------- /proc/locks


def flock_waiters(text: str | None = None) -> set[int] | None:
    """PIDs blocked waiting for a lock, from /proc/locks (``N: -> FLOCK ADVISORY WRITE PID ...``).
    None where /proc/locks cannot be read."""
    if text is None:
        try:
            text = Path("/proc/locks").read_text()
        except OSError:
            return None
    pids: set[int] = set()
    for line in text.splitlines():
        parts = line.split()
        if "->" in parts:
            i = parts.index("->")
            with contextlib.suppress(IndexError, ValueError):
                pids.add(int(parts[i + 4]))
    return pids


# --------------------------------------------------------------------------- a scripted LLM server


class FakeOpenAIServer:
    """An OpenAI-compatible chat server on loopback without a model, for ``--fake-llm`` and the
    tests. The answer is the first sentence of passage [1] of the prompt plus `` [1]``
    (service.testing.FakeLLM), streamed word by word (``delay`` seconds per word), one answer
    at a time like a single-slot llama.cpp server. Serves ``GET /v1/models``,
    ``POST /v1/chat/completions`` (stream or not) and ``POST /extras/tokenize/count``."""

    def __init__(self, delay: float = 0.0, model: str = "fake-llm", host: str = "127.0.0.1", port: int = 0) -> None:
        from service.testing import FakeLLM

        self.delay = delay
        self.model = model
        self.requests: Counter[str] = Counter()
        self._fake = FakeLLM(model_id=model)
        self._gen_lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _words(self, body: dict[str, Any]) -> list[str]:
        text = self._fake.answer_for(body.get("messages") or [])
        words = text.split(" ")
        limit = body.get("max_tokens") or len(words)
        stop = [s for s in (body.get("stop") or []) if s]
        out = []
        for w in words[: max(1, int(limit))]:
            if any(s in w for s in stop):
                break
            out.append(w)
        return out

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _json(self, code: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                outer.requests[self.path] += 1
                if self.path.rstrip("/") == "/v1/models":
                    self._json(
                        200, {"object": "list", "data": [{"id": outer.model, "object": "model", "owned_by": "test"}]}
                    )
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                outer.requests[self.path] += 1
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except ValueError:
                    self._json(400, {"error": {"message": "bad json"}})
                    return
                if self.path == "/extras/tokenize/count":
                    self._json(200, {"count": max(1, len(str(body.get("input", ""))) // 4)})
                elif self.path == "/v1/chat/completions":
                    self._chat(body)
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def _chat(self, body: dict[str, Any]) -> None:
                created = int(time.time())
                base = {"id": "chatcmpl-fake", "created": created, "model": outer.model}
                with outer._gen_lock:
                    words = outer._words(body)
                    if not body.get("stream"):
                        for _ in words:
                            time.sleep(outer.delay)
                        self._json(
                            200,
                            {
                                **base,
                                "object": "chat.completion",
                                "choices": [
                                    {
                                        "index": 0,
                                        "message": {"role": "assistant", "content": " ".join(words)},
                                        "finish_reason": "stop",
                                    }
                                ],
                                "usage": {
                                    "prompt_tokens": 1,
                                    "completion_tokens": len(words),
                                    "total_tokens": len(words) + 1,
                                },
                            },
                        )
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Cache-Control", "no-cache")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        for i, w in enumerate(words):
                            if outer.delay:
                                time.sleep(outer.delay)
                            chunk = {
                                **base,
                                "object": "chat.completion.chunk",
                                "choices": [
                                    {"index": 0, "delta": {"content": w if i == 0 else " " + w}, "finish_reason": None}
                                ],
                            }
                            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                            self.wfile.flush()
                        last = {
                            **base,
                            "object": "chat.completion.chunk",
                            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                        }
                        self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the client went away: stop generating
                    self.close_connection = True

        return Handler


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vraagbaak_cmd() -> list[str]:
    """The ``vraagbaak`` console script next to this interpreter (its pid is the Python
    process, which the lock checks need), else the module entry point."""
    script = Path(sys.executable).with_name("vraagbaak")
    if script.is_file():
        return [str(script)]
    found = shutil.which("vraagbaak")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from rag.cli import main; sys.argv[0] = 'vraagbaak'; main()"]


class Children:
    """Every process this run starts; ``close()`` ends each of them by its pid."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.paused: set[int] = set()

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.out", "wb") as out, open(self.log_dir / f"{name}.log", "wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=str(cwd))
        self.procs[name] = proc
        return proc

    def stdout(self, name: str) -> str:
        return (self.log_dir / f"{name}.out").read_text(encoding="utf-8", errors="replace")

    def log_tail(self, name: str, n: int = 1500) -> str:
        p = self.log_dir / f"{name}.log"
        return p.read_bytes()[-n:].decode(errors="replace") if p.exists() else ""

    def pause(self, proc: subprocess.Popen) -> None:
        os.kill(proc.pid, signal.SIGSTOP)
        self.paused.add(proc.pid)

    def resume(self, proc: subprocess.Popen) -> None:
        if proc.pid in self.paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            self.paused.discard(proc.pid)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.pid in self.paused:
                self.resume(proc)
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)


def wait_for(
    pred: Callable[[], bool], timeout: float, interval: float = 0.5, alive: subprocess.Popen | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        if alive is not None and alive.poll() is not None:
            return pred()
        time.sleep(interval)
    return pred()


def http_ok(url: str, timeout: float = 5.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------- the load


class Load:
    """Clients asking round-robin over the replicas until ``stop()``."""

    def __init__(
        self,
        urls: list[str],
        questions: list[tuple[str, str, str]],
        clients: int,
        t0: float,
        request_timeout: float,
        max_503_retries: int,
        think: float,
        deadline: float,
    ) -> None:
        self.urls = urls
        self.questions = questions  # (qid, kind, question)
        self.n_clients = clients
        self.t0 = t0
        self.request_timeout = request_timeout
        self.max_503_retries = max_503_retries
        self.think = think
        self.deadline = deadline
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        for c in range(self.n_clients):
            t = threading.Thread(target=self._client, args=(c,), name=f"client-{c}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.request_timeout + 30)

    def finished(self, pred: Callable[[Record], bool] = lambda r: True) -> int:
        with self._lock:
            return sum(1 for r in self.records if r.finished and pred(r))

    def _take(self) -> int:
        with self._lock:
            k = self._next
            self._next += 1
            return k

    def _client(self, c: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(self.request_timeout, connect=10.0)) as http:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                k = self._take()
                n = len(self.urls)
                replica = k % n
                qid, kind, question = self.questions[(k // n) % len(self.questions)]
                endpoint = "stream" if (k // n) % 2 == 0 else "ask"
                rec = Record(seq=k, client=c, replica=replica, endpoint=endpoint, qid=qid, kind=kind)
                with self._lock:
                    self.records.append(rec)
                ask(http, self.urls[replica], question, rec, self.now, self.max_503_retries, self.deadline)
                if self.think:
                    self._stop.wait(self.think)


def ask(
    http, url: str, question: str, rec: Record, now: Callable[[], float], max_503_retries: int, deadline: float
) -> Record:
    """One question to one replica, retrying 503 (and a streamed ``llm_unavailable`` error)
    after Retry-After; fills ``rec``."""
    rec.started = now()
    body = {"question": question}
    while True:
        rec.attempts += 1
        retry_after = None
        try:
            if rec.endpoint == "stream":
                retry_after = _ask_stream(http, url, body, rec)
            else:
                resp = http.post(url + "/v1/ask", json=body)
                rec.status = resp.status_code
                if resp.status_code == 200:
                    _fill(rec, resp.json())
                elif resp.status_code == 503:
                    retry_after = _retry_after(resp.headers.get("retry-after"))
                else:
                    rec.error = f"HTTP {resp.status_code}: {resp.text[:300]}"
        except httpx.HTTPError as exc:
            rec.status = None
            rec.error = f"{type(exc).__name__}: {exc}"
        if retry_after is None:
            break
        if rec.retries_503 >= max_503_retries or time.monotonic() + retry_after > deadline:
            rec.error = f"still 503 after {rec.retries_503} retries"
            break
        rec.retries_503 += 1
        time.sleep(retry_after)
    rec.finished = now()
    return rec


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 1.0), 0.5), 15.0)
    except ValueError:
        return 2.0


def _fill(rec: Record, answer: dict[str, Any]) -> None:
    rec.generation = answer.get("index_generation")
    rec.refused = bool(answer.get("refused"))
    rec.refusal_reason = answer.get("refusal_reason")
    rec.cited = sorted({c["doc_id"] for c in answer.get("citations") or []})
    rec.answer = (answer.get("answer") or "")[:500]
    rec.error = None


def _ask_stream(http, url: str, body: dict[str, Any], rec: Record) -> float | None:
    """POST /v1/ask/stream; returns a retry delay for a 503 / llm_unavailable, else None."""
    with http.stream("POST", url + "/v1/ask/stream", json=body) as resp:
        rec.status = resp.status_code
        if resp.status_code == 503:
            resp.read()
            return _retry_after(resp.headers.get("retry-after"))
        if resp.status_code != 200:
            rec.error = f"HTTP {resp.status_code}: {resp.read()[:300]!r}"
            return None
        event, data = "message", []
        done = False
        for line in resp.iter_lines():
            if line.startswith(":"):
                continue
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line == "":
                if data:
                    payload = json.loads("\n".join(data))
                    if event == "sources":
                        rec.sources = sorted({s["doc_id"] for s in payload.get("sources") or []})
                    elif event == "done":
                        _fill(rec, payload["answer"])
                        done = True
                    elif event == "error":
                        if payload.get("code") == "llm_unavailable":
                            rec.sources = None
                            return _retry_after(str(payload.get("retry_after") or 2))
                        rec.error = f"stream error: {payload.get('code')}: {payload.get('message')}"
                event, data = "message", []
        if not done and rec.error is None:
            rec.error = "the stream ended without a done event"
    return None


# --------------------------------------------------------------------------- the run


def _env(base: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k != "VRAAGBAAK_CONFIG"}
    env.update(extra)
    return env


def _ingest_report(text: str) -> dict[str, Any] | None:
    text = text.strip()
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


def ingest_with_lock_checks(
    children: Children,
    vb: list[str],
    env: dict[str, str],
    work: Path,
    index: Path,
    new_dir: Path,
    hold: float,
    timeout: float,
    t0: float,
    log: Callable[[str], None],
) -> dict:
    """The mid-run ingest (A), and two concurrent ones while A holds the writer lock: B
    without --wait (must fail clearly) and C with --wait (must block, then succeed)."""
    res: dict[str, Any] = {"lock_checks": []}
    args = ["ingest", str(new_dir), "--json", "--index-dir", str(index)]
    res["started_at"] = time.monotonic() - t0
    a = children.start("ingest-a", [*vb, *args], env, work)
    held = wait_for(lambda: any(index.glob(".tmp-*")), timeout, interval=0.01, alive=a)
    b = c = None
    if held and a.poll() is None:
        children.pause(a)
        res["paused_at"] = time.monotonic() - t0
        log("ingest A holds the writer lock; paused it; starting ingest B (no --wait) and C (--wait)")
        b = children.start("ingest-b", [*vb, *args], env, work)
        c = children.start("ingest-c", [*vb, *args, "--wait"], env, work)
        try:
            b.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        b_err = children.log_tail("ingest-b", 4000)
        b_ok = b.returncode not in (None, 0) and LOCK_MESSAGE in b_err
        res["lock_checks"].append(
            {
                "name": "second_ingest_fails_clearly",
                "ok": b_ok,
                "detail": f"ingest without --wait exited {b.returncode}: "
                + (b_err.strip().splitlines()[-1][:300] if b_err.strip() else "(no message)"),
            }
        )
        waiters = flock_waiters()
        if waiters is None:
            time.sleep(30)
            c_blocked = c.poll() is None
            how = "/proc/locks unreadable: still running after 30 s"
        else:
            c_blocked = wait_for(lambda: c.pid in (flock_waiters() or set()), timeout, interval=0.2, alive=c)
            how = "seen waiting for the flock in /proc/locks" if c_blocked else "never seen waiting in /proc/locks"
        res["c_blocked_at"] = time.monotonic() - t0
        if hold > 0:
            time.sleep(hold)  # the replicas keep answering on the old generation meanwhile
        children.resume(a)
        res["resumed_at"] = time.monotonic() - t0
        log(f"ingest C {how}; resumed ingest A")
        res["_c_blocked"] = (c_blocked, how)
    else:
        for name in ("second_ingest_fails_clearly", "waiting_ingest_waits_then_succeeds"):
            res["lock_checks"].append(
                {
                    "name": name,
                    "ok": False,
                    "detail": "not exercised: ingest A finished before it could be paused",
                }
            )
    try:
        a.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    res["switch_time"] = time.monotonic() - t0
    res["a"] = {
        "returncode": a.returncode,
        "report": _ingest_report(children.stdout("ingest-a")),
        "log_tail": children.log_tail("ingest-a", 600) if a.returncode else "",
    }
    if c is not None:
        try:
            c.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        c_rep = _ingest_report(children.stdout("ingest-c"))
        a_gen = (res["a"]["report"] or {}).get("generation")
        c_blocked, how = res.pop("_c_blocked")
        c_ok = (
            c_blocked
            and c.returncode == 0
            and c_rep is not None
            and not c_rep.get("added")
            and a_gen is not None
            and (c_rep.get("generation") or 0) > a_gen
        )
        res["c"] = {"returncode": c.returncode, "report": c_rep}
        res["lock_checks"].append(
            {
                "name": "waiting_ingest_waits_then_succeeds",
                "ok": bool(c_ok),
                "detail": f"ingest --wait: {how}; exited {c.returncode}; its generation "
                f"{(c_rep or {}).get('generation')} after A's {a_gen}; added {(c_rep or {}).get('added')}, "
                f"unchanged {len((c_rep or {}).get('unchanged') or [])}",
            }
        )
    if b is not None:
        res["b"] = {"returncode": b.returncode}
    return res


def build_index(
    children: Children,
    vb: list[str],
    env: dict[str, str],
    work: Path,
    index: Path,
    args: argparse.Namespace,
    report: dict[str, Any],
    log: Callable[[str], None],
) -> bool:
    p = children.start(
        "ingest-corpus", [*vb, "ingest", str(args.corpus), "--json", "--index-dir", str(index)], env, work
    )
    try:
        p.wait(args.timeout)
    except subprocess.TimeoutExpired:
        pass
    base_rep = _ingest_report(children.stdout("ingest-corpus"))
    if p.returncode != 0 or not base_rep:
        log(f"building the index failed ({p.returncode}):\n{children.log_tail('ingest-corpus')}")
        return False
    report["base_index"] = base_rep
    log(
        f"index gen {base_rep['generation']}: {len(base_rep['added'])} documents, "
        f"{base_rep['chunks_embedded']} chunks ({base_rep['seconds']} s)"
    )
    return True


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    wall0 = time.time()

    def now() -> float:
        return time.monotonic() - t0

    def log(msg: str) -> None:
        print(f"[{now():7.1f}s] {msg}", flush=True)

    deadline = t0 + args.timeout
    work = Path(tempfile.mkdtemp(prefix="vraagbaak-replicas-"))
    logs = work / "logs"
    logs.mkdir()
    children = Children(logs)
    fake: FakeOpenAIServer | None = None
    vb = vraagbaak_cmd()
    threads = str(args.replica_threads)
    base_env = _env(
        dict(os.environ),
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        VRAAGBAAK_LOG_JSON="true",
    )
    index = work / "index"
    report: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall0)),
        "work_dir": str(work),
    }
    rc = 2
    try:
        # 1. the index: built from the corpus, or a copy of the live generation of --index-from
        if args.index_from is not None:
            gen = (args.index_from / "CURRENT").read_text(encoding="utf-8").strip()
            index.mkdir()
            shutil.copytree(args.index_from / gen, index / gen)
            (index / "CURRENT").write_text(gen + "\n", encoding="utf-8")
            manifest = json.loads((index / gen / "manifest.json").read_text(encoding="utf-8"))
            report["base_index"] = {
                "copied_from": str(args.index_from),
                "generation": manifest.get("generation"),
                "n_documents": manifest.get("n_documents"),
                "n_chunks": manifest.get("n_chunks"),
            }
            log(f"copied {args.index_from}/{gen} ({manifest.get('n_documents')} documents) to {index}")
        else:
            log(f"building the index from {args.corpus} in {index}")
            if not build_index(children, vb, base_env, work, index, args, report, log):
                return 2

        # 2. the LLM server
        if args.fake_llm:
            fake = FakeOpenAIServer(delay=args.fake_delay, model=LLM_ALIAS).start()
            llm_url = fake.base_url
            report["llm"] = {"kind": "fake", "url": llm_url, "delay": args.fake_delay}
        else:
            from rag.models import resolve_llm
            from rag.settings import Settings

            gguf = args.gguf or resolve_llm(Settings())
            port = free_port()
            llm_url = f"http://127.0.0.1:{port}/v1"
            cmd = [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--model_alias",
                LLM_ALIAS,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                str(args.llm_ctx),
                "--n_threads",
                str(args.llm_threads),
                "--n_threads_batch",
                str(args.llm_threads),
                "--interrupt_requests",
                "false",
            ]
            report["llm"] = {"kind": "llama_cpp.server", "url": llm_url, "gguf": str(gguf), "cmd": cmd}
            log(f"starting llama_cpp.server on {llm_url} ({args.llm_threads} threads)")
            srv = children.start("llama-server", cmd, dict(os.environ), work)
            if not wait_for(lambda: http_ok(llm_url + "/models"), 300, alive=srv):
                log(f"llama_cpp.server did not come up:\n{children.log_tail('llama-server')}")
                return 2

        # 3. the replicas
        ports = [free_port() for _ in range(args.replicas)]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        replica_env = _env(
            base_env,
            VRAAGBAAK_LLM_BACKEND="openai",
            VRAAGBAAK_LLM_BASE_URL=llm_url,
            VRAAGBAAK_LLM_MODEL_NAME=LLM_ALIAS,
            VRAAGBAAK_LLM_TIMEOUT=str(args.request_timeout),
            VRAAGBAAK_MAX_ANSWER_TOKENS=str(args.max_answer_tokens),
            VRAAGBAAK_RATE_LIMIT_PER_MINUTE="0",
            VRAAGBAAK_LLM_QUEUE="16",
            VRAAGBAAK_LLM_QUEUE_TIMEOUT=str(args.queue_timeout),
        )
        for i, port in enumerate(ports):
            children.start(
                f"replica-{i}",
                [
                    *vb,
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--dev",
                    "--index-dir",
                    str(index),
                    "--data-dir",
                    str(work / f"data-{i}"),
                ],
                replica_env,
                work,
            )
        log(f"started {args.replicas} replicas on ports {ports}; waiting for /readyz")
        for i, url in enumerate(urls):
            proc = children.procs[f"replica-{i}"]
            if not wait_for(lambda u=url: http_ok(u + "/readyz"), args.start_timeout, alive=proc):
                log(f"replica {i} not ready:\n{children.log_tail(f'replica-{i}')}")
                return 2
        report["replicas"] = [{"replica": i, "url": u} for i, u in enumerate(urls)]
        log("all replicas ready")

        # 4. load, with the ingest in the middle
        new_dir = work / "nieuw"
        new_dir.mkdir()
        for d in NEW_DOCS:
            (new_dir / d.filename).write_text(d.text, encoding="utf-8")
        # interleaved, a new-document question first: every replica is asked one before the ingest
        base = [(qid, "base", q) for qid, q in BASE_QUESTIONS]
        new = [(d.qid, "new", d.question) for d in NEW_DOCS]
        questions = [new[0], base[0], new[1], *base[1:]]
        load = Load(urls, questions, args.clients, t0, args.request_timeout, args.max_503_retries, args.think, deadline)
        load.start()
        log(f"{args.clients} clients asking; ingest after {args.before} answers")
        wait_for(lambda: load.finished() >= args.before, max(0.0, deadline - time.monotonic()), interval=0.2)
        log(f"{load.finished()} answers so far; ingesting {len(NEW_DOCS)} new documents")
        ing = ingest_with_lock_checks(
            children, vb, base_env, work, index, new_dir, args.hold, max(60.0, deadline - time.monotonic()), t0, log
        )
        report["ingest"] = ing
        switch = ing["switch_time"]
        a_rep = ing["a"]["report"] or {}
        first_new_gen = a_rep.get("generation") if ing["a"]["returncode"] == 0 else None
        new_docs = {}
        for d in NEW_DOCS:
            ids = [x for x in a_rep.get("added") or [] if x.endswith(d.stem)]
            new_docs[d.qid] = ids[0] if ids else f"?/{d.stem}"
        log(f"ingest A exited {ing['a']['returncode']}: generation {first_new_gen}, added {a_rep.get('added')}")
        wait_for(
            lambda: (
                load.finished(lambda r: r.started > switch + READER_CHECK_INTERVAL + args.stale_margin) >= args.after
            ),
            max(0.0, deadline - time.monotonic()),
            interval=0.2,
        )
        load.stop()
        log(f"load stopped: {len(load.records)} requests")

        # 5. afterwards: every replica answers every new-document question
        records = [r for r in load.records if r.started or r.finished]
        have = {
            (r.replica, r.qid)
            for r in records
            if r.qid in new_docs
            and gen_number(r.generation) is not None
            and first_new_gen is not None
            and gen_number(r.generation) >= first_new_gen
            and not r.refused
            and new_docs[r.qid] in r.cited
        }
        seq = max((r.seq for r in records), default=0) + 1
        with httpx.Client(timeout=httpx.Timeout(args.request_timeout, connect=10.0)) as http:
            for i, url in enumerate(urls):
                for d in NEW_DOCS:
                    if (i, d.qid) in have:
                        continue
                    rec = Record(seq=seq, client=-1, replica=i, endpoint="ask", qid=d.qid, kind="new", phase="final")
                    seq += 1
                    ask(http, url, d.question, rec, now, args.max_503_retries, deadline + 600)
                    records.append(rec)
            report["readyz"] = []
            for i, url in enumerate(urls):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    report["readyz"].append({"replica": i, **httpx.get(url + "/readyz", timeout=10).json()})

        # 6. checks and the report
        for r in records:
            if r.phase == "load":
                r.phase = "before" if r.started < ing["started_at"] else ("during" if r.started < switch else "after")
        rec_dicts = [asdict(r) for r in sorted(records, key=lambda r: r.seq)]
        checks = check_records(
            rec_dicts,
            new_docs=new_docs,
            first_new_gen=first_new_gen,
            switch_time=switch,
            replicas=range(args.replicas),
            stale_margin=args.stale_margin,
        )
        checks += ing["lock_checks"]
        report.update(
            {
                "new_docs": new_docs,
                "first_new_generation": first_new_gen,
                "switch_time_s": round(switch, 2),
                "checks": checks,
                "passed": all(c["ok"] for c in checks),
                "duration_s": round(now(), 1),
                "records": rec_dicts,
            }
        )
        if fake is not None:
            report["llm"]["requests"] = dict(fake.requests)
        print_summary(report, args.replicas)
        rc = 0 if report["passed"] else 1
        return rc
    finally:
        children.close()
        if fake is not None:
            fake.stop()
        if "checks" in report or args.report_on_failure:
            report.setdefault("passed", False)
            report.setdefault("duration_s", round(now(), 1))
            out = Path(args.report)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            print(f"report: {out}")
        if args.keep or rc == 2:
            print(f"work folder kept: {work} (logs in {logs})")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_summary(report: dict[str, Any], n_replicas: int) -> None:
    records = report["records"]
    first = report.get("first_new_generation")
    new_docs = report.get("new_docs") or {}

    def is_new(r) -> bool:
        n = gen_number(r.get("generation"))
        return first is not None and n is not None and n >= first

    rows = []
    for i in range(n_replicas):
        rs = [r for r in records if r["replica"] == i]
        ok = [r for r in rs if r["status"] == 200 and not r["error"]]
        gens = sorted({r["generation"] for r in ok if r["generation"]})
        lat = sorted(r["finished"] - r["started"] for r in ok)
        rows.append(
            [
                i,
                len(rs),
                len(ok),
                sum(1 for r in ok if not is_new(r)),
                sum(1 for r in ok if is_new(r)),
                sum(1 for r in ok if r["refused"]),
                sum(r["retries_503"] for r in rs),
                len(rs) - len(ok),
                ",".join(gens),
                f"{lat[len(lat) // 2]:.1f}" if lat else "-",
            ]
        )
    print()
    print(
        _table(
            rows,
            [
                "replica",
                "requests",
                "200",
                "old gen",
                "new gen",
                "refused",
                "503 retried",
                "errors",
                "generations",
                "p50 s",
            ],
        )
    )
    rows = []
    for qid in sorted({r["qid"] for r in records}):
        rs = [r for r in records if r["qid"] == qid and r["status"] == 200 and not r["error"]]
        doc = new_docs.get(qid)
        for label, part in (("old", [r for r in rs if not is_new(r)]), ("new", [r for r in rs if is_new(r)])):
            if not part:
                continue
            rows.append(
                [
                    qid,
                    label,
                    len(part),
                    sum(1 for r in part if r["refused"]),
                    sum(1 for r in part if doc and doc in r["cited"]) if doc else "-",
                    (
                        f"{sum(1 for r in part if r['sources'] is not None and doc in r['sources'])}"
                        f"/{sum(1 for r in part if r['sources'] is not None)} streamed"
                    )
                    if doc
                    else "-",
                ]
            )
    print()
    print(_table(rows, ["question", "generation", "answers", "refused", "cite new doc", "retrieved new doc"]))
    print()
    for c in report["checks"]:
        print(f"{'PASS' if c['ok'] else 'FAIL'}  {c['name']}: {c['detail']}")
        for ex in (c.get("examples") or [])[:3] if not c["ok"] else []:
            print(f"        {json.dumps(ex, ensure_ascii=False)[:300]}")
    print(f"\n{'PASSED' if report['passed'] else 'FAILED'} in {report['duration_s']} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m eval.replica_loadtest",
        description="N vraagbaak replicas over one index + one LLM server, an ingest mid-run; consistency checks.",
    )
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients (round-robin over the replicas)")
    ap.add_argument("--before", type=int, default=6, help="answers before the ingest starts")
    ap.add_argument("--after", type=int, default=6, help="answers started after the switch before the load stops")
    ap.add_argument(
        "--hold",
        type=float,
        default=5.0,
        help="seconds the paused ingest keeps the lock after the --wait ingest is seen blocked",
    )
    ap.add_argument("--max-answer-tokens", type=int, default=128)
    ap.add_argument("--llm-threads", type=int, default=2, help="llama_cpp.server --n_threads")
    ap.add_argument("--llm-ctx", type=int, default=4096, help="llama_cpp.server --n_ctx")
    ap.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the registry model, rag.models)")
    ap.add_argument("--fake-llm", action="store_true", help="a scripted OpenAI-compatible server instead of llama.cpp")
    ap.add_argument("--fake-delay", type=float, default=0.02, help="seconds per word of the fake LLM")
    ap.add_argument("--replica-threads", type=int, default=1, help="torch/OpenMP threads per replica and ingest")
    ap.add_argument("--corpus", type=Path, default=REPO / "data" / "voorbeeld")
    ap.add_argument(
        "--index-from",
        type=Path,
        default=None,
        help="copy the live generation of this index folder instead of building one from --corpus "
        "(it must not contain the new documents)",
    )
    ap.add_argument("--think", type=float, default=0.0, help="seconds a client waits between two questions")
    ap.add_argument("--request-timeout", type=float, default=600.0)
    ap.add_argument("--queue-timeout", type=float, default=600.0, help="VRAAGBAAK_LLM_QUEUE_TIMEOUT of the replicas")
    ap.add_argument("--max-503-retries", type=int, default=30)
    ap.add_argument(
        "--stale-margin",
        type=float,
        default=2.0,
        help="seconds after the switch (+1 s reader check interval) from which an old generation is stale",
    )
    ap.add_argument("--start-timeout", type=float, default=900.0, help="seconds a replica may take to get ready")
    ap.add_argument("--timeout", type=float, default=3600.0, help="overall bound of the load phase, seconds")
    ap.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    ap.add_argument("--report-on-failure", action="store_true", help="write the report even if the run aborted")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (index, logs)")
    args = ap.parse_args(argv)
    if args.replicas < 1 or args.clients < 1:
        ap.error("--replicas and --clients must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a SIGTERM (timeout, CI) unwinds like Ctrl-C, so that every child process is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
