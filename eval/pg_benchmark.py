"""The two index backends at scale (issue #18, point 5): the embedded index (FAISS + SQLite +
bm25s in generations) and PostgreSQL + pgvector, on the same synthetic corpus (no model needed).

Per size (default 100k and 1M chunks, dim 768, documents of 10 chunks):

- **change ONE document** (its 10 chunks replaced, as an ingest of one changed file does),
  through the production writers: ``rag.index.write_index`` (copies the generation, rebuilds
  BM25) and ``rag.store.postgres.pg_writer`` (one transaction);
- **search** p50/p95 through ``rag.retrieve.rank`` (metadata fetch included, one query at a
  time, FAISS with ``search_threads`` = 1): dense (the default fusion), hybrid (score fusion
  with BM25) and dense under a year filter (~1/11 of the chunks); recall@10 of the dense
  search against the exact neighbours; for pgvector an ``hnsw.ef_search`` sweep;
- **memory per replica**: the RSS a fresh reader process adds by opening the index and
  answering queries (what each API replica holds), and the PostgreSQL server's memory (PSS,
  shared by all replicas); the size on disk.

Vectors: the clustered mixture of ``eval/ann_benchmark.py`` (queries drawn near the data);
texts: 80 words sampled from the demo corpus (``eval/index_benchmark.py``), so BM25 and the
Dutch full-text column see a realistic vocabulary; the queries' words: the demo gold questions.

Building: the embedded index through ``write_index`` (one generation, ivf_sq8 above 30k
chunks, as ``index_type=auto``); PostgreSQL through the migration's bulk path
(``rag.store.migrate.migrate_to_postgres``: COPY, the indexes built after the load), whose
rows equal the writer's (``tests/test_pg_benchmark.py``). Builds are kept in ``--workdir`` so that the timed phase can run again
on a quiet machine::

    python -m eval.pg_benchmark --sizes 100000,1000000 --phase build     # any time (long)
    python -m eval.pg_benchmark --sizes 100000,1000000 --phase measure   # a quiet machine
    python -m eval.pg_benchmark --sizes 20000 --queries 50               # both, a small check

Report: ``eval/reports/pg-benchmark.{json,md}`` (merged per size). Do not run the measure
phase while another heavy job uses the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rag.index import VectorIndexConfig, index_type_of, open_snapshot, write_index
from rag.retrieve import Filters, rank
from rag.settings import Settings
from rag.store import open_reader
from rag.types import Chunk, Document, Section

from .ann_benchmark import MixtureData, ground_truth
from .index_benchmark import _vocabulary

HERE = Path(__file__).resolve().parent
REPORT = HERE / "reports" / "pg-benchmark"
PER_DOC = 10
EMBEDDER = "synthetic"
N_CLUSTERS = 2000
YEARS = list(range(2015, 2026))
FILTER_YEAR = 2020
EF_SWEEP = (40, 100, 200, 400)


# --------------------------------------------------------------------------- the corpus


def _doc(i: int, rnd: random.Random, words: list[str], tag: str = "") -> Document:
    return Document(
        doc_id=f"syn/{i}",
        title=f"Synthetisch document {i}{tag}",
        source=f"syn/{i}.txt",
        sections=[Section(f"Sectie van document {i}{tag}", heading_path=["Sectie"])],
        content_hash=f"{i}{tag}",
        doc_type=rnd.choice(["begroting", "jaarstukken", "raadsbrief"]),
        year=YEARS[i % len(YEARS)],
    )


def corpus(n: int, dim: int, seed: int = 0) -> Iterator[tuple[Document, list[Chunk], np.ndarray]]:
    """Documents of ``PER_DOC`` chunks; chunk row ``i`` (document ``i // PER_DOC``, position
    ``i % PER_DOC``) has the mixture's vector ``i``, the same on every call."""
    data = MixtureData(dim, N_CLUSTERS, seed=seed)
    words = _vocabulary()
    carry = np.empty((0, dim), dtype=np.float32)
    first = 0  # row of carry[0]
    for ids, x in data.batches(n):  # the batches ground_truth reads (documents may straddle two)
        x = np.concatenate([carry, x]) if len(carry) else x
        whole = len(x) if int(ids[-1]) == n - 1 else len(x) // PER_DOC * PER_DOC
        for start in range(0, whole, PER_DOC):
            d = (first + start) // PER_DOC
            rnd = random.Random(d)
            doc = _doc(d, rnd, words)
            m = min(PER_DOC, whole - start)
            chunks = [
                Chunk(doc_id=doc.doc_id, text=" ".join(rnd.choices(words, k=80)), heading_path=["Sectie"], position=p)
                for p in range(m)
            ]
            yield doc, chunks, x[start : start + m]
        carry, first = x[whole:], first + whole


def changed_document(i: int, dim: int, k: int) -> tuple[Document, list[Chunk], np.ndarray]:
    """New text and vectors for the existing document ``syn/i`` (the ``k``-th change)."""
    rnd = random.Random(10_000_019 * (k + 1) + i)
    words = _vocabulary()
    doc = _doc(i, rnd, words, tag=f"-v{k + 1}")
    chunks = [
        Chunk(doc_id=doc.doc_id, text=" ".join(rnd.choices(words, k=80)), heading_path=["Sectie"], position=p)
        for p in range(PER_DOC)
    ]
    v = np.random.default_rng([k, i]).standard_normal((PER_DOC, dim)).astype(np.float32)
    return doc, chunks, v / np.linalg.norm(v, axis=1, keepdims=True)


def question_texts(n: int) -> list[str]:
    """The lexical side of the queries: the demo gold questions (real Dutch questions about
    the corpus the synthetic texts draw their words from), repeated to ``n``."""
    lines = (HERE / "gold" / "demo.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()]
    return [questions[i % len(questions)] for i in range(n)]


def hit_key(row: int) -> tuple[str, int]:
    return f"syn/{row // PER_DOC}", row % PER_DOC


# --------------------------------------------------------------------------- building


def build_embedded(folder: Path, n: int, dim: int) -> float:
    t0 = time.perf_counter()
    config = VectorIndexConfig.from_settings(Settings())
    with write_index(folder, EMBEDDER, dim, vector_config=config) as w:
        for doc, chunks, v in corpus(n, dim):
            w.upsert(doc, chunks, v)
    return time.perf_counter() - t0


class SyntheticSource:
    """The corpus as a migration source (rag/store/migrate.py), so that PostgreSQL is loaded
    by the production bulk path, ``vraagbaak index migrate --to postgres``: COPY in batches,
    the HNSW and GIN indexes built after the load, one transaction."""

    def __init__(self, n: int, dim: int) -> None:
        from rag.index import Manifest
        from rag.store.migrate import SourceInfo

        m = Manifest(embedder=EMBEDDER, dim=dim)
        m.n_chunks, m.n_documents = n, (n + PER_DOC - 1) // PER_DOC
        self.info = SourceInfo.of("embedded", "synthetic", "synthetic", m, "flat")
        self.n, self.dim = n, dim

    def documents(self) -> Iterator[Any]:
        from rag.store.migrate import StoredDocument

        row = 0
        for doc, chunks, v in corpus(self.n, self.dim):
            for c in chunks:
                row += 1
                c.chunk_id = row
            yield StoredDocument(doc, chunks, v)

    def close(self) -> None:
        pass


def load_pg(url: str, n: int, dim: int, maintenance_work_mem: str) -> float:
    from rag.store.migrate import migrate_to_postgres

    report = migrate_to_postgres(SyntheticSource(n, dim), url, maintenance_work_mem=maintenance_work_mem)
    assert report.n_chunks == n
    return report.seconds


# --------------------------------------------------------------------------- PostgreSQL


class Server:
    """A pgserver instance kept in ``folder`` between the build and the measure phase."""

    def __init__(self, folder: Path, shared_buffers: str) -> None:
        import pgserver
        import psycopg

        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self.srv: Any = pgserver.get_server(str(folder), cleanup_mode="stop")
        with psycopg.connect(self.srv.get_uri(), autocommit=True) as c:
            current = c.execute("SHOW shared_buffers").fetchone()
            if current and current[0].upper() != shared_buffers.upper():
                c.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
                restart = True
            else:
                restart = False
        if restart:
            self.srv.cleanup()
            self.srv = pgserver.get_server(str(folder), cleanup_mode="stop")
        self.start_s = time.perf_counter() - t0

    def url(self, db: str) -> str:
        import psycopg
        from psycopg.conninfo import make_conninfo

        with psycopg.connect(self.srv.get_uri(), autocommit=True) as c:
            if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                c.execute(f'CREATE DATABASE "{db}"')
        url = make_conninfo(self.srv.get_uri(), dbname=db)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return url

    def drop(self, db: str) -> None:
        import psycopg

        with psycopg.connect(self.srv.get_uri(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}"')

    def pss_mb(self) -> float:
        """Proportional set size of all the server's processes (shared buffers counted once)."""
        pid = self.srv.get_pid()
        pids = [pid] + [int(p) for p in _children(pid)]
        total = 0
        for p in pids:
            try:
                text = Path(f"/proc/{p}/smaps_rollup").read_text()
            except OSError:
                continue
            m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
            total += int(m.group(1)) if m else 0
        return round(total / 1024, 1)

    def stop(self) -> None:
        self.srv.cleanup()


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def _db_sizes(url: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(url) as c:
        rows = c.execute(
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname IN "
            "('chunks','documents','sections','chunks_embedding','chunks_terms','chunks_tsv')"
        ).fetchall()
        total = c.execute("SELECT pg_database_size(current_database())").fetchone()
    out = {f"{r[0]}_mb": round(r[1] / 1e6, 1) for r in rows}
    out["database_mb"] = round((total[0] if total else 0) / 1e6, 1)
    return out


# --------------------------------------------------------------------------- measuring


def _pct(xs: list[float], p: float) -> float:
    return round(float(np.percentile(xs, p)), 2)


def _timed(fn: Any, n: int) -> tuple[list[Any], list[float]]:
    out, lat = [], []
    for i in range(n):
        t0 = time.perf_counter()
        out.append(fn(i))
        lat.append((time.perf_counter() - t0) * 1000)
    return out, lat


def _recall(hits: list[list[Any]], truth: np.ndarray) -> float:
    rec = []
    for hs, t in zip(hits, truth):
        want = {hit_key(int(r)) for r in t}
        rec.append(len({(h.doc_id, h.position) for h in hs} & want) / len(want))
    return round(float(np.mean(rec)), 3)


def search_rows(snap: Any, q: np.ndarray, texts: list[str], truth: np.ndarray, backend: str) -> list[dict[str, Any]]:
    """Latency and recall of ``rank`` on one snapshot (one query at a time)."""
    nq = len(q)
    year = Filters(years=[FILTER_YEAR])
    rows = []
    for label, fusion, filters in (
        ("dense", "dense", None),
        ("hybrid (score + BM25)", "score", None),
        (f"dense, filter year {FILTER_YEAR} (1/11)", "dense", year),
    ):
        _timed(lambda i, fu=fusion, fi=filters: rank(snap, texts[i], q[i], top_k=10, fusion=fu, filters=fi), nq)
        hits, lat = _timed(
            lambda i, fu=fusion, fi=filters: rank(snap, texts[i], q[i], top_k=10, fusion=fu, filters=fi), nq
        )
        row = {"backend": backend, "search": label, "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95)}
        if fusion == "dense" and filters is None:  # the truth is the dense neighbours
            row["recall@10"] = _recall(hits, truth)
        if hasattr(snap, "last_dense_plan") and fusion == "dense":
            row["plan"] = snap.last_dense_plan
        rows.append(row)
    return rows


def ef_sweep(url: str, q: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    """pgvector HNSW at several ``hnsw.ef_search`` (``pg_hnsw_ef_search``): recall@10 and
    latency of the dense search (warm: each after one untimed pass)."""
    from rag.store.postgres import PgReader

    rows = []
    for ef in EF_SWEEP:
        reader = PgReader(url, exact_below=0, ef_search=ef)
        snap = reader.snapshot()
        search = snap.rank

        def one(i: int, search: Any = search) -> Any:
            return search("", q[i], 10, None, "dense")

        _timed(one, len(q))  # warm
        hits, lat = _timed(one, len(q))
        rows.append(
            {
                "backend": "postgres",
                "search": f"dense, hnsw.ef_search {ef}",
                "p50_ms": _pct(lat, 50),
                "p95_ms": _pct(lat, 95),
                "recall@10": _recall(hits, truth),
                "plan": snap.last_dense_plan,
            }
        )
        reader.close()
    return rows


def replica_memory(backend: str, where: str, dim: int, queries: int) -> dict[str, float]:
    """RSS a fresh process adds by opening the index and running ``queries`` searches."""
    out = subprocess.run(
        [sys.executable, "-m", "eval.pg_benchmark", "--replica", backend, where, "--dim", str(dim)]
        + ["--queries", str(queries)],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_mb() -> float:
    text = Path("/proc/self/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) / 1024 if m else 0.0


def replica_main(backend: str, where: str, dim: int, queries: int) -> None:
    import faiss

    import rag.store.postgres  # noqa: F401  (the code is loaded before the baseline: only the index is counted)

    faiss.omp_set_num_threads(1)
    texts = question_texts(queries)
    q = MixtureData(dim, N_CLUSTERS, seed=0).queries(queries)
    before = _rss_mb()
    if backend == "embedded":
        snap: Any = open_snapshot(Path(where))
    else:  # the service's reader, as the settings configure it
        snap = open_reader(Settings(database_url=where)).snapshot()
    opened = _rss_mb()
    for i in range(queries):
        rank(snap, texts[i], q[i], top_k=10, fusion="score")
    after = _rss_mb()
    print(
        json.dumps(
            {
                "baseline_mb": round(before, 1),
                "open_added_mb": round(opened - before, 1),
                "after_queries_added_mb": round(after - before, 1),
            }
        )
    )


def update_times(write: Any, n: int, dim: int, updates: int, avoid: set[int]) -> list[float]:
    """ms per changed document; documents in ``avoid`` (those holding a query's true
    neighbours) are left alone, so that a rerun of the measure phase finds the same truth."""
    lat = []
    n_docs = max(1, n // PER_DOC)
    docs = (d for d in ((1 + 7919 * j) % n_docs for j in range(n_docs)) if d not in avoid)
    for k in range(updates):
        doc, chunks, v = changed_document(next(docs), dim, k)
        t0 = time.perf_counter()
        write(doc, chunks, v)
        lat.append((time.perf_counter() - t0) * 1000)
    return lat


def _dir_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 1)


def measure(n: int, args: argparse.Namespace, server: Server, url: str, folder: Path) -> dict[str, Any]:
    import faiss

    from rag.store.postgres import pg_writer

    faiss.omp_set_num_threads(Settings().search_threads)
    data = MixtureData(args.dim, N_CLUSTERS, seed=0)
    q = data.queries(args.queries)
    truth = ground_truth(data, n, q, 10, []).ids["all"]
    texts = question_texts(args.queries)
    out: dict[str, Any] = {"size": n}

    snap = open_snapshot(folder)
    out["embedded_index"] = index_type_of(snap.vectors)
    rows = search_rows(snap, q, texts, truth, "embedded (FAISS)")
    snap.close()
    reader = open_reader(Settings(database_url=url))  # the service's reader, as the settings configure it
    psnap = reader.snapshot()
    rows += search_rows(psnap, q, texts, truth, "postgres (pgvector)")
    reader.close()
    rows += ef_sweep(url, q, truth)  # HNSW at every size
    out["search"] = rows

    out["memory"] = {
        "embedded_replica": replica_memory("embedded", str(folder), args.dim, 30),
        "postgres_replica": replica_memory("postgres", url, args.dim, 30),
        "postgres_server_pss_mb": server.pss_mb(),
    }
    out["disk"] = {"embedded_generation_mb": _dir_mb(folder / snap.name), **_db_sizes(url)}

    config = VectorIndexConfig.from_settings(Settings())

    def embedded_write(doc: Document, chunks: list[Chunk], v: np.ndarray) -> None:
        with write_index(folder, EMBEDDER, args.dim, vector_config=config, keep_generations=1) as w:
            w.upsert(doc, chunks, v)

    def pg_write(doc: Document, chunks: list[Chunk], v: np.ndarray) -> None:
        with pg_writer(url, EMBEDDER, args.dim) as w:
            w.upsert(doc, chunks, v)

    avoid = {int(r) // PER_DOC for r in truth.ravel()}
    emb = update_times(embedded_write, n, args.dim, args.embedded_updates, avoid)
    pg = update_times(pg_write, n, args.dim, args.updates, avoid)
    out["update_one_document_ms"] = {
        "embedded": {"p50": _pct(emb, 50), "max": _pct(emb, 100), "n": len(emb)},
        "postgres": {"p50": _pct(pg, 50), "max": _pct(pg, 100), "n": len(pg)},
    }
    return out


# --------------------------------------------------------------------------- report


def _cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = sorted(set(re.findall(r"\b(avx512[a-z_0-9]*|amx[a-z_0-9]*)\b", info)))
    return f"{model.group(1) if model else '?'}, {os.cpu_count()} cores, flags: {' '.join(flags) or 'no AVX-512/AMX'}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Index backends at scale: embedded (FAISS + SQLite + bm25s) vs PostgreSQL + pgvector",
        "",
        f"`python -m eval.pg_benchmark` — {report['meta']['cpu']}; {report['meta'].get('postgres', '')}. "
        "Synthetic clustered vectors (dim "
        f"{report['meta']['dim']}), texts of 80 demo-corpus words, documents of {PER_DOC} chunks; "
        "search one query at a time through `rag.retrieve.rank` (FAISS 1 thread), each timed pass after an untimed "
        "one (warm caches), "
        f"{report['meta']['queries']} query vectors near the data; the lexical side of hybrid search: the demo "
        "gold questions.",
        "",
    ]
    for size in sorted(report["sizes"], key=int):
        r = report["sizes"][size]
        b = r.get("build", {})
        lines += [f"## {int(size):,} chunks", ""]
        if b:
            lines.append(
                f"Build: embedded {b.get('embedded_s', '?')} s (write_index, one generation, document by document); "
                f"postgres {b.get('postgres_migrate_s', '?')} s (`vraagbaak index migrate --to postgres`: COPY, "
                "then the HNSW and GIN indexes). Builds are not benchmarks (they may have run beside other jobs)."
            )
            lines.append("")
        u = r.get("update_one_document_ms")
        if u:
            lines += [
                "| change one document (10 chunks) | p50 ms | max ms | n |",
                "|---|---:|---:|---:|",
                f"| embedded (copy generation + BM25 rebuild) | {u['embedded']['p50']:,} | {u['embedded']['max']:,} "
                f"| {u['embedded']['n']} |",
                f"| postgres (one transaction) | {u['postgres']['p50']:,} | {u['postgres']['max']:,} "
                f"| {u['postgres']['n']} |",
                "",
            ]
        if r.get("search"):
            lines += ["| backend | search | p50 ms | p95 ms | recall@10 | plan |", "|---|---|---:|---:|---:|---|"]
            for s in r["search"]:
                lines.append(
                    f"| {s['backend']} | {s['search']} | {s['p50_ms']} | {s['p95_ms']} | "
                    f"{s.get('recall@10', '')} | {s.get('plan', '')} |"
                )
            lines.append("")
        m = r.get("memory")
        if m:
            e, p = m["embedded_replica"], m["postgres_replica"]
            lines += [
                "| memory | MB |",
                "|---|---:|",
                f"| embedded replica: RSS added by the open index (after 30 hybrid queries) | "
                f"{e['after_queries_added_mb']} |",
                f"| postgres replica: RSS added (connection pool, after 30 hybrid queries) | "
                f"{p['after_queries_added_mb']} |",
                f"| postgres server, all processes (PSS; shared by every replica) | {m['postgres_server_pss_mb']} |",
                "",
            ]
        d = r.get("disk")
        if d:
            lines.append("On disk: " + ", ".join(f"{k[:-3]} {v} MB" for k, v in d.items()) + ".")
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--updates", type=int, default=10, help="PostgreSQL document changes timed")
    ap.add_argument("--embedded-updates", type=int, default=3, help="embedded document changes timed")
    ap.add_argument("--phase", choices=["build", "measure", "all"], default="all")
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/vb-pgbench"))
    ap.add_argument("--shared-buffers", default="4GB")
    ap.add_argument("--maintenance-work-mem", default="6GB", help="for the HNSW build of the load")
    ap.add_argument("--report", type=Path, default=REPORT)
    ap.add_argument("--replica", nargs=2, metavar=("BACKEND", "WHERE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.replica:
        replica_main(args.replica[0], args.replica[1], args.dim, args.queries)
        return

    json_path = args.report.with_suffix(".json")
    report: dict[str, Any] = json.loads(json_path.read_text()) if json_path.exists() else {"sizes": {}}
    report["meta"] = {"cpu": _cpu(), "dim": args.dim, "queries": args.queries}
    server = Server(args.workdir / "pg", args.shared_buffers)
    try:
        import psycopg

        with psycopg.connect(server.srv.get_uri()) as c:
            ver = c.execute("SHOW server_version").fetchone()
            sb = c.execute("SHOW shared_buffers").fetchone()
        report["meta"]["postgres"] = (
            f"PostgreSQL {ver[0] if ver else '?'} (pgserver), shared_buffers {sb[0] if sb else '?'}"
        )
        for n in [int(s) for s in args.sizes.split(",")]:
            entry = report["sizes"].setdefault(str(n), {})
            folder, db = args.workdir / f"index-{n}", f"bench_{n}"
            if args.phase in ("build", "all"):
                shutil.rmtree(folder, ignore_errors=True)
                server.drop(db)
                emb_s = build_embedded(folder, n, args.dim)
                print(f"{n}: embedded built in {emb_s:.1f} s", flush=True)
                pg_s = load_pg(server.url(db), n, args.dim, args.maintenance_work_mem)
                print(f"{n}: postgres loaded (index migrate) in {pg_s:.1f} s", flush=True)
                entry["build"] = {"embedded_s": round(emb_s, 1), "postgres_migrate_s": round(pg_s, 1)}
            if args.phase in ("measure", "all"):
                entry.update(measure(n, args, server, server.url(db), folder))
                print(json.dumps(entry, indent=1), flush=True)
            report["meta"]["pgvector"] = _pgvector(server.url(db))
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report, indent=1))
            args.report.with_suffix(".md").write_text(markdown(report))
    finally:
        server.stop()


def _pgvector(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as c:
        row = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return row[0] if row else "?"


if __name__ == "__main__":
    main()
