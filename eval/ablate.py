"""Ablations in one command: one factor at a time against the baseline (the settings' defaults).

    python -m eval ablate --dataset demo --only retrieval          # fusion × chunk size
    python -m eval ablate --dataset demo --limit 20                # + top-k and attribution (LLM)

Axes (``--axes``, comma-separated; default all that apply):

- ``fusion``       bm25 vs dense (the default) vs hybrid ``score`` vs ``rrf``;
- ``chunk_size``   re-indexes the corpus per size (cached under eval/runs/_indexes/);
- ``top_k``        passages given to the LLM (answers only; retrieval metrics are reported at k = 1, 3, 5, 10
                   in every run anyway);
- ``attribution``  with / without post-hoc attribution (answers only).

Each variant is an ordinary run under ``<ablation dir>/<variant>/`` (so it resumes: pass the same
``--resume ABLATION_DIR``); ``ablation.json`` and ``ablation.html`` sum them up in one table.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from .run import RUNS_DIR, RunConfig, run

AXES = ("fusion", "chunk_size", "top_k", "attribution")
RETRIEVAL_COLUMNS = [
    "doc_hit@1",
    "doc_hit@5",
    "doc_mrr",
    "doc_ndcg@10",
    "psg_hit@1",
    "psg_hit@5",
    "psg_mrr",
    "psg_ndcg@10",
    "search_ms_p50",
]
ANSWER_COLUMNS = [
    "key_fact_recall",
    "similarity",
    "faithfulness",
    "citation_precision",
    "citation_recall_doc",
    "refusal_accuracy",
    "false_refusal_rate",
    "dutch",
    "injection_ok",
    "total_ms_p50",
]


def variants(
    base: RunConfig,
    settings,
    axes=AXES,
    chunk_sizes=(400, 800),
    top_ks=(2, 5),
    fusions=("bm25", "dense", "score", "rrf"),
) -> list[tuple[str, RunConfig]]:
    answers = base.only in ("all", "answers")
    default = f"baseline (fusion={settings.fusion}, chunk={settings.chunk_size}, top_k={settings.answer_top_k}" + (
        ", attribution on)" if answers else ")"
    )
    out = [(default, replace(base, name="baseline"))]
    if "fusion" in axes:
        for f in fusions:
            if f != settings.fusion:
                out.append((f"fusion={f}", replace(base, fusion=f, name=f"fusion-{f}")))
    if "chunk_size" in axes:
        for c in chunk_sizes:
            if c != settings.chunk_size:
                out.append((f"chunk_size={c}", replace(base, chunk_size=c, name=f"chunk-{c}")))
    if answers and "top_k" in axes:
        for k in top_ks:
            if k != settings.answer_top_k:
                out.append((f"top_k={k}", replace(base, top_k=k, name=f"topk-{k}")))
    if answers and "attribution" in axes:
        out.append(("attribution off", replace(base, attribution=False, name="no-attribution")))
    return out


def flat_metrics(summary: dict) -> dict[str, float | None]:
    out: dict[str, float | None] = {k: v["value"] for k, v in summary["metrics"].items()}
    for k, v in summary.get("latency", {}).items():
        out[f"{k}_p50"] = v["p50"]
        out[f"{k}_p95"] = v["p95"]
    return out


def ablate(
    base: RunConfig,
    out_dir: Path | None = None,
    axes=AXES,
    chunk_sizes=(400, 800),
    top_ks=(2, 5),
    settings=None,
    progress: bool = True,
    log=print,
) -> Path:
    from rag.embed import load_embedder
    from rag.settings import Settings

    settings = settings or Settings()
    if out_dir is None:
        out_dir = RUNS_DIR / f"{datetime.now():%Y%m%d-%H%M%S}-ablate-{base.dataset}-{base.only}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    embedder = load_embedder(settings)
    llm = None
    if base.only in ("all", "answers"):
        from rag.llm import load_llm

        llm = load_llm(settings)
    results = []
    for label, cfg in variants(base, settings, axes, chunk_sizes, top_ks):
        log(f"== {label}")
        run_dir, res = run(
            cfg, run_dir=out_dir / cfg.name, settings=settings, embedder=embedder, llm=llm, progress=progress, log=log
        )
        results.append(
            {
                "variant": label,
                "run_dir": str(run_dir),
                "metrics": flat_metrics(res["summary"]),
                "n": res["summary"]["n"],
            }
        )
        _write(out_dir, base, results)
    path = _write(out_dir, base, results)
    from .report import write_ablation_report

    write_ablation_report(path)
    return path


def _write(out_dir: Path, base: RunConfig, results: list[dict]) -> Path:
    cols = list(RETRIEVAL_COLUMNS) + (ANSWER_COLUMNS if base.only in ("all", "answers") else [])
    present = {k for r in results for k, v in r["metrics"].items() if v is not None}
    cols = [c for c in cols if c in present]
    path = out_dir / "ablation.json"
    path.write_text(
        json.dumps(
            {"dataset": base.dataset, "only": base.only, "limit": base.limit, "columns": cols, "variants": results},
            indent=1,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    return path


def format_ablation(path: Path) -> str:
    ab = json.loads(Path(path).read_text(encoding="utf-8"))
    cols = ab["columns"]
    w = max(len(v["variant"]) for v in ab["variants"]) + 2
    lines = [" " * w + " ".join(f"{c[:12]:>12s}" for c in cols)]
    for v in ab["variants"]:
        vals = [v["metrics"].get(c) for c in cols]
        lines.append(f"{v['variant']:{w}s}" + " ".join("           –" if x is None else f"{x:12.3f}" for x in vals))
    return "\n".join(lines)
