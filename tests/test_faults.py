"""Faults of the running service, against a real uvicorn in a subprocess (a fake LLM, the hash
embedder): SIGTERM drains (the stream in flight finishes, new requests get 503 with
Retry-After, the process exits within the bound), SIGKILL mid-stream loses nothing (the
restarted service serves at once with the same index, keys and feedback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

pytestmark = pytest.mark.timeout(180)

QUESTION = "Hoeveel geld gaat er naar mantelzorgondersteuning?"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeService:
    """``python -m service.loadtest --serve-fake PORT`` (a fake LLM: ``delay`` s per token)."""

    def __init__(self, root: Path, delay: float = 0.05, tokens: int = 60, grace: float = 20.0) -> None:
        self.root, self.delay, self.tokens, self.grace = root, delay, tokens, grace
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> float:
        """Start and wait until /readyz is 200; returns the seconds that took."""
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.loadtest",
                "--serve-fake",
                str(self.port),
                "--fake-delay",
                str(self.delay),
                "--fake-tokens",
                str(self.tokens),
                "--root",
                str(self.root),
                "--grace",
                str(self.grace),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # {"root": ...} once the app exists
        while time.monotonic() - t0 < timeout:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "the service exited"
            time.sleep(0.05)
        raise AssertionError("the service did not become ready")

    def key(self) -> str:
        return json.loads((self.root / "keys.json").read_text())[0]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key()}"}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def service(tmp_path):
    svc = FakeService(tmp_path / "svc")
    svc.root.mkdir()
    yield svc
    svc.stop()


def _stream(svc: FakeService, out: dict, first_token: threading.Event) -> None:
    events: list[str] = []
    try:
        with httpx.stream(
            "POST", svc.url + "/v1/ask/stream", json={"question": QUESTION}, headers=svc.headers(), timeout=60
        ) as r:
            out["status"] = r.status_code
            for line in r.iter_lines():
                if line.startswith("event:"):
                    events.append(line[6:].strip())
                    if events[-1] == "token":
                        first_token.set()
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)
    out["events"] = events
    first_token.set()


def test_sigterm_drains_the_stream_in_flight_and_refuses_new_requests(service):
    service.start()
    out: dict = {}
    first = threading.Event()
    t = threading.Thread(target=_stream, args=(service, out, first))
    t.start()
    assert first.wait(20), "no token arrived"
    t0 = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # during the drain: new work is refused with 503 + Retry-After, health still answers
    r = httpx.post(service.url + "/v1/ask", json={"question": QUESTION}, headers=service.headers(), timeout=10)
    assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
    assert r.headers["retry-after"] == "5"
    assert httpx.get(service.url + "/healthz", timeout=5).status_code == 200
    ready = httpx.get(service.url + "/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    t.join(30)
    assert out.get("status") == 200 and "error" not in out, out
    assert out["events"][-1] == "done", out["events"][-5:]  # the stream in flight finished
    assert service.proc.wait(service.grace + 10) == 0
    assert time.monotonic() - t0 < service.grace


def test_sigkill_mid_stream_loses_nothing_and_the_restart_serves_at_once(service):
    service.start()
    fb = httpx.post(service.url + "/v1/ask", json={"question": QUESTION}, headers=service.headers(), timeout=30)
    assert fb.status_code == 200
    answer = fb.json()
    r = httpx.post(
        service.url + "/v1/feedback",
        json={"answer_id": answer["id"], "rating": "up"},
        headers=service.headers(),
        timeout=10,
    )
    assert r.status_code in (200, 201), r.text
    generation = (service.root / "index" / "CURRENT").read_text().strip()
    out: dict = {}
    first = threading.Event()
    t = threading.Thread(target=_stream, args=(service, out, first))
    t.start()
    assert first.wait(20)
    service.proc.send_signal(signal.SIGKILL)
    service.proc.wait(10)
    t.join(30)
    assert out["events"][-1] != "done"  # the stream was cut
    # restart on the same folders: ready at once, same index generation, key and feedback kept
    seconds = service.start()
    assert seconds < 30
    assert (service.root / "index" / "CURRENT").read_text().strip() == generation
    again = httpx.post(service.url + "/v1/ask", json={"question": QUESTION}, headers=service.headers(), timeout=30)
    assert again.status_code == 200
    assert again.json()["answer"] == answer["answer"]
    assert [c["chunk_id"] for c in again.json()["citations"]] == [c["chunk_id"] for c in answer["citations"]]
    import sqlite3

    db = sqlite3.connect(service.root / "data" / "feedback.sqlite")
    assert [row[0] for row in db.execute("SELECT answer_id FROM feedback")] == [answer["id"]]
    db.close()
