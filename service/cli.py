"""``vraagbaak serve``, ``vraagbaak keys add/list/revoke``, ``vraagbaak feedback export`` and
``vraagbaak backup PATH`` / ``vraagbaak restore PATH``.

Attach to the main CLI with::

    from service.cli import register
    register(app)          # app = the typer.Typer of rag/cli.py

(``python -m service ...`` runs the same commands on their own.)
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from .stores import ServiceStores

keys_app = typer.Typer(
    help="Manage API keys (stored hashed in data_dir/keys.sqlite, or in PostgreSQL when VRAAGBAAK_DATABASE_URL is set).",
    no_args_is_help=True,
)
feedback_app = typer.Typer(help="Feedback given on answers.", no_args_is_help=True)


def _service_settings(data_dir: Path | None = None, **overrides):
    from .config import ServiceSettings

    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    try:
        return ServiceSettings(**values)
    except Exception as exc:  # pydantic ValidationError: show it plainly
        typer.secho(f"invalid service settings: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _stores(data_dir: Path | None) -> Iterator[ServiceStores]:
    """The service's stores (service/stores.py: SQLite in data_dir, or PostgreSQL when
    database_url is set); a database that cannot be reached is one red line and exit 1."""
    from rag.settings import Settings

    from .stores import ServiceStores, StateUnavailable

    cfg = _service_settings(data_dir)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic ValidationError: show it plainly
        typer.secho(f"invalid settings: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    stores = ServiceStores(settings, cfg)
    try:
        yield stores
    except StateUnavailable as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    finally:
        stores.close()


DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Service state folder (default: VRAAGBAAK_DATA_DIR or ~/.local/share/vraagbaak)."),
]


# --------------------------------------------------------------------------- serve
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    dev: Annotated[
        bool,
        typer.Option("--dev", help="Dev mode: loopback requests without a key are allowed (reader, public documents)."),
    ] = False,
    index_dir: Annotated[Path | None, typer.Option("--index-dir", help="Index folder (default: settings).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run the HTTP API (uvicorn, one process: the LLM gate is per process)."""
    from rag.settings import Settings

    from .app import create_app
    from .lifecycle import run_server
    from .logging import configure_logging

    cfg = _service_settings(data_dir, host=host, port=port, dev_mode=True if dev else None)
    settings = Settings()
    if index_dir is not None:
        settings.index_dir = index_dir
    configure_logging(cfg.log_level, cfg.log_json)
    if cfg.dev_mode and cfg.host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            f"warning: dev mode on a non-loopback address ({cfg.host}); anonymous access is still only "
            "accepted from loopback clients",
            fg=typer.colors.YELLOW,
            err=True,
        )
    app = create_app(settings, service_settings=cfg)
    run_server(app, cfg.host, cfg.port, cfg.shutdown_grace_s)


# --------------------------------------------------------------------------- keys
@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    role: Annotated[str, typer.Option(help="reader or admin.")] = "reader",
    groups: Annotated[
        str | None, typer.Option(help="Comma-separated access groups (default: none = public documents only).")
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a key and print it (once: only its hash is stored)."""
    from .auth import KeyError_

    try:
        with _stores(data_dir) as stores:
            key = stores.keys().add(name, role=role, groups=groups)
    except KeyError_ as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(key)
    typer.secho(f"key '{name}' ({role}) created; it is shown only now.", err=True, dim=True)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Show the keys (names, roles, groups; never the keys)."""
    from datetime import datetime

    with _stores(data_dir) as stores:
        rows = stores.keys().list(include_revoked=all_)
    if as_json:
        typer.echo(json.dumps([r.__dict__ | {"active": r.active} for r in rows], indent=2))
        return
    if not rows:
        typer.echo("no keys (create one: vraagbaak keys add NAME --role reader --groups a,b)")
    for r in rows:
        created = datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M")
        state = "active" if r.active else "revoked"
        typer.echo(f"{r.name:24s} {r.role:7s} {state:8s} {created}  groups: {','.join(r.groups) or '-'}")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument()], data_dir: DataDirOpt = None) -> None:
    """Revoke a key (effective immediately, also for a running service and every replica)."""
    from .auth import KeyError_

    try:
        with _stores(data_dir) as stores:
            stores.keys().revoke(name)
    except KeyError_ as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {name}")


# --------------------------------------------------------------------------- feedback
@feedback_app.command("export")
def feedback_export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSONL file (default: stdout).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write all feedback as JSON lines (with question/answer when the audit log has them)."""
    with _stores(data_dir) as stores:
        store = stores.feedback()
        audit = stores.audit_for_export()
        if out is None:
            n = store.export_jsonl(sys.stdout, audit=audit)
        else:
            with open(out, "w", encoding="utf-8") as fh:
                n = store.export_jsonl(fh, audit=audit)
    typer.secho(f"{n} feedback records", err=True, dim=True)


# --------------------------------------------------------------------------- backup, restore
IndexDirOpt = Annotated[Path | None, typer.Option("--index-dir", help="Index folder (default: settings).")]


def _index_settings(index_dir: Path | None):
    from rag.settings import Settings

    settings = Settings()
    if index_dir is not None:
        settings.index_dir = index_dir
    return settings


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def backup_cmd(
    path: Annotated[Path, typer.Argument(help="Archive to write (.tar.gz), or an existing folder to write it into.")],
    index_dir: IndexDirOpt = None,
    data_dir: DataDirOpt = None,
    lock_timeout: Annotated[
        float, typer.Option("--lock-timeout", help="Seconds to wait for a running ingest to finish.")
    ] = 600.0,
) -> None:
    """Save the index, API keys, feedback, audit log, link secret and uploads to one archive
    (safe while the service runs)."""
    from .backup import BackupError, backup

    cfg = _service_settings(data_dir)
    try:
        report = backup(_index_settings(index_dir), cfg, path, lock_timeout=lock_timeout)
    except BackupError as exc:
        typer.secho(f"backup failed: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.secho(f"backup failed: {exc.strerror or exc} ({exc.filename or path})", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"backup written: {report.path} ({_size(report.size)}, mode 600) in {report.seconds:.1f} s")
    typer.echo(
        f"  index     {report.generation}: {report.n_documents} documents, {report.n_chunks} chunks, "
        f"embedder {report.embedder} ({_size(report.files.get('index', 0))})"
    )
    for name, size in report.files.items():
        if name != "index":
            typer.echo(f"  {name:<18s}{_size(size)}")
    secrets = "the API keys' hashes" + (" and the link secret" if report.has_link_secret else "")
    typer.secho(f"The archive holds {secrets}: store it like a secret.", fg=typer.colors.YELLOW, err=True)


def restore_cmd(
    path: Annotated[Path, typer.Argument(help="Archive written by vraagbaak backup.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the index and data of a target that already holds state.")
    ] = False,
    index_dir: IndexDirOpt = None,
    data_dir: DataDirOpt = None,
    lock_timeout: Annotated[
        float, typer.Option("--lock-timeout", help="Seconds to wait for a running ingest to finish.")
    ] = 600.0,
) -> None:
    """Restore an archive of vraagbaak backup (every file's sha256 is checked first)."""
    from .backup import BackupError, restore

    cfg = _service_settings(data_dir)
    try:
        report = restore(_index_settings(index_dir), cfg, path, force=force, lock_timeout=lock_timeout)
    except BackupError as exc:
        typer.secho(f"restore refused: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.secho(f"restore failed: {exc.strerror or exc} ({exc.filename or path})", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"restored the backup of {report.created_at} in {report.seconds:.1f} s:")
    typer.echo(f"  index {report.index_dir}: {report.generation} (embedder {report.embedder}) is live")
    typer.echo(f"  data  {report.data_dir}: {', '.join(r for r in report.restored if not r.startswith('index'))}")
    if report.kept:
        typer.echo(f"  kept (not in the backup): {', '.join(report.kept)}")
    for w in report.warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        "A running service serves the restored index and keys at once; restart it to use the restored link secret."
    )


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``keys``, ``feedback``, ``backup`` and ``restore`` to the main ``vraagbaak`` CLI, and the
    document viewer's links to the answers that ``vraagbaak ask`` prints."""
    from rag import cli as rag_cli

    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.add_typer(feedback_app, name="feedback")
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)
    if cli_viewer_links not in rag_cli.CITATION_LINKERS:
        rag_cli.CITATION_LINKERS.append(cli_viewer_links)


def cli_viewer_links(citations: list) -> None:
    """Signed viewer links for the CLI's answers: the operator at the console reads the whole
    index (as an admin does), so the links carry every group (``*``); absolute, at the
    public base URL or else at the address ``vraagbaak serve`` listens on."""
    from .config import ServiceSettings
    from .links import LinkSigner

    cfg = ServiceSettings()
    signer = LinkSigner.from_config(cfg)
    if not signer.base_url:
        host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
        signer = LinkSigner(signer.secret, signer.ttl_s, f"http://{host}:{cfg.port}")
    signer.link(citations, None)


def main() -> None:
    app = typer.Typer(help="Vraagbaak HTTP service.", no_args_is_help=True)
    register(app)
    app()
