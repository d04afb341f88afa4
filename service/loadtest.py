"""Load benchmark for the HTTP service: loopback only, bounded in time.

Drives ``--factor`` (default 10) times the LLM's capacity (``--llm-concurrency``, the
answers it generates at once) with concurrent clients that ask questions back to back
(no back-off: a refused client asks again after ``--think`` seconds) for ``--duration``
seconds, probes
``/healthz`` every 50 ms meanwhile, then stops and checks that the service recovers (the
gate drains and a fresh question is answered). It passes when every answer request got
200, 429 or 503 (0 other 5xx, 0 transport errors), the /healthz p99 stays under
``--health-p99-ms`` (100) and the service recovered.

    # against a running service (start it with: vraagbaak serve)
    python -m service.loadtest --url http://127.0.0.1:8000 --key KEY [--key KEY2 ...] \\
        --llm-concurrency 1 --duration 30

    # self-contained: a server with a fake LLM (0.05 s/token) in a subprocess
    python -m service.loadtest --fake --duration 30

Run it as a module (``python -m service.loadtest``), from the repository root. Exit status
0 = passed, 1 = failed, 2 = bad arguments. Targets other than loopback are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

QUESTIONS = [
    "Hoeveel geld gaat er naar mantelzorgondersteuning?",
    "Wat staat er in de motie over preventie?",
    "Hoeveel is er begroot voor jeugdhulp?",
    "Wat doet het college met buurtsportcoaches?",
    "Welke doelen heeft het programma welzijn en zorg?",
]
MAX_DURATION = 300.0


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise SystemExit(f"cannot resolve {host!r}") from None
    for a in addrs:
        if not ipaddress.ip_address(str(a).split("%")[0]).is_loopback:
            raise SystemExit(f"refusing to load-test {url}: {a} is not a loopback address")


async def _metric(client, url: str, name: str) -> float | None:
    try:
        text = (await client.get(url + "/metrics", timeout=5)).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


async def run(
    url: str,
    keys: list[str],
    capacity: int,
    factor: float,
    duration: float,
    think: float,
    recovery_timeout: float,
    health_p99_ms: float,
    path: str = "/v1/ask",
) -> dict:
    workers = max(1, int(round(capacity * factor)))
    stop_at = time.monotonic() + duration
    statuses: Counter[str] = Counter()
    latencies: dict[str, list[float]] = {}
    health: list[float] = []
    health_fail = 0
    retry_after: list[float] = []
    limits = httpx.Limits(max_connections=workers + 10, max_keepalive_connections=workers + 10)

    async with httpx.AsyncClient(timeout=httpx.Timeout(180.0, connect=10.0), limits=limits) as client:
        r = await client.get(url + "/readyz", timeout=10)
        if r.status_code != 200:
            raise SystemExit(f"{url} is not ready: {r.status_code} {r.text[:200]}")

        async def user(i: int) -> None:
            key = keys[i % len(keys)]
            rnd = random.Random(i)
            while time.monotonic() < stop_at:
                q = rnd.choice(QUESTIONS)
                t0 = time.perf_counter()
                try:
                    resp = await client.post(url + path, json={"question": q}, headers={"X-API-Key": key})
                    code = str(resp.status_code)
                    if resp.status_code in (429, 503):
                        retry_after.append(float(resp.headers.get("retry-after", "nan")))
                except httpx.HTTPError as exc:
                    code = f"error:{type(exc).__name__}"
                statuses[code] += 1
                latencies.setdefault(code, []).append(time.perf_counter() - t0)
                await asyncio.sleep(think * (0.5 + rnd.random()))

        async def prober() -> None:
            nonlocal health_fail
            async with httpx.AsyncClient(timeout=5.0) as hc:  # its own connection pool
                while time.monotonic() < stop_at:
                    t0 = time.perf_counter()
                    try:
                        resp = await hc.get(url + "/healthz")
                        if resp.status_code != 200:
                            health_fail += 1
                    except httpx.HTTPError:
                        health_fail += 1
                    health.append((time.perf_counter() - t0) * 1000)
                    await asyncio.sleep(0.05)

        t_start = time.monotonic()
        peak_queue = 0.0

        async def watch_queue() -> None:
            nonlocal peak_queue
            while time.monotonic() < stop_at:
                q = await _metric(client, url, "vraagbaak_llm_queue_depth")
                peak_queue = max(peak_queue, q or 0.0)
                await asyncio.sleep(1.0)

        await asyncio.gather(prober(), watch_queue(), *(user(i) for i in range(workers)))
        load_seconds = time.monotonic() - t_start

        # recovery: the gate drains and a new question is answered
        t_rec = time.monotonic()
        recovered = False
        while time.monotonic() - t_rec < recovery_timeout:
            in_flight = await _metric(client, url, "vraagbaak_llm_in_flight")
            waiting = await _metric(client, url, "vraagbaak_llm_queue_depth")
            if in_flight == 0 and waiting == 0:
                try:
                    resp = await client.post(
                        url + path, json={"question": QUESTIONS[0]}, headers={"X-API-Key": keys[0]}
                    )
                    if resp.status_code == 200:
                        recovered = True
                        break
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(0.5)
        recovery_s = time.monotonic() - t_rec

    total = sum(statuses.values())
    bad = {k: v for k, v in statuses.items() if k not in ("200", "429", "503")}
    ok200 = latencies.get("200", [])
    result = {
        "url": url,
        "path": path,
        "workers": workers,
        "llm_concurrency": capacity,
        "factor": factor,
        "duration_s": round(load_seconds, 1),
        "requests": total,
        "statuses": dict(sorted(statuses.items())),
        "non_200_429_503": sum(bad.values()),
        "answers_per_min": round(len(ok200) / load_seconds * 60, 1) if load_seconds else 0,
        "answer_latency_p50_s": round(_percentile(ok200, 50), 2) if ok200 else None,
        "answer_latency_p99_s": round(_percentile(ok200, 99), 2) if ok200 else None,
        "refusal_latency_p99_ms": round(_percentile(latencies.get("503", []), 99) * 1000, 1)
        if latencies.get("503")
        else None,
        "retry_after_range_s": [min(retry_after), max(retry_after)] if retry_after else None,
        "peak_queue_depth": peak_queue,
        "healthz_probes": len(health),
        "healthz_failures": health_fail,
        "healthz_p50_ms": round(statistics.median(health), 2) if health else None,
        "healthz_p99_ms": round(_percentile(health, 99), 2) if health else None,
        "healthz_max_ms": round(max(health), 2) if health else None,
        "recovered": recovered,
        "recovery_s": round(recovery_s, 1),
    }
    result["passed"] = bool(
        result["non_200_429_503"] == 0
        and health_fail == 0
        and health
        and round(_percentile(health, 99), 2) < health_p99_ms
        and recovered
    )
    return result


# --------------------------------------------------------------------------- fake server


def serve_fake(
    port: int, delay: float, tokens: int, concurrency: int, queue: int, root: Path | None = None, grace: float = 30.0
) -> None:
    """A service with a fake LLM over a temporary index (used by --fake, in a subprocess).
    With ``root`` holding a previous run's index, data folder and keys, it serves those (a
    restart: tests/test_faults.py). Drains on SIGTERM like ``vraagbaak serve``. Reader keys
    in ``root/keys.json`` (a list), an admin key in ``root/admin-key.json`` (a string)."""
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    from rag.settings import Settings
    from service.app import create_app
    from service.config import ServiceSettings
    from service.lifecycle import run_server
    from service.logging import configure_logging
    from service.testing import FakeLLM, build_index, make_pipeline
    from tests.conftest import HashEmbedder  # the repository's deterministic test embedder

    restart = root is not None and (root / "keys.json").exists()
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="vraagbaak-load-"))
    settings = Settings(index_dir=root / "index", models_dir=root / "models", refusal_min_score=0.0)
    emb = HashEmbedder()
    if not restart:
        build_index(root / "corpus", settings, emb)
    cfg = ServiceSettings(
        data_dir=root / "data",
        llm_concurrency=concurrency,
        llm_queue=queue,
        llm_queue_timeout=30,
        rate_limit_per_minute=600,
        rate_limit_burst=50,
        log_level="WARNING",
        shutdown_grace_s=grace,
    )
    app = create_app(
        settings, make_pipeline(settings, emb, FakeLLM(delay=delay, extra_tokens=tokens)), service_settings=cfg
    )
    if not restart:
        keys = [app.state.vb.keys.add(f"load{i}", "reader") for i in range(4)]
        (root / "keys.json").write_text(json.dumps(keys))
    if not (root / "admin-key.json").exists():  # for uploads and deletes (eval/soak.py)
        (root / "admin-key.json").write_text(json.dumps(app.state.vb.keys.add("load-admin", "admin")))
    print(json.dumps({"root": str(root)}), flush=True)
    configure_logging("WARNING", True)
    run_server(app, "127.0.0.1", port, grace)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m service.loadtest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="base URL of a running service (loopback only)")
    ap.add_argument("--key", action="append", default=[], help="API key (repeat to spread over keys)")
    ap.add_argument("--llm-concurrency", type=int, default=1, help="the service's llm_concurrency")
    ap.add_argument("--factor", type=float, default=10.0, help="clients = factor x llm concurrency")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--think", type=float, default=0.05, help="mean pause between a client's requests (s)")
    ap.add_argument("--recovery-timeout", type=float, default=180.0)
    ap.add_argument("--health-p99-ms", type=float, default=100.0)
    ap.add_argument("--path", default="/v1/ask", choices=["/v1/ask", "/v1/ask/stream"])
    ap.add_argument("--fake", action="store_true", help="start a server with a fake LLM and test that")
    ap.add_argument("--fake-delay", type=float, default=0.05, help="fake LLM seconds per token")
    ap.add_argument("--fake-tokens", type=int, default=40, help="extra tokens per fake answer")
    ap.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)  # --serve-fake: reuse this folder
    ap.add_argument("--grace", type=float, default=30.0, help=argparse.SUPPRESS)  # --serve-fake: drain bound
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    args = ap.parse_args(argv)
    if args.duration <= 0 or args.duration > MAX_DURATION:
        ap.error(f"--duration must be in (0, {MAX_DURATION:.0f}]")

    if args.serve_fake:
        serve_fake(
            args.serve_fake, args.fake_delay, args.fake_tokens, concurrency=1, queue=4, root=args.root, grace=args.grace
        )
        return 0

    proc = None
    try:
        if args.fake:
            port = _free_port()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "service.loadtest",
                    "--serve-fake",
                    str(port),
                    "--fake-delay",
                    str(args.fake_delay),
                    "--fake-tokens",
                    str(args.fake_tokens),
                ],
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
            assert proc.stdout is not None  # stdout=PIPE
            root = Path(json.loads(proc.stdout.readline())["root"])
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the fake server did not start")
                time.sleep(0.2)
            keys = json.loads((root / "keys.json").read_text())
            capacity = 1
        else:
            if not args.url or not args.key:
                ap.error("give --url and --key (or --fake)")
            url, keys, capacity = args.url.rstrip("/"), args.key, args.llm_concurrency
        check_loopback(url)
        result = asyncio.run(
            run(
                url,
                keys,
                capacity,
                args.factor,
                args.duration,
                args.think,
                args.recovery_timeout,
                args.health_p99_ms,
                args.path,
            )
        )
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
        print(
            f"\n{'PASSED' if result['passed'] else 'FAILED'}: {result['requests']} requests from {result['workers']} "
            f"clients in {result['duration_s']} s: {result['statuses']}; healthz p50 {result['healthz_p50_ms']} ms, "
            f"p99 {result['healthz_p99_ms']} ms; recovered: {result['recovered']} ({result['recovery_s']} s)"
        )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
