"""Multi-replica load test: N ``vraagbaak serve`` processes over ONE index folder, one
OpenAI-compatible LLM server, an ingest in the middle of the run. Loopback only, bounded.
With ``--netns``: the replicas on separate (network-namespace) hosts over PostgreSQL (below).

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

``--netns``: replicas on separate hosts (root). Each replica runs in a network namespace of
its own (``ip netns exec``; a veth pair into a bridge on a private ``10.213.X.0/24``: the host
side ``.1``, replica i ``.10+i``, port 8000), with folders of its own and no ``--dev`` (every
request carries an API key). On the host side: one PostgreSQL 16 + pgvector (pgserver's
binaries, listening on ``.1`` only, scram-sha-256 for the test subnet) that holds the index and
the keys (``VRAAGBAAK_DATABASE_URL``), and the LLM server. The base index is written into it
by ``vraagbaak ingest``; the keys are made with ``vraagbaak keys add`` on host 0. Then: the
load (clients fail over to the next replica on a transport error, as a load balancer would);
the two new documents uploaded through the admin API (POST /v1/documents) of replicas 0 and 1
at once; every replica answers both (load paused); a probe key revoked with ``vraagbaak keys
revoke`` on host 0 must be refused (401) by every replica within ``--revoke-within`` (1 s);
one replica killed with SIGKILL while it has requests in flight. Extra checks
(``check_kill``, ``check_revocation``): it lost only its in-flight requests (later ones were
refused at connect), every request to the others succeeded, every lost request was answered
when retried elsewhere. Generations are per document (``pg-N``: one per commit). Namespaces,
veths, bridge, server and data are removed at the end, on Ctrl-C and SIGTERM.

    python -m eval.replica_loadtest                        # 3 replicas, real LLM (long: see deploy/README.md)
    python -m eval.replica_loadtest --fake-llm --replicas 2 --report /tmp/r.json   # no LLM
    bash scripts/replicas.sh [ARGS]                        # the same, at a lower CPU priority
    sudo .venv/bin/python -m eval.replica_loadtest --netns  # replicas on separate "hosts" (report replicas-netns.json)

Exit status 0 = every check passed, 1 = a check failed, 2 = it could not run.
Report: ``--report`` (default eval/reports/replicas-loadtest.json, with --netns
eval/reports/replicas-netns.json).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPORT = REPO / "eval" / "reports" / "replicas-loadtest.json"
NETNS_REPORT = REPO / "eval" / "reports" / "replicas-netns.json"
LLM_ALIAS = "qwen2.5-coder-1.5b-instruct-q4_k_m"
READER_CHECK_INTERVAL = 1.0  # rag.index.IndexReader default
LOCK_MESSAGE = "Another ingest is running"
LOCK_WAIT_S = 20.0  # how long the --wait ingest is watched while the first one holds the lock

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
    # "connect" (refused: nothing was sent), "transport" (the connection broke), "http", "stream"
    error_kind: str | None = None
    retry_of: int | None = None  # --netns: the seq of the request that failed on a dead replica


def gen_number(name: str | None) -> int | None:
    """``gen-000007`` (the embedded index) or ``pg-000007`` (PostgreSQL) -> 7."""
    m = re.fullmatch(r"(?:gen|pg)-(\d+)", name or "")
    return int(m.group(1)) if m else None


def failed(r: dict[str, Any]) -> bool:
    return r.get("status") != 200 or bool(r.get("error"))


def _check(name: str, ok: bool, detail: str = "", items: list | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "ok": bool(ok), "detail": detail}
    if items:
        out["examples"] = items[:10]
    return out


def check_records(
    records: Iterable[dict[str, Any]],
    *,
    new_docs: dict[str, str],
    first_new_gen: int | Mapping[str, int] | None,
    switch_time: float | None,
    replicas: Iterable[int],
    stale_margin: float = 2.0,
    killed: tuple[int, float] | None = None,
    label_lag: Mapping[str, tuple[float, float]] | None = None,
) -> list[dict[str, Any]]:
    """The consistency checks over the answer records (dicts as ``asdict(Record)``).

    ``new_docs``: question id -> doc id of the document it is about (the new documents);
    ``first_new_gen``: the generation from which the new documents are in the index (older ones
    do not have them): one number for all (the embedded index publishes them in one generation)
    or one per doc id (PostgreSQL commits every document on its own); ``switch_time``: when the
    ingest had finished (same clock as ``Record.started``); ``replicas``: every replica index
    that must answer the new documents.

    ``killed``: (replica, time) of a replica killed on purpose: its requests that failed from
    then on are judged by :func:`check_kill`, not counted as errors here. ``label_lag``: doc id
    -> (its ingest started, its ingest finished + the reader's check interval + margin). With
    PostgreSQL an answer names the generation its replica last read (at most ``check_interval``
    old) while the search reads the latest committed state: an answer labelled with a generation
    before the document that finished after its ingest started and started before the window's
    end may have found it. Counted, not a leak; outside the window it is one.
    """
    records = list(records)
    new_ids = set(new_docs.values())
    checks: list[dict[str, Any]] = []

    def excused(r: dict[str, Any]) -> bool:
        return killed is not None and r["replica"] == killed[0] and r["finished"] >= killed[1]

    errors = [r for r in records if failed(r) and not excused(r)]
    n_excused = sum(1 for r in records if failed(r) and excused(r))
    checks.append(
        _check(
            "no_errors",
            not errors,
            f"{len(errors)} of {len(records)} requests failed (non-2xx other than retried 503s, transport or stream errors)"
            + (f"; {n_excused} more on the replica killed on purpose (see the kill checks)" if killed else ""),
            [
                {"seq": r["seq"], "replica": r["replica"], "status": r.get("status"), "error": r.get("error")}
                for r in errors
            ],
        )
    )
    ok_records = [r for r in records if not failed(r)]

    no_gen = [r for r in ok_records if gen_number(r.get("generation")) is None]
    checks.append(
        _check(
            "generation_reported",
            not no_gen,
            f"{len(no_gen)} answers without a valid index_generation",
            [{"seq": r["seq"], "generation": r.get("generation")} for r in no_gen],
        )
    )
    if first_new_gen is None or (not isinstance(first_new_gen, int) and not first_new_gen):
        checks.append(_check("new_generation_published", False, "the ingest published no generation"))
        return checks
    gens = dict.fromkeys(new_ids, first_new_gen) if isinstance(first_new_gen, int) else dict(first_new_gen)
    first, last = min(gens.values()), max(gens.values())

    def gen(r: dict[str, Any]) -> int | None:
        return gen_number(r.get("generation"))

    def has_doc(r: dict[str, Any]) -> bool:
        """A new-document question answered on a generation that has its document."""
        n = gen(r)
        return r["qid"] in new_docs and n is not None and n >= gens.get(new_docs[r["qid"]], last)

    numbered = [r for r in ok_records if gen(r) is not None]
    old = [r for r in numbered if (gen(r) or 0) < first]
    leaks, lagged = [], []
    for r in numbered:
        seen = (set(r.get("cited") or []) | set(r.get("sources") or [])) & new_ids
        early = [d for d in seen if (gen(r) or 0) < gens.get(d, last)]
        if not early:
            continue
        windows = [(label_lag or {}).get(d) for d in early]
        if all(w is not None and r["finished"] >= w[0] and r["started"] <= w[1] for w in windows):
            lagged.append(r)
        else:
            leaks.append(r)
    checks.append(
        _check(
            "old_generation_never_sees_new_docs",
            not leaks,
            f"{len(old)} answers on a generation before the new documents, {len(leaks)} cite or retrieve a new "
            "document of a later generation"
            + (
                f"; {len(lagged)} labelled with the generation their replica read < 1 s before the document's commit "
                "found it (the label lags by up to check_interval; the search reads the latest committed state)"
                if label_lag is not None
                else ""
            ),
            [{"seq": r["seq"], "generation": r["generation"], "cited": r.get("cited")} for r in leaks],
        )
    )

    new_q_new = [r for r in numbered if has_doc(r)]
    new_q_old = [r for r in numbered if r["qid"] in new_docs and not has_doc(r)]
    missed = [r for r in new_q_new if r.get("sources") is not None and new_docs[r["qid"]] not in r["sources"]]
    n_new_streamed = sum(1 for r in new_q_new if r.get("sources") is not None)
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
            r
            for r in numbered
            if r["started"] > switch_time + READER_CHECK_INTERVAL + stale_margin and (gen(r) or 0) < last
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
            seen_here = [r for r in new_q_new if r["replica"] == rep and r["qid"] == qid]
            if not any(not r.get("refused") and doc_id in (r.get("cited") or []) for r in seen_here):
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
                            for r in seen_here
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


def check_kill(
    records: Iterable[dict[str, Any]], *, victim: int, kill_time: float, after: int = 1
) -> list[dict[str, Any]]:
    """The checks of a replica killed (SIGKILL) mid-load at ``kill_time``: it was answering when
    it died; it lost only the requests in flight to it (and refused connections afterwards:
    nothing was accepted); every request to the other replicas from the kill on succeeded (at
    least ``after`` of them); every failed request, retried on another replica, was answered."""
    records = list(records)
    by_retry = {r["retry_of"]: r for r in records if r.get("retry_of") is not None}
    in_flight = [r for r in records if r["replica"] == victim and r["started"] <= kill_time <= r["finished"]]
    lost = [r for r in records if r["replica"] == victim and failed(r) and r["finished"] >= kill_time]
    unexpected = [r for r in lost if r["started"] > kill_time and r.get("error_kind") != "connect"]
    refused = [r for r in lost if r["started"] > kill_time and r.get("error_kind") == "connect"]
    others = [r for r in records if r["replica"] != victim and r["started"] >= kill_time]
    others_failed = [r for r in others if failed(r)]

    def answered(r: dict[str, Any]) -> dict[str, Any] | None:
        seen = set()
        while r is not None and failed(r) and r["seq"] not in seen:
            seen.add(r["seq"])
            r = by_retry.get(r["seq"])  # type: ignore[assignment]
        return r if r is not None and not failed(r) else None

    unanswered = [r for r in lost if answered(r) is None]

    def brief(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "seq": r["seq"],
            "replica": r["replica"],
            "started": round(r["started"], 2),
            "finished": round(r["finished"], 2),
            "error": (r.get("error") or "")[:200],
        }

    return [
        _check(
            "kill_hit_requests_in_flight",
            bool(in_flight),
            f"{len(in_flight)} requests were in flight to replica {victim} when it was killed at {kill_time:.1f} s",
        ),
        _check(
            "kill_loses_only_its_in_flight_requests",
            not unexpected and all(failed(r) for r in in_flight if r["finished"] > kill_time + 0.5),
            f"replica {victim} lost {len(lost) - len(refused)} requests in flight at the kill; {len(refused)} later ones "
            f"were refused at connect (nothing accepted); {len(unexpected)} other failures",
            [brief(r) for r in unexpected],
        ),
        _check(
            "kill_other_replicas_unaffected",
            bool(len(others) >= after) and not others_failed,
            f"{len(others) - len(others_failed)} of {len(others)} requests to the other replicas from the kill on "
            f"succeeded (at least {after} wanted)",
            [brief(r) for r in others_failed],
        ),
        _check(
            "kill_retries_answered_elsewhere",
            not unanswered,
            f"{len(lost) - len(unanswered)} of {len(lost)} failed requests answered when retried on another replica",
            [brief(r) for r in unanswered],
        ),
    ]


def check_revocation(probes: Iterable[dict[str, Any]], *, within: float) -> list[dict[str, Any]]:
    """A probe key revoked through one host, then asked on every replica. ``probes``: per replica
    ``{"replica", "before": status with the key before the revocation, "refused_after_s": seconds
    from the revocation until the replica answered 401 (None: never within the wait),
    "last_status"}``."""
    probes = list(probes)
    not_valid = [p for p in probes if p.get("before") != 200]
    late = [p for p in probes if p.get("refused_after_s") is None or p["refused_after_s"] > within]

    def said(p: dict[str, Any]) -> str:
        s = p.get("refused_after_s")
        return (
            f"replica {p['replica']}: 401 after {s:.2f} s"
            if s is not None
            else f"replica {p['replica']}: still {p.get('last_status')} after {p.get('waited_s', 0):.1f} s"
        )

    return [
        _check(
            "probe_key_valid_everywhere_before",
            bool(probes) and not not_valid,
            f"the probe key was accepted by {len(probes) - len(not_valid)} of {len(probes)} replicas before the revocation",
            not_valid,
        ),
        _check(
            "revoked_key_refused_everywhere",
            bool(probes) and not late,
            f"within {within:.1f} s: " + "; ".join(said(p) for p in probes),
            late,
        ),
    ]


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
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
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
        self.stop_signals: dict[str, int] = {}
        self.stop_last: set[str] = set()

    def start(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        cwd: Path,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_last: bool = False,
    ) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.out", "wb") as out, open(self.log_dir / f"{name}.log", "wb") as err:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=str(cwd), user=user
            )
        self.procs[name] = proc
        self.stop_signals[name] = stop_signal
        if stop_last:
            self.stop_last.add(name)
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
        """Every process stopped (its stop signal, then SIGKILL after 20 s); the servers the
        others use (``stop_last``: PostgreSQL) after the others have exited."""
        for wave in (False, True):
            procs = {n: p for n, p in self.procs.items() if (n in self.stop_last) == wave}
            for name, proc in procs.items():
                if proc.pid in self.paused:
                    self.resume(proc)
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(self.stop_signals.get(name, signal.SIGTERM))
            for proc in procs.values():
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


# --------------------------------------------------------------------------- network namespaces (--netns)

TEST_NET_PREFIX = "10.213"  # private; a free 10.213.X.0/24 is picked per run
REPLICA_PORT = 8000
PG_PORT = 5432


def netns_unavailable() -> str | None:
    """Why ``--netns`` cannot run here (None: it can): root and ``ip netns`` are needed."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add, veth, a bridge)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    try:
        probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ip netns list failed: {exc}"
    if probe.returncode != 0:
        return f"ip netns list failed: {probe.stderr.strip()[:200]}"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def free_subnet(taken: str, prefix: str = TEST_NET_PREFIX) -> str:
    """A ``prefix.X`` (/24) that no address or route of ``taken`` (``ip -4 addr`` + ``ip -4
    route`` output) uses."""
    import random

    used = {int(m.group(1)) for m in re.finditer(re.escape(prefix) + r"\.(\d+)\.", taken)}
    free = [x for x in range(1, 255) if x not in used]
    if not free:
        raise RuntimeError(f"no free {prefix}.X.0/24 test subnet")
    return f"{prefix}.{random.choice(free)}"


class TestNet:
    """A private test network: a bridge on the host with ``SUBNET.1/24`` and one network
    namespace per replica ("host" ``i``), joined to the bridge by a veth pair, with
    ``SUBNET.(10+i)/24``. Nothing is routed or forwarded beyond it: a replica reaches only the
    host's test address (PostgreSQL, the LLM server) and the other replicas. Names carry a
    random tag (``vbrt-TAG-i``, ``vbbrTAG``, ``vbhTAGi``/``vbnTAGi``); ``close()`` (also at exit)
    kills what still runs in the namespaces and deletes them and the bridge."""

    __test__ = False  # not a pytest class

    def __init__(self, n: int, subnet: str | None = None) -> None:
        self.tag = secrets.token_hex(3)
        if subnet is None:
            subnet = free_subnet(_ip("-4", "-o", "addr").stdout + _ip("-4", "route").stdout)
        self.subnet = subnet
        self.cidr = f"{subnet}.0/24"
        self.host_ip = f"{subnet}.1"
        self.bridge = f"vbbr{self.tag}"
        self.namespaces = [f"vbrt-{self.tag}-{i}" for i in range(n)]
        self.ips = [f"{subnet}.{10 + i}" for i in range(n)]
        self._closed = False
        atexit.register(self.close)
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, (ns, addr) in enumerate(zip(self.namespaces, self.ips)):
            host_end, ns_end = f"vbh{self.tag}{i}", f"vbn{self.tag}{i}"
            _ip("netns", "add", ns)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            _ip("link", "set", host_end, "master", self.bridge)
            _ip("link", "set", host_end, "up")
            _ip("link", "set", ns_end, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ns_end)
            _ip("-n", ns, "link", "set", ns_end, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def describe(self) -> dict[str, Any]:
        return {
            "subnet": self.cidr,
            "host": {"bridge": self.bridge, "address": self.host_ip},
            "namespaces": [{"name": ns, "address": a} for ns, a in zip(self.namespaces, self.ips)],
        }

    def exec(self, i: int, cmd: list[str]) -> list[str]:
        """``cmd`` run in host ``i``'s namespace (``ip netns exec`` execs: same pid)."""
        return ["ip", "netns", "exec", self.namespaces[i], *cmd]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ns in self.namespaces:
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:  # only this run's processes live in its namespaces
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", ns, check=False)  # takes its veth pair with it
        for i in range(len(self.namespaces)):
            _ip("link", "del", f"vbh{self.tag}{i}", check=False)
        _ip("link", "del", self.bridge, check=False)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)


def leftovers(tag: str) -> list[str]:
    """Namespaces and links of the test network ``tag`` that still exist (for the tests)."""
    out = [ns for ns in _ip("netns", "list", check=False).stdout.split() if ns.startswith(f"vbrt-{tag}-")]
    links = _ip("-o", "link", check=False).stdout
    out += sorted(set(re.findall(rf"\b(vb(?:br|h|n){tag}\d*)\b", links)))
    return out


class PostgresOnTestNet:
    """A PostgreSQL 16 + pgvector server (pgserver's binaries) of this run, listening on the
    test network's host address only (and its own unix socket): ``scram-sha-256`` with a random
    password for the test subnet, one database ``vraagbaak`` with the vector extension.
    As root the server runs as the user ``pgserver`` (as pgserver itself does)."""

    def __init__(self, children: Children, host: str, allow_cidr: str, port: int = PG_PORT) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.root = Path(tempfile.mkdtemp(prefix="vraagbaak-pg-"))
        self.root.chmod(0o711)  # the server's user must reach pgdata inside
        self.pgdata = self.root / "pgdata"
        self.pgdata.mkdir(mode=0o700)
        self.user: str | None = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            import pwd

            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            self.user = "pgserver"
            entry = ensure_user_exists(self.user)
            ensure_prefix_permissions(self.pgdata)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            uid = entry.pw_uid if entry else pwd.getpwnam(self.user).pw_uid
            os.chown(self.pgdata, uid, -1)
        self.password = secrets.token_urlsafe(18)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o644)
        try:
            subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=utf8",
                ],
                check=True,
                capture_output=True,
                user=self.user,
                timeout=120,
            )
        finally:
            pwfile.unlink()
        with open(self.pgdata / "pg_hba.conf", "a", encoding="utf-8") as hba:
            hba.write(f"host all all {allow_cidr} scram-sha-256\n")
        self.proc = children.start(
            "postgres",
            [str(self.bin / "postgres"), "-D", str(self.pgdata), "-h", host, "-p", str(port), "-k", str(self.pgdata)],
            dict(os.environ),
            self.root,
            user=self.user,
            stop_signal=signal.SIGINT,  # fast shutdown
            stop_last=True,  # after the replicas have closed their connections
        )
        self.admin_url = f"postgresql://postgres:{self.password}@{host}:{port}/postgres"
        self.url = f"postgresql://postgres:{self.password}@{host}:{port}/vraagbaak"

    def ready(self, timeout: float = 60.0) -> bool:
        import psycopg

        def up() -> bool:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=3):
                    return True
            except psycopg.OperationalError:
                return False

        if not wait_for(up, timeout, interval=0.2, alive=self.proc):
            return False
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE vraagbaak")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return True

    def remove(self) -> None:
        """The data folder (after the server stopped)."""
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- the load


class Load:
    """Clients asking round-robin over the replicas until ``stop()``.

    ``failover`` (--netns): a request that fails at the transport level (refused, connection
    broken: the replica died) is retried at once on the next replica (a new record with
    ``retry_of``), and the dead replica is skipped from then on, as a load balancer would."""

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
        headers: dict[str, str] | None = None,
        failover: bool = False,
    ) -> None:
        self.urls = urls
        self.questions = questions  # (qid, kind, question)
        self.n_clients = clients
        self.t0 = t0
        self.request_timeout = request_timeout
        self.max_503_retries = max_503_retries
        self.think = think
        self.deadline = deadline
        self.headers = headers or {}
        self.failover = failover
        self.down: set[int] = set()
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._go = threading.Event()
        self._go.set()
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

    def pause(self, timeout: float) -> bool:
        """No new requests until ``resume()``; waits for those in flight (True: none left)."""
        self._go.clear()
        return wait_for(lambda: not self.in_flight(), timeout, interval=0.1)

    def resume(self) -> None:
        self._go.set()

    def finished(self, pred: Callable[[Record], bool] = lambda r: True) -> int:
        with self._lock:
            return sum(1 for r in self.records if r.finished and pred(r))

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def in_flight(self, replica: int | None = None, older_than: float = 0.0) -> list[Record]:
        """Requests started (``older_than`` seconds ago or more) and not finished."""
        t = self.now() - older_than
        with self._lock:
            return [
                r
                for r in self.records
                if r.started and not r.finished and r.started <= t and replica in (None, r.replica)
            ]

    def take_seq(self) -> int:
        with self._lock:
            k = self._next
            self._next += 1
            return k

    def _alive(self, replica: int) -> int | None:
        """``replica``, or the next one that is not down (None: all are)."""
        n = len(self.urls)
        for i in range(n):
            r = (replica + i) % n
            if r not in self.down:
                return r
        return None

    def _client(self, c: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(self.request_timeout, connect=10.0), headers=self.headers) as http:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                if not self._go.is_set():
                    self._go.wait(0.2)
                    continue
                k = self.take_seq()
                n = len(self.urls)
                replica = self._alive(k % n)
                if replica is None:
                    return
                qid, kind, question = self.questions[(k // n) % len(self.questions)]
                endpoint = "stream" if (k // n) % 2 == 0 else "ask"
                rec = Record(seq=k, client=c, replica=replica, endpoint=endpoint, qid=qid, kind=kind)
                while True:
                    with self._lock:
                        self.records.append(rec)
                    ask(http, self.urls[rec.replica], question, rec, self.now, self.max_503_retries, self.deadline)
                    if not (self.failover and rec.error_kind in ("connect", "transport")):
                        break
                    with self._lock:
                        self.down.add(rec.replica)
                    other = self._alive(rec.replica)
                    if other is None:
                        break
                    rec = Record(
                        seq=self.take_seq(),
                        client=c,
                        replica=other,
                        endpoint=endpoint,
                        qid=qid,
                        kind=kind,
                        retry_of=rec.seq,
                    )
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
                    rec.error_kind = "http"
        except httpx.HTTPError as exc:
            rec.status = None
            rec.error = f"{type(exc).__name__}: {exc}"
            rec.error_kind = "connect" if isinstance(exc, httpx.ConnectError) else "transport"
        if retry_after is None:
            break
        if rec.retries_503 >= max_503_retries or time.monotonic() + retry_after > deadline:
            rec.error = f"still 503 after {rec.retries_503} retries"
            rec.error_kind = "http"
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
    rec.error = rec.error_kind = None


def _ask_stream(http, url: str, body: dict[str, Any], rec: Record) -> float | None:
    """POST /v1/ask/stream; returns a retry delay for a 503 / llm_unavailable, else None."""
    with http.stream("POST", url + "/v1/ask/stream", json=body) as resp:
        rec.status = resp.status_code
        if resp.status_code == 503:
            resp.read()
            return _retry_after(resp.headers.get("retry-after"))
        if resp.status_code != 200:
            rec.error = f"HTTP {resp.status_code}: {resp.read()[:300]!r}"
            rec.error_kind = "http"
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
                        rec.error_kind = "stream"
                event, data = "message", []
        if not done and rec.error is None:
            rec.error = "the stream ended without a done event"
            rec.error_kind = "stream"  # a complete HTTP response: not a dead replica
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
        # a blocking flock shows as a waiter in /proc/locks; filelock >= 4 polls with LOCK_NB
        # instead (never a waiter): then C still running after LOCK_WAIT_S without a .tmp-<its pid>
        # generation folder (the one it would write under the lock) is waiting
        if wait_for(lambda: c.pid in (flock_waiters() or set()), LOCK_WAIT_S, interval=0.2, alive=c):
            c_blocked, how = True, "seen waiting for the flock in /proc/locks"
        else:
            c_blocked = c.poll() is None and not any(index.glob(f".tmp-{c.pid}-*"))
            how = (
                f"still running after {LOCK_WAIT_S:.0f} s without a generation folder of its own"
                if c_blocked
                else f"exited ({c.returncode}) or wrote a generation folder while A held the lock"
            )
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


class Ctx:
    """What one run shares: the clock and log, the work folder, the child processes, the
    report, and what to undo at the end (after the child processes stopped)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.deadline = self.t0 + args.timeout
        self.work = Path(tempfile.mkdtemp(prefix="vraagbaak-replicas-"))
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.children = Children(self.logs)
        self.fake: FakeOpenAIServer | None = None
        self.cleanups: list[Callable[[], None]] = []
        self.vb = vraagbaak_cmd()
        threads = str(args.replica_threads)
        self.base_env = _env(
            dict(os.environ),
            OMP_NUM_THREADS=threads,
            MKL_NUM_THREADS=threads,
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
            VRAAGBAAK_LOG_JSON="true",
        )
        self.report: dict[str, Any] = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.wall0)),
            "work_dir": str(self.work),
        }

    def now(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def log(self, msg: str) -> None:
        print(f"[{self.now():7.1f}s] {msg}", flush=True)

    def close(self) -> None:
        t = time.monotonic()
        self.children.close()
        if self.fake is not None:
            self.fake.stop()
        for undo in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                undo()
        self.log(f"stopped everything this run started in {time.monotonic() - t:.1f} s")


def start_llm(ctx: Ctx, host: str = "127.0.0.1") -> str | None:
    """The one LLM server (fake, or llama_cpp.server) on ``host``; its /v1 URL (None: it failed)."""
    args = ctx.args
    if args.fake_llm:
        ctx.fake = FakeOpenAIServer(delay=args.fake_delay, model=LLM_ALIAS, host=host).start()
        ctx.report["llm"] = {"kind": "fake", "url": ctx.fake.base_url, "delay": args.fake_delay}
        return ctx.fake.base_url
    from rag.models import resolve_llm
    from rag.settings import Settings

    gguf = args.gguf or resolve_llm(Settings())
    port = free_port()
    llm_url = f"http://{host}:{port}/v1"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        LLM_ALIAS,
        "--host",
        host,
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
    ctx.report["llm"] = {"kind": "llama_cpp.server", "url": llm_url, "gguf": str(gguf), "cmd": cmd}
    ctx.log(f"starting llama_cpp.server on {llm_url} ({args.llm_threads} threads)")
    srv = ctx.children.start("llama-server", cmd, dict(os.environ), ctx.work)
    if not wait_for(lambda: http_ok(llm_url + "/models"), 300, alive=srv):
        ctx.log(f"llama_cpp.server did not come up:\n{ctx.children.log_tail('llama-server')}")
        return None
    return llm_url


def replica_env(ctx: Ctx, base: dict[str, str], llm_url: str) -> dict[str, str]:
    args = ctx.args
    return _env(
        base,
        VRAAGBAAK_LLM_BACKEND="openai",
        VRAAGBAAK_LLM_BASE_URL=llm_url,
        VRAAGBAAK_LLM_MODEL_NAME=LLM_ALIAS,
        VRAAGBAAK_LLM_TIMEOUT=str(args.request_timeout),
        VRAAGBAAK_MAX_ANSWER_TOKENS=str(args.max_answer_tokens),
        VRAAGBAAK_RATE_LIMIT_PER_MINUTE="0",
        VRAAGBAAK_LLM_QUEUE="16",
        VRAAGBAAK_LLM_QUEUE_TIMEOUT=str(args.queue_timeout),
    )


def wait_ready(ctx: Ctx, urls: list[str]) -> bool:
    ctx.log(f"started {len(urls)} replicas at {urls}; waiting for /readyz")
    for i, url in enumerate(urls):
        proc = ctx.children.procs[f"replica-{i}"]
        if not wait_for(functools.partial(http_ok, url + "/readyz"), ctx.args.start_timeout, alive=proc):
            ctx.log(f"replica {i} not ready:\n{ctx.children.log_tail(f'replica-{i}')}")
            return False
    ctx.report["replicas"] = [{"replica": i, "url": u} for i, u in enumerate(urls)]
    ctx.log("all replicas ready")
    return True


def new_docs_folder(ctx: Ctx) -> Path:
    new_dir = ctx.work / "nieuw"
    new_dir.mkdir()
    for d in NEW_DOCS:
        (new_dir / d.filename).write_text(d.text, encoding="utf-8")
    return new_dir


def load_questions() -> list[tuple[str, str, str]]:
    """Interleaved, a new-document question first: every replica is asked one before the ingest."""
    base = [(qid, "base", q) for qid, q in BASE_QUESTIONS]
    new = [(d.qid, "new", d.question) for d in NEW_DOCS]
    return [new[0], base[0], new[1], *base[1:]]


def has_new_doc(r: Record, new_docs: dict[str, str], gens: Mapping[str, int]) -> bool:
    """A new-document question answered on a generation that has its document."""
    n = gen_number(r.generation)
    return r.qid in new_docs and n is not None and new_docs[r.qid] in gens and n >= gens[new_docs[r.qid]]


def start_load(ctx: Ctx, urls: list[str], headers: dict[str, str] | None = None, failover: bool = False) -> Load:
    """The clients started; returns once ``--before`` answers are in."""
    args = ctx.args
    load = Load(
        urls,
        load_questions(),
        args.clients,
        ctx.t0,
        args.request_timeout,
        args.max_503_retries,
        args.think,
        ctx.deadline,
        headers=headers,
        failover=failover,
    )
    load.start()
    ctx.log(f"{args.clients} clients asking; the new documents come after {args.before} answers")
    wait_for(lambda: load.finished() >= args.before, ctx.left(), interval=0.2)
    return load


def ask_new_docs_everywhere(
    ctx: Ctx,
    urls: list[str],
    records: list[Record],
    new_docs: dict[str, str],
    gens: Mapping[str, int],
    take_seq: Callable[[], int],
    headers: dict[str, str] | None = None,
) -> list[Record]:
    """Every replica is asked each new-document question it has not yet answered (in
    ``records``), citing the document, on a generation that has it; the new records."""
    have = {
        (r.replica, r.qid)
        for r in records
        if has_new_doc(r, new_docs, gens) and not r.refused and new_docs[r.qid] in r.cited
    }
    out = []
    timeout = httpx.Timeout(ctx.args.request_timeout, connect=10.0)
    with httpx.Client(timeout=timeout, headers=headers or {}) as http:
        for i, url in enumerate(urls):
            for d in NEW_DOCS:
                if (i, d.qid) in have:
                    continue
                rec = Record(seq=take_seq(), client=-1, replica=i, endpoint="ask", qid=d.qid, kind="new", phase="final")
                ask(http, url, d.question, rec, ctx.now, ctx.args.max_503_retries, ctx.deadline + 600)
                out.append(rec)
    return out


def readyz_of(urls: list[str], skip: Iterable[int] = ()) -> list[dict[str, Any]]:
    out = []
    for i, url in enumerate(urls):
        if i in set(skip):
            continue
        with contextlib.suppress(httpx.HTTPError, ValueError):
            out.append({"replica": i, **httpx.get(url + "/readyz", timeout=10).json()})
    return out


def run(args: argparse.Namespace) -> int:
    ctx = Ctx(args)
    rc = 2
    try:
        rc = run_netns(ctx) if args.netns else run_local(ctx)
        return rc
    finally:
        ctx.close()
        report = ctx.report
        if "checks" in report or args.report_on_failure:
            report.setdefault("passed", False)
            report.setdefault("duration_s", round(ctx.now(), 1))
            out = Path(args.report)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            print(f"report: {out}")
        if args.keep or rc == 2:
            print(f"work folder kept: {ctx.work} (logs in {ctx.logs})")
        else:
            shutil.rmtree(ctx.work, ignore_errors=True)


def finish(ctx: Ctx, records: list[Record], checks: list[dict[str, Any]], **extra: Any) -> int:
    """Checks and records into the report, the summary printed; the exit status."""
    ctx.report.update(extra)
    ctx.report.update(
        {
            "checks": checks,
            "passed": all(c["ok"] for c in checks),
            "duration_s": round(ctx.now(), 1),
            "records": [asdict(r) for r in sorted(records, key=lambda r: r.seq)],
        }
    )
    if ctx.fake is not None:
        ctx.report["llm"]["requests"] = dict(ctx.fake.requests)
    print_summary(ctx.report, ctx.args.replicas)
    return 0 if ctx.report["passed"] else 1


def run_local(ctx: Ctx) -> int:
    """Replicas on loopback over ONE index folder, the ingest with the writer-lock checks."""
    args, log, report, children, vb, work = ctx.args, ctx.log, ctx.report, ctx.children, ctx.vb, ctx.work
    base_env = ctx.base_env
    index = work / "index"
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
    llm_url = start_llm(ctx)
    if llm_url is None:
        return 2

    # 3. the replicas
    ports = [free_port() for _ in range(args.replicas)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    env = replica_env(ctx, base_env, llm_url)
    for i, port in enumerate(ports):
        cmd = ["serve", "--host", "127.0.0.1", "--port", str(port), "--dev", "--index-dir", str(index)]
        children.start(f"replica-{i}", [*vb, *cmd, "--data-dir", str(work / f"data-{i}")], env, work)
    if not wait_ready(ctx, urls):
        return 2

    # 4. load, with the ingest in the middle
    new_dir = new_docs_folder(ctx)
    load = start_load(ctx, urls)
    log(f"{load.finished()} answers so far; ingesting {len(NEW_DOCS)} new documents")
    ing = ingest_with_lock_checks(
        children, vb, base_env, work, index, new_dir, args.hold, max(60.0, ctx.left()), ctx.t0, log
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
        lambda: load.finished(lambda r: r.started > switch + READER_CHECK_INTERVAL + args.stale_margin) >= args.after,
        ctx.left(),
        interval=0.2,
    )
    load.stop()
    log(f"load stopped: {len(load.records)} requests")

    # 5. afterwards: every replica answers every new-document question
    records = [r for r in load.records if r.started or r.finished]

    gens = {} if first_new_gen is None else dict.fromkeys(new_docs.values(), first_new_gen)
    next_seq = itertools.count(max((r.seq for r in records), default=0) + 1)
    records += ask_new_docs_everywhere(ctx, urls, records, new_docs, gens, next_seq.__next__)
    report["readyz"] = readyz_of(urls)

    # 6. checks and the report
    for r in records:
        if r.phase == "load":
            r.phase = "before" if r.started < ing["started_at"] else ("during" if r.started < switch else "after")
    checks = check_records(
        [asdict(r) for r in records],
        new_docs=new_docs,
        first_new_gen=first_new_gen,
        switch_time=switch,
        replicas=range(args.replicas),
        stale_margin=args.stale_margin,
    )
    checks += ing["lock_checks"]
    return finish(
        ctx,
        records,
        checks,
        new_docs=new_docs,
        first_new_generation=first_new_gen,
        switch_time_s=round(switch, 2),
    )


def _masked(url: str) -> str:
    return re.sub(r"(//[^:/@]+):[^@/]+@", r"\1:***@", url)


def rss_mb(pid: int) -> float | None:
    try:
        m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return round(int(m.group(1)) / 1024, 1) if m else None


def add_keys(ctx: Ctx, net: TestNet, env: dict[str, str], data_dir: Path) -> dict[str, str] | None:
    """The run's API keys, made with ``vraagbaak keys add`` on host 0 (in its namespace, with
    the database URL): ``load`` (reader, the clients), ``admin`` (the uploads), ``probe``
    (reader, revoked by the revocation check)."""
    keys = {}
    for name, role in (("load", "reader"), ("admin", "admin"), ("probe", "reader")):
        cmd = net.exec(0, [*ctx.vb, "keys", "add", f"loadtest-{name}", "--role", role, "--data-dir", str(data_dir)])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            ctx.log(f"vraagbaak keys add failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
            return None
        keys[name] = lines[-1].strip()
    return keys


def copy_host_keys(src: Path, dests: list[Path], name: str) -> str:
    """Where the keys live. Per-host SQLite (``src`` has ``name``): copied to every other host's
    data folder (SQLite's backup API), as an operator provisions each host; otherwise they are
    in the shared database and nothing is copied."""
    import sqlite3

    if src.exists():
        with contextlib.closing(sqlite3.connect(src)) as db:
            try:
                known = db.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone() is not None
            except sqlite3.Error:
                known = False
            if known:
                for dest in dests:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with contextlib.closing(sqlite3.connect(dest)) as out:
                        db.backup(out)
                return "per-host SQLite (keys.sqlite of host 0 copied to every host before start)"
    return "shared (not in host 0's keys.sqlite: in the database)"


def upload_new_docs(ctx: Ctx, urls: list[str], admin_key: str, new_dir: Path) -> list[dict[str, Any]]:
    """The ingest through the replicas' admin API: new document i uploaded to replica
    ``i % n`` (POST /v1/documents), all at once (two writers on two hosts)."""
    results: list[dict[str, Any]] = [{} for _ in NEW_DOCS]

    def upload(i: int, d: NewDoc) -> None:
        replica = i % len(urls)
        res: dict[str, Any] = {"qid": d.qid, "replica": replica, "file": d.filename, "started": ctx.now()}
        try:
            with open(new_dir / d.filename, "rb") as fh:
                resp = httpx.post(
                    urls[replica] + "/v1/documents",
                    files={"file": (d.filename, fh, "text/markdown")},
                    headers={"Authorization": f"Bearer {admin_key}"},
                    timeout=ctx.args.request_timeout,
                )
            res["status"] = resp.status_code
            res["result"] = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else None
        except httpx.HTTPError as exc:
            res["status"], res["error"] = None, f"{type(exc).__name__}: {exc}"
        res["finished"] = ctx.now()
        results[i] = res

    threads = [threading.Thread(target=upload, args=(i, d), name=f"upload-{i}") for i, d in enumerate(NEW_DOCS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def check_uploads(uploads: list[dict[str, Any]]) -> dict[str, Any]:
    bad = [
        u
        for u in uploads
        if u.get("status") != 201 or not (u.get("result") or {}).get("added") or not (u["result"].get("generation"))
    ]
    return _check(
        "ingest_through_replicas",
        not bad,
        f"{len(uploads) - len(bad)} of {len(uploads)} uploads (POST /v1/documents, admin key) indexed: "
        + "; ".join(
            f"{u.get('file')} via replica {u.get('replica')}: {u.get('status')} "
            f"generation {(u.get('result') or {}).get('generation')}"
            for u in uploads
        ),
        [{k: v for k, v in u.items() if k != "result"} | {"result": u.get("result")} for u in bad],
    )


def probe_revocation(
    urls: list[str], key: str, revoke: Callable[[], None], wait: float = 5.0, interval: float = 0.05
) -> list[dict[str, Any]]:
    """The probe key asked on every replica (GET /v1/models), revoked by ``revoke()``, then asked
    again every ``interval`` s until each replica refuses it (401) or ``wait`` s passed."""

    def status(http, url: str) -> int | None:
        try:
            return http.get(url + "/v1/models").status_code
        except httpx.HTTPError:
            return None

    with httpx.Client(timeout=5.0, headers={"Authorization": f"Bearer {key}"}) as http:
        probes: list[dict[str, Any]] = [{"replica": i, "before": status(http, u)} for i, u in enumerate(urls)]
        revoke()
        t = time.monotonic()
        pending = dict(enumerate(urls))
        while pending and time.monotonic() - t < wait:
            for i, url in list(pending.items()):
                probes[i]["last_status"] = st = status(http, url)
                if st == 401:
                    probes[i]["refused_after_s"] = round(time.monotonic() - t, 3)
                    del pending[i]
            time.sleep(interval)
        for p in probes:
            p.setdefault("refused_after_s", None)
            p["waited_s"] = round(time.monotonic() - t, 2)
    return probes


def run_netns(ctx: Ctx) -> int:
    """Replicas in network namespaces ("hosts") with one PostgreSQL and one LLM server on the
    host side of a private test network: an ingest through the replicas' admin API, a key
    revoked on one host, one replica killed mid-load."""
    args, log, report, children, vb = ctx.args, ctx.log, ctx.report, ctx.children, ctx.vb
    why = netns_unavailable()
    if why is None and not _pg_importable():
        why = "pgserver/psycopg are not installed: pip install -e '.[postgres,test]'"
    if why is not None:
        log(f"--netns cannot run: {why}")
        return 2
    n = args.replicas

    # 1. the test network, PostgreSQL on its host address, the base index written into it
    net = TestNet(n, args.subnet)
    ctx.cleanups.append(net.close)
    report["network"] = net.describe()
    log(f"test network {net.cidr}: host {net.host_ip} ({net.bridge}); replicas {net.ips} in {net.namespaces}")
    pg = PostgresOnTestNet(children, net.host_ip, net.cidr)
    ctx.cleanups.insert(0, pg.remove)  # undone last: after the server stopped
    if not pg.ready():
        log(f"PostgreSQL did not come up:\n{children.log_tail('postgres')}")
        return 2
    report["postgres"] = {"url": _masked(pg.url), "server": "pgserver (PostgreSQL 16 + pgvector)"}
    db_env = _env(ctx.base_env, VRAAGBAAK_DATABASE_URL=pg.url)
    log(f"PostgreSQL on {net.host_ip}:{PG_PORT}; building the index from {args.corpus} into it")
    if not build_index(children, vb, db_env, ctx.work, ctx.work / "index-unused", args, report, log):
        return 2

    # 2. the LLM server, on the host's test address
    llm_url = start_llm(ctx, net.host_ip)
    if llm_url is None:
        return 2

    # 3. the keys (made on host 0), the replicas (one per namespace, each its own folders)
    hosts = [ctx.work / f"host-{i}" for i in range(n)]
    for h in hosts:
        (h / "data").mkdir(parents=True)
        (h / "index").mkdir()
    keys = add_keys(ctx, net, db_env, hosts[0] / "data")
    if keys is None:
        return 2
    report["keys"] = copy_host_keys(
        hosts[0] / "data" / "keys.sqlite", [h / "data" / "keys.sqlite" for h in hosts[1:]], "loadtest-load"
    )
    log(f"keys: {report['keys']}")
    env = replica_env(ctx, db_env, llm_url)
    urls = [f"http://{ip}:{REPLICA_PORT}" for ip in net.ips]
    for i, (h, ip) in enumerate(zip(hosts, net.ips)):
        cmd = ["serve", "--host", ip, "--port", str(REPLICA_PORT), "--index-dir", str(h / "index")]
        children.start(f"replica-{i}", net.exec(i, [*vb, *cmd, "--data-dir", str(h / "data")]), env, h)
    if not wait_ready(ctx, urls):
        return 2

    # 4. load; the new documents uploaded through the replicas' admin API
    new_dir = new_docs_folder(ctx)
    headers = {"Authorization": f"Bearer {keys['load']}"}
    load = start_load(ctx, urls, headers, failover=True)
    log(f"{load.finished()} answers so far; uploading {len(NEW_DOCS)} new documents through the replicas")
    uploads = upload_new_docs(ctx, urls, keys["admin"], new_dir)
    report["uploads"] = uploads
    new_docs: dict[str, str] = {}
    gens: dict[str, int] = {}
    lag: dict[str, tuple[float, float]] = {}
    for d, u in zip(NEW_DOCS, uploads):
        res = u.get("result") or {}
        doc_id = (res.get("added") or res.get("doc_ids") or [f"?/{d.stem}"])[0]
        new_docs[d.qid] = doc_id
        if res.get("generation"):
            gens[doc_id] = int(res["generation"])
        lag[doc_id] = (u["started"], u["finished"] + READER_CHECK_INTERVAL + args.stale_margin)
    switch = max(u["finished"] for u in uploads)
    log(f"uploads done: {[(u.get('file'), u.get('replica'), u.get('status')) for u in uploads]}; generations {gens}")
    wait_for(
        lambda: load.finished(lambda r: r.started > switch + READER_CHECK_INTERVAL + args.stale_margin) >= args.after,
        ctx.left(),
        interval=0.2,
    )

    # 5. every replica answers every new document (the load paused meanwhile)
    load.pause(args.request_timeout)

    final = ask_new_docs_everywhere(ctx, urls, load.snapshot(), new_docs, gens, load.take_seq, headers)
    load.resume()

    # 6. a key revoked through host 0 is refused by every replica
    def revoke() -> None:
        cmd = net.exec(0, [*vb, "keys", "revoke", "loadtest-probe", "--data-dir", str(hosts[0] / "data")])
        proc = subprocess.run(cmd, env=db_env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"vraagbaak keys revoke failed: {proc.stderr.strip()[-500:]}")

    log("revoking the probe key through host 0")
    probes = probe_revocation(urls, keys["probe"], revoke, wait=args.revoke_wait)
    report["revocation"] = probes
    log("revocation: " + "; ".join(f"replica {p['replica']}: {p['refused_after_s']}" for p in probes))

    # 7. one replica killed (SIGKILL) while it has requests in flight
    victim = n - 1
    proc = children.procs[f"replica-{victim}"]
    report["rss_mb_before_kill"] = {i: rss_mb(children.procs[f"replica-{i}"].pid) for i in range(n)}
    if not wait_for(lambda: bool(load.in_flight(victim, older_than=0.3)), min(300.0, ctx.left()), interval=0.05):
        log(f"replica {victim} had no request in flight within 300 s; killing it anyway")
    kill_time = ctx.now()
    in_flight = [r.seq for r in load.in_flight(victim)]
    os.kill(proc.pid, signal.SIGKILL)
    log(f"killed replica {victim} (pid {proc.pid}, SIGKILL) with {len(in_flight)} requests in flight")
    report["kill"] = {"replica": victim, "pid": proc.pid, "time_s": round(kill_time, 2), "in_flight": in_flight}
    wait_for(
        lambda: load.finished(lambda r: r.started >= kill_time and r.replica != victim) >= args.after_kill,
        ctx.left(),
        interval=0.2,
    )
    load.stop()
    log(f"load stopped: {len(load.records)} requests")
    records = sorted([r for r in [*load.records, *final] if r.started or r.finished], key=lambda r: r.seq)
    report["readyz"] = readyz_of(urls, skip=[victim])

    # 8. checks and the report
    t_uploads = min(u["started"] for u in uploads)
    for r in records:
        if r.phase == "load":
            r.phase = (
                "before"
                if r.started < t_uploads
                else "during"
                if r.started < switch
                else "after-kill"
                if r.started >= kill_time
                else "after"
            )
    rec_dicts = [asdict(r) for r in records]
    checks = [check_uploads(uploads)]
    checks += check_records(
        rec_dicts,
        new_docs=new_docs,
        first_new_gen=gens if len(gens) == len(NEW_DOCS) else None,
        switch_time=switch,
        replicas=range(n),
        stale_margin=args.stale_margin,
        killed=(victim, kill_time),
        label_lag=lag,
    )
    checks += check_revocation(probes, within=args.revoke_within)
    checks += check_kill(rec_dicts, victim=victim, kill_time=kill_time, after=args.after_kill)
    return finish(
        ctx,
        records,
        checks,
        new_docs=new_docs,
        new_generations=gens,
        first_new_generation=min(gens.values()) if gens else None,
        switch_time_s=round(switch, 2),
    )


def _pg_importable() -> bool:
    try:
        import pgserver  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_summary(report: dict[str, Any], n_replicas: int) -> None:
    records = report["records"]
    new_docs = report.get("new_docs") or {}
    doc_gens = report.get("new_generations") or {}  # --netns: per document
    last = max(doc_gens.values()) if doc_gens else report.get("first_new_generation")

    def is_new(r) -> bool:
        """On a generation with the new documents (a new-document question: with its own)."""
        n = gen_number(r.get("generation"))
        bound = doc_gens.get(new_docs.get(r["qid"]), last)
        return bound is not None and n is not None and n >= bound

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
    net = ap.add_argument_group(
        "--netns: replicas on separate hosts",
        "each replica in a network namespace of its own (root; ip netns, veth, a bridge on a private "
        f"{TEST_NET_PREFIX}.X.0/24), PostgreSQL (pgserver) and the LLM server on the host side, the keys made "
        "with vraagbaak keys; an upload through the replicas' admin API, a key revoked on one host, "
        "one replica killed (SIGKILL) mid-load",
    )
    net.add_argument("--netns", action="store_true", help="run the replicas in network namespaces with PostgreSQL")
    net.add_argument(
        "--subnet", default=None, help=f"the test network's /24 as A.B.C (default: a free {TEST_NET_PREFIX}.X)"
    )
    net.add_argument("--after-kill", type=int, default=6, help="answers by the other replicas after the kill")
    net.add_argument(
        "--revoke-within", type=float, default=1.0, help="seconds within which every replica must refuse a revoked key"
    )
    net.add_argument("--revoke-wait", type=float, default=5.0, help="seconds the revoked key is asked for at most")
    ap.add_argument("--report", type=Path, default=None, help=f"default {DEFAULT_REPORT} ({NETNS_REPORT} with --netns)")
    ap.add_argument("--report-on-failure", action="store_true", help="write the report even if the run aborted")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (index, logs)")
    args = ap.parse_args(argv)
    if args.replicas < 1 or args.clients < 1:
        ap.error("--replicas and --clients must be at least 1")
    if args.netns and args.replicas < 2:
        ap.error("--netns needs at least 2 replicas (one is killed, the others answer)")
    if args.subnet is not None and not re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}", args.subnet):
        ap.error("--subnet: the first three numbers of a /24, e.g. 10.213.7")
    if args.report is None:
        args.report = NETNS_REPORT if args.netns else DEFAULT_REPORT
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a SIGTERM (timeout, CI) unwinds like Ctrl-C, so that every child process is stopped
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
