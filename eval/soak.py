"""Soak test: mixed traffic against a real ``vraagbaak serve``-style process for a given time,
with the server's memory, file descriptors and /healthz latency measured throughout.

Traffic (loopback only, bounded in time): ``--clients`` clients, sized to the LLM capacity
so that the gate is not overrun, each asking back to back a mix of questions (``/v1/ask``),
streamed questions read to the end (``/v1/ask/stream``), streams the client drops after the
first tokens (deliberate disconnects), follow-ups (with the previous turn as history) and
feedback on answers; one admin client that uploads small generated documents (.txt/.md,
``POST /v1/documents``) and deletes them again; and every ``--ingest-every`` seconds an
``ingest --sync`` of a folder whose contents change (a file added, edited or removed) into
the service's index folder, in a separate process, while the service serves. A 503, 429 or
409 with ``Retry-After`` is the documented "come back later": the client waits that long
and retries (counted, never an error).

Measured: VmRSS and open file descriptors of the server's process tree (the llama.cpp LLM
runs in a worker process in real mode) at the start (after ``--warmup``), every
``--sample-every`` seconds and at the end; responses by kind and status; 5xx other than
503-with-Retry-After; transport errors other than the deliberate disconnects; /healthz every
0.5 s (p50/p99); answers per minute; the ingests and their seconds; the index generations
seen in answers (``index_generation``). At the end the LLM gate must drain.

Pass criteria (printed; exit status 0 = passed, 1 = failed, 2 = could not run): 0 unexpected
5xx, 0 unexpected 4xx, 0 transport errors, RSS growth end-vs-start below
``--max-rss-growth-mb``, fd growth below ``--max-fd-growth``, /healthz p99 below
``--health-p99-ms``, every ingest succeeded and at least one answer came from its generation
(or a later one), the gate drained.

    # CI: the real service (uvicorn) with a fake LLM over a test index (hash embedder)
    python -m eval.soak --fake --duration 90

    # the real thing: vraagbaak serve with the default models over data/voorbeeld (long)
    python -m eval.soak --real --duration 1800 --out eval/reports/soak.json

``--json`` prints only the JSON result; ``--out FILE`` writes the JSON to FILE and the
markdown table next to it (FILE with .md). tests/test_soak.py runs the fake mode for ~50 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parent.parent

# questions about service/testing.py's corpus (fake mode)
FAKE_QUESTIONS = [
    "Hoeveel geld gaat er naar mantelzorgondersteuning?",
    "Wat staat er in de motie over preventie?",
    "Hoeveel is er begroot voor jeugdhulp?",
    "Wat doet het college met buurtsportcoaches?",
]
# questions about data/voorbeeld (eval/gold/demo.jsonl q001, q010, q044, q063)
REAL_QUESTIONS = [
    "Sinds wanneer is de gemeente verantwoordelijk voor de zorgtaken die vroeger onder de AWBZ "
    "en de Wet op de jeugdzorg vielen?",
    "Waar staat GON voor?",
    "Waar is de permanente winteropvang voor daklozen gekomen?",
    "Hoeveel maatregelen bevat het alcoholconvenant met de studenten?",
]
# about the documents in the folder that changes between ingests
CHANGING_QUESTION = "Wat staat er in de soaknotitie over de fietsenstalling?"
FOLLOW_UPS = ["Kun je dat toelichten?", "En hoe zit dat voor het jaar daarna?", "Wie is daarvoor verantwoordelijk?"]
RETRY_STATUSES = (409, 429, 503)  # with Retry-After: wait and retry (the documented contract)
MAX_RETRY_WAIT = 30.0


# --------------------------------------------------------------------------- the server's process tree


def _ppids() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 2:
            out[int(entry)] = int(fields[1])
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for child, parent in _ppids().items():
        children.setdefault(parent, []).append(child)
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def _status_kb(pid: int, name: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def sample_tree(pid: int) -> dict[str, Any]:
    """VmRSS (and RssAnon) in MB and open fds of ``pid``'s process tree, the root's own, and
    per process (``pids``: pid -> [rss kB, fds])."""
    procs = process_tree(pid)
    rss = {p: _status_kb(p, "VmRSS") for p in procs}
    anon = sum(_status_kb(p, "RssAnon") for p in procs)
    fds = {p: _fd_count(p) for p in procs}
    return {
        "processes": len(procs),
        "rss_mb": round(sum(rss.values()) / 1024, 1),
        "rss_anon_mb": round(anon / 1024, 1),
        "fds": sum(fds.values()),
        "server_rss_mb": round(rss.get(pid, 0) / 1024, 1),
        "server_fds": fds.get(pid, 0),
        "pids": {str(p): [rss[p], fds[p]] for p in procs},
    }


def growth(start: dict[str, Any], end: dict[str, Any]) -> tuple[float, int]:
    """RSS (MB) and fd growth from ``start`` to ``end``: the whole tree at the end against the
    processes of the start sample that are still there at the end (a short-lived worker, such
    as an upload's parse process, that happened to run at the start is not the baseline; a
    process that is new at the end counts in full)."""
    alive = [p for p in start["pids"] if p in end["pids"]]
    rss0 = sum(start["pids"][p][0] for p in alive) / 1024
    fds0 = sum(start["pids"][p][1] for p in alive)
    return round(end["rss_mb"] - rss0, 1), end["fds"] - fds0


# --------------------------------------------------------------------------- helpers


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def gen_number(name: Any) -> int | None:
    """``gen-000007`` (or 7) -> 7."""
    if isinstance(name, int):
        return name
    m = re.fullmatch(r"gen-(\d+)", str(name or ""))
    return int(m.group(1)) if m else None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _json_from(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


async def _metrics(client, url: str) -> dict[str, float]:
    """The service's Prometheus metrics, summed over labels (``name`` -> value)."""
    out: dict[str, float] = {}
    try:
        text = (await client.get(url + "/metrics", timeout=10)).text
    except httpx.HTTPError:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})?\s+(\S+)$", line)
        if m:
            with contextlib.suppress(ValueError):
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


# --------------------------------------------------------------------------- the changing folder


class ChangingFolder:
    """A folder of small notes that changes before each ingest: a file added, edited or
    removed in turn (at least one file stays)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.n = 0
        self._write(f"soaknotitie-{self.n:03d}.md")

    def _write(self, name: str, extra: str = "") -> None:
        self.n += 1
        text = (
            f"# Soaknotitie {self.n}\n\n## Fietsenstalling\n\n"
            f"De soaknotitie {self.n} meldt dat de fietsenstalling bij het stadhuis {100 + self.n} plekken krijgt. "
            f"De fietsenstalling is open van 7 tot 23 uur.\n{extra}"
        )
        (self.folder / name).write_text(text, encoding="utf-8")

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*.md"))

    def change(self, step: int) -> str:
        files = self.files()
        what = ("add", "edit", "remove")[step % 3]
        if what == "remove" and len(files) > 1:
            files[0].unlink()
            return f"removed {files[0].name}"
        if what == "edit" and files:
            with files[-1].open("a", encoding="utf-8") as fh:
                fh.write(f"\nAanvulling {step}: de fietsenstalling krijgt {step} extra oplaadpunten.\n")
            return f"edited {files[-1].name}"
        name = f"soaknotitie-{self.n:03d}.md"
        self._write(name)
        return f"added {name}"


def fake_ingest(index_dir: Path, folder: Path) -> int:
    """``--fake-ingest INDEX FOLDER``: what ``vraagbaak ingest FOLDER --sync --wait --json``
    does, with the hash embedder of the fake server (tests/conftest.py); prints the report."""
    sys.path.insert(0, str(REPO))
    from rag.indexing import ingest_paths
    from rag.settings import Settings
    from tests.conftest import HashEmbedder

    settings = Settings(index_dir=index_dir, models_dir=index_dir.parent / "models", refusal_min_score=0.0)
    report = ingest_paths([folder], settings, HashEmbedder(), sync=True, wait=True)
    print(json.dumps(report.to_dict()), flush=True)
    return 0 if report.ok else 1


# --------------------------------------------------------------------------- the soak


@dataclass
class SoakConfig:
    mode: str  # "fake" | "real"
    duration: float
    warmup: float
    clients: int
    ingest_every: float
    upload_every: float
    sample_every: float = 10.0
    health_every: float = 0.5
    think: float = 0.2
    request_timeout: float = 300.0
    ingest_timeout: float = 900.0
    questions: list[str] = field(default_factory=lambda: list(FAKE_QUESTIONS))
    max_rss_growth_mb: float = 150.0
    max_fd_growth: int = 20
    health_p99_ms: float = 250.0
    llm_concurrency: int = 1
    seed: int = 17


@dataclass
class Target:
    """What the soak talks to and measures."""

    url: str
    pid: int
    reader_keys: list[str]
    admin_key: str
    ingest_cmd: Callable[[Path], list[str]]  # folder -> the ingest command
    folder: Path  # the folder that changes between ingests
    env: dict[str, str] | None = None


class Soak:
    def __init__(self, target: Target, cfg: SoakConfig, log: Callable[[str], None]) -> None:
        self.t, self.cfg, self.log = target, cfg, log
        self.statuses: Counter[str] = Counter()  # "kind status"
        self.unexpected: list[dict[str, Any]] = []
        self.transport: list[dict[str, Any]] = []
        self.retries = Counter[str]()
        self.http_503 = 0
        self.disconnects = 0
        self.answers: list[dict[str, Any]] = []  # {"t", "kind", "generation"}
        self.health: list[float] = []
        self.health_fail = 0
        self.samples: list[dict[str, Any]] = []
        self.ingests: list[dict[str, Any]] = []
        self.uploaded: list[str] = []
        self.t0 = time.monotonic()
        self.end = self.t0 + cfg.duration

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- bookkeeping -------------------------------------------------------------------
    def _note(self, kind: str, status: str) -> None:
        self.statuses[f"{kind} {status}"] += 1

    def _classify(self, kind: str, code: int, headers, body: str) -> float | None:
        """Count a response; returns the seconds to wait before retrying, or None."""
        self._note(kind, str(code))
        wait = _retry_after(headers.get("retry-after"))
        if code == 503:
            self.http_503 += 1
        if code in RETRY_STATUSES and wait is not None:
            self.retries[f"{kind} {code}"] += 1
            return min(wait, MAX_RETRY_WAIT)
        if code >= 500 or (code >= 400 and code not in RETRY_STATUSES) or code in RETRY_STATUSES:
            # a 5xx, a 503/429/409 without Retry-After, or a 4xx the soak should never cause
            self.unexpected.append({"t": round(self.now(), 1), "kind": kind, "status": code, "body": body[:300]})
        return None

    def _transport(self, kind: str, exc: BaseException) -> None:
        self._note(kind, f"error:{type(exc).__name__}")
        self.transport.append({"t": round(self.now(), 1), "kind": kind, "error": f"{type(exc).__name__}: {exc}"[:300]})

    def _answer(self, kind: str, answer: dict[str, Any]) -> None:
        self.answers.append({"t": round(self.now(), 2), "kind": kind, "generation": answer.get("index_generation")})

    async def _sleep_retry(self, wait: float) -> bool:
        """Wait ``wait`` s unless that runs past the end (+ a grace); False = give up."""
        if time.monotonic() + wait > self.end + 120:
            return False
        await asyncio.sleep(wait)
        return True

    # -- requests ----------------------------------------------------------------------
    async def _post(self, client, kind: str, path: str, key: str, **kw) -> Any:
        """A request, retried after Retry-After on 503/429/409; the last response or None."""
        method = kw.pop("method", "POST")
        while True:
            try:
                resp = await client.request(method, self.t.url + path, headers=_auth(key), **kw)
            except httpx.HTTPError as exc:
                self._transport(kind, exc)
                return None
            wait = self._classify(kind, resp.status_code, resp.headers, resp.text)
            if wait is None or not await self._sleep_retry(wait):
                return resp

    async def ask(self, client, key: str, question: str, history: list[dict[str, str]], kind: str) -> Any:
        resp = await self._post(client, kind, "/v1/ask", key, json={"question": question, "history": history})
        if resp is not None and resp.status_code == 200:
            answer = resp.json()
            self._answer(kind, answer)
            return answer
        return None

    async def stream(self, client, key: str, question: str, kind: str, drop_after: int | None = None) -> Any:
        """POST /v1/ask/stream read to ``done`` (or dropped after ``drop_after`` tokens)."""
        body = {"question": question}
        while True:
            wait = None
            try:
                async with client.stream("POST", self.t.url + "/v1/ask/stream", json=body, headers=_auth(key)) as resp:
                    if resp.status_code != 200:
                        text = (await resp.aread()).decode(errors="replace")
                        wait = self._classify(kind, resp.status_code, resp.headers, text)
                        if wait is None or not await self._sleep_retry(wait):
                            return None
                        continue
                    event, data, tokens = "message", [], 0
                    answer: dict[str, Any] | None = None
                    async for line in resp.aiter_lines():
                        if answer is not None:
                            continue  # after done: read to the end of the stream
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].lstrip())
                        elif line == "" and data:
                            payload = json.loads("\n".join(data))
                            data = []
                            if event == "token":
                                tokens += 1
                                if drop_after is not None and tokens >= drop_after:
                                    self._note(kind, "disconnect")
                                    self.disconnects += 1
                                    return None  # leaving the block closes the connection mid-stream
                            elif event == "done":
                                answer = payload["answer"]
                            elif event == "error":
                                ra = payload.get("retry_after")
                                if payload.get("code") == "llm_unavailable" and ra is not None:
                                    self._note(kind, "200 error:llm_unavailable")
                                    self.retries[f"{kind} llm_unavailable"] += 1
                                    wait = min(float(ra), MAX_RETRY_WAIT)
                                    break
                                self._note(kind, f"200 error:{payload.get('code')}")
                                self.unexpected.append(
                                    {"t": round(self.now(), 1), "kind": kind, "status": 200, "body": str(payload)[:300]}
                                )
                                return None
                    else:
                        if answer is not None:
                            self._note(kind, "200 done")
                            self._answer(kind, answer)
                            return answer
                        self._note(kind, "200 incomplete")
                        self.unexpected.append(
                            {"t": round(self.now(), 1), "kind": kind, "status": 200, "body": "stream ended early"}
                        )
                        return None
            except httpx.HTTPError as exc:
                self._transport(kind, exc)
                return None
            if wait is None or not await self._sleep_retry(wait):
                return None

    # -- the actors --------------------------------------------------------------------
    async def reader(self, client, i: int) -> None:
        rnd = random.Random(self.cfg.seed * 1000 + i)
        key = self.t.reader_keys[i % len(self.t.reader_keys)]
        prev: tuple[str, dict[str, Any]] | None = None
        kinds = ["ask", "stream", "disconnect", "followup"]
        weights = [35, 30, 10, 25]
        while time.monotonic() < self.end:
            kind = rnd.choices(kinds, weights)[0]
            q = CHANGING_QUESTION if rnd.random() < 0.15 else rnd.choice(self.cfg.questions)
            answer = None
            if kind == "followup" and prev is not None:
                history = [
                    {"role": "user", "content": prev[0]},
                    {"role": "assistant", "content": prev[1]["answer"][:2000]},
                ]
                answer = await self.ask(client, key, rnd.choice(FOLLOW_UPS), history, "followup")
            elif kind in ("ask", "followup"):
                answer = await self.ask(client, key, q, [], "ask")
            elif kind == "stream":
                answer = await self.stream(client, key, q, "stream")
            else:
                await self.stream(client, key, q, "disconnect", drop_after=2)
            if answer is not None:
                prev = (q, answer)
                if rnd.random() < 0.35:
                    body = {"answer_id": answer["id"], "rating": rnd.choice(["up", "down"])}
                    if rnd.random() < 0.5:
                        body["comment"] = "soak: automatisch gegeven feedback"
                    await self._post(client, "feedback", "/v1/feedback", key, json=body)
            await asyncio.sleep(self.cfg.think * (0.5 + rnd.random()))

    async def admin(self, client) -> None:
        rnd = random.Random(self.cfg.seed)
        n = 0
        while time.monotonic() < self.end - 1:
            await asyncio.sleep(
                min(self.cfg.upload_every * (0.5 + rnd.random()), max(0.0, self.end - time.monotonic()))
            )
            if time.monotonic() >= self.end:
                break
            if self.uploaded and (len(self.uploaded) >= 3 or rnd.random() < 0.35):
                await self.delete(client, self.uploaded.pop(0))
                continue
            n += 1
            ext = ".md" if n % 2 else ".txt"
            name = f"soak-upload-{n:04d}{ext}"
            text = (
                f"{'# ' if ext == '.md' else ''}Soak upload {n}\n\n"
                f"Dit document {n} is geüpload door de soaktest. De speeltuin in wijk {n} krijgt "
                f"{n * 3} nieuwe banken en een watertappunt.\n"
            )
            data = {"groups": "financien"} if n % 3 == 0 else {}
            resp = await self._post(
                client,
                "upload",
                "/v1/documents",
                self.t.admin_key,
                files={"file": (name, text.encode(), "text/markdown" if ext == ".md" else "text/plain")},
                data=data,
            )
            if resp is not None and resp.status_code == 201:
                self.uploaded += resp.json().get("doc_ids") or []

    async def delete(self, client, doc_id: str) -> None:
        await self._post(client, "delete", f"/v1/documents/{doc_id}", self.t.admin_key, method="DELETE")

    async def ingester(self) -> None:
        folder = ChangingFolder(self.t.folder)
        step = 0
        margin = max(5.0, self.cfg.ingest_every / 3)
        while True:
            at = self.t0 + (step + 1) * self.cfg.ingest_every
            if at > self.end - margin:
                return
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            change = folder.change(step)
            cmd = self.t.ingest_cmd(self.t.folder)
            started = self.now()
            t = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=str(REPO),
                env=self.t.env,
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), self.cfg.ingest_timeout)
            except TimeoutError:
                proc.kill()
                out, err = await proc.communicate()
            report = _json_from(out.decode(errors="replace")) or {}
            rec = {
                "step": step,
                "change": change,
                "started_s": round(started, 1),
                "finished_s": round(self.now(), 1),
                "seconds": round(time.perf_counter() - t, 2),
                "returncode": proc.returncode,
                "generation": report.get("generation"),
                "added": len(report.get("added") or []),
                "updated": len(report.get("updated") or []),
                "removed": len(report.get("removed") or []),
                "unchanged": len(report.get("unchanged") or []),
            }
            if proc.returncode != 0:
                rec["stderr"] = err.decode(errors="replace")[-800:]
            self.ingests.append(rec)
            self.log(
                f"ingest {step}: {change}: exit {proc.returncode}, generation {rec['generation']}, {rec['seconds']} s"
            )
            step += 1

    async def prober(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as hc:  # its own connection
            while time.monotonic() < self.end:
                t = time.perf_counter()
                try:
                    resp = await hc.get(self.t.url + "/healthz")
                    if resp.status_code != 200:
                        self.health_fail += 1
                except httpx.HTTPError:
                    self.health_fail += 1
                self.health.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(max(0.0, self.cfg.health_every - (time.perf_counter() - t)))

    def sample(self, label: str) -> dict[str, Any]:
        s = {"t": round(self.now(), 1), "label": label, **sample_tree(self.t.pid)}
        s["answers"] = len(self.answers)
        self.samples.append(s)
        return s

    async def sampler(self) -> None:
        start_at = self.t0 + self.cfg.warmup
        started = False
        next_at = self.t0 + self.cfg.sample_every
        while time.monotonic() < self.end:
            if not started and time.monotonic() >= start_at:
                s = self.sample("start")
                started = True
                self.log(f"start (after {self.cfg.warmup:.0f} s warm-up): {_fmt_sample(s)}")
                continue
            if time.monotonic() >= next_at:
                s = self.sample("")
                next_at += self.cfg.sample_every
                self.log(f"{_fmt_sample(s)}; {sum(self.statuses.values())} responses")
            wake = min(next_at, start_at if not started else next_at, self.end)
            await asyncio.sleep(max(0.05, min(1.0, wake - time.monotonic())))

    # -- the run -----------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        n = cfg.clients + 4
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        timeout = httpx.Timeout(cfg.request_timeout, connect=10.0)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            self.sample("t0")
            await asyncio.gather(
                self.prober(),
                self.sampler(),
                self.ingester(),
                self.admin(client),
                *(self.reader(client, i) for i in range(cfg.clients)),
            )
            load_s = self.now()
            self.log(f"load stopped after {load_s:.0f} s; cleaning up and checking")
            for doc_id in list(self.uploaded):  # leave no uploads behind
                await self.delete(client, doc_id)
            self.uploaded.clear()
            # a last answer (so the last ingest's generation is answered from, if no one did yet)
            await self.ask(client, self.t.reader_keys[0], cfg.questions[0], [], "final")
            drained, m = False, {}
            t = time.monotonic()
            while time.monotonic() - t < 60:
                m = await _metrics(client, self.t.url)
                if m.get("vraagbaak_llm_in_flight") == 0 and m.get("vraagbaak_llm_queue_depth") == 0:
                    drained = True
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # let closed connections and parse workers go
            end = self.sample("end")
            self.log(f"end: {_fmt_sample(end)}")
        return self.result(load_s, drained, m)

    def result(self, load_s: float, drained: bool, m: dict[str, float]) -> dict[str, Any]:
        cfg = self.cfg
        start = next((s for s in self.samples if s["label"] == "start"), self.samples[0])
        end = self.samples[-1]
        by_kind: dict[str, dict[str, int]] = {}
        for k, v in sorted(self.statuses.items()):
            kind, status = k.split(" ", 1)
            by_kind.setdefault(kind, {})[status] = v
        unexpected_5xx = [u for u in self.unexpected if u["status"] >= 500]
        unexpected_other = [u for u in self.unexpected if u["status"] < 500]
        answers_in_load = [a for a in self.answers if a["kind"] != "final"]
        ordered = sorted(self.answers, key=lambda a: a["t"])
        gens = [a["generation"] for a in ordered]
        changes = sum(1 for a, b in zip(gens, gens[1:]) if a != b)
        after_each = []
        for ing in self.ingests:
            g = gen_number(ing["generation"])
            after_each.append(
                sum(1 for a in self.answers if g is not None and (gen_number(a["generation"]) or -1) >= g)
                if ing["returncode"] == 0
                else 0
            )
        ingest_s = [i["seconds"] for i in self.ingests]
        rss_growth, fd_growth = growth(start, end)
        health_p99 = percentile(self.health, 99)
        result: dict[str, Any] = {
            "mode": cfg.mode,
            "duration_s": round(load_s, 1),
            "warmup_s": cfg.warmup,
            "clients": cfg.clients,
            "llm_concurrency": cfg.llm_concurrency,
            "requests": sum(v for k, v in self.statuses.items()),
            "by_kind": by_kind,
            "answers": len(self.answers),
            "answers_per_min": round(len(answers_in_load) / load_s * 60, 1) if load_s else 0.0,
            "http_503": self.http_503,
            "retried": dict(sorted(self.retries.items())),
            "unexpected_5xx": len(unexpected_5xx),
            "unexpected_4xx": len(unexpected_other),
            "unexpected": self.unexpected[:20],
            "transport_errors": len(self.transport),
            "transport_examples": self.transport[:10],
            "deliberate_disconnects": self.disconnects,
            "server_disconnects_counted": m.get("vraagbaak_client_disconnects_total"),
            "healthz_probes": len(self.health),
            "healthz_failures": self.health_fail,
            "healthz_p50_ms": round(statistics.median(self.health), 1) if self.health else None,
            "healthz_p99_ms": round(health_p99, 1) if self.health else None,
            "healthz_max_ms": round(max(self.health), 1) if self.health else None,
            "ingests": self.ingests,
            "ingests_done": sum(1 for i in self.ingests if i["returncode"] == 0),
            "ingest_seconds_median": round(statistics.median(ingest_s), 2) if ingest_s else None,
            "ingest_seconds_max": max(ingest_s) if ingest_s else None,
            "answers_after_each_ingest": after_each,
            "generations_seen": sorted({g for g in gens if g}),
            "generation_changes_in_answers": changes,
            "rss_start_mb": start["rss_mb"],
            "rss_end_mb": end["rss_mb"],
            "rss_max_mb": max(s["rss_mb"] for s in self.samples),
            "rss_growth_mb": rss_growth,
            "server_rss_growth_mb": round(end["server_rss_mb"] - start["server_rss_mb"], 1),
            "rss_anon_start_mb": start["rss_anon_mb"],
            "rss_anon_end_mb": end["rss_anon_mb"],
            "fds_start": start["fds"],
            "fds_end": end["fds"],
            "fds_max": max(s["fds"] for s in self.samples),
            "fd_growth": fd_growth,
            "processes_start": start["processes"],
            "processes_end": end["processes"],
            "short_lived_at_start": sorted(set(start["pids"]) - set(end["pids"])),
            "new_at_end": sorted(set(end["pids"]) - set(start["pids"])),
            "gate_drained": drained,
            "samples": self.samples,
            "limits": {
                "max_rss_growth_mb": cfg.max_rss_growth_mb,
                "max_fd_growth": cfg.max_fd_growth,
                "health_p99_ms": cfg.health_p99_ms,
            },
        }
        checks = [
            ("no unexpected 5xx", not unexpected_5xx, f"{len(unexpected_5xx)} (503 with Retry-After: {self.http_503})"),
            ("no unexpected 4xx or stream errors", not unexpected_other, f"{len(unexpected_other)}"),
            ("no transport errors", not self.transport, f"{len(self.transport)} (deliberate: {self.disconnects})"),
            (
                "RSS growth",
                result["rss_growth_mb"] < cfg.max_rss_growth_mb,
                f"{result['rss_growth_mb']} MB < {cfg.max_rss_growth_mb:g}",
            ),
            (
                "service process RSS growth",
                result["server_rss_growth_mb"] < SERVER_RSS_GROWTH_MB,
                f"{result['server_rss_growth_mb']} MB < {SERVER_RSS_GROWTH_MB:g}",
            ),
            ("fd growth", result["fd_growth"] < cfg.max_fd_growth, f"{result['fd_growth']} < {cfg.max_fd_growth}"),
            (
                "/healthz p99",
                bool(self.health) and self.health_fail == 0 and health_p99 < cfg.health_p99_ms,
                f"{result['healthz_p99_ms']} ms < {cfg.health_p99_ms:g} ({self.health_fail} failed)",
            ),
            (
                "ingests succeeded",
                bool(self.ingests) and result["ingests_done"] == len(self.ingests),
                f"{result['ingests_done']}/{len(self.ingests)}",
            ),
            (
                "an answer after each ingest",
                bool(after_each) and all(n > 0 for n in after_each),
                f"{after_each}",
            ),
            ("answers", bool(answers_in_load), f"{len(answers_in_load)}"),
            ("LLM gate drained at the end", drained, ""),
        ]
        result["checks"] = [{"name": n, "ok": bool(ok), "detail": d} for n, ok, d in checks]
        result["passed"] = all(c["ok"] for c in result["checks"])
        return result


def _ram_cache_mb() -> float:
    """The configured prompt-state cache of the llama.cpp worker (rag.settings: llm_ram_cache_mb)."""
    from rag.settings import Settings

    return float(getattr(Settings(), "llm_ram_cache_mb", 0) or 0)


SERVER_RSS_GROWTH_MB = 100.0  # the vraagbaak process itself (its children: the tree check)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _fmt_sample(s: dict[str, Any]) -> str:
    return f"rss {s['rss_mb']} MB ({s['processes']} processes), {s['fds']} fds, {s['answers']} answers"


# --------------------------------------------------------------------------- markdown


def _gens(names: list[str]) -> str:
    if len(names) <= 3:
        return ", ".join(names) or "-"
    return f"{len(names)} generations, {names[0]} … {names[-1]}"


def markdown(r: dict[str, Any]) -> str:
    def kind(name: str) -> str:
        d = r["by_kind"].get(name) or {}
        return ", ".join(f"{k}: {v}" for k, v in d.items()) or "-"

    llm = "fake LLM" if r["mode"] == "fake" else "llama.cpp (default model)"
    sd = r.get("server_disconnects_counted")
    counted = f"{sd:.0f}" if sd is not None else "?"
    ing = r["ingests"]
    rows = [
        (
            "run",
            f"{r['mode']}: {llm}, {r['clients']} clients + 1 admin, LLM concurrency {r['llm_concurrency']}",
            f"{r['duration_s']:.0f} s ({r['warmup_s']:.0f} s warm-up)",
        ),
        ("requests", f"ask {kind('ask')}; stream {kind('stream')}; follow-up {kind('followup')}", f"{r['requests']}"),
        ("", f"dropped streams {kind('disconnect')}; feedback {kind('feedback')}", ""),
        ("", f"upload {kind('upload')}; delete {kind('delete')}", ""),
        ("answers per minute", f"{r['answers']} answers", f"{r['answers_per_min']}"),
        ("unexpected 5xx", f"503 with Retry-After (waited, retried): {r['http_503']}", f"{r['unexpected_5xx']}"),
        ("unexpected 4xx / stream errors", "", f"{r['unexpected_4xx']}"),
        (
            "transport errors",
            f"deliberate disconnects: {r['deliberate_disconnects']} (the service counted {counted})",
            f"{r['transport_errors']}",
        ),
        (
            "/healthz every 0.5 s",
            f"{r['healthz_probes']} probes, {r['healthz_failures']} failed, max {r['healthz_max_ms']} ms",
            f"p50 {r['healthz_p50_ms']} ms, p99 {r['healthz_p99_ms']} ms",
        ),
        (
            "ingest --sync (file added/edited/removed)",
            f"{r['ingests_done']}/{len(ing)} done; answers from its generation on: {r['answers_after_each_ingest']}",
            f"median {r['ingest_seconds_median']} s, max {r['ingest_seconds_max']} s",
        ),
        (
            "index generations seen in answers",
            _gens(r["generations_seen"]),
            f"{r['generation_changes_in_answers']} changes",
        ),
        (
            "RSS (VmRSS) of the server's process tree",
            f"start {r['rss_start_mb']} MB ({r['processes_start']} processes), end {r['rss_end_mb']} MB "
            f"({r['processes_end']}), max {r['rss_max_mb']} MB",
            f"growth {r['rss_growth_mb']:+.1f} MB (limit {r['limits']['max_rss_growth_mb']:g})",
        ),
        (
            "open file descriptors",
            f"start {r['fds_start']}, end {r['fds_end']}, max {r['fds_max']}",
            f"growth {r['fd_growth']:+d} (limit {r['limits']['max_fd_growth']})",
        ),
        ("LLM gate drained at the end", "", f"{r['gate_drained']}"),
    ]
    lines = ["| soak | what | figure |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    failed = [c["name"] for c in r["checks"] if not c["ok"]]
    lines.append(f"| **result** | {'all checks passed' if not failed else 'FAILED: ' + ', '.join(failed)} | |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the two modes


def vraagbaak_cmd() -> list[str]:
    for p in (Path(sys.executable).with_name("vraagbaak"), REPO / ".venv" / "bin" / "vraagbaak"):
        if p.is_file():
            return [str(p)]
    found = shutil.which("vraagbaak")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from rag.cli import main; sys.argv[0] = 'vraagbaak'; main()"]


def _free_port() -> int:
    from service.testing import free_port

    return free_port()


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/readyz", timeout=5)
            if r.status_code == 200:
                return
            if r.headers.get("content-type", "").startswith("application/json") and r.json().get("status") == "error":
                raise RuntimeError("the server could not load its models or index (readyz: error)")
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        time.sleep(0.5)
    raise RuntimeError(f"the server was not ready after {timeout:.0f} s")


def _stop(proc: subprocess.Popen | None, grace: float) -> None:
    """SIGTERM (the service drains), then SIGKILL of what is left of its tree, by pid."""
    if proc is None:
        return
    tree = process_tree(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pid in tree[1:]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def run_fake(cfg: SoakConfig, work: Path, log: Callable[[str], None], delay: float, tokens: int) -> dict[str, Any]:
    from service.testing import FakeService

    svc = FakeService(work / "svc", delay=delay, tokens=tokens, grace=10.0)
    try:
        log(f"starting the fake service (fake LLM {delay} s/token) in {svc.root}")
        ready_s = svc.start(timeout=120)
        log(f"ready after {ready_s:.1f} s on {svc.url}")
        target = Target(
            url=svc.url,
            pid=svc.proc.pid,
            reader_keys=json.loads((svc.root / "keys.json").read_text()),
            admin_key=json.loads((svc.root / "admin-key.json").read_text()),
            ingest_cmd=lambda folder: [
                sys.executable,
                "-m",
                "eval.soak",
                "--fake-ingest",
                str(svc.root / "index"),
                str(folder),
            ],
            folder=work / "changing" / "soak",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return asyncio.run(Soak(target, cfg, log).run())
    finally:
        _stop(svc.proc, 15.0)


def run_real(
    cfg: SoakConfig, work: Path, log: Callable[[str], None], corpus: Path, start_timeout: float
) -> dict[str, Any]:
    vb = vraagbaak_cmd()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    index, data = work / "index", work / "data"
    env = {k: v for k, v in os.environ.items() if k != "VRAAGBAAK_CONFIG"}
    env.update(
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
        VRAAGBAAK_DATA_DIR=str(data),
        VRAAGBAAK_LLM_CONCURRENCY=str(cfg.llm_concurrency),
        VRAAGBAAK_LOG_JSON="true",
    )

    def cli(*args: str, timeout: float) -> str:
        r = subprocess.run(
            [*vb, *args], env=env, cwd=str(REPO), capture_output=True, text=True, timeout=timeout, check=False
        )
        if r.returncode != 0:
            raise RuntimeError(f"vraagbaak {' '.join(args)} exited {r.returncode}: {r.stderr[-1500:]}")
        return r.stdout

    log(f"building the index of {corpus} in {index}")
    t = time.monotonic()
    rep = _json_from(cli("ingest", str(corpus), "--json", "--index-dir", str(index), timeout=3600)) or {}
    log(
        f"index generation {rep.get('generation')}: {len(rep.get('added') or [])} documents ({time.monotonic() - t:.0f} s)"
    )
    readers = [
        cli("keys", "add", f"soak-reader-{i}", "--role", "reader", timeout=120).strip().splitlines()[-1]
        for i in range(max(1, cfg.clients))
    ]
    admin = cli("keys", "add", "soak-admin", "--role", "admin", timeout=120).strip().splitlines()[-1]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = None
    try:
        with open(logs / "serve.log", "wb") as err:
            proc = subprocess.Popen(
                [*vb, "serve", "--port", str(port), "--index-dir", str(index)],
                stdout=err,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(REPO),
            )
        log(f"started vraagbaak serve (pid {proc.pid}) on {url}; waiting for /readyz (logs: {logs})")
        t = time.monotonic()
        try:
            _wait_ready(url, proc, start_timeout)
        except RuntimeError as exc:
            tail = (logs / "serve.log").read_bytes()[-2000:].decode(errors="replace")
            raise RuntimeError(f"{exc}; the end of {logs / 'serve.log'}:\n{tail}") from None
        log(f"ready after {time.monotonic() - t:.0f} s")
        target = Target(
            url=url,
            pid=proc.pid,
            reader_keys=readers,
            admin_key=admin,
            ingest_cmd=lambda folder: [
                *vb,
                "ingest",
                str(folder),
                "--sync",
                "--wait",
                "--json",
                "--index-dir",
                str(index),
            ],
            folder=work / "changing" / "soak",
            env=env,
        )
        return asyncio.run(Soak(target, cfg, log).run())
    finally:
        _stop(proc, 60.0)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m eval.soak", description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--fake", action="store_true", help="the service with a fake LLM over a test index (default)")
    mode.add_argument("--real", action="store_true", help="vraagbaak serve with the default models over --corpus")
    ap.add_argument("--duration", type=float, help="seconds of traffic, warm-up included (fake 90, real 1800)")
    ap.add_argument("--warmup", type=float, help="seconds before the start sample (fake 10, real 120)")
    ap.add_argument("--clients", type=int, help="concurrent question clients (fake 3, real llm concurrency + 1)")
    ap.add_argument("--llm-concurrency", type=int, default=1, help="--real: the service's llm_concurrency")
    ap.add_argument("--ingest-every", type=float, help="seconds between ingests (fake 15, real 120)")
    ap.add_argument("--upload-every", type=float, help="mean seconds between uploads/deletes (fake 3, real 30)")
    ap.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS/fd samples")
    ap.add_argument("--think", type=float, help="mean pause between a client's requests (fake 0.2, real 1)")
    ap.add_argument("--max-rss-growth-mb", type=float, help="RSS growth end vs start (fake 150, real 250)")
    ap.add_argument("--max-fd-growth", type=int, default=20)
    ap.add_argument("--health-p99-ms", type=float, default=250.0)
    ap.add_argument("--corpus", type=Path, default=REPO / "data" / "voorbeeld", help="--real: the documents")
    ap.add_argument("--start-timeout", type=float, default=900.0, help="--real: seconds to wait for /readyz")
    ap.add_argument("--fake-delay", type=float, default=0.02, help="--fake: LLM seconds per token")
    ap.add_argument("--fake-tokens", type=int, default=30, help="--fake: extra tokens per answer")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (index, data, logs)")
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    ap.add_argument("--out", type=Path, help="write the JSON result to FILE and the markdown table to FILE.md")
    ap.add_argument("--fake-ingest", nargs=2, type=Path, metavar=("INDEX", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    real = bool(args.real)

    def pick(value, fake, real_):
        return value if value is not None else (real_ if real else fake)

    args.mode = "real" if real else "fake"
    args.duration = pick(args.duration, 90.0, 1800.0)
    args.warmup = pick(args.warmup, 10.0, 120.0)
    args.clients = pick(args.clients, 3, args.llm_concurrency + 1)
    args.ingest_every = pick(args.ingest_every, 15.0, 120.0)
    args.upload_every = pick(args.upload_every, 3.0, 30.0)
    args.think = pick(args.think, 0.2, 1.0)
    # real mode: the LLM worker's saved prompt states grow up to llm_ram_cache_mb by design
    # (a configured bound, filled as follow-ups come); the service process itself has its own check
    args.max_rss_growth_mb = pick(args.max_rss_growth_mb, 150.0, 250.0 + _ram_cache_mb() if real else 250.0)
    if args.fake_ingest is None:
        if not 0 <= args.warmup < args.duration:
            ap.error("--warmup must be shorter than --duration")
        if args.clients < 1 or args.ingest_every <= 0 or args.upload_every <= 0:
            ap.error("--clients, --ingest-every and --upload-every must be positive")
        if args.ingest_every + max(5.0, args.ingest_every / 3) > args.duration:
            ap.error("--duration must leave room for at least one ingest (--ingest-every + a margin)")
    return args


def config_from(args: argparse.Namespace) -> SoakConfig:
    return SoakConfig(
        mode=args.mode,
        duration=args.duration,
        warmup=args.warmup,
        clients=args.clients,
        ingest_every=args.ingest_every,
        upload_every=args.upload_every,
        sample_every=args.sample_every,
        think=args.think,
        request_timeout=60.0 if args.mode == "fake" else 600.0,
        ingest_timeout=120.0 if args.mode == "fake" else 1800.0,
        questions=list(FAKE_QUESTIONS if args.mode == "fake" else REAL_QUESTIONS),
        max_rss_growth_mb=args.max_rss_growth_mb,
        max_fd_growth=args.max_fd_growth,
        health_p99_ms=args.health_p99_ms,
        llm_concurrency=1 if args.mode == "fake" else args.llm_concurrency,
        seed=args.seed,
    )


def run(args: argparse.Namespace, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The soak as ``args`` (from :func:`parse_args`) says; returns the result."""
    sys.path.insert(0, str(REPO))
    t0 = time.monotonic()

    def default_log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    cfg = config_from(args)
    work = Path(tempfile.mkdtemp(prefix="vraagbaak-soak-"))
    try:
        if args.mode == "fake":
            result = run_fake(cfg, work, log or default_log, args.fake_delay, args.fake_tokens)
        else:
            result = run_real(cfg, work, log or default_log, args.corpus, args.start_timeout)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["work_dir"] = str(work) if args.keep else None
    result["markdown"] = markdown(result)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fake_ingest is not None:
        return fake_ingest(*args.fake_ingest)
    try:
        result = run(args)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"the soak could not run: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        args.out.with_suffix(".md").write_text(result["markdown"] + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(result["markdown"])
        print()
        for c in result["checks"]:
            print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['name']}: {c['detail']}")
        print("PASSED" if result["passed"] else "FAILED")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
