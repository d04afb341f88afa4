"""eval/replica_loadtest.py: the consistency checks on scripted records (and those of the
--netns mode: per-document generations, the kill, the revocation), the /proc/locks parser, the
clients' failover, and the scripted OpenAI-compatible LLM server behind the real ``openai``
backend. Fast: no models, no replicas (the full run is ``python -m eval.replica_loadtest``),
except the last two tests: the test network's clean-up on Ctrl-C (root) and the --netns mode
end to end (root; marked ``postgres`` and ``slow``: PostgreSQL and the real embedder, ~1 minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.replica_loadtest import (
    FakeOpenAIServer,
    check_kill,
    check_records,
    check_revocation,
    flock_waiters,
    free_subnet,
    gen_number,
    wait_for,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

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


# --------------------------------------------------------------------------- --netns: the checks

PG_GENS = {"nieuw/doc-a": 5, "nieuw/doc-b": 6}  # PostgreSQL: one generation per committed document
WINDOWS = {"nieuw/doc-a": (99.0, 102.5), "nieuw/doc-b": (99.0, 102.5)}


def pg_run():
    return [
        rec(0, 0, "base", "pg-000004", 1.0, cited=["voorbeeld/x"], sources=["voorbeeld/x"]),
        rec(1, 1, "new-a", "pg-000004", 2.0, refused=True, sources=[]),
        rec(2, 0, "new-b", "pg-000004", 3.0, cited=["voorbeeld/y"]),
        # between the two commits: doc-a is in, doc-b not yet
        rec(3, 1, "new-a", "pg-000005", 99.5, cited=["nieuw/doc-a"], sources=["nieuw/doc-a"]),
        rec(4, 0, "new-b", "pg-000005", 99.6, refused=True, sources=["voorbeeld/y"]),
        rec(5, 0, "new-a", "pg-000006", SWITCH + 5, cited=["nieuw/doc-a"]),
        rec(6, 1, "new-b", "pg-000006", SWITCH + 6, cited=["nieuw/doc-b"], sources=["nieuw/doc-b"]),
        rec(7, 0, "new-b", "pg-000006", SWITCH + 7, cited=["nieuw/doc-b"]),
    ]


def pg_checks(records, **kw):
    kw = {"first_new_gen": PG_GENS, "switch_time": SWITCH, "replicas": [0, 1], **kw}
    return {c["name"]: c for c in check_records(records, new_docs=NEW, **kw)}


def test_gen_number_of_the_postgres_backend():
    assert gen_number("pg-000012") == 12 and gen_number("pgx-1") is None


def test_per_document_generations_pass():
    checks = pg_checks(pg_run())
    assert all(c["ok"] for c in checks.values()), checks
    assert "2 on the new" not in checks["both_generations_seen"]["detail"]


def test_per_document_generations_catch_a_document_before_its_own_commit():
    records = pg_run()
    records[4].update(cited=["nieuw/doc-b"])  # pg-000005 has doc-a only: doc-b there is a leak
    bad = {n for n, c in pg_checks(records).items() if not c["ok"]}
    assert bad == {"old_generation_never_sees_new_docs"}
    records = pg_run()
    records[6].update(sources=["voorbeeld/y"])  # doc-b's own generation did not retrieve it
    assert {n for n, c in pg_checks(records).items() if not c["ok"]} == {"new_generation_retrieves_new_doc"}


def test_label_lag_is_tolerated_only_inside_its_window():
    """PostgreSQL: the answer is labelled with the generation the replica read (<= 1 s old)
    while its search saw the latest commit; inside the window that is counted, not a leak."""
    lagging = rec(8, 1, "new-a", "pg-000004", 100.5, cited=["nieuw/doc-a"], sources=["nieuw/doc-a"])
    checks = pg_checks([*pg_run(), lagging], label_lag=WINDOWS)
    assert checks["old_generation_never_sees_new_docs"]["ok"]
    assert "1 labelled with the generation" in checks["old_generation_never_sees_new_docs"]["detail"]
    # without the windows (the embedded index: never) and outside them, it is a leak
    assert not pg_checks([*pg_run(), lagging])["old_generation_never_sees_new_docs"]["ok"]
    late = dict(lagging, started=103.0, finished=104.0)
    assert not pg_checks([*pg_run(), late], label_lag=WINDOWS)["old_generation_never_sees_new_docs"]["ok"]
    early = dict(lagging, started=97.0, finished=98.5)  # finished before its ingest started
    assert not pg_checks([*pg_run(), early], label_lag=WINDOWS)["old_generation_never_sees_new_docs"]["ok"]


def test_killed_replica_failures_are_left_to_the_kill_checks():
    records = [*pg_run(), rec(8, 1, "base", None, 120.0, status=None, error="RemoteProtocolError")]
    records[-1]["finished"] = 121.0
    assert not pg_checks(records)["no_errors"]["ok"]
    checks = pg_checks(records, killed=(1, 120.5))
    assert checks["no_errors"]["ok"] and "1 more on the replica killed" in checks["no_errors"]["detail"]
    # a failure on the killed replica BEFORE the kill still counts, as does one on another replica
    assert not pg_checks(records, killed=(1, 121.5))["no_errors"]["ok"]
    assert not pg_checks(records, killed=(0, 120.5))["no_errors"]["ok"]


KILL = 50.0


def kill_run():
    def r(seq, replica, started, finished, *, kind=None, retry_of=None):
        out = rec(seq, replica, "base", "pg-000006", started, status=None if kind else 200, error=kind and "x")
        return out | {"finished": finished, "error_kind": kind, "retry_of": retry_of}

    return [
        r(0, 0, 40.0, 45.0),
        r(1, 1, 41.0, 46.0),
        r(2, 1, 48.0, KILL + 0.01, kind="transport"),  # in flight at the kill
        r(3, 0, 48.5, 55.0),
        r(4, 0, KILL + 0.01, 56.0, retry_of=2),  # its retry on replica 0
        r(5, 1, KILL + 0.02, KILL + 0.03, kind="connect"),  # refused before the client knew
        r(6, 0, KILL + 0.03, 57.0, retry_of=5),
        r(7, 0, 56.0, 58.0),
    ]


def kill_checks(records, after=2):
    return {c["name"]: c for c in check_kill(records, victim=1, kill_time=KILL, after=after)}


def test_kill_checks_pass():
    checks = kill_checks(kill_run())
    assert all(c["ok"] for c in checks.values()), checks
    assert "lost 1 requests in flight" in checks["kill_loses_only_its_in_flight_requests"]["detail"]
    assert "1 later ones were refused at connect" in checks["kill_loses_only_its_in_flight_requests"]["detail"]


@pytest.mark.parametrize(
    "change, failing",
    [
        # a request on another replica failed after the kill
        (lambda rs: rs[7].update(status=500, error="HTTP 500", error_kind="http"), {"kill_other_replicas_unaffected"}),
        # the failed request was never retried / its retry failed too
        (lambda rs: rs.pop(4), {"kill_retries_answered_elsewhere"}),
        (
            lambda rs: rs[6].update(status=None, error="x", error_kind="transport"),
            {"kill_retries_answered_elsewhere", "kill_other_replicas_unaffected"},
        ),
        # a request the victim ACCEPTED after the kill failed: not an in-flight loss
        (lambda rs: rs[5].update(error_kind="transport"), {"kill_loses_only_its_in_flight_requests"}),
        # nothing was in flight at the victim: the kill proved nothing
        (
            lambda rs: (rs[2].update(status=200, error=None, error_kind=None, finished=49.0), rs.pop(4)),
            {"kill_hit_requests_in_flight"},
        ),
    ],
)
def test_kill_violations_are_flagged(change, failing):
    records = kill_run()
    change(records)
    bad = {n for n, c in kill_checks(records).items() if not c["ok"]}
    assert bad == failing, kill_checks(records)


def test_kill_needs_enough_answers_from_the_others():
    assert not kill_checks(kill_run(), after=4)["kill_other_replicas_unaffected"]["ok"]


def test_revocation_checks():
    good = [
        {"replica": 0, "before": 200, "refused_after_s": 0.01, "last_status": 401},
        {"replica": 1, "before": 200, "refused_after_s": 0.4, "last_status": 401},
    ]
    assert all(c["ok"] for c in check_revocation(good, within=1.0))
    per_host = [good[0], {"replica": 1, "before": 200, "refused_after_s": None, "last_status": 200, "waited_s": 5.0}]
    got = {c["name"]: c for c in check_revocation(per_host, within=1.0)}
    assert not got["revoked_key_refused_everywhere"]["ok"] and got["probe_key_valid_everywhere_before"]["ok"]
    assert "replica 1: still 200 after 5.0 s" in got["revoked_key_refused_everywhere"]["detail"]
    slow = [good[0], dict(good[1], refused_after_s=1.6)]
    assert not {c["name"]: c["ok"] for c in check_revocation(slow, within=1.0)}["revoked_key_refused_everywhere"]
    never_valid = [dict(good[0], before=401), good[1]]
    assert not {c["name"]: c["ok"] for c in check_revocation(never_valid, within=1.0)}[
        "probe_key_valid_everywhere_before"
    ]
    assert not all(c["ok"] for c in check_revocation([], within=1.0))


def test_free_subnet_skips_the_ones_in_use():
    taken = "3: vbbr1 inet 10.213.7.1/24 scope global\n10.213.8.0/24 dev x proto kernel\n"
    for _ in range(50):
        s = free_subnet(taken)
        assert s.startswith("10.213.") and s not in ("10.213.7", "10.213.8")
    everything = "".join(f"10.213.{i}.0/24 dev x\n" for i in range(1, 255))
    with pytest.raises(RuntimeError):
        free_subnet(everything)


def test_load_fails_over_from_a_dead_replica():
    """--netns clients: a replica that refuses connections is marked down, the request is
    retried at once on the next replica (a record with retry_of), later ones skip it."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from eval.replica_loadtest import Load, free_port

    answer = {"index_generation": "pg-000003", "refused": False, "citations": [{"doc_id": "d/x"}], "answer": "ja [1]"}
    seen_keys = []

    class Api(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen_keys.append(self.headers.get("Authorization"))
            if self.path == "/v1/ask/stream":
                body = ("event: done\ndata: " + json.dumps({"answer": answer}) + "\n\n").encode()
            else:
                body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header(
                "Content-Type", "text/event-stream" if self.path.endswith("stream") else "application/json"
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        live = f"http://127.0.0.1:{srv.server_address[1]}"
        dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        t0 = time.monotonic()
        questions = [("q", "base", "Vraag?")]
        load = Load([live, dead], questions, 1, t0, 10, 0, 0.0, t0 + 30, {"Authorization": "Bearer k"}, True)
        load.start()
        try:
            assert wait_for(lambda: load.finished() >= 6, 20, interval=0.05)
        finally:
            load.stop()
        recs = sorted(load.snapshot(), key=lambda r: r.seq)
    finally:
        srv.shutdown()
        srv.server_close()
    failed_ = [r for r in recs if r.error]
    assert len(failed_) == 1 and failed_[0].replica == 1 and failed_[0].error_kind == "connect"
    retry = next(r for r in recs if r.retry_of == failed_[0].seq)
    assert retry.replica == 0 and retry.status == 200 and retry.generation == "pg-000003"
    assert load.down == {1} and all(r.replica == 0 for r in recs if r.seq > retry.seq)
    assert set(seen_keys) == {"Bearer k"}


# --------------------------------------------------------------------------- --netns: for real (root)


def _netns_skip() -> str | None:
    from eval.replica_loadtest import netns_unavailable

    return netns_unavailable()


def test_test_network_is_removed_on_ctrl_c(tmp_path):
    """The namespaces, veths and bridge of a run are gone after Ctrl-C (atexit), as after close()."""
    import signal
    import subprocess
    import sys
    import time

    from eval.replica_loadtest import TestNet, leftovers

    why = _netns_skip()
    if why:
        pytest.skip(f"--netns: {why}")
    net = TestNet(2)
    tag = net.tag
    assert len(leftovers(tag)) == 2 + 1 + 2  # namespaces, the bridge, the host ends (the ns ends are inside)
    net.close()
    assert leftovers(tag) == []

    # a shell that starts a job in the background (nohup … &, as CI may) makes it ignore
    # SIGINT, and Python then installs no KeyboardInterrupt handler: restore Ctrl-C's default
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from eval.replica_loadtest import TestNet\n"
        "net = TestNet(2)\n"
        "print(net.tag, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    tag, remaining = "", ["not checked"]
    try:
        tag = (proc.stdout.readline() if proc.stdout else "").strip()
        assert tag and leftovers(tag)
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        deadline = time.monotonic() + 5
        while leftovers(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        remaining = leftovers(tag)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if tag:  # whatever the child left (a failing run must not leave a network behind)
            for name in leftovers(tag):
                cmd = ["netns", "del", name] if name.startswith("vbrt-") else ["link", "del", name]
                subprocess.run(["ip", *cmd], capture_output=True, check=False)
    assert remaining == []


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_netns_replicas_end_to_end(tmp_path):
    """The --netns mode for real: 2 replicas in their own network namespaces, PostgreSQL and a
    scripted LLM on the host side, a tiny corpus; uploads through the replicas, a revoked key,
    one replica killed. Every check passes and nothing of the test network is left."""
    import subprocess
    import sys

    from eval.replica_loadtest import leftovers
    from tests.pg import SKIP_REASON, pg_available

    why = _netns_skip()
    if why:
        pytest.skip(f"--netns: {why}")
    if not pg_available():
        pytest.skip(SKIP_REASON)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "raadsbrief-2024-zorg.md").write_text(
        "# Raadsbrief zorg 2024\n\n## Mantelzorg\n\nVoor mantelzorgondersteuning is in 2024 twee miljoen euro "
        "beschikbaar. GON staat voor Gebiedsgericht Ondersteuningsnetwerk.\n",
        encoding="utf-8",
    )
    report_path = tmp_path / "netns.json"
    cmd = [
        sys.executable,
        "-m",
        "eval.replica_loadtest",
        "--netns",
        "--fake-llm",
        "--replicas",
        "2",
        "--clients",
        "2",
        "--before",
        "2",
        "--after",
        "2",
        "--after-kill",
        "2",
        "--corpus",
        str(corpus),
        "--timeout",
        "400",
        "--start-timeout",
        "300",
        "--report",
        str(report_path),
        "--report-on-failure",
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=560)
    assert report_path.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(report_path.read_text())
    failing = [c for c in report.get("checks", []) if not c["ok"]]
    assert proc.returncode == 0 and report["passed"], (failing, proc.stdout[-3000:], proc.stderr[-2000:])
    names = {c["name"] for c in report["checks"]}
    assert {
        "ingest_through_replicas",
        "new_docs_answerable_on_every_replica",
        "revoked_key_refused_everywhere",
        "kill_loses_only_its_in_flight_requests",
        "kill_other_replicas_unaffected",
        "kill_retries_answered_elsewhere",
    } <= names
    assert report["kill"]["replica"] == 1 and report["kill"]["in_flight"]
    tag = report["network"]["host"]["bridge"].removeprefix("vbbr")
    assert leftovers(tag) == []
    assert "***" in report["postgres"]["url"]  # the password is not in the report
