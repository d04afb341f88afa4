"""Retrieval benchmark on the Rijksoverheid FAQ set (179 real pages, CC0).

Query = the FAQ question; gold = its own page. The question is left out of the indexed
text (introduction + paragraphs only, no title), otherwise the task is trivial. A page counts
as found at rank r when any of its chunks is at rank r (chunks are collapsed to pages).

    python -m eval.retrieval_benchmark                  # default chunking, all fusions
    python -m eval.retrieval_benchmark --chunk-size 400 --chunk-size 800

Prints a table (hit@1, hit@5, MRR per method) and writes JSON to eval/reports/.
Index builds are cached per chunking under eval/runs/ (ignored by git).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from rag.embed import Embedder, load_embedder
from rag.index import IndexSnapshot, open_snapshot
from rag.indexing import ingest_paths
from rag.ingest import parse_file
from rag.retrieve import rank
from rag.settings import Settings

from .datasets import index_variant

HERE = Path(__file__).resolve().parent
FAQ_DIR = HERE / "data" / "rijksoverheid-faq"

# (label, fusion, bm25 weight)
METHODS = [
    ("bm25", "bm25", 1.0),
    ("dense", "dense", 0.0),
    ("rrf 1:1", "rrf", 0.5),
    ("rrf 4:1", "rrf", 0.2),
    ("score w=0.1", "score", 0.1),
    ("score w=0.2", "score", 0.2),
    ("score w=0.3", "score", 0.3),
]


def faq_questions(faq_dir: Path = FAQ_DIR) -> list[dict]:
    rows: list[dict] = []
    for name in ("faq-bzk.csv", "faq-omgevingswet.csv"):
        with open(faq_dir / name, encoding="utf-8", newline="") as fh:
            rows += list(csv.DictReader(fh))
    seen: set[str] = set()
    out = []
    for r in rows:  # one question per canonical page
        if r["canonical"] in seen:
            continue
        seen.add(r["canonical"])
        out.append({"id": r["id"], "question": r["question"], "gold_source": r["canonical"]})
    return out


def _parse_without_question(path, root=None, groups=None, **_):
    doc = parse_file(path, root=root, groups=groups, include_question=False)
    doc.title = ""  # the title is the question: keep it out of the embedded text
    return doc


def build_index(settings: Settings, embedder: Embedder, faq_dir: Path = FAQ_DIR) -> tuple[IndexSnapshot, float, int]:
    if (settings.index_dir / "CURRENT").exists():
        snap = open_snapshot(settings.index_dir)
        return snap, float("nan"), snap.manifest.n_chunks
    t0 = time.perf_counter()
    report = ingest_paths([faq_dir / "pages"], settings, embedder, parse=_parse_without_question, progress=True)
    if report.failed:
        raise SystemExit(f"FAQ pages failed to parse: {report.failed[:3]}")
    return open_snapshot(settings.index_dir), time.perf_counter() - t0, report.chunks_embedded


def evaluate(snap: IndexSnapshot, questions: list[dict], qvecs: np.ndarray, fusion: str, w: float, k: int = 10) -> dict:
    hits1 = hits5 = 0
    rr = 0.0
    latencies = []
    for q, qv in zip(questions, qvecs):
        t0 = time.perf_counter()
        hits = rank(snap, q["question"], qv, top_k=50, fusion=fusion, weight_bm25=w, candidates=50)
        latencies.append((time.perf_counter() - t0) * 1000)
        pages: list[str] = []
        for h in hits:
            if h.source not in pages:
                pages.append(h.source)
        r = pages.index(q["gold_source"]) + 1 if q["gold_source"] in pages else None
        if r is not None:
            hits1 += r == 1
            hits5 += r <= 5
            rr += 1.0 / r
    n = len(questions)
    return {
        "hit@1": hits1 / n,
        "hit@5": hits5 / n,
        "mrr": rr / n,
        "search_ms_p50": float(np.percentile(latencies, 50)),
        "search_ms_p95": float(np.percentile(latencies, 95)),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunk-size", type=int, action="append", help="chunk size(s) in characters")
    ap.add_argument("--overlap", type=int, default=None)
    ap.add_argument("--work-dir", type=Path, default=HERE / "runs" / "faq-retrieval")
    ap.add_argument("--out", type=Path, default=HERE / "reports" / "retrieval-faq.json")
    args = ap.parse_args(argv)

    base = Settings()
    embedder = load_embedder(base)
    questions = faq_questions()
    t0 = time.perf_counter()
    qvecs = np.vstack([embedder.embed_query(q["question"]) for q in questions])
    query_ms = (time.perf_counter() - t0) * 1000 / len(questions)

    results = []
    for size in args.chunk_size or [base.chunk_size]:
        overlap = args.overlap if args.overlap is not None else min(base.chunk_overlap, size // 4)
        s = replace_settings(base, chunk_size=size, chunk_overlap=overlap)
        s = replace_settings(s, index_dir=args.work_dir / index_variant(s))
        snap, build_s, n_chunks = build_index(s, embedder)
        for label, fusion, w in METHODS:
            m = evaluate(snap, questions, qvecs, fusion, w)
            row = {
                "chunk_size": size,
                "overlap": overlap,
                "method": label,
                "fusion": fusion,
                "weight_bm25": w,
                "chunks": n_chunks,
                "build_s": build_s,
                **m,
            }
            results.append(row)
            print(
                f"c={size:4d} {label:12s} hit@1 {m['hit@1']:.3f}  hit@5 {m['hit@5']:.3f}  MRR {m['mrr']:.3f}  "
                f"search p50 {m['search_ms_p50']:.1f} ms p95 {m['search_ms_p95']:.1f} ms",
                flush=True,
            )
        if build_s == build_s:
            print(f"c={size}: {n_chunks} chunks indexed in {build_s:.0f}s ({n_chunks / build_s:.2f} chunks/s)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "dataset": "rijksoverheid-faq",
                "questions": len(questions),
                "embedder": base.embedder,
                "embedder_max_seq_length": base.embedder_max_seq_length,
                "query_embed_ms": query_ms,
                "results": results,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"query embedding: {query_ms:.0f} ms/question; written {args.out}")


def replace_settings(s: Settings, **changes) -> Settings:
    return s.model_copy(update=changes)


if __name__ == "__main__":
    main()
