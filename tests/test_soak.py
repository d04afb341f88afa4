"""The CI soak (eval/soak.py --fake): ~50 s of mixed traffic (asks, streams, dropped streams,
follow-ups, feedback, uploads and deletes, three ingest --sync runs of a changing folder)
against the real service in a subprocess with a fake LLM; the pass criteria hold."""

from __future__ import annotations

import pytest

from eval import soak

pytestmark = pytest.mark.timeout(150)


def test_process_tree_and_growth_baseline():
    import os

    s = soak.sample_tree(os.getpid())
    assert s["processes"] >= 1 and s["rss_mb"] > 0 and s["fds"] > 0
    assert str(os.getpid()) in s["pids"]
    # a short-lived process at the start is not the baseline; one new at the end counts in full
    start = {"rss_mb": 300.0, "fds": 40, "pids": {"1": [200 * 1024, 30], "2": [100 * 1024, 10]}}
    end = {"rss_mb": 260.0, "fds": 45, "pids": {"1": [210 * 1024, 32], "3": [50 * 1024, 13]}}
    assert soak.growth(start, end) == (60.0, 15)
    assert soak.gen_number("gen-000007") == 7 and soak.gen_number(7) == 7 and soak.gen_number(None) is None


def test_retry_after_is_honoured_and_other_errors_count(tmp_path):
    target = soak.Target("http://127.0.0.1:1", 1, ["k"], "a", lambda f: [], tmp_path / "f")
    s = soak.Soak(target, soak.SoakConfig("fake", 10, 1, 1, 5, 1), log=print)
    assert s._classify("ask", 503, {"retry-after": "7"}, "") == 7.0  # wait and retry
    assert s._classify("upload", 409, {"retry-after": "10"}, "") == 10.0
    assert s._classify("ask", 503, {}, "") is None  # a 503 without Retry-After is unexpected
    assert s._classify("ask", 500, {}, "boom") is None
    assert s._classify("ask", 422, {}, "bad") is None
    assert s.http_503 == 2 and [u["status"] for u in s.unexpected] == [503, 500, 422]
    assert s.retries == {"ask 503": 1, "upload 409": 1}


def test_changing_folder_adds_edits_and_removes(tmp_path):
    folder = soak.ChangingFolder(tmp_path / "soak")
    assert len(folder.files()) == 1
    assert folder.change(0).startswith("added") and len(folder.files()) == 2
    before = folder.files()[-1].read_text()
    assert folder.change(1).startswith("edited") and folder.files()[-1].read_text() != before
    assert folder.change(2).startswith("removed") and len(folder.files()) == 1


def test_fake_soak_passes():
    args = soak.parse_args(
        ["--fake", "--duration", "50", "--warmup", "8", "--ingest-every", "12", "--upload-every", "2.5"]
    )
    r = soak.run(args, log=print)
    print(r["markdown"])
    failed = [c for c in r["checks"] if not c["ok"]]
    assert r["passed"], (failed, r["unexpected"], r["transport_examples"])
    assert r["unexpected_5xx"] == 0 and r["transport_errors"] == 0
    # every kind of traffic happened
    kinds = r["by_kind"]
    for kind in ("ask", "stream", "followup", "disconnect", "feedback", "upload", "delete"):
        assert kinds.get(kind), (kind, kinds)
    assert r["deliberate_disconnects"] > 0
    assert r["server_disconnects_counted"] >= r["deliberate_disconnects"]
    # ingests ran while serving, each was answered from, and the generation moved in answers
    assert r["ingests_done"] >= 3 and all(n > 0 for n in r["answers_after_each_ingest"])
    assert r["generation_changes_in_answers"] >= 3
    # the measurements are there
    labels = [s["label"] for s in r["samples"]]
    assert labels[0] == "t0" and "start" in labels and labels[-1] == "end" and len(labels) >= 6
    assert r["rss_growth_mb"] < 150 and r["fd_growth"] < 20
    assert r["healthz_probes"] >= 80 and r["healthz_p99_ms"] < 250
    assert r["answers_per_min"] > 0 and r["gate_drained"]
    assert "| /healthz every 0.5 s |" in r["markdown"] and "all checks passed" in r["markdown"]
