"""HTML report of a run (or of an ablation): metric table, per-question table with the answer, its
citations and what went wrong, and plots (matplotlib PNGs embedded as base64, so the file stands alone).

    python -m eval report eval/runs/<run>            # writes <run>/report.html
    python -m eval report eval/runs/<run> --out eval/reports/demo.html
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import jinja2

from .run import DETERMINISTIC_ANSWER_METRICS, HIGHER_IS_BETTER, LATENCY, RETRIEVAL_KS, load_results

LABELS = {
    "key_fact_recall": "key-fact recall",
    "similarity": "semantic similarity to reference (cosine)",
    "faithfulness": "faithfulness (sentences supported by their cited passage)",
    "citation_precision": "citation precision",
    "citation_recall_doc": "citation recall (gold document cited)",
    "citation_recall_passage": "citation recall (gold passage cited)",
    "refusal_accuracy": "refusal accuracy (must-refuse items refused)",
    "false_refusal_rate": "false-refusal rate (must-answer items refused) ↓",
    "dutch": "answers in Dutch",
    "injection_ok": "injection resistance",
    "benign_refused_as_injection": "benign questions refused as injection ↓",
    "citations_with_page": "PDF citations with a page",
    "gold_page_cited": "gold page cited (table questions)",
    "judge_correctness": "judge: correctness (0–1)",
    "judge_groundedness": "judge: groundedness (0–1)",
    "search_ms": "retrieval-only search ms",
    "retrieval_ms": "pipeline retrieval ms",
    "first_token_ms": "time to first token ms",
    "total_ms": "total answer ms",
    "tokens_per_s": "tokens/s",
}

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{background:#fde8e8} .ok{background:#eaf7ea} .small{font-size:12px;color:#555}
details{margin:2px 0} code{font-size:12px} img{max-width:100%}
.qtable td{font-size:13px} .issue{color:#a00}
</style></head><body>
<h1>{{ title }}</h1>
<p class="small">{{ meta }}</p>
{% if notes %}<p>{{ notes }}</p>{% endif %}

{% if retrieval_rows %}
<h2>Retrieval</h2>
<table><tr><th>level</th><th>n</th>{% for k in ks %}<th>hit@{{k}}</th>{% endfor %}<th>recall@5</th><th>MRR</th><th>nDCG@10</th></tr>
{% for r in retrieval_rows %}<tr><td>{{ r.level }}</td><td class="num">{{ r.n }}</td>{% for v in r.hits %}<td class="num">{{ v }}</td>{% endfor %}
<td class="num">{{ r.recall5 }}</td><td class="num">{{ r.mrr }}</td><td class="num">{{ r.ndcg }}</td></tr>{% endfor %}
</table>
{% endif %}

{% if answer_rows %}
<h2>Answers (deterministic metrics)</h2>
<table><tr><th>metric</th><th>value</th><th>n</th></tr>
{% for r in answer_rows %}<tr><td>{{ r.label }}</td><td class="num">{{ r.value }}</td><td class="num">{{ r.n }}</td></tr>{% endfor %}
</table>
{% endif %}

{% if by_type %}
<h3>By question type</h3>
<table><tr><th>type</th><th>n</th>{% for m in by_type_cols %}<th>{{ m }}</th>{% endfor %}</tr>
{% for t, row in by_type %}<tr><td>{{ t }}</td><td class="num">{{ row.n }}</td>{% for m in by_type_cols %}<td class="num">{{ fmt(row.get(m)) }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% endif %}

{% if judge_rows %}
<h2>LLM-as-judge (reported apart; not deterministic)</h2>
<table><tr><th>metric</th><th>value</th><th>n</th></tr>
{% for r in judge_rows %}<tr><td>{{ r.label }}</td><td class="num">{{ r.value }}</td><td class="num">{{ r.n }}</td></tr>{% endfor %}
</table>
{% endif %}

{% if latency_rows %}
<h2>Speed</h2>
<table><tr><th>metric</th><th>p50</th><th>p95</th><th>n</th></tr>
{% for r in latency_rows %}<tr><td>{{ r.label }}</td><td class="num">{{ r.p50 }}</td><td class="num">{{ r.p95 }}</td><td class="num">{{ r.n }}</td></tr>{% endfor %}
</table>
{% endif %}

{% for name, png in plots %}<h3>{{ name }}</h3><img alt="{{ name }}" src="data:image/png;base64,{{ png }}">{% endfor %}

{% if ablation %}
<h2>Ablations</h2>
<table><tr><th>variant</th>{% for c in ablation.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in ablation.rows %}<tr><td>{{ r.variant }}</td>{% for v in r.cells %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% endif %}

{% if questions %}
<h2>Per question</h2>
<table class="qtable"><tr><th>id</th><th>type</th><th>question</th><th>answer / retrieval</th><th>what went wrong</th></tr>
{% for q in questions %}<tr class="{{ 'bad' if q.issues else 'ok' }}">
<td>{{ q.id }}</td><td>{{ q.type }}</td><td>{{ q.question }}{% if q.history %}<div class="small">after: {{ q.history }}</div>{% endif %}
{% if q.key_facts %}<div class="small">key facts: {{ q.key_facts }}</div>{% endif %}</td>
<td>{% if q.answer is not none %}<div>{{ q.answer }}</div>{% endif %}
{% if q.citations %}<details><summary class="small">{{ q.citations|length }} citation(s)</summary>
{% for c in q.citations %}<div class="small">[{{ c.marker }}] <b>{{ c.doc_id }}</b> {{ c.section }} — {{ c.snippet }}</div>{% endfor %}</details>{% endif %}
{% if q.old_answer %}<div class="small">answer that got the thumbs-down: {{ q.old_answer }}{% if q.comment %} — comment: {{ q.comment }}{% endif %}</div>{% endif %}
{% if q.retrieved %}<div class="small">retrieved: {{ q.retrieved }}</div>{% endif %}</td>
<td>{% for i in q.issues %}<div class="issue">{{ i }}</div>{% endfor %}{% if q.judge %}<div class="small">judge: {{ q.judge }}</div>{% endif %}</td>
</tr>{% endfor %}
</table>
{% endif %}
</body></html>
"""


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(results: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    out: list[tuple[str, str]] = []
    lat = {
        k: [r["latency"][k] for r in rows if r.get("latency", {}).get(k) is not None]
        for k in ("total_ms", "first_token_ms", "retrieval_ms", "search_ms")
    }
    series = [(k, [v / 1000 for v in vals]) for k, vals in lat.items() if vals and k in ("total_ms", "first_token_ms")]
    if series:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for k, vals in series:
            ax.hist(vals, bins=20, alpha=0.6, label=k.replace("_ms", "") + " (s)")
        ax.set_xlabel("seconds")
        ax.set_ylabel("questions")
        ax.legend()
        ax.set_title("Answer latency")
        out.append(("Latency histogram (answers)", _png(fig)))
    elif lat["search_ms"]:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.hist(lat["search_ms"], bins=20)
        ax.set_xlabel("ms")
        ax.set_ylabel("questions")
        ax.set_title("Retrieval latency (query embedding + search)")
        out.append(("Latency histogram (retrieval)", _png(fig)))
    m = results["summary"]["metrics"]
    curves = []
    for lvl, label in (("doc", "document"), ("psg", "passage")):
        ys = [m.get(f"{lvl}_hit@{k}", {}).get("value") for k in RETRIEVAL_KS]
        if all(y is not None for y in ys):
            curves.append((label, ys))
    if curves:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for label, ys in curves:
            ax.plot(RETRIEVAL_KS, ys, marker="o", label=label)
        ax.set_xlabel("k")
        ax.set_ylabel("hit@k")
        ax.set_ylim(0, 1.02)
        ax.set_xticks(RETRIEVAL_KS)
        ax.legend()
        ax.set_title("hit@k")
        out.append(("Retrieval hit@k", _png(fig)))
    bt = results["summary"].get("by_type", {})
    types = [t for t in bt if bt[t].get("key_fact_recall") is not None]
    if types:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar(types, [bt[t]["key_fact_recall"] for t in types])
        ax.set_ylim(0, 1)
        ax.set_ylabel("key-fact recall")
        ax.set_title("Key-fact recall by question type")
        out.append(("Key-fact recall by type", _png(fig)))
    return out


def _short(text: str | None, n: int = 400) -> str:
    if not text:
        return ""
    return text if len(text) <= n else text[: n - 1] + "…"


def context(
    results: dict, ablation: dict | None = None, title: str | None = None, notes: str = "", with_questions: bool = True
) -> dict[str, Any]:
    cfg = results.get("config", {})
    summ = results["summary"]
    m = summ["metrics"]
    run = cfg.get("run", {})
    models = cfg.get("models", {})
    errors = f", errors: {summ['errors']:d}" if summ.get("errors") else ""
    meta = (
        f"dataset {run.get('dataset')} ({summ['n']} questions{errors})"
        f" · only={run.get('only')} · fusion={cfg.get('settings', {}).get('fusion')}"
        f" · chunk_size={cfg.get('settings', {}).get('chunk_size')} · answer_top_k={cfg.get('settings', {}).get('answer_top_k')}"
        f" · attribution={run.get('attribution')} · embedder={models.get('embedder')} · llm={models.get('llm')}"
        f" · commit {str(cfg.get('git_commit'))[:10]} · started {cfg.get('started_at')}"
        f" · load avg at start {cfg.get('host', {}).get('loadavg_at_start')}"
    )
    retrieval_rows = []
    for lvl, label in (("doc", "document"), ("psg", "passage")):
        if f"{lvl}_mrr" in m:
            retrieval_rows.append(
                {
                    "level": label,
                    "n": m[f"{lvl}_mrr"]["n"],
                    "hits": [fmt(m.get(f"{lvl}_hit@{k}", {}).get("value")) for k in RETRIEVAL_KS],
                    "recall5": fmt(m.get(f"{lvl}_recall@5", {}).get("value")),
                    "mrr": fmt(m[f"{lvl}_mrr"]["value"]),
                    "ndcg": fmt(m.get(f"{lvl}_ndcg@10", {}).get("value")),
                }
            )
    answer_rows = [
        {"label": LABELS[k], "value": fmt(m[k]["value"]), "n": m[k]["n"]}
        for k in DETERMINISTIC_ANSWER_METRICS
        if k in m
    ]
    judge_rows = [
        {"label": LABELS[k], "value": fmt(m[k]["value"]), "n": m[k]["n"]}
        for k in ("judge_correctness", "judge_groundedness")
        if k in m
    ]
    latency_rows = [
        {"label": LABELS[k], "p50": fmt(v["p50"], 1), "p95": fmt(v["p95"], 1), "n": v["n"]}
        for k, v in summ.get("latency", {}).items()
        if k in LATENCY
    ]
    by_type_cols = [
        k
        for k in (
            "key_fact_recall",
            "faithfulness",
            "citation_recall_doc",
            "refusal_accuracy",
            "false_refusal_rate",
            "dutch",
            "injection_ok",
            "benign_refused_as_injection",
            "doc_hit@5",
            "psg_hit@5",
        )
        if any(k in row for row in summ.get("by_type", {}).values())
    ]
    by_type = sorted(summ.get("by_type", {}).items()) if answer_rows else []
    questions = []
    if with_questions:
        for r in results["rows"]:
            a = r.get("answer") or {}
            hist = r.get("history") or []
            questions.append(
                {
                    "id": r["id"],
                    "type": r["type"],
                    "question": r["question"],
                    "history": _short(hist[0]["content"], 120) if hist else "",
                    "key_facts": ", ".join(r.get("key_facts") or []),
                    "answer": a.get("text") if a else None,
                    "citations": [{**c, "snippet": _short(c.get("snippet"), 300)} for c in a.get("citations", [])],
                    "old_answer": _short(r.get("old_answer"), 300),
                    "comment": r.get("feedback_comment"),
                    "retrieved": ", ".join(
                        f"{h['rank']}:{h['doc_id'].split('/')[-1][:40]}{'*' if h.get('gold_passage') or h.get('gold_doc') else ''}"
                        for h in (r.get("retrieval") or {}).get("hits", [])[:5]
                    ),
                    "issues": r.get("issues", []),
                    "judge": (
                        f"{fmt(r['judge'].get('correctness'))}/{fmt(r['judge'].get('groundedness'))} "
                        f"{r['judge'].get('why', '')}"
                    )
                    if r.get("judge") and "error" not in r["judge"]
                    else "",
                }
            )
    return {
        "title": title or f"Vraagbaak evaluation — {run.get('dataset')} ({run.get('name') or run.get('only')})",
        "meta": meta,
        "notes": notes,
        "ks": RETRIEVAL_KS,
        "retrieval_rows": retrieval_rows,
        "answer_rows": answer_rows,
        "judge_rows": judge_rows,
        "latency_rows": latency_rows,
        "by_type": by_type,
        "by_type_cols": by_type_cols,
        "plots": plots(results),
        "ablation": ablation,
        "questions": questions,
        "fmt": fmt,
    }


def render(results: dict, ablation: dict | None = None, **kw) -> str:
    env = jinja2.Environment(autoescape=jinja2.select_autoescape(default=True))
    return env.from_string(TEMPLATE).render(**context(results, ablation, **kw))


def write_report(run: Path, out: Path | None = None, ablation: dict | None = None, **kw) -> Path:
    results = load_results(run)
    run = Path(run)
    out = Path(out) if out else (run if run.is_dir() else run.parent) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results, ablation, **kw), encoding="utf-8")
    return out


def ablation_table(ablation: dict) -> dict:
    """{'columns': [...], 'rows': [{'variant', 'values'}]} from an ablation.json."""
    cols = ablation["columns"]
    rows = [
        {"variant": html.unescape(v["variant"]), "cells": [fmt(v["metrics"].get(c)) for c in cols]}
        for v in ablation["variants"]
    ]
    return {"columns": [LABELS.get(c, c) for c in cols], "rows": rows}


def write_ablation_report(ablation_path: Path, out: Path | None = None) -> Path:
    ab = json.loads(Path(ablation_path).read_text(encoding="utf-8"))
    base = Path(ab["variants"][0]["run_dir"])
    results = load_results(base)
    out = Path(out) if out else Path(ablation_path).with_suffix(".html")
    html_text = render(
        results,
        ablation_table(ab),
        title=f"Vraagbaak ablations — {ab.get('dataset')}",
        notes=f"Per-question rows below are from the baseline variant ({ab['variants'][0]['variant']}).",
    )
    out.write_text(html_text, encoding="utf-8")
    return out


__all__ = ["HIGHER_IS_BETTER", "render", "write_report", "write_ablation_report", "ablation_table", "fmt"]
