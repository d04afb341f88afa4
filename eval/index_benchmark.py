"""Search latency on a synthetic index (no model needed).

Builds an index of N synthetic chunks (random unit vectors; texts sampled from the demo
corpus vocabulary so BM25 has a realistic vocabulary), then times hybrid ``rank()`` — dense
FAISS search + BM25 scoring + fusion + metadata fetch — *without* query embedding.

    python -m eval.index_benchmark --chunks 100000 --queries 200

Do not run it while another heavy job uses the cores.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.index import open_snapshot, write_index
from rag.retrieve import Filters, rank
from rag.types import Chunk, Document

HERE = Path(__file__).resolve().parent
DEMO = HERE.parent / "data" / "voorbeeld"


def _vocabulary() -> list[str]:
    words: list[str] = []
    for p in sorted(DEMO.glob("*.txt")):
        words += re.findall(r"[^\W\d_]{3,}", p.read_text(encoding="utf-8").lower())
    return words


def build(folder: Path, n_chunks: int, dim: int, per_doc: int = 10, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    words = _vocabulary()
    t0 = time.perf_counter()
    with write_index(folder, "synthetic", dim) as w:
        for d in range(0, n_chunks, per_doc):
            n = min(per_doc, n_chunks - d)
            doc = Document(
                doc_id=f"syn/{d // per_doc}",
                title=f"Synthetisch document {d // per_doc}",
                source=f"syn/{d // per_doc}.txt",
                sections=[],
                content_hash=str(d),
                doc_type=rnd.choice(["begroting", "jaarstukken", "raadsbrief"]),
                year=rnd.randint(2015, 2025),
            )
            chunks = [
                Chunk(doc_id=doc.doc_id, text=" ".join(rnd.choices(words, k=80)), heading_path=["Sectie"], position=i)
                for i in range(n)
            ]
            v = rng.standard_normal((n, dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            w.upsert(doc, chunks, v)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "reports" / "index-latency.json")
    args = ap.parse_args(argv)

    import faiss

    from rag.settings import Settings

    faiss.omp_set_num_threads(Settings().search_threads)  # as the Retriever does
    folder = Path(tempfile.mkdtemp(prefix="vraagbaak-bench-"))
    try:
        build_s = build(folder, args.chunks, args.dim)
        snap = open_snapshot(folder)
        rng = np.random.default_rng(1)
        rnd = random.Random(1)
        words = _vocabulary()
        results = {}
        for label, fusion, filters in [
            ("dense", "dense", None),
            ("bm25", "bm25", None),
            ("hybrid score", "score", None),
            ("hybrid score + filter", "score", Filters(doc_types=["begroting"], years=list(range(2018, 2026)))),
        ]:
            lat = []
            for _ in range(args.queries):
                qv = rng.standard_normal(args.dim).astype(np.float32)
                qv /= np.linalg.norm(qv)
                q = " ".join(rnd.choices(words, k=8))
                t0 = time.perf_counter()
                rank(snap, q, qv, top_k=args.top_k, fusion=fusion, filters=filters)
                lat.append((time.perf_counter() - t0) * 1000)
            results[label] = {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95))}
            print(f"{label:24s} p50 {results[label]['p50_ms']:7.2f} ms   p95 {results[label]['p95_ms']:7.2f} ms")
        size = sum(p.stat().st_size for p in (folder / snap.name).rglob("*") if p.is_file())
        print(f"{args.chunks} chunks, dim {args.dim}: build {build_s:.1f}s, on disk {size / 1e6:.0f} MB")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {"chunks": args.chunks, "dim": args.dim, "build_s": build_s, "disk_mb": size / 1e6, "results": results},
                indent=2,
            )
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
