"""Fault drills with figures: what the service does when it is stopped, killed, or finds its
index damaged or its disk full. Each drill runs the real parts (a uvicorn subprocess with a
fake LLM, the index writer and readers, a small tmpfs) and returns what it measured;
tests/test_faults.py and tests/test_index_integrity.py assert on the same behaviour, this
script prints the figures for the README's reliability table.

    python -m eval.fault_drills [--json] [--repeat 3]

Drills:

* ``sigterm``: a stream in flight, SIGTERM: seconds until the process exits, whether the
  stream finished (``done``), the status of new requests during the drain, the exit code;
* ``sigkill``: SIGKILL mid-stream, restart on the same folders: seconds until ready, the same
  index generation, keys and feedback;
* ``damaged``: two generations, the live one damaged four ways (bytes flipped in
  vectors.faiss, chunks.sqlite truncated, a BM25 file deleted, the manifest broken): detected
  at open, the older generation served, the ms the check costs;
* ``disk_full``: an ingest that does not fit on a 3 MB tmpfs (root only): the error, the live
  generation unchanged, nothing half-written left.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
QUESTION = "Hoeveel geld gaat er naar mantelzorgondersteuning?"


def _http():
    try:
        import httpx2 as httpx
    except ImportError:  # pragma: no cover
        import httpx
    return httpx


def stream_events(url: str, headers: dict[str, str], out: dict, first_token: threading.Event) -> None:
    """POST /v1/ask/stream; the event names into ``out["events"]`` (``first_token`` set at the first token)."""
    httpx = _http()
    events: list[str] = []
    try:
        with httpx.stream(
            "POST", url + "/v1/ask/stream", json={"question": QUESTION}, headers=headers, timeout=60
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


def drill_sigterm(root: Path) -> dict[str, Any]:
    from service.testing import FakeService

    httpx = _http()
    svc = FakeService(root)
    try:
        svc.start()
        out: dict = {}
        first = threading.Event()
        t = threading.Thread(target=stream_events, args=(svc.url, svc.headers(), out, first))
        t.start()
        if not first.wait(20):
            raise RuntimeError("no token arrived")
        t0 = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        during = httpx.post(svc.url + "/v1/ask", json={"question": QUESTION}, headers=svc.headers(), timeout=10)
        health = httpx.get(svc.url + "/healthz", timeout=5).status_code
        ready = httpx.get(svc.url + "/readyz", timeout=5)
        t.join(60)
        code = svc.proc.wait(svc.grace + 10)
        return {
            "exit_s": round(time.monotonic() - t0, 2),
            "exit_code": code,
            "stream_finished": out.get("events", [""])[-1] == "done",
            "stream_status": out.get("status"),
            "new_request_status": during.status_code,
            "new_request_code": during.json().get("error", {}).get("code"),
            "retry_after": during.headers.get("retry-after"),
            "healthz_during": health,
            "readyz_during": ready.json().get("status"),
            "grace_s": svc.grace,
        }
    finally:
        svc.stop()


def drill_sigkill(root: Path) -> dict[str, Any]:
    import sqlite3

    from service.testing import FakeService

    httpx = _http()
    svc = FakeService(root)
    try:
        svc.start()
        first_answer = httpx.post(svc.url + "/v1/ask", json={"question": QUESTION}, headers=svc.headers(), timeout=30)
        answer = first_answer.json()
        httpx.post(
            svc.url + "/v1/feedback",
            json={"answer_id": answer["id"], "rating": "up"},
            headers=svc.headers(),
            timeout=10,
        ).raise_for_status()
        generation = (svc.root / "index" / "CURRENT").read_text().strip()
        out: dict = {}
        first = threading.Event()
        t = threading.Thread(target=stream_events, args=(svc.url, svc.headers(), out, first))
        t.start()
        first.wait(20)
        svc.proc.send_signal(signal.SIGKILL)
        svc.proc.wait(10)
        t.join(30)
        ready_s = svc.start()
        again = httpx.post(svc.url + "/v1/ask", json={"question": QUESTION}, headers=svc.headers(), timeout=30)
        db = sqlite3.connect(svc.root / "data" / "feedback.sqlite")
        feedback = [row[0] for row in db.execute("SELECT answer_id FROM feedback")]
        db.close()
        return {
            "stream_cut": out.get("events", ["done"])[-1] != "done",
            "restart_ready_s": round(ready_s, 2),
            "same_generation": (svc.root / "index" / "CURRENT").read_text().strip() == generation,
            "key_still_valid": again.status_code == 200,
            "same_answer": again.status_code == 200 and again.json()["answer"] == answer["answer"],
            "same_citations": again.status_code == 200
            and [c["chunk_id"] for c in again.json()["citations"]] == [c["chunk_id"] for c in answer["citations"]],
            "feedback_kept": feedback == [answer["id"]],
        }
    finally:
        svc.stop()


def _two_generations(folder: Path):
    from rag.indexing import ingest_paths
    from rag.settings import Settings
    from tests.conftest import HashEmbedder

    settings = Settings(index_dir=folder / "index", models_dir=folder / "models")
    emb = HashEmbedder()
    docs = folder / "docs"
    docs.mkdir(parents=True)
    (docs / "zwembad.md").write_text("# Zwembad\n\nHet zwembad in Haren opent in het voorjaar.\n", encoding="utf-8")
    ingest_paths([docs], settings, emb)
    (docs / "bibliotheek.md").write_text("# Bibliotheek\n\nDe bibliotheek krijgt een leeszaal.\n", encoding="utf-8")
    ingest_paths([docs], settings, emb)
    return settings, emb, docs


def _damage(live: Path, how: str) -> None:
    if how == "flip vectors.faiss":
        data = bytearray((live / "vectors.faiss").read_bytes())
        data[-20] ^= 0xFF
        (live / "vectors.faiss").write_bytes(bytes(data))
    elif how == "truncate chunks.sqlite":
        with open(live / "chunks.sqlite", "r+b") as fh:
            fh.truncate(4096)
    elif how == "delete a BM25 file":
        next(p for p in (live / "bm25").iterdir() if p.is_file()).unlink()
    else:
        (live / "manifest.json").write_text("{not json", encoding="utf-8")


def drill_damaged(folder: Path) -> list[dict[str, Any]]:
    from rag.index import IndexCorruptError, open_snapshot, verify_generation
    from rag.indexing import ingest_paths

    rows = []
    for i, how in enumerate(["flip vectors.faiss", "truncate chunks.sqlite", "delete a BM25 file", "break manifest"]):
        settings, emb, docs = _two_generations(folder / f"d{i}")
        live = Path(settings.index_dir) / "gen-000002"
        t0 = time.perf_counter()
        verify_generation(live)
        check_ms = (time.perf_counter() - t0) * 1000
        _damage(live, how)
        try:
            verify_generation(live)
            detected, message = False, ""
        except IndexCorruptError as exc:
            detected, message = True, str(exc)
        snap = open_snapshot(settings.index_dir)
        served = snap.name
        report = ingest_paths([docs], settings, emb)
        rows.append(
            {
                "damage": how,
                "detected": detected,
                "message": message,
                "served": served,
                "verify_ms": round(check_ms, 2),
                "next_ingest_repairs": report.ok and open_snapshot(settings.index_dir).fallback_from is None,
            }
        )
    return rows


def drill_disk_full(folder: Path) -> dict[str, Any]:
    import os
    import shutil

    from rag.index import IndexWriteError, open_snapshot, read_current
    from rag.indexing import ingest_paths
    from rag.settings import Settings
    from tests.conftest import HashEmbedder

    if os.geteuid() != 0 or shutil.which("mount") is None:
        return {"skipped": "mounting a tmpfs needs root"}
    mnt = folder / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        return {"skipped": f"cannot mount a tmpfs: {r.stderr.strip()}"}
    try:
        settings = Settings(index_dir=mnt / "index", models_dir=folder / "models")
        emb = HashEmbedder()
        docs = folder / "docs"
        docs.mkdir()
        (docs / "klein.md").write_text("# Klein\n\nEen korte tekst over de markt.\n", encoding="utf-8")
        ingest_paths([docs], settings, emb)
        before = read_current(settings.index_dir)
        words = " ".join(f"woord{i} zin{i % 97}." for i in range(300_000))
        (docs / "groot.md").write_text("# Groot\n\n" + words + "\n", encoding="utf-8")
        t0 = time.perf_counter()
        try:
            ingest_paths([docs], settings, emb)
            error = None
        except IndexWriteError as exc:
            error = str(exc)
        return {
            "error": error,
            "seconds": round(time.perf_counter() - t0, 2),
            "live_unchanged": read_current(settings.index_dir) == before
            and open_snapshot(settings.index_dir).name == before,
            "nothing_half_written": not list(Path(settings.index_dir).glob(".tmp-*")),
        }
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def run_all(repeat: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vraagbaak-drills-") as tmp:
        base = Path(tmp)
        sigterm = [drill_sigterm(base / f"term{i}") for i in range(repeat)]
        sigkill = [drill_sigkill(base / f"kill{i}") for i in range(repeat)]
        return {
            "sigterm": sigterm,
            "sigkill": sigkill,
            "damaged": drill_damaged(base / "damaged"),
            "disk_full": drill_disk_full(base / "disk"),
        }


def markdown(result: dict[str, Any]) -> str:
    term, kill = result["sigterm"], result["sigkill"]
    lines = ["| drill | what happened | figure |", "|---|---|---|"]
    ok_term = all(r["stream_finished"] and r["exit_code"] == 0 and r["new_request_status"] == 503 for r in term)
    lines.append(
        f"| SIGTERM during a stream (×{len(term)}) | stream in flight finished: {ok_term}; new requests: "
        f"{term[0]['new_request_status']} `{term[0]['new_request_code']}` Retry-After {term[0]['retry_after']}; "
        f"/healthz {term[0]['healthz_during']}, /readyz `{term[0]['readyz_during']}`; exit code "
        f"{term[0]['exit_code']} | exit {statistics.median(r['exit_s'] for r in term):.1f} s after the signal "
        f"(bound {term[0]['grace_s']:.0f} s) |"
    )
    ok_kill = all(
        r["stream_cut"] and r["same_generation"] and r["same_answer"] and r["same_citations"] and r["feedback_kept"]
        for r in kill
    )
    lines.append(
        f"| SIGKILL mid-stream, restart (×{len(kill)}) | same generation, answer, citations, keys, feedback: {ok_kill} "
        f"| ready {statistics.median(r['restart_ready_s'] for r in kill):.1f} s after the restart |"
    )
    for r in result["damaged"]:
        lines.append(
            f"| damaged live generation: {r['damage']} | detected: {r['detected']}; served `{r['served']}`; next ingest "
            f"repairs: {r['next_ingest_repairs']} | checksum check {r['verify_ms']} ms (a 2-document generation) |"
        )
    d = result["disk_full"]
    if "skipped" in d:
        lines.append(f"| disk full during ingest | skipped: {d['skipped']} | |")
    else:
        lines.append(
            f"| disk full during ingest (3 MB tmpfs) | `IndexWriteError`; live generation unchanged: "
            f"{d['live_unchanged']}; nothing half-written: {d['nothing_half_written']} | refused after {d['seconds']} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.fault_drills", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=1, help="run the SIGTERM and SIGKILL drills this many times")
    ap.add_argument("--json", action="store_true", help="print the raw result as JSON")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    result = run_all(args.repeat)
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
