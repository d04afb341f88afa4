"""The postgres backend next to the embedded index on a synthetic corpus (no model needed):
the time to change ONE document (10 chunks) at N chunks, and search latency + recall@10.

    python -m eval.pg_benchmark --chunks 20000 --dim 384 --queries 100

Starts its own pgserver (the postgres extra) in a temporary folder and stops it. Vectors are
random unit vectors, texts sampled from the demo corpus' words (eval/index_benchmark.py).
Recall@10 of the pgvector HNSW search is measured against the exact scan of the same rows.
Bounded: the build dominates (both backends are loaded one document at a time).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.index import open_snapshot, write_index
from rag.retrieve import rank
from rag.store.postgres import PgReader, pg_writer
from rag.types import Chunk, Document, Section

from .index_benchmark import _vocabulary

PER_DOC = 10


def _docs(n_chunks: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    words = _vocabulary()
    for d in range(0, n_chunks, PER_DOC):
        n = min(PER_DOC, n_chunks - d)
        doc = Document(
            doc_id=f"syn/{d // PER_DOC}",
            title=f"Synthetisch document {d // PER_DOC}",
            source=f"syn/{d // PER_DOC}.txt",
            sections=[Section("x")],
            content_hash=str(d),
            year=rnd.randint(2015, 2025),
        )
        chunks = [Chunk(doc_id=doc.doc_id, text=" ".join(rnd.choices(words, k=80)), position=i) for i in range(n)]
        v = rng.standard_normal((n, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        yield doc, chunks, v


def _pct(xs: list[float], p: float) -> float:
    return round(float(np.percentile(xs, p)), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--updates", type=int, default=5)
    args = ap.parse_args()
    import pgserver
    import psycopg
    from psycopg.conninfo import make_conninfo

    out: dict = {"chunks": args.chunks, "dim": args.dim}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        srv = pgserver.get_server(str(Path(tmp) / "pg"), cleanup_mode="stop")
        out["pg_start_s"] = round(time.perf_counter() - t0, 2)
        with psycopg.connect(srv.get_uri(), autocommit=True) as c:
            c.execute("CREATE DATABASE bench")
        url = make_conninfo(srv.get_uri(), dbname="bench")
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS vector")
        try:
            folder = Path(tmp) / "index"
            t0 = time.perf_counter()
            with write_index(folder, "synthetic", args.dim, vector_config=None) as w:
                for doc, chunks, v in _docs(args.chunks, args.dim):
                    w.upsert(doc, chunks, v)
            out["embedded_build_s"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            with pg_writer(url, "synthetic", args.dim) as pw:
                for doc, chunks, v in _docs(args.chunks, args.dim):
                    pw.upsert(doc, chunks, v)
            out["pg_build_s"] = round(time.perf_counter() - t0, 1)

            # one document of 10 chunks changed, as an ingest of one changed file does
            new = list(_docs(PER_DOC * args.updates, args.dim, seed=1))
            emb_t, pg_t = [], []
            for doc, chunks, v in new:
                t0 = time.perf_counter()
                with write_index(folder, "synthetic", args.dim) as w:
                    w.upsert(doc, chunks, v)
                emb_t.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                with pg_writer(url, "synthetic", args.dim) as pw:
                    pw.upsert(doc, chunks, v)
                pg_t.append((time.perf_counter() - t0) * 1000)
            out["update_one_doc_ms"] = {
                "embedded_p50": _pct(emb_t, 50),
                "postgres_p50": _pct(pg_t, 50),
                "embedded_max": _pct(emb_t, 100),
                "postgres_max": _pct(pg_t, 100),
            }

            snap = open_snapshot(folder)
            reader = PgReader(url, exact_below=0)
            psnap = reader.snapshot()
            exact_reader = PgReader(url, exact_below=10**12)
            esnap = exact_reader.snapshot()
            rng = np.random.default_rng(7)
            lat: dict[str, list[float]] = {"faiss": [], "pg_hnsw": [], "pg_exact": []}
            recall = []
            for _ in range(args.queries):
                q = rng.standard_normal(args.dim).astype(np.float32)
                q /= np.linalg.norm(q)
                for name, s in (("faiss", snap), ("pg_hnsw", psnap), ("pg_exact", esnap)):
                    t0 = time.perf_counter()
                    hits = rank(s, "", q, top_k=10, fusion="dense")
                    lat[name].append((time.perf_counter() - t0) * 1000)
                    if name == "pg_hnsw":
                        got = {(h.doc_id, h.position) for h in hits}
                    if name == "pg_exact":
                        want = {(h.doc_id, h.position) for h in hits}
                recall.append(len(got & want) / 10)
            out["search_dense_ms"] = {k: {"p50": _pct(v, 50), "p95": _pct(v, 95)} for k, v in lat.items()}
            out["pg_hnsw_recall_at_10"] = round(float(np.mean(recall)), 3)
            reader.close()
            exact_reader.close()
        finally:
            srv.cleanup()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
