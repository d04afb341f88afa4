"""Embedding backends compared: speed and retrieval quality (targets: faster embeddings on CPU).

For each variant — torch fp32, ONNX fp32, ONNX int8 (rag/embed/), and Matryoshka 512/256 on the
best of them — it measures:

- **chunks/s**: ``embed_documents`` over real chunks of the demo corpus (data/voorbeeld, the
  project's parser and chunker at the default 600 characters), after one warm-up batch;
- **query ms**: ``embed_query`` per FAQ question, p50 / p95;
- **FAQ**: hit@1 / hit@5 / MRR on the Rijksoverheid FAQ set, dense retrieval, scored by
  ``eval.retrieval_benchmark`` (same index build, same page-level scoring);
- **demo**: document and passage hit@1 / hit@5 / MRR on the gold set (eval/gold/demo.jsonl),
  scored by ``eval.run.score_retrieval``;
- **cos vs torch**: cosine of the variant's chunk vectors with torch's (when torch ran too);
- **mixed** rows: the torch-built index searched with the variant's query vectors (is an index
  built with one backend usable with another?).

Matryoshka rows truncate the base variant's vectors (the forward pass is the same, so their speed
is the base's); only the index and the search differ.

    python -m eval.embed_benchmark                                  # everything (see the README table for time)
    python -m eval.embed_benchmark --backends torch,onnx-int8 --limit 20 --out /tmp/try
    python -m eval.embed_benchmark --threads 2 --dims 512,256,128

The first ONNX run exports the model (cached in <model folder>/onnx/, minutes, once). Document
vectors are cached per variant under eval/runs/embed-benchmark/ (``--fresh`` ignores them); the
speed numbers never come from the cache. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunking import chunk_document
from rag.embed import (
    ONNX_FILES,
    SentenceTransformerEmbedder,
    ensure_onnx_model,
    onnx_dir,
    source_fingerprint,
    truncate_vectors,
)
from rag.embed.onnx_export import _versions
from rag.index import open_snapshot
from rag.ingest import parse_file
from rag.models import resolve_embedder
from rag.settings import Settings

from . import metrics as M
from .datasets import DEMO_CORPUS, FAQ_DIR, EvalItem, faq_page_files, load_demo
from .retrieval_benchmark import build_index, evaluate, faq_questions
from .run import retrieval_query, score_retrieval

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "runs" / "embed-benchmark"
OUT = HERE / "reports" / "embed-benchmark"
VARIANTS = {"torch": ("torch", "none"), "onnx-fp32": ("onnx", "none"), "onnx-int8": ("onnx", "int8")}
DEMO_KEYS = ("doc_hit@1", "doc_hit@5", "doc_mrr", "psg_hit@1", "psg_hit@5", "psg_mrr")


# --------------------------------------------------------------------------- vector cache


class VectorCache:
    """Document vectors of one variant by sha256 of the text, kept in an .npz between runs."""

    def __init__(self, path: Path, meta: dict[str, Any], fresh: bool = False) -> None:
        self.path = path
        self.meta = json.dumps(meta, sort_keys=True)
        self.vecs: dict[str, np.ndarray] = {}
        if path.is_file() and not fresh:
            data = np.load(path, allow_pickle=False)
            if str(data["meta"]) == self.meta:
                self.vecs = dict(zip((str(k) for k in data["keys"]), data["vectors"]))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, texts: Sequence[str]) -> np.ndarray:
        return np.vstack([self.vecs[self.key(t)] for t in texts])

    def missing(self, texts: Sequence[str]) -> list[str]:
        return [t for t in dict.fromkeys(texts) if self.key(t) not in self.vecs]

    def add(self, texts: Sequence[str], vecs: np.ndarray) -> None:
        for t, v in zip(texts, vecs):
            self.vecs[self.key(t)] = np.asarray(v, dtype=np.float32)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.vecs)
        vectors = np.vstack([self.vecs[k] for k in keys]) if keys else np.zeros((0, 1), np.float32)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(keys), vectors=vectors, meta=np.array(self.meta))
        os.replace(tmp, self.path)


class CachedEmbedder:
    """Index-building view of a variant: document vectors from the cache (embedding only what is
    missing, with ``inner``), truncated to ``dim``; queries are given precomputed."""

    def __init__(self, model_id: str, full_dim: int, cache: VectorCache, inner=None, dim: int | None = None) -> None:
        self.model_id = model_id
        self.dim = dim or full_dim
        self.cache = cache
        self.inner = inner
        self._dim = dim

    def embed_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        missing = self.cache.missing(texts)
        if missing:
            if self.inner is None:
                raise RuntimeError(f"{len(missing)} texts have no cached vector and no model to embed them")
            self.cache.add(missing, self.inner.embed_documents(missing, progress=progress))
            self.cache.save()
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return truncate_vectors(self.cache.get(texts), self._dim)

    def embed_query(self, text: str) -> np.ndarray:  # pragma: no cover - queries are precomputed
        raise RuntimeError("the benchmark passes query vectors explicitly")


# --------------------------------------------------------------------------- data


def demo_chunks(settings: Settings, limit: int | None) -> list[str]:
    """Embedding texts of the demo corpus' chunks, as ingest makes them (title + headings + text)."""
    texts: list[str] = []
    for path in sorted(DEMO_CORPUS.glob("*.txt")):
        doc = parse_file(path, root=DEMO_CORPUS.parent)
        chunks = chunk_document(doc, settings.chunk_size, settings.chunk_overlap, settings.min_chunk_chars)
        texts += [c.embed_text(doc.title) for c in chunks]
    if limit and limit < len(texts):
        step = len(texts) / limit
        texts = [texts[int(i * step)] for i in range(limit)]  # spread over every document
    return texts


def demo_items(limit: int | None, work: Path) -> tuple[list[EvalItem], Path]:
    """Gold items with a gold document, and the corpus folder to index (with a limit: a copy
    holding only the document with most items, so a quick try embeds few chunks; doc ids stay
    ``voorbeeld/<name>``)."""
    items = [i for i in load_demo() if i.gold_docs]
    if not limit:
        return items, DEMO_CORPUS
    counts: dict[str, int] = {}
    for i in items:
        counts[i.gold_docs[0]] = counts.get(i.gold_docs[0], 0) + 1
    top = max(counts, key=lambda d: counts[d])
    folder = work / "demo-limit" / DEMO_CORPUS.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(DEMO_CORPUS / f"{top.split('/', 1)[1]}.txt", folder)
    return [i for i in items if i.gold_docs[0] == top][:limit], folder


def faq_subset(limit: int | None, work: Path) -> tuple[list[dict], Path]:
    """FAQ questions and the FAQ folder to index (with a limit: only the gold pages of the first
    ``limit`` questions, copied under ``work``)."""
    questions = faq_questions()
    if not limit:
        return questions, FAQ_DIR
    questions = questions[:limit]
    folder = work / f"faq-limit-{limit}"
    pages = folder / "pages"
    if not pages.is_dir():
        pages.mkdir(parents=True)
        files = faq_page_files()
        for q in questions:
            shutil.copy(files[q["gold_source"]], pages / files[q["gold_source"]].name)
    return questions, folder


# --------------------------------------------------------------------------- measuring


def measure_speed(emb: SentenceTransformerEmbedder, texts: list[str]) -> tuple[float, np.ndarray]:
    """chunks/s of embed_documents over ``texts`` (one warm-up batch first), and the vectors."""
    emb.embed_documents(texts[: emb.batch_size])
    t0 = time.perf_counter()
    vecs = emb.embed_documents(texts)
    return len(texts) / (time.perf_counter() - t0), vecs


def measure_queries(emb: SentenceTransformerEmbedder, queries: list[str]) -> tuple[np.ndarray, list[float]]:
    emb.embed_query(queries[0])  # warm-up
    vecs, ms = [], []
    for q in queries:
        t0 = time.perf_counter()
        vecs.append(emb.embed_query(q))
        ms.append((time.perf_counter() - t0) * 1000)
    return np.vstack(vecs), ms


def faq_scores(settings: Settings, embedder, folder: Path, faq_dir: Path, questions, qvecs) -> dict[str, float]:
    shutil.rmtree(folder, ignore_errors=True)
    snap, _, _ = build_index(settings.model_copy(update={"index_dir": folder}), embedder, faq_dir=faq_dir)
    try:
        m = evaluate(snap, questions, qvecs, "dense", 0.0)
    finally:
        snap.close()
    keys = {"hit@1": "faq_hit@1", "hit@5": "faq_hit@5", "mrr": "faq_mrr", "search_ms_p50": "faq_search_ms_p50"}
    return {new: m[old] for old, new in keys.items()}


def build_demo_index(settings: Settings, embedder, folder: Path, corpus: Path) -> Settings:
    from rag.indexing import ingest_paths

    shutil.rmtree(folder, ignore_errors=True)
    s = settings.model_copy(update={"index_dir": folder, "fusion": "dense"})
    report = ingest_paths([corpus], s, embedder)
    if report.failed:
        raise SystemExit(f"demo corpus failed to index: {report.failed}")
    return s


def demo_scores(settings: Settings, embedder, items: list[EvalItem], qvecs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Mean doc/passage hit@1, hit@5, MRR over the items (dense retrieval, top 10)."""
    from rag.retrieve import Retriever

    retriever = Retriever(settings, embedder)
    per_key: dict[str, list[float | None]] = {k: [] for k in DEMO_KEYS}
    for item in items:
        q = retrieval_query(item)
        res = retriever.search(q, top_k=10, fusion="dense", query_vector=qvecs[q])
        m = score_retrieval(item, res.hits, "doc_id")["metrics"]
        for k in DEMO_KEYS:
            per_key[k].append(m.get(k))
    return {f"demo_{k}": M.mean(v) for k, v in per_key.items()}


# --------------------------------------------------------------------------- one variant


def model_size_mb(model_path: str, backend: str, quantize: str) -> float:
    if backend == "torch":
        files = list(Path(model_path).rglob("*.safetensors"))
    else:
        onnx_file = onnx_dir(model_path) / ONNX_FILES[quantize]
        files = [onnx_file] + list(onnx_file.parent.glob(onnx_file.name + ".data"))
    return round(sum(f.stat().st_size for f in files) / 1e6, 1)


def run_variant(name: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """Load, time and score one full-size variant; keeps its query vectors and cache in ``ctx``."""
    backend, quantize = VARIANTS[name]
    s: Settings = ctx["settings"]
    row: dict[str, Any] = {"variant": name, "backend": backend, "quantize": quantize, "dim": None}
    t0 = time.perf_counter()
    if backend == "onnx":
        ensure_onnx_model(ctx["model_path"], quantize, threads=ctx["threads"])
    row["export_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    emb = SentenceTransformerEmbedder(
        ctx["model_path"],
        model_id=s.embedder,
        max_seq_length=s.embedder_max_seq_length,
        batch_size=s.embedder_batch_size,
        backend=backend,
        quantize=quantize,
        threads=ctx["threads"],
    )
    row["load_s"] = round(time.perf_counter() - t0, 1)
    row["dim"] = emb.dim
    row["model_mb"] = model_size_mb(ctx["model_path"], backend, quantize)
    meta = {
        "variant": name,
        "model": source_fingerprint(ctx["model_path"]),
        "max_seq": s.embedder_max_seq_length,
        "chunking": [s.chunk_size, s.chunk_overlap, s.min_chunk_chars],
    }
    cache = VectorCache(ctx["work"] / f"{name}.npz", meta, fresh=ctx["fresh"])
    ctx["caches"][name] = cache
    log(f"[{name}] speed over {len(ctx['speed_texts'])} demo chunks …")
    row["chunks_per_s"], chunk_vecs = measure_speed(emb, ctx["speed_texts"])
    ctx["chunk_vecs"][name] = chunk_vecs
    cache.add(ctx["speed_texts"], chunk_vecs)  # the demo index embeds the same texts
    queries = [q["question"] for q in ctx["faq_questions"]] + list(dict.fromkeys(ctx["demo_queries"]))
    log(f"[{name}] {len(queries)} queries …")
    qvecs, ms = measure_queries(emb, queries)
    n_faq = len(ctx["faq_questions"])
    row["query_ms_p50"] = float(np.percentile(ms[:n_faq], 50))
    row["query_ms_p95"] = float(np.percentile(ms[:n_faq], 95))
    ctx["faq_qvecs"][name] = qvecs[:n_faq]
    ctx["demo_qvecs"][name] = dict(zip(queries[n_faq:], qvecs[n_faq:]))
    indexer = CachedEmbedder(s.embedder, emb.dim, cache, inner=emb)
    log(f"[{name}] FAQ index + {n_faq} questions …")
    row.update(faq_scores(s, indexer, ctx["work"] / name / "faq", ctx["faq_dir"], ctx["faq_questions"], qvecs[:n_faq]))
    log(f"[{name}] demo index + {len(ctx['demo_items'])} questions …")
    ds = build_demo_index(s, indexer, ctx["work"] / name / "demo", ctx["demo_corpus"])
    row.update(demo_scores(ds, indexer, ctx["demo_items"], ctx["demo_qvecs"][name]))
    del emb, indexer
    gc.collect()
    return row


def matryoshka_row(base: str, dim: int, ctx: dict[str, Any], base_row: dict[str, Any]) -> dict[str, Any]:
    """The base variant's vectors truncated to ``dim`` (same forward pass: same speed)."""
    s: Settings = ctx["settings"]
    row = {k: base_row[k] for k in ("backend", "quantize", "chunks_per_s", "query_ms_p50", "query_ms_p95", "model_mb")}
    row.update(variant=f"{base} → {dim}", dim=dim, note="speed = base (truncation after the forward pass)")
    indexer = CachedEmbedder(s.embedder, base_row["dim"], ctx["caches"][base], dim=dim)
    qf = truncate_vectors(ctx["faq_qvecs"][base], dim)
    row.update(faq_scores(s, indexer, ctx["work"] / f"{base}-{dim}" / "faq", ctx["faq_dir"], ctx["faq_questions"], qf))
    ds = build_demo_index(s, indexer, ctx["work"] / f"{base}-{dim}" / "demo", ctx["demo_corpus"])
    qd = {q: truncate_vectors(v, dim)[0] for q, v in ctx["demo_qvecs"][base].items()}
    row.update(demo_scores(ds, indexer, ctx["demo_items"], qd))
    return row


def mixed_row(name: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """The torch-built indexes searched with ``name``'s query vectors."""
    s: Settings = ctx["settings"]
    row: dict[str, Any] = {"variant": f"torch index + {name} queries", "backend": "mixed", "quantize": "", "dim": None}
    snap = open_snapshot(ctx["work"] / "torch" / "faq")
    try:
        m = evaluate(snap, ctx["faq_questions"], ctx["faq_qvecs"][name], "dense", 0.0)
    finally:
        snap.close()
    row.update({"faq_hit@1": m["hit@1"], "faq_hit@5": m["hit@5"], "faq_mrr": m["mrr"]})
    ds = s.model_copy(update={"index_dir": ctx["work"] / "torch" / "demo", "fusion": "dense"})
    indexer = CachedEmbedder(s.embedder, ctx["rows"]["torch"]["dim"], ctx["caches"]["torch"])
    row.update(demo_scores(ds, indexer, ctx["demo_items"], ctx["demo_qvecs"][name]))
    row["dim"] = ctx["rows"]["torch"]["dim"]
    return row


def cosine_to_torch(ctx: dict[str, Any], name: str) -> dict[str, float]:
    a, b = ctx["chunk_vecs"].get("torch"), ctx["chunk_vecs"][name]
    if a is None:
        return {}
    c = (a * b).sum(axis=1)
    return {"cos_vs_torch_mean": float(c.mean()), "cos_vs_torch_min": float(c.min())}


def best_variant(rows: dict[str, dict[str, Any]], tolerance: float = 0.01) -> str:
    """The fastest variant whose FAQ MRR is within ``tolerance`` of torch's (or of the best measured)."""
    ref = rows["torch"]["faq_mrr"] if "torch" in rows else max(r["faq_mrr"] for r in rows.values())
    ok = [n for n, r in rows.items() if r["faq_mrr"] >= ref - tolerance] or list(rows)
    return max(ok, key=lambda n: rows[n]["chunks_per_s"])


# --------------------------------------------------------------------------- report

COLUMNS = [
    ("variant", "variant", None),
    ("dim", "dim", "d"),
    ("chunks_per_s", "chunks/s", ".2f"),
    ("query_ms_p50", "query ms p50", ".0f"),
    ("faq_hit@1", "FAQ hit@1", ".3f"),
    ("faq_hit@5", "FAQ hit@5", ".3f"),
    ("faq_mrr", "FAQ MRR", ".3f"),
    ("demo_doc_hit@1", "demo doc hit@1", ".3f"),
    ("demo_doc_hit@5", "doc hit@5", ".3f"),
    ("demo_doc_mrr", "doc MRR", ".3f"),
    ("demo_psg_hit@1", "passage hit@1", ".3f"),
    ("demo_psg_hit@5", "passage hit@5", ".3f"),
    ("demo_psg_mrr", "passage MRR", ".3f"),
    ("cos_vs_torch_mean", "cos vs torch (mean / min)", ".4f"),
    ("model_mb", "model MB", ".0f"),
]


def _cell(row: dict[str, Any], key: str, fmt: str | None) -> str:
    v = row.get(key)
    if key == "cos_vs_torch_mean" and v is not None:
        return f"{v:.4f} / {row['cos_vs_torch_min']:.4f}"
    if v is None:
        return "–"
    return format(v, fmt) if fmt else str(v)


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Embedding backends: speed and retrieval quality",
        "",
        f"`python -m eval.embed_benchmark {' '.join(report['argv'])}` — {report['created_at']}",
        "",
        (
            f"Machine: {env['cpus']} CPUs ({env['machine']}), load average {env['loadavg_start']} at start, "
            f"{env['loadavg_end']} at the end; threads {env['threads'] or 'library default'}; "
            f"{report['speed_chunks']} demo chunks for speed, {report['faq_questions']} FAQ and "
            f"{report['demo_questions']} demo questions."
        ),
    ]
    if report["limit"]:
        note = "the quality numbers are not comparable with full runs (few pages and documents indexed)"
        lines += ["", f"**Quick try (`--limit {report['limit']}`): {note}.**"]
    lines += ["", "| " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in report["results"]:
        lines.append("| " + " | ".join(_cell(r, k, f) for k, _, f in COLUMNS) + " |")
    lines += [
        "",
        (
            f"Best backend (fastest within 0.01 FAQ MRR of torch): **{report['best']}**; Matryoshka rows truncate "
            "its vectors (same forward pass, so the same speed). Mixed rows: the torch-built index searched with "
            "that backend's query vectors."
        ),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="torch,onnx-fp32,onnx-int8", help=f"comma-separated: {', '.join(VARIANTS)}")
    ap.add_argument("--dims", default="512,256", help="Matryoshka sizes on the best backend ('' = none)")
    ap.add_argument("--matryoshka-on", default="auto", help="variant whose vectors are truncated (auto = best)")
    ap.add_argument("--limit", type=int, default=None, help="quick try: N speed chunks, N questions per dataset")
    ap.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: library's)")
    ap.add_argument("--work-dir", type=Path, default=WORK_DIR)
    ap.add_argument("--fresh", action="store_true", help="ignore cached document vectors")
    ap.add_argument("--out", type=Path, default=OUT, help="report path without suffix (.json and .md are written)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown backend(s) {unknown}; choose from {', '.join(VARIANTS)}")

    settings = Settings()
    work = args.work_dir / (f"limit-{args.limit}" if args.limit else "full")
    faq_qs, faq_dir = faq_subset(args.limit, work)
    items, corpus = demo_items(args.limit, work)
    ctx: dict[str, Any] = {
        "settings": settings,
        "model_path": resolve_embedder(settings),
        "threads": args.threads,
        "work": work,
        "fresh": args.fresh,
        "speed_texts": demo_chunks(settings, args.limit),
        "faq_questions": faq_qs,
        "faq_dir": faq_dir,
        "demo_items": items,
        "demo_corpus": corpus,
        "demo_queries": [retrieval_query(i) for i in items],
        "chunk_vecs": {},
        "faq_qvecs": {},
        "demo_qvecs": {},
        "caches": {},
        "rows": {},
    }
    load_start = os.getloadavg()
    for name in names:
        ctx["rows"][name] = run_variant(name, ctx)
        ctx["rows"][name].update(cosine_to_torch(ctx, name))
        log(f"[{name}] {json.dumps({k: v for k, v in ctx['rows'][name].items() if k != 'variant'}, default=str)}")
    results = [ctx["rows"][n] for n in names]
    if "torch" in ctx["rows"]:
        results += [mixed_row(n, ctx) for n in names if n != "torch"]
    best = best_variant(ctx["rows"]) if args.matryoshka_on == "auto" else args.matryoshka_on
    for dim in [int(d) for d in args.dims.split(",") if d.strip()]:
        log(f"Matryoshka {dim} on {best} …")
        results.append(matryoshka_row(best, dim, ctx, ctx["rows"][best]))

    report = {
        "argv": argv if argv is not None else sys.argv[1:],
        "created_at": time.strftime("%Y-%m-%d %H:%M"),
        "limit": args.limit,
        "speed_chunks": len(ctx["speed_texts"]),
        "faq_questions": len(faq_qs),
        "demo_questions": len(items),
        "best": best,
        "environment": {
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "threads": args.threads,
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "versions": _versions(),
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    log(f"written {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
