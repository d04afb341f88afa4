"""The evaluation command line: ``python -m eval …`` or, once attached, ``vraagbaak eval …``.

    python -m eval run --dataset demo                       # retrieval + answers, all 92 questions
    python -m eval run --dataset demo --only retrieval      # seconds, no LLM
    python -m eval run --dataset faq --only retrieval
    python -m eval run --dataset demo --limit 10            # a quick look
    python -m eval run --resume eval/runs/<run>             # continue an interrupted run
    python -m eval run --dataset feedback --data feedback.jsonl
    python -m eval report eval/runs/<run> [--out eval/reports/x.html]
    python -m eval compare eval/runs/<A> eval/runs/<B> [--fail-on-regression]
    python -m eval rescore eval/runs/<run>                  # recompute answer metrics, no LLM
    python -m eval ablate --dataset demo --only retrieval
    python -m eval prompts --dataset demo --out a.json      # answer prompts, no generation;
    python -m eval prompts-diff a.json b.json               # the ids a change gives another prompt

``register(app)`` adds the same commands as an ``eval`` group to another Typer app; the ``vraagbaak``
CLI loads it as a plugin (entry point group ``vraagbaak.commands``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Evaluate Vraagbaak: retrieval and answer metrics, reports, run comparison, ablations.", no_args_is_help=True
)


def register(parent: typer.Typer, name: str = "eval") -> None:
    """Attach the eval commands to ``parent`` as a command group."""
    parent.add_typer(app, name=name)


@app.command("run")
def run_cmd(
    dataset: Annotated[str, typer.Option(help="demo | guard | reworded | demo-pdf | faq | faq-ci | feedback")] = "demo",
    only: Annotated[str, typer.Option(help="all | retrieval | answers")] = "all",
    limit: Annotated[int | None, typer.Option(help="First N questions only.")] = None,
    ids: Annotated[str | None, typer.Option(help="Comma-separated question ids.")] = None,
    split: Annotated[str | None, typer.Option(help="tune | test: only that frozen split (eval/splits.py).")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset file (feedback export or another gold JSONL).")] = None,
    include_up: Annotated[bool, typer.Option(help="feedback: also re-ask thumbs-up questions.")] = False,
    name: Annotated[str, typer.Option(help="Run name (folder suffix).")] = "",
    resume: Annotated[Path | None, typer.Option(help="Continue this interrupted run folder.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Run folder (default: eval/runs/<time>-<name>).")] = None,
    fusion: Annotated[str | None, typer.Option(help="dense | bm25 | rrf | score (default: settings)")] = None,
    fusion_weight_bm25: Annotated[float | None, typer.Option()] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Passages given to the LLM.")] = None,
    retrieval_k: Annotated[int, typer.Option(help="Results retrieved for the retrieval metrics.")] = 10,
    chunk_size: Annotated[int | None, typer.Option(help="Re-index with this chunk size.")] = None,
    chunk_overlap: Annotated[int | None, typer.Option()] = None,
    attribution: Annotated[bool, typer.Option(help="Post-hoc attribution on/off.")] = True,
    index_dir: Annotated[Path | None, typer.Option(help="Use this index instead of the dataset's own.")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Run on the postgres backend: the dataset's index is copied (migrated, not embedded again) "
            "into a schema of its own in this database (default: VRAAGBAAK_DATABASE_URL; '' = embedded)."
        ),
    ] = None,
    judge: Annotated[bool, typer.Option(help="Also run the LLM-as-judge.")] = False,
    judge_backend: Annotated[str | None, typer.Option(help="llama_cpp | openai | transformers")] = None,
    judge_base_url: Annotated[str | None, typer.Option()] = None,
    judge_model: Annotated[str | None, typer.Option()] = None,
    report: Annotated[bool, typer.Option(help="Write report.html at the end.")] = True,
    progress: Annotated[bool, typer.Option(help="Progress bar with ETA.")] = True,
) -> None:
    """Evaluate one dataset; writes a run folder with results.jsonl, results.json and report.html."""
    from .run import RunConfig, run

    if ids is not None and not question_ids(ids):
        raise typer.BadParameter("no question ids given (leave --ids out to run every question)", param_hint="--ids")
    if out_dir is not None and resume is None and (out_dir / "config.json").exists():
        # run() would continue that run with its saved options, not the ones given now
        raise typer.BadParameter(
            f"{out_dir} already holds a run; continue it with --resume {out_dir}, or choose a new folder",
            param_hint="--out-dir",
        )
    cfg = RunConfig(
        dataset=dataset,
        name=name,
        only=only,
        limit=limit,
        ids=question_ids(ids) if ids else None,
        split=split,
        data=str(data) if data else None,
        include_up=include_up,
        fusion=fusion,
        fusion_weight_bm25=fusion_weight_bm25,
        top_k=top_k,
        retrieval_k=retrieval_k,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        attribution=attribution,
        index_dir=str(index_dir) if index_dir else None,
        judge=judge,
        judge_backend=judge_backend,
        judge_base_url=judge_base_url,
        judge_model=judge_model,
    )
    if only not in ("all", "retrieval", "answers"):
        raise typer.BadParameter("--only: all, retrieval or answers")
    run_dir, results = run(
        cfg,
        run_dir=resume or out_dir,
        progress=progress,
        log=lambda m: typer.echo(m, err=True),
        database_url=database_url,
    )
    typer.echo(format_summary(results))
    if report:
        from .report import write_report

        typer.echo(f"report: {write_report(run_dir)}")
    typer.echo(f"results: {run_dir / 'results.json'}")


def question_ids(text: str) -> list[str]:
    """The ids of a comma-separated --ids value, blanks left out."""
    return [i.strip() for i in text.split(",") if i.strip()]


def format_summary(results: dict) -> str:
    from .report import LABELS

    s = results["summary"]
    lines = [f"{s['n']} questions" + (f", {s['errors']} errors (rerun with --resume)" if s.get("errors") else "")]
    from .run import HIGHER_IS_BETTER

    order = list(HIGHER_IS_BETTER)
    for k, v in sorted(s["metrics"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 999):
        lines.append(
            f"  {LABELS.get(k, k):58s} {v['value']:.3f}  (n={v['n']})" if v["value"] is not None else f"  {k:58s} –"
        )
    for k, v in s.get("latency", {}).items():
        lines.append(f"  {LABELS.get(k, k):58s} p50 {v['p50']:.1f}  p95 {v['p95']:.1f}")
    splits = s.get("by_split") or {}
    if len(splits) > 1:
        shown = [k for k in order if any(k in g for g in splits.values())]
        lines.append("by frozen split (tune: rules and thresholds are tuned here; test: only reported):")
        lines.append(f"  {'':58s} " + "  ".join(f"{name:>6s} (n={g['n']})" for name, g in sorted(splits.items())))
        for k in shown:
            vals = "  ".join(
                f"{g[k]:>6.3f}{'':{len(str(g['n'])) + 5}s}" if k in g else f"{'–':>6s}{'':{len(str(g['n'])) + 5}s}"
                for _, g in sorted(splits.items())
            )
            lines.append(f"  {LABELS.get(k, k):58s} {vals}")
    return "\n".join(lines)


@app.command("prompts")
def prompts_cmd(
    out: Annotated[Path, typer.Option(help="JSON file: question id -> sha256 of its answer prompt.")],
    dataset: Annotated[str, typer.Option(help="demo | guard | reworded | demo-pdf | faq | faq-ci")] = "demo",
    ids: Annotated[str | None, typer.Option(help="Comma-separated question ids.")] = None,
    split: Annotated[str | None, typer.Option(help="tune | test: only that frozen split.")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Passages given to the LLM.")] = None,
) -> None:
    """Record every question's answer prompt, with no generation (eval/prompt_diff.py): with
    ``prompts-diff``, only the questions a change gives another prompt are answered again."""
    from .prompt_diff import record
    from .run import RunConfig

    cfg = RunConfig(dataset=dataset, ids=question_ids(ids) if ids else None, split=split, top_k=top_k)
    record(cfg, out)


@app.command("prompts-diff")
def prompts_diff_cmd(
    a: Annotated[Path, typer.Argument(help="Prompts recorded before the change.")],
    b: Annotated[Path, typer.Argument(help="Prompts recorded after it.")],
) -> None:
    """Print the ids whose answer prompt differs (and the follow-ups), comma-separated, for
    ``eval run --ids``; the counts go to stderr."""
    from .prompt_diff import changed, load_record

    ra, rb = load_record(a), load_record(b)
    ids = changed(ra, rb)
    typer.echo(f"{len(ids)} of {len(set(ra) | set(rb))} questions to answer again", err=True)
    typer.echo(",".join(ids))


@app.command("rescore")
def rescore_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    similarity: Annotated[bool, typer.Option(help="Recompute similarity (loads the embedder).")] = False,
    report: Annotated[bool, typer.Option(help="Rewrite report.html.")] = True,
) -> None:
    """Recompute the answer metrics from the stored answers (no LLM), e.g. after a metric fix."""
    from .run import rescore

    embedder = None
    if similarity:
        from rag.embed import load_embedder
        from rag.settings import Settings

        embedder = load_embedder(Settings())
    results = rescore(run, embedder=embedder, log=lambda m: typer.echo(m, err=True))
    typer.echo(format_summary(results))
    if report:
        from .report import write_report

        typer.echo(f"report: {write_report(run)}")


@app.command("report")
def report_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder (or results.json), or an ablation.json.")],
    out: Annotated[Path | None, typer.Option(help="Output HTML file.")] = None,
) -> None:
    """Write the HTML report of a run (metric table, plots, per-question table)."""
    from .report import write_ablation_report, write_report

    if run.name == "ablation.json" or (run.is_dir() and (run / "ablation.json").exists()):
        path = write_ablation_report(run if run.is_file() else run / "ablation.json", out)
    else:
        path = write_report(run, out)
    typer.echo(str(path))


@app.command("compare")
def compare_cmd(
    run_a: Annotated[Path, typer.Argument(help="Baseline run.")],
    run_b: Annotated[Path, typer.Argument(help="New run.")],
    min_delta: Annotated[float, typer.Option(help="Smallest absolute change that can be flagged.")] = 0.02,
    min_rel_latency: Annotated[float, typer.Option(help="Smallest relative p50 latency change flagged.")] = 0.2,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    fail_on_regression: Annotated[bool, typer.Option(help="Exit 1 when a regression is flagged.")] = False,
) -> None:
    """Diff two runs; flags regressions beyond bootstrap noise."""
    from .compare import compare, format_table

    cmp = compare(run_a, run_b, min_delta=min_delta, min_rel_latency=min_rel_latency)
    typer.echo(json.dumps(cmp, indent=1, ensure_ascii=False) if as_json else format_table(cmp))
    if fail_on_regression and cmp["regressions"]:
        raise typer.Exit(1)


@app.command("ablate")
def ablate_cmd(
    dataset: Annotated[str, typer.Option(help="demo | faq | faq-ci")] = "demo",
    only: Annotated[str, typer.Option(help="all | retrieval | answers")] = "all",
    limit: Annotated[int | None, typer.Option()] = None,
    ids: Annotated[str | None, typer.Option(help="Comma-separated question ids.")] = None,
    axes: Annotated[
        str, typer.Option(help="Comma-separated: fusion,chunk_size,top_k,attribution")
    ] = "fusion,chunk_size,top_k,attribution",
    chunk_sizes: Annotated[str, typer.Option(help="Chunk sizes besides the default.")] = "400,800",
    top_ks: Annotated[str, typer.Option("--top-ks", help="Answer top-k values besides the default.")] = "2,5",
    resume: Annotated[Path | None, typer.Option(help="Continue this ablation folder.")] = None,
    progress: Annotated[bool, typer.Option()] = True,
) -> None:
    """Run the ablation variants (one factor at a time) and print/write the table."""
    from .ablate import ablate, format_ablation
    from .run import RunConfig

    base = RunConfig(dataset=dataset, only=only, limit=limit, ids=ids.split(",") if ids else None)
    path = ablate(
        base,
        out_dir=resume,
        axes=[a.strip() for a in axes.split(",")],
        chunk_sizes=[int(x) for x in chunk_sizes.split(",") if x.strip()],
        top_ks=[int(x) for x in top_ks.split(",") if x.strip()],
        progress=progress,
        log=lambda m: typer.echo(m, err=True),
    )
    typer.echo(format_ablation(path))
    typer.echo(f"ablation: {path} and {path.with_suffix('.html')}")


def main() -> None:
    app()
