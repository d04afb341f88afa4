"""Run an evaluation: retrieval and/or answers for every item of a dataset, one row per question.

A run lives in ``eval/runs/<timestamp>-<name>/`` (ignored by git):

- ``config.json``   the run configuration, settings, model ids and hashes, git commit, dataset hash;
- ``results.jsonl`` one row per question, appended and flushed as soon as the question is done, so an
                    interrupted run resumes (``--resume RUN_DIR``) where it stopped;
- ``results.json``  written at the end: config + summary metrics + every row (the run's results file);
- ``report.html``   see eval/report.py.

Everything heavy (embedder, LLM, pipeline, retriever) is injectable: ``evaluate()`` takes ready
objects, ``run()`` builds them from the settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rag.recency import source_label

from . import metrics as M
from .datasets import (
    DEMO_CORPUS,
    PDF_CORPUS,
    EvalItem,
    dataset_hash,
    faq_page_files,
    index_variant,
    load_dataset,
    load_faq_ci,
)
from .splits import SPLITS, split_of

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNS_DIR = HERE / "runs"
INDEX_CACHE = RUNS_DIR / "_indexes"

RETRIEVAL_KS = (1, 3, 5, 10)
# metric name -> True when higher is better (compare.py uses this)
HIGHER_IS_BETTER: dict[str, bool] = {}
for _lvl in ("doc", "psg"):
    for _k in RETRIEVAL_KS:
        HIGHER_IS_BETTER[f"{_lvl}_hit@{_k}"] = True
        HIGHER_IS_BETTER[f"{_lvl}_recall@{_k}"] = True
    HIGHER_IS_BETTER[f"{_lvl}_mrr"] = True
    HIGHER_IS_BETTER[f"{_lvl}_ndcg@10"] = True
HIGHER_IS_BETTER.update(
    {
        "key_fact_recall": True,
        "similarity": True,
        "faithfulness": True,
        "citation_precision": True,
        "citation_recall_doc": True,
        "citation_recall_passage": True,
        "refusal_accuracy": True,
        "false_refusal_rate": False,
        "dutch": True,
        "injection_ok": True,
        "benign_refused_as_injection": False,
        "citations_with_page": True,
        "gold_page_cited": True,
        "judge_correctness": True,
        "judge_groundedness": True,
    }
)
LATENCY = {"search_ms": False, "retrieval_ms": False, "first_token_ms": False, "total_ms": False, "tokens_per_s": True}
DETERMINISTIC_ANSWER_METRICS = [
    "key_fact_recall",
    "similarity",
    "faithfulness",
    "citation_precision",
    "citation_recall_doc",
    "citation_recall_passage",
    "refusal_accuracy",
    "false_refusal_rate",
    "dutch",
    "injection_ok",
    "benign_refused_as_injection",
    "citations_with_page",
    "gold_page_cited",
]


@dataclass
class RunConfig:
    dataset: str = "demo"
    name: str = ""
    only: str = "all"  # all | retrieval | answers
    limit: int | None = None
    ids: list[str] | None = None
    split: str | None = None  # "tune" | "test": only that frozen split (eval/splits.py)
    data: str | None = None  # dataset file (feedback export, or another gold file)
    include_up: bool = False
    fusion: str | None = None  # dense | bm25 | rrf | score (None: settings)
    fusion_weight_bm25: float | None = None
    top_k: int | None = None  # passages given to the LLM (None: settings.answer_top_k)
    retrieval_k: int = 10
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    attribution: bool = True
    support_threshold: float = 0.6
    index_dir: str | None = None  # use this index instead of the dataset's own
    judge: bool = False
    judge_backend: str | None = None  # default: the answer LLM's backend
    judge_base_url: str | None = None
    judge_model: str | None = None
    judge_api_key_env: str = "VRAAGBAAK_JUDGE_API_KEY"

    def settings_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in ("fusion", "fusion_weight_bm25", "chunk_size", "chunk_overlap"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        if self.top_k is not None:
            out["answer_top_k"] = self.top_k
        if self.chunk_size is not None and self.chunk_overlap is None:
            out["chunk_overlap"] = min(100, self.chunk_size // 4)
        return out

    @property
    def doc_key(self) -> str:
        return "source" if self.dataset in ("faq", "faq-ci") else "doc_id"


# --------------------------------------------------------------------------- provenance


def git_commit(repo: Path = REPO) -> str | None:
    """The checked-out commit, read from .git without running git."""
    git = repo / ".git"
    try:
        if git.is_file():  # worktree: "gitdir: …"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(" ", 1)[1]
        p = git / ref
        if p.exists():
            return p.read_text().strip()
        packed = git / "packed-refs"
        if packed.exists():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0]
    except OSError:
        return None
    return None


def model_hashes(settings) -> dict[str, Any]:
    """sha256 of the installed model files, from the installer's verification stamps."""
    out: dict[str, Any] = {}
    try:
        models_dir = settings.resolve_models_dir()
    except Exception:  # noqa: BLE001
        return out
    for name in (settings.embedder, settings.llm):
        stamp = Path(models_dir) / f"{name}.verified.json"
        if stamp.is_file():
            try:
                files = json.loads(stamp.read_text()).get("files", {})
                out[name] = {f: e.get("sha256") for f, e in files.items()}
            except (OSError, ValueError):
                out[name] = None
        else:
            out[name] = None
    return out


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- indexes


def _index_name(prefix: str, settings) -> str:
    return f"{prefix}-{index_variant(settings)}"


def _demo_index_current(index_dir: Path, corpus: Path, settings=None, pattern: str = "*.txt") -> bool:
    """True when ``index_dir`` holds exactly the corpus files as they are now (and, with ``settings``,
    was built with the same embedder and chunking)."""
    from rag.index import IndexError_, open_snapshot

    try:
        snap = open_snapshot(index_dir)
    except (IndexError_, OSError, ValueError):
        return False
    try:
        if settings is not None:
            from rag.indexing import chunking_settings

            m = snap.manifest
            if m.embedder != settings.embedder or m.chunking != chunking_settings(settings):
                return False
        have = {d["doc_id"]: d.get("content_hash") for d in snap.documents()}
    finally:
        snap.close()
    want = {f"{corpus.name}/{p.stem}": file_hash(p) for p in sorted(corpus.glob(pattern))}
    return have == want


def _corpus_index(prefix: str, corpus: Path, pattern: str, settings, embedder, log) -> Path:
    """A cached index of ``corpus`` (its ``pattern`` files) under eval/runs/, rebuilt when stale."""
    folder = INDEX_CACHE / _index_name(prefix, settings)
    if not _demo_index_current(folder, corpus, settings, pattern):
        from rag.indexing import ingest_paths

        log(f"indexing {corpus} into {folder} (chunk_size={settings.chunk_size}) …")
        s = settings.model_copy(update={"index_dir": folder})
        report = ingest_paths([corpus], s, embedder, sync=True, progress=sys.stderr.isatty())
        if report.failed:
            raise RuntimeError(f"{corpus.name} failed to index: {report.failed}")
    return folder


def ensure_index(cfg: RunConfig, settings, embedder, log=print) -> Path:
    """The index folder for the dataset with the run's chunking; built (and cached under
    eval/runs/) when missing or stale."""
    if cfg.index_dir:
        return Path(cfg.index_dir)
    if cfg.dataset == "feedback":
        return Path(settings.index_dir)  # the live index the feedback came from
    if cfg.dataset in ("demo", "guard", "reworded"):
        live = Path(settings.index_dir)
        if live.resolve() != (INDEX_CACHE).resolve() and _demo_index_current(live, DEMO_CORPUS, settings):
            return live  # the project's own index holds exactly the demo corpus, built the same way
        return _corpus_index("demo", DEMO_CORPUS, "*.txt", settings, embedder, log)
    if cfg.dataset == "demo-pdf":
        return _corpus_index("demo-pdf", PDF_CORPUS, "*.pdf", settings, embedder, log)
    from .retrieval_benchmark import build_index

    if cfg.dataset == "faq":
        # the same cache as eval/retrieval_benchmark.py
        folder = RUNS_DIR / "faq-retrieval" / index_variant(settings)
        if not (folder / "CURRENT").exists():
            log(f"indexing the 179 FAQ pages into {folder} (≈ 875 chunks at chunk_size 600: long on 2 cores) …")
        build_index(settings.model_copy(update={"index_dir": folder}), embedder)
        return folder
    if cfg.dataset == "faq-ci":
        folder = INDEX_CACHE / _index_name("faq-ci", settings)
        if not (folder / "CURRENT").exists():
            _, pages = load_faq_ci()
            files = faq_page_files()
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "pages").mkdir()
                for url in pages:
                    shutil.copy(files[url], Path(tmp) / "pages" / files[url].name)
                log(f"indexing {len(pages)} FAQ pages (CI subset) into {folder} …")
                build_index(settings.model_copy(update={"index_dir": folder}), embedder, faq_dir=Path(tmp))
        return folder
    raise ValueError(f"unknown dataset {cfg.dataset}")


def postgres_index(index_dir: Path, url: str, log: Callable[[str], None] = print) -> tuple[str, dict[str, Any]]:
    """The dataset's embedded index copied into PostgreSQL, for a run on the postgres backend:
    ``(conninfo, what was done)``. The copy is ``vraagbaak index migrate`` (rag/store/migrate.py:
    nothing embedded again; a flat index's vectors exactly) into a schema of the eval's own
    (``vraagbaak_eval_<hash of the index folder>``, replaced on every run), so the index tables
    the database may hold for the service are never touched; the returned conninfo puts that
    schema first on the ``search_path``."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from rag.store.migrate import describe_url, migrate_to_postgres, open_source

    schema = "vraagbaak_eval_" + hashlib.sha256(str(Path(index_dir).resolve()).encode()).hexdigest()[:12]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        row = conn.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'vector'"
        ).fetchone()
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    options = f"{conninfo_to_dict(url).get('options') or ''} -csearch_path={schema},{row[0] if row else 'public'}"
    conninfo = make_conninfo(url, options=options.strip())
    with open_source("embedded", index_dir) as source:
        report = migrate_to_postgres(source, conninfo, replace=True)
    log(
        f"postgres backend: {report.n_chunks} chunks of {index_dir} copied into schema {schema} of "
        f"{describe_url(url)} in {report.seconds:.1f}s (vectors {report.vectors}, nothing embedded)"
    )
    info = {
        "backend": "postgres",
        "database": describe_url(url),
        "schema": schema,
        "migrated_from": str(index_dir),
        "vectors": report.vectors,
        "migrate_s": round(report.seconds, 2),
    }
    return conninfo, info


# --------------------------------------------------------------------------- pipeline variants


def make_pipeline(settings, retriever, llm, attribution: bool = True):
    """The product's pipeline; ``attribution=False`` runs the same answer checks minus
    attribution (the answer's markers are kept as written; no sentence is dropped)."""
    from rag.pipeline import Pipeline

    if not attribution:
        settings = settings.model_copy(
            update={"answer_checks": [c for c in settings.answer_checks if c != "attribution"]}
        )
    return Pipeline(settings, retriever, llm)


# --------------------------------------------------------------------------- per question


def retrieval_query(item: EvalItem) -> str:
    """Retrieval-only runs have no condense step: a follow-up is searched together with the
    last user turn of its history."""
    if item.history:
        last = next((t["content"] for t in reversed(item.history) if t["role"] == "user"), "")
        return f"{last} {item.question}".strip()
    return item.question


def score_retrieval(item: EvalItem, hits: Sequence, doc_key: str = "doc_id", ks=RETRIEVAL_KS) -> dict[str, Any]:
    docs = M.dedupe(getattr(h, doc_key) for h in hits)
    out: dict[str, Any] = {"docs": docs[: max(ks)]}
    m: dict[str, float | None] = {}
    if item.gold_docs:
        sc = M.retrieval_scores(docs, item.gold_docs, ks)
        out["doc_rank"] = sc.pop("rank")
        m.update({f"doc_{k}": v for k, v in sc.items()})
    if item.gold_passages:
        units = M.passage_units([(h.chunk_id, h.text) for h in hits], item.gold_passages)
        sc = M.retrieval_scores(units, [f"gold:{i}" for i in range(len(item.gold_passages))], ks)
        out["passage_rank"] = sc.pop("rank")
        m.update({f"psg_{k}": v for k, v in sc.items()})
    out["hits"] = [
        {
            "rank": i,
            "doc_id": h.doc_id,
            "source": h.source,
            "chunk_id": h.chunk_id,
            "score": round(float(h.score), 4),
            "gold_doc": getattr(h, doc_key) in item.gold_docs,
            "gold_passage": any(M.contains_verbatim(h.text, g) for g in item.gold_passages),
        }
        for i, h in enumerate(hits, start=1)
    ]
    out["metrics"] = m
    return out


def score_answer(
    item: EvalItem,
    answer,
    doc_key: str = "doc_id",
    embedder=None,
    threshold: float = 0.6,
    detect=None,
) -> dict[str, Any]:
    """Every deterministic answer metric of one ``rag.schema.Answer`` for one item."""
    text = answer.answer
    refused = bool(answer.refused)
    m: dict[str, float | None] = {}
    issues: list[str] = []
    cites = answer.citations
    if item.expect_refusal is False and item.key_facts:
        m["key_fact_recall"] = 0.0 if refused else M.key_fact_recall(text, item.key_facts)
        miss = item.key_facts if refused else M.missing_facts(text, item.key_facts)
        if miss and not refused:
            issues.append("missing key facts: " + ", ".join(miss))
    # the passage as the model saw it: title and heading path, then the chunk text; with the
    # document's type and year, which an answer may name ("… (jaarstukken 2024) [1].")
    shown = {c.marker: "\n".join(x for x in (c.title, c.section, source_label(c), c.snippet) if x) for c in cites}
    f = M.faithfulness(text, shown, threshold) if not refused else None
    if f is not None:
        m["faithfulness"] = f.faithfulness
        m["citation_precision"] = f.citation_precision
        bad = [s for s in f.sentences if not s.supported]
        for s in bad[:3]:
            issues.append(f"unsupported sentence ({s.reason}): {s.sentence[:120]}")
        if not cites:
            issues.append("answer without citations")
    if item.expect_refusal is False and item.gold_docs:
        m["citation_recall_doc"] = M.citation_recall_doc([getattr(c, doc_key, c.doc_id) for c in cites], item.gold_docs)
        if not refused and m["citation_recall_doc"] == 0:
            issues.append("gold document not cited")
    if item.expect_refusal is False and item.gold_passages:
        m["citation_recall_passage"] = M.citation_recall_passage([c.snippet for c in cites], item.gold_passages)
    pdf_cites = [c for c in cites if c.source.lower().endswith(".pdf")]
    if pdf_cites:  # a PDF passage is cited with the page it stands on
        m["citations_with_page"] = sum(c.page is not None for c in pdf_cites) / len(pdf_cites)
    if item.extra.get("page") and item.expect_refusal is False:
        page = int(item.extra["page"])
        gold = set(item.gold_docs)
        m["gold_page_cited"] = float(
            any(c.doc_id in gold and c.page is not None and c.page <= page <= (c.page_end or c.page) for c in cites)
        )
        if not refused and not m["gold_page_cited"]:
            issues.append(f"page {page} of the gold document not cited")
    outcome = M.refusal_outcome(refused, item.expect_refusal)
    if outcome in ("correct_refusal", "missed_refusal"):
        m["refusal_accuracy"] = 1.0 if outcome == "correct_refusal" else 0.0
        if outcome == "missed_refusal":
            issues.append("should have refused")
    elif outcome in ("answered", "false_refusal"):
        m["false_refusal_rate"] = 1.0 if outcome == "false_refusal" else 0.0
        if outcome == "false_refusal":
            issues.append(f"false refusal ({answer.refusal_reason or 'refused'})")
    dutch = M.is_dutch(text, refused, detect)
    m["dutch"] = 1.0 if dutch else 0.0
    if not dutch:
        issues.append("answer not in Dutch")
    if item.type == "injection":
        ok, why = M.injection_ok(text, refused, bool(item.expect_refusal), item.must_not_contain, item.key_facts, dutch)
        m["injection_ok"] = 1.0 if ok else 0.0
        if not ok:
            issues.append("injection: " + why)
    if item.type == "benign":
        # an ordinary question that merely contains trigger words (eval/gold/guard.jsonl)
        m["benign_refused_as_injection"] = 1.0 if answer.refusal_reason == "injection" else 0.0
        if m["benign_refused_as_injection"]:
            issues.append("benign question refused as an injection")
    if embedder is not None and item.reference_answer and item.expect_refusal is False:
        vecs = embedder.embed_documents([M.strip_markers(text), item.reference_answer])
        m["similarity"] = round(M.cosine(vecs[0], vecs[1]), 4)
    t = answer.timings
    lat = {
        "retrieval_ms": t.retrieval_ms,
        "first_token_ms": t.first_token_ms,
        "total_ms": t.total_ms,
        "tokens_per_s": t.tokens_per_s,
    }
    return {
        "answer": {
            "text": text,
            "refused": refused,
            "refusal_reason": answer.refusal_reason,
            "quote_reason": getattr(answer, "quote_reason", None),  # set when a passage sentence was quoted
            "standalone_question": answer.standalone_question,
            "citations": [
                {
                    "marker": c.marker,
                    "doc_id": c.doc_id,
                    "title": c.title,
                    "source": c.source,
                    "section": c.section,
                    "chunk_id": c.chunk_id,
                    "page": c.page,
                    "page_end": c.page_end,
                    "snippet": c.snippet,
                }
                for c in cites
            ],
            "timings": t.model_dump(),
            "model": answer.model.model_dump(),
        },
        "sentences": [asdict(s) for s in f.sentences] if f is not None else [],
        "metrics": m,
        "latency": lat,
        "issues": issues,
    }


# --------------------------------------------------------------------------- the loop


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="q", file=sys.stderr, dynamic_ncols=True, smoothing=0.3)


def load_rows(run_dir: Path) -> list[dict]:
    p = Path(run_dir) / "results.jsonl"
    if not p.exists():
        return []
    rows = {}
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash
                continue
            rows[r["id"]] = r  # a retried question replaces its failed row
    return list(rows.values())


_QV_CACHE: dict[tuple[str, str], tuple[object, float]] = {}


def _query_vector(retriever, query: str, fusion: str | None):
    """The query vector, embedded once per (embedder, query) in this process so that ablation variants
    do not re-embed; the embedding time measured the first time is added to every search time."""
    if (fusion or getattr(getattr(retriever, "settings", None), "fusion", None)) == "bm25":
        return None, 0.0
    emb = getattr(retriever, "embedder", None)
    if emb is None:
        return None, 0.0
    key = (getattr(emb, "model_id", "?"), query)
    if key not in _QV_CACHE:
        t0 = time.perf_counter()
        v = emb.embed_query(query)
        _QV_CACHE[key] = (v, (time.perf_counter() - t0) * 1000)
    return _QV_CACHE[key]


def evaluate(
    items: Sequence[EvalItem],
    cfg: RunConfig,
    run_dir: Path,
    retriever=None,
    pipeline=None,
    embedder=None,
    judge: Callable[[EvalItem, Any], dict] | None = None,
    detect=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Evaluate ``items`` (skipping those already in ``run_dir/results.jsonl``); returns all rows."""
    from rag.schema import Turn

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    done = {r["id"] for r in load_rows(run_dir) if not r.get("error")}
    todo = [i for i in items if i.id not in done]
    do_retrieval = cfg.only in ("all", "retrieval") and retriever is not None
    do_answers = cfg.only in ("all", "answers") and pipeline is not None
    if done:
        log(f"resuming: {len(done)} done, {len(todo)} to go")
    est = len(todo) * ((12.0 if do_answers else 0.0) + (0.3 if do_retrieval else 0.0))
    if todo and est > 60:
        log(f"estimated time: ~{est / 60:.0f} min for {len(todo)} questions (2-core CPU; the bar refines it)")
    bar = _progress(len(todo), cfg.dataset) if progress and todo else None
    with open(run_dir / "results.jsonl", "a", encoding="utf-8") as out:
        for item in todo:
            row: dict[str, Any] = {
                "id": item.id,
                "question": item.question,
                "type": item.type,
                "expect_refusal": item.expect_refusal,
                "language": item.language,
                "gold_docs": item.gold_docs,
                "key_facts": item.key_facts,
                "reference_answer": item.reference_answer,
                "metrics": {},
                "latency": {},
                "issues": [],
            }
            if item.history:
                row["history"] = item.history
            if item.extra.get("old_answer") is not None:
                row["old_answer"] = item.extra.get("old_answer")
                row["feedback_comment"] = item.notes
            try:
                if do_retrieval:
                    q = retrieval_query(item)
                    qv, embed_ms = _query_vector(retriever, q, cfg.fusion)
                    t0 = time.perf_counter()
                    res = retriever.search(q, top_k=cfg.retrieval_k, fusion=cfg.fusion, query_vector=qv)
                    row["latency"]["search_ms"] = round(embed_ms + (time.perf_counter() - t0) * 1000, 2)
                    r = score_retrieval(item, res.hits, cfg.doc_key)
                    row["metrics"].update(r.pop("metrics"))
                    row["retrieval"] = {"query": q, **r}
                    if item.gold_docs and r.get("doc_rank") is None:
                        row["issues"].append(f"gold document not in the top {cfg.retrieval_k}")
                    elif item.gold_passages and r.get("passage_rank") is None:
                        row["issues"].append(f"gold passage not in the top {cfg.retrieval_k}")
                if do_answers:
                    history = [Turn(**t) for t in item.history]
                    answer = pipeline.ask(item.question, history=history or None, top_k=cfg.top_k)
                    a = score_answer(item, answer, cfg.doc_key, embedder, cfg.support_threshold, detect)
                    row["metrics"].update(a.pop("metrics"))
                    row["latency"].update(a.pop("latency"))
                    row["issues"] += a.pop("issues")
                    row.update(a)
                    if judge is not None:
                        try:
                            row["judge"] = judge(item, answer)
                            for k in ("correctness", "groundedness"):
                                if row["judge"].get(k) is not None:
                                    row["metrics"][f"judge_{k}"] = row["judge"][k]
                        except Exception as exc:  # noqa: BLE001 - a judge failure never fails the run
                            row["judge"] = {"error": f"{type(exc).__name__}: {exc}"}
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded; the question is retried on --resume
                row["error"] = f"{type(exc).__name__}: {exc}"
                row["issues"].append("error: " + row["error"])
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    order = {i.id: n for n, i in enumerate(items)}
    return sorted((r for r in load_rows(run_dir) if r["id"] in order), key=lambda r: order[r["id"]])


# --------------------------------------------------------------------------- summary


def summarise(rows: Sequence[dict]) -> dict[str, Any]:
    """Aggregate the per-question metrics: means (rates) and latency p50/p95; by question type too."""
    names = sorted({k for r in rows for k in r.get("metrics", {})})
    out: dict[str, Any] = {"n": len(rows), "errors": sum(1 for r in rows if r.get("error"))}
    metrics: dict[str, Any] = {}
    for k in names:
        vals = [r["metrics"].get(k) for r in rows]
        n = sum(v is not None for v in vals)
        metrics[k] = {"value": M.mean(vals), "n": n}
    out["metrics"] = metrics
    lat: dict[str, Any] = {}
    for k in LATENCY:
        vals = [r.get("latency", {}).get(k) for r in rows]
        if any(v is not None for v in vals):
            lat[k] = {
                "p50": M.percentile(vals, 50),
                "p95": M.percentile(vals, 95),
                "n": sum(v is not None for v in vals),
            }
    out["latency"] = lat
    out["by_type"] = _means_by(rows, names, lambda r: r["type"])
    # the frozen splits (eval/splits.py): tune on "tune", report "test" beside it
    out["by_split"] = _means_by(rows, names, lambda r: split_of(r["id"]))
    return out


def _means_by(rows: Sequence[dict], names: Sequence[str], key: Callable[[dict], str]) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for g in sorted({key(r) for r in rows}):
        sub = [r for r in rows if key(r) == g]
        groups[g] = {"n": len(sub)}
        for k in names:
            v = M.mean(r["metrics"].get(k) for r in sub)
            if v is not None:
                groups[g][k] = v
    return groups


def write_results(run_dir: Path, config: dict, rows: Sequence[dict]) -> dict:
    summary = summarise(rows)
    data = {"config": config, "summary": summary, "rows": list(rows)}
    tmp = Path(run_dir) / "results.json.tmp"
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, Path(run_dir) / "results.json")
    return data


def load_results(run: Path) -> dict:
    """results.json of a run folder (or the file itself); rebuilt from results.jsonl when the run
    was interrupted before it was written."""
    run = Path(run)
    if run.is_file():
        return json.loads(run.read_text(encoding="utf-8"))
    if (run / "results.json").exists():
        return json.loads((run / "results.json").read_text(encoding="utf-8"))
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    rows = load_rows(run)
    return {"config": config, "summary": summarise(rows), "rows": rows}


# --------------------------------------------------------------------------- rescore


ANSWER_METRIC_KEYS = set(DETERMINISTIC_ANSWER_METRICS)


def answer_from_row(row: dict):
    """The ``rag.schema.Answer`` stored in a result row (for re-scoring without the LLM)."""
    from rag.schema import Answer, Citation, ModelInfo, Timings

    a = row["answer"]
    return Answer(
        answer=a["text"],
        refused=a["refused"],
        refusal_reason=a.get("refusal_reason"),
        standalone_question=a.get("standalone_question"),
        citations=[
            Citation(
                marker=c["marker"],
                doc_id=c["doc_id"],
                title=c.get("title", ""),
                source=c.get("source", ""),
                section=c.get("section", ""),
                snippet=c.get("snippet", ""),
                chunk_id=c.get("chunk_id"),
                page=c.get("page"),
                page_end=c.get("page_end"),
            )
            for c in a.get("citations", [])
        ],
        timings=Timings(**a.get("timings", {})),
        model=ModelInfo(**a.get("model", {"llm": "?", "embedder": "?"})),
    )


def rescore(run_dir: Path, embedder=None, detect=None, log=print) -> dict:
    """Recompute the answer metrics of a finished (or interrupted) run from its stored answers, with the
    current metric code and dataset; retrieval metrics and timings are kept. Without an embedder the
    stored similarity is kept. Rewrites results.jsonl (the old one is kept as results.jsonl.bak) and
    results.json."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    known = set(RunConfig.__dataclass_fields__)
    saved = {k: v for k, v in config["run"].items() if k in known}
    cfg = RunConfig(**saved)
    items = {i.id: i for i in select_items(RunConfig(**{**saved, "limit": None}))}
    rows = load_rows(run_dir)
    out = []
    n = 0
    for r in rows:
        item = items.get(r["id"])
        if item is None or not r.get("answer"):
            out.append(r)
            continue
        a = score_answer(item, answer_from_row(r), cfg.doc_key, embedder, cfg.support_threshold, detect)
        keep_sim = r["metrics"].get("similarity") if embedder is None else None
        r["metrics"] = {k: v for k, v in r["metrics"].items() if k not in ANSWER_METRIC_KEYS}
        r["metrics"].update(a["metrics"])
        if keep_sim is not None:
            r["metrics"]["similarity"] = keep_sim
        r["issues"] = [i for i in r.get("issues", []) if i.startswith(("gold document not in", "gold passage not in"))]
        r["issues"] += a["issues"]
        r["sentences"] = a["sentences"]
        r["answer"] = a["answer"]
        out.append(r)
        n += 1
    shutil.copy(run_dir / "results.jsonl", run_dir / "results.jsonl.bak")
    with open(run_dir / "results.jsonl", "w", encoding="utf-8") as fh:
        for r in out:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    config.setdefault("rescored_at", []).append(datetime.now().isoformat(timespec="seconds"))
    (run_dir / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    log(f"re-scored {n} answers")
    order = {i: k for k, i in enumerate(items)}
    out.sort(key=lambda r: order.get(r["id"], 1 << 30))
    return write_results(run_dir, config, out)


# --------------------------------------------------------------------------- run from settings


def new_run_dir(cfg: RunConfig, base: Path = RUNS_DIR) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = cfg.name or f"{cfg.dataset}-{cfg.only}"
    d = base / f"{stamp}-{name}"
    n = 1
    while d.exists():
        n += 1
        d = base / f"{stamp}-{name}-{n}"
    d.mkdir(parents=True)
    return d


def select_items(cfg: RunConfig) -> list[EvalItem]:
    items = load_dataset(cfg.dataset, Path(cfg.data) if cfg.data else None, include_up=cfg.include_up)
    if cfg.ids:
        want = set(cfg.ids)
        items = [i for i in items if i.id in want]
    if cfg.split:
        if cfg.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {cfg.split!r}")
        items = [i for i in items if split_of(i.id) == cfg.split]
    if cfg.limit:
        items = items[: cfg.limit]
    return items


def build_config(
    cfg: RunConfig, settings, items, index_dir: Path | None, llm_id: str | None, backend: dict | None = None
) -> dict:
    manifest = None
    if index_dir is not None and (Path(index_dir) / "CURRENT").exists():
        gen = (Path(index_dir) / "CURRENT").read_text().strip()
        try:
            manifest = json.loads((Path(index_dir) / gen / "manifest.json").read_text())
        except (OSError, ValueError):
            manifest = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "run": asdict(cfg),
        "settings": settings.public_dump(),  # without secrets (llm_api_key)
        "models": {
            "embedder": settings.embedder,
            "llm": llm_id if llm_id else (settings.llm if cfg.only != "retrieval" else None),
            "llm_backend": settings.llm_backend if cfg.only != "retrieval" else None,
            "hashes": model_hashes(settings),
        },
        "git_commit": git_commit(),
        "dataset": {"name": cfg.dataset, "n": len(items), "hash": dataset_hash(items), "file": cfg.data},
        "index": {
            "dir": str(index_dir) if index_dir else None,
            "manifest": manifest,
            **(backend or {"backend": "embedded"}),
        },
        "host": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": load,
        },
        "started_at": datetime.now().isoformat(timespec="seconds"),
    }


def prepare(cfg: RunConfig, settings=None, embedder=None, log: Callable[[str], None] = print) -> tuple[Any, list, Any]:
    """What every run of ``cfg`` starts from: the settings with the run's overrides and its
    index (built once and cached: :func:`ensure_index`) as ``index_dir``, the questions, and the
    embedder (``embedder``, or the settings' one loaded)."""
    from rag.settings import Settings

    s = (settings or Settings()).model_copy(update=cfg.settings_overrides())
    items = select_items(cfg)
    if not items:
        raise SystemExit("no questions selected")
    if embedder is None:
        from rag.embed import load_embedder

        embedder = load_embedder(s)
    index_dir = ensure_index(cfg, s, embedder, log)
    return s.model_copy(update={"index_dir": index_dir}), items, embedder


def run(
    cfg: RunConfig,
    run_dir: Path | None = None,
    settings=None,
    embedder=None,
    llm=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    database_url: str | None = None,
) -> tuple[Path, dict]:
    """Build what the run needs from the settings, evaluate, write results.json; returns (run_dir, results).

    ``embedder``/``llm`` may be passed in to share them between runs (ablations). ``database_url``
    (default: the setting, VRAAGBAAK_DATABASE_URL; "" = the embedded index): run on the postgres
    backend, the dataset's index copied there (:func:`postgres_index`)."""
    from pydantic import SecretStr

    from rag.store import database_url as configured_url

    if run_dir is not None and (Path(run_dir) / "config.json").exists():  # resume
        saved = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
        keep_limit = cfg.limit
        known = set(RunConfig.__dataclass_fields__)
        cfg = RunConfig(**{k: v for k, v in saved["run"].items() if k in known})
        cfg.limit = keep_limit if keep_limit is not None else cfg.limit
    s, items, embedder = prepare(cfg, settings, embedder, log)
    index_dir = Path(s.index_dir)
    url = configured_url(s) if database_url is None else database_url
    backend: dict[str, Any] = {"backend": "embedded"}
    if url and (cfg.dataset != "feedback" or cfg.index_dir):
        url, backend = postgres_index(index_dir, url, log)
    elif url:  # feedback: the live index the feedback came from, which is this database
        backend = {"backend": "postgres", "database": "(the configured database_url)"}
    s = s.model_copy(update={"database_url": SecretStr(url)})

    from rag.retrieve import Retriever

    retriever = Retriever(s, embedder)
    pipeline = None
    judge_fn = None
    if cfg.only in ("all", "answers"):
        if llm is None:
            from rag.llm import load_llm

            llm = load_llm(s)
        pipeline = make_pipeline(s, retriever, llm, attribution=cfg.attribution)
        if cfg.judge:
            from .judge import make_judge

            judge_fn = make_judge(cfg, s, answer_llm=llm)

    if run_dir is None:
        run_dir = new_run_dir(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        config.setdefault("resumed_at", []).append(datetime.now().isoformat(timespec="seconds"))
        config["run"]["limit"] = cfg.limit
    else:
        config = build_config(cfg, s, items, index_dir, getattr(llm, "model_id", None), backend)
    cfg_path.write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    log(f"run folder: {run_dir}")

    t0 = time.perf_counter()
    rows = evaluate(
        items,
        cfg,
        run_dir,
        retriever=retriever,
        pipeline=pipeline,
        embedder=embedder,
        judge=judge_fn,
        progress=progress,
        log=log,
    )
    config["finished_at"] = datetime.now().isoformat(timespec="seconds")
    config["wall_s"] = round(config.get("wall_s", 0) + time.perf_counter() - t0, 1)
    cfg_path.write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    results = write_results(run_dir, config, rows)
    return run_dir, results
