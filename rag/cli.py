"""The ``vraagbaak`` command line. Thin: every command calls the library."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .settings import Settings

app = typer.Typer(help="Vraagbaak — vragen over gemeentelijke documenten, met bronnen.", no_args_is_help=True)
models_app = typer.Typer(help="Install and check the local models (no hub access needed).", no_args_is_help=True)
app.add_typer(models_app, name="models")
index_app = typer.Typer(help="Maintain the index: move it between the embedded and PostgreSQL backends.")
app.add_typer(index_app, name="index")


def _settings(index_dir: Path | None = None) -> Settings:
    s = Settings()
    if index_dir is not None:
        s.index_dir = index_dir
    return s


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


IndexDirOpt = Annotated[Path | None, typer.Option("--index-dir", help="Index folder (default: settings).")]


# --------------------------------------------------------------------------- models
@models_app.command("install")
def models_install(
    names: Annotated[list[str] | None, typer.Argument(help="Models to install (default: all defaults).")] = None,
) -> None:
    """Fetch, assemble and verify the default models (idempotent, resumable)."""
    from .models import ModelError, install_models

    try:
        paths = install_models(names or None, settings=_settings(), progress=True)
    except ModelError as exc:
        _fail(str(exc))
    for p in paths if isinstance(paths, list) else [paths]:
        typer.echo(f"ok  {p}")


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the registered models: installed, verified, size, licence."""
    from .models import format_size, list_models

    rows = list_models(_settings())
    if as_json:
        typer.echo(json.dumps([r.__dict__ | {"path": str(r.path)} for r in rows], indent=2))
        return
    for r in rows:
        state = "verified" if r.verified else ("installed, NOT verified" if r.installed else "not installed")
        size = format_size(r.size_bytes) if r.size_bytes else "-"
        typer.echo(f"{r.name:40s} {r.kind:9s} {size:>9s}  {state:24s} {r.licence}  {r.path}")


@models_app.command("verify")
def models_verify(
    names: Annotated[list[str] | None, typer.Argument()] = None,
    smoke: Annotated[bool, typer.Option("--smoke/--no-smoke", help="Also run the LLM smoke test.")] = True,
) -> None:
    """Re-hash the installed model files against their published sha256, then prove that the
    LLM runs on this CPU (the smoke test of `models smoke`)."""
    from .models import ModelError, list_models, verify_model

    s = _settings()
    for name in names or [m.name for m in list_models(s)]:
        try:
            verify_model(name, s, full=True)
            typer.echo(f"ok  {name}")
        except ModelError as exc:
            _fail(f"FAILED {name}: {exc}")
    if smoke:
        models_smoke()


@models_app.command("smoke")
def models_smoke(
    timeout: Annotated[float, typer.Option(help="Seconds the child process may take.")] = 300.0,
) -> None:
    """Load the configured LLM in a child process and generate a few tokens: a crash of the
    native code (e.g. an instruction this CPU cannot run) stops here with a clear message,
    not at the first user question. Checks the llama_cpp backend; others are skipped."""
    from .llm.base import _normalise
    from .llm.smoke import smoke_test
    from .models import ModelError, resolve_llm

    s = _settings()
    if _normalise(s.llm_backend) != "llama_cpp":
        typer.echo(f"skip LLM smoke test: llm_backend={s.llm_backend} (runs no native code here)")
        return
    try:
        path = resolve_llm(s)
    except ModelError as exc:
        _fail(f"FAILED LLM smoke test: {exc}")
    try:
        result = smoke_test(path, timeout=timeout, threads=s.llm_threads, variant=s.llm_cpu_variant)
    except ValueError as exc:  # a variant that cannot run here
        _fail(f"FAILED LLM smoke test: {exc}")
    if not result.ok:
        _fail("FAILED " + result.message())
    typer.echo(f"ok  {result.message()}")


# --------------------------------------------------------------------------- index
@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    sync: Annotated[bool, typer.Option(help="Also remove indexed documents not found in PATHS.")] = False,
    groups: Annotated[str | None, typer.Option(help="Comma-separated access groups (default: everyone).")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for another running ingest instead of failing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    index_dir: IndexDirOpt = None,
    device: Annotated[
        str | None, typer.Option(help="Embedding device: cpu, cuda, cuda:1, mps … (default: settings).")
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(min=1, help="Encode over N processes (torch backend; with --device cuda one per GPU)."),
    ] = None,
) -> None:
    """Add or update documents in the index (unchanged files are skipped)."""
    from .embed import EmbedderExportError, load_embedder
    from .index import IndexError_
    from .indexing import ingest_paths

    s = _settings(index_dir)
    if device is not None:
        s.embedder_device = device
    if processes is not None:
        s.embedder_processes = processes
    try:
        embedder = load_embedder(s)
    except (ValueError, EmbedderExportError) as exc:
        _fail(str(exc))
    try:
        report = ingest_paths(
            paths,
            s,
            embedder,
            sync=sync,
            groups=[g.strip() for g in groups.split(",") if g.strip()] if groups else None,
            progress=not as_json and sys.stderr.isatty(),
            wait=wait,
        )
    except IndexError_ as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        for path, reason in report.failed:
            typer.secho(f"FAILED {path}: {reason}", fg=typer.colors.RED, err=True)
        typer.echo(report.summary())
    if report.failed:
        raise typer.Exit(1)


@app.command()
def remove(doc_ids: Annotated[list[str], typer.Argument()], index_dir: IndexDirOpt = None) -> None:
    """Remove documents from the index by doc_id."""
    from .index import IndexError_
    from .indexing import remove_documents

    try:
        removed = remove_documents(doc_ids, _settings(index_dir))
    except IndexError_ as exc:
        _fail(str(exc))
    for d in doc_ids:
        typer.echo(("removed " if d in removed else "not found ") + d)
    if len(removed) != len(doc_ids):
        raise typer.Exit(1)


@app.command()
def documents(as_json: Annotated[bool, typer.Option("--json")] = False, index_dir: IndexDirOpt = None) -> None:
    """List the indexed documents (of the embedded index, or of PostgreSQL when database_url is set)."""
    from .index import IndexError_
    from .store import open_reader

    try:
        reader = open_reader(_settings(index_dir))
    except IndexError_ as exc:
        _fail(str(exc))
    try:
        docs = reader.snapshot().documents()
    finally:
        reader.close()
    if as_json:
        typer.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        typer.echo(
            f"{d['doc_id']:60s} {d['doc_type'] or '-':12s} {d['date'] or '-':10s} {d['n_chunks']:4d} chunks  {d['title']}"
        )


@index_app.command("migrate")
def index_migrate(
    to: Annotated[str, typer.Option("--to", help="postgres or embedded: the backend to move the index to.")],
    index_dir: Annotated[
        Path | None, typer.Option("--index-dir", help="The embedded index folder (default: settings).")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="The PostgreSQL database (default: VRAAGBAAK_DATABASE_URL).")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace an index the target already holds.")] = False,
    reembed: Annotated[
        bool, typer.Option(help="Embed the chunk texts again (an ivf_sq8 source keeps only approximate vectors).")
    ] = False,
    maintenance_work_mem: Annotated[
        str,
        typer.Option(
            help="PostgreSQL memory for building the indexes after the load (~4GB keeps the HNSW build of 1M "
            "chunks of dim 768 in memory)."
        ),
    ] = "1GB",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Move the index to the other backend without embedding again: documents, sections, chunks
    (ids, spans, pages, groups, metadata), vectors and manifest. Never half visible to readers."""
    from .index import IndexError_
    from .store.migrate import Backend, migrate, open_source, source_location, sq8_note

    if to not in ("postgres", "embedded"):
        raise typer.BadParameter("--to: postgres or embedded")
    s = _settings()
    target: Backend = "postgres" if to == "postgres" else "embedded"
    backend: Backend = "embedded" if target == "postgres" else "postgres"
    try:
        with open_source(backend, source_location(target, s, index_dir, database_url)) as source:
            info = source.info
            if not as_json:
                typer.echo(
                    f"source: {info.backend} {info.name} ({info.location}): {info.n_documents} documents, "
                    f"{info.n_chunks} chunks, embedder {info.embedder} (dim {info.dim}), vectors {info.vector_index}"
                )
            if not info.exact_vectors and not reembed:
                typer.secho(f"note: {sq8_note()}", fg=typer.colors.YELLOW, err=True)
            embed = None
            if reembed:
                embed = _reembedder(s, info.embedder, info.dim)
            bar = None
            if not as_json and sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=info.n_chunks, desc=f"to {to}", unit="chunk", file=sys.stderr)
            try:
                report = migrate(
                    source,
                    target,
                    s,
                    index_dir=index_dir,
                    database_url=database_url,
                    replace=replace,
                    progress=bar.update if bar is not None else None,
                    embed=embed,
                    maintenance_work_mem=maintenance_work_mem,
                )
            finally:
                if bar is not None:
                    bar.close()
    except IndexError_ as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    typer.echo(report.summary())
    for note in report.notes:
        if "SQ8" not in note:  # printed above already
            typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)


def _reembedder(s: Settings, embedder_id: str, dim: int):
    """The configured embedder's ``embed_documents``; it must be the index's own."""
    from .embed import load_embedder

    embedder = load_embedder(s)
    if embedder.model_id != embedder_id or embedder.dim != dim:
        _fail(f"--reembed needs the index's embedder '{embedder_id}' (dim {dim}); configured: {embedder.model_id}")
    return embedder.embed_documents


def _parse_filters(items: list[str] | None):
    from .retrieve import Filters

    if not items:
        return None
    f = Filters()
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise typer.BadParameter(f"filter '{item}': use key=value (type=, year=, source=, doc=)")
        values = [v.strip() for v in value.split(",") if v.strip()]
        if key in ("type", "doc_type"):
            f.doc_types = values
        elif key == "year":
            try:
                f.years = [int(v) for v in values]
            except ValueError:
                raise typer.BadParameter(f"filter '{item}': year must be a number") from None
        elif key == "source":
            f.source_prefix = value
        elif key in ("doc", "doc_id"):
            f.doc_ids = values
        else:
            raise typer.BadParameter(f"unknown filter key '{key}' (type, year, source, doc)")
    return f


def _read_jsonl(path: str):
    """Yield (id, question, record) from a JSONL file or standard input ('-')."""
    fh = sys.stdin if path == "-" else open(path, encoding="utf-8")
    try:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                question = obj["question"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise typer.BadParameter(f'line {n}: expected {{"id": ..., "question": ...}}') from None
            yield obj.get("id", n), question, obj
    finally:
        if fh is not sys.stdin:
            fh.close()


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="The question.")] = None,
    queries: Annotated[str | None, typer.Option(help="JSONL file ('-' = stdin) of {id, question}.")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k")] = None,
    filter: Annotated[list[str] | None, typer.Option("--filter", "-f", help="type=…, year=…, source=…, doc=…")] = None,
    fusion: Annotated[str | None, typer.Option(help="dense, bm25, rrf or score (default: settings).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    index_dir: IndexDirOpt = None,
) -> None:
    """Search the index (hybrid dense + BM25)."""
    from .embed import load_embedder
    from .index import IndexError_
    from .retrieve import Retriever

    if (query is None) == (queries is None):
        raise typer.BadParameter("give a QUERY or --queries FILE, not both")
    s = _settings(index_dir)
    filters = _parse_filters(filter)
    try:
        retriever = Retriever(s, load_embedder(s))
    except IndexError_ as exc:
        _fail(str(exc))

    def run(qid, q):
        res = retriever.search(q, top_k=top_k, filters=filters, fusion=fusion)
        return res, {
            "id": qid,
            "question": q,
            "generation": res.generation,
            "timings": {k: round(v, 2) for k, v in res.timings.items()},
            "results": [h.to_dict() for h in res.hits],
        }

    if queries is not None:
        for qid, q, _ in _read_jsonl(queries):
            _, out = run(qid, q)
            typer.echo(json.dumps(out, ensure_ascii=False))
        return
    res, out = run(None, query)
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if not res.hits:
        typer.echo("Geen resultaten.")
    for h in res.hits:
        where = f" › {h.section}" if h.section else ""
        typer.secho(f"[{h.rank}] {h.score:.3f}  {h.title}{where}", bold=True)
        typer.echo(f"    {h.source}" + (f" (p. {h.page})" if h.page else ""))
        snippet = h.text if len(h.text) <= 300 else h.text[:297] + "…"
        typer.echo("    " + snippet.replace("\n", " "))


# Functions that add links to an answer's citations before the CLI prints it (the service's
# plugin adds its document viewer's signed links, service/cli.py); the library knows no URLs.
CITATION_LINKERS: list[Callable[[list[Any]], None]] = []


def _link(answer):
    for linker in CITATION_LINKERS:
        try:
            linker(answer.citations)
        except Exception as exc:  # noqa: BLE001 - a link is a courtesy, never a failed answer
            typer.secho(f"(geen links naar de bronnen: {exc})", err=True, dim=True)
    return answer


def _print_sources(answer) -> None:
    if not answer.citations:
        return
    typer.echo("\nBronnen:")
    for c in answer.citations:
        where = f" › {c.section}" if c.section else ""
        label = f" — {c.label}" if c.label and c.label.lower() not in c.title.lower() else ""
        page = f", p. {c.page}" if c.page else ""
        if c.page and c.page_end and c.page_end != c.page:
            page += f"–{c.page_end}"
        typer.echo(f"  [{c.marker}] {c.title}{label}{where} ({c.source}{page})")
        for url in dict.fromkeys(u for u in (c.url, c.public_url) if u):
            typer.echo(f"      {url}")


def _stream_answer(pipeline, question: str, history=None, filters=None, top_k=None):
    """Print tokens as they arrive, then the validated answer if it differs; return it."""
    from .schema import DoneEvent, TokenEvent

    raw = ""
    answer = None
    for event in pipeline.stream(question, history=history, filters=filters, top_k=top_k):
        if isinstance(event, TokenEvent):
            raw += event.text
            typer.echo(event.text, nl=False)
        elif isinstance(event, DoneEvent):
            answer = event.answer
    if answer is None:  # the pipeline's stream always ends with a DoneEvent
        raise RuntimeError("the answer stream ended without its final event")
    _link(answer)
    if raw and answer.answer.strip() != raw.strip():
        typer.secho("\n\nGecontroleerd antwoord:", bold=True)
        typer.echo(answer.answer, nl=False)
    elif not raw:
        typer.echo(answer.answer, nl=False)
    typer.echo()
    _print_sources(answer)
    return answer


def _load_pipeline(index_dir):
    from .index import IndexError_
    from .llm import LLMError
    from .models import ModelError
    from .pipeline import Pipeline

    try:
        return Pipeline.from_settings(_settings(index_dir))
    except (IndexError_, ModelError, LLMError) as exc:
        _fail(str(exc))


def batch_record(qid, answer) -> dict:
    """One line of ``ask --questions``: the caller's ``id`` first (so the output joins to the
    input), the answer's own id (for feedback) as ``answer_id``, then the answer's fields."""
    fields = answer.model_dump()
    answer_id = fields.pop("id")
    return {"id": qid, "answer_id": answer_id, **fields}


@app.command()
def ask(
    question: Annotated[str | None, typer.Argument(help="De vraag.")] = None,
    questions: Annotated[str | None, typer.Option(help="JSONL file ('-' = stdin) of {id, question}.")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="Passages given to the model.")] = None,
    filter: Annotated[list[str] | None, typer.Option("--filter", "-f", help="type=…, year=…, source=…, doc=…")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    index_dir: IndexDirOpt = None,
) -> None:
    """Answer a question in Dutch with cited sources (streams the answer)."""
    from .schema import Turn

    if (question is None) == (questions is None):
        raise typer.BadParameter("give a QUESTION or --questions FILE, not both")
    filters = _parse_filters(filter)
    pipeline = _load_pipeline(index_dir)
    if questions is not None:
        for qid, q, record in _read_jsonl(questions):
            history = [Turn(**t) for t in record.get("history") or []]
            answer = _link(pipeline.ask(q, history=history, filters=filters, top_k=top_k))
            typer.echo(json.dumps(batch_record(qid, answer), ensure_ascii=False))
        return
    if as_json:
        typer.echo(_link(pipeline.ask(question, filters=filters, top_k=top_k)).model_dump_json(indent=2))
        return
    assert question is not None  # checked above: a QUESTION or --questions
    _stream_answer(pipeline, question, filters=filters, top_k=top_k)


@app.command()
def chat(index_dir: IndexDirOpt = None) -> None:
    """Interactive session with follow-up questions (empty line or Ctrl-D ends it)."""
    from .schema import Turn

    pipeline = _load_pipeline(index_dir)
    history: list[Turn] = []
    typer.echo("Stel uw vraag (lege regel om te stoppen, 'nieuw' voor een nieuw gesprek).")
    while True:
        try:
            q = input("\nVraag: ").strip()
        except (EOFError, KeyboardInterrupt):
            typer.echo()
            break
        if not q:
            break
        if q.lower() == "nieuw":
            history = []
            continue
        answer = _stream_answer(pipeline, q, history=history)
        if answer.standalone_question:
            typer.secho(f"(gezocht als: {answer.standalone_question})", dim=True)
        history += [Turn(role="user", content=q), Turn(role="assistant", content=answer.answer)]


PLUGIN_GROUP = "vraagbaak.commands"


def register_plugins(target: typer.Typer = app) -> list[str]:
    """Add the commands of the front-ends (``serve``, ``keys``, ``eval``, ``bots`` …) to ``target``.

    The library does not import its front-ends: each declares a ``register(app)`` function as an entry
    point in the group ``vraagbaak.commands`` (see pyproject.toml), and a site can add its own commands
    the same way. A plugin that fails to load is reported and skipped; the other commands still work.
    Returns the names of the plugins that were added."""
    from importlib.metadata import entry_points

    added = []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()(target)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not take the CLI down
            typer.secho(f"plugin '{ep.name}' ({ep.value}) is not available: {exc}", err=True, fg="yellow")
            continue
        added.append(ep.name)
    return added


def main() -> None:  # console script entry point: the composition root
    register_plugins(app)
    try:
        app()
    except Exception as exc:
        message = settings_error(exc)
        if message is None:
            raise
        typer.secho(message, fg=typer.colors.RED, err=True)
        sys.exit(2)


def settings_error(exc: Exception) -> str | None:
    """A readable one-paragraph message for a bad settings file, variable or value, else None."""
    from pydantic import ValidationError

    from .settings import CONFIG_ENV, SettingsFileError, settings_classes

    if isinstance(exc, SettingsFileError) or (isinstance(exc, FileNotFoundError) and CONFIG_ENV in str(exc)):
        return f"settings: {exc}"
    if isinstance(exc, ValidationError) and exc.title in {c.__name__ for c in settings_classes()}:
        lines = [f"settings: {len(exc.errors())} invalid value(s)"]
        lines += [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return "\n".join(lines)
    return None


if __name__ == "__main__":
    main()
