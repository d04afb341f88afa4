"""The blocking work behind the document endpoints (run in the worker pool): checking an
uploaded file's name, parsing and indexing it, and removing a document."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, BinaryIO

from fastapi.exceptions import RequestValidationError

from .config import ServiceSettings
from .errors import ApiError, invalid
from .schemas import IngestFailure, IngestResult

_UNSAFE = re.compile(r"[^\w.()+ -]", re.UNICODE)


def _ingest_running() -> ApiError:
    return ApiError(409, "conflict", "another ingest is running; try again later", headers={"Retry-After": "10"})


def safe_filename(name: str) -> str:
    """The upload's file name, made safe; 422 for a name or type that cannot be ingested."""
    from rag.ingest import SUPPORTED_EXTENSIONS

    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = _UNSAFE.sub("_", base).strip(" .")
    if not base or base.startswith("."):
        invalid(("body", "file"), "missing or invalid file name")
    if base.lower().endswith(".meta.json"):
        invalid(("body", "file"), "metadata sidecar files cannot be uploaded")
    suffix = Path(base).suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        invalid(("body", "file"), f"unsupported file type {suffix or '(none)'}; supported: {supported}")
    return base[:200]


def ingest_upload(cfg: ServiceSettings, pipeline: Any, fh: BinaryIO, name: str, groups: list[str]) -> IngestResult:
    """Runs in a worker thread. The file is parsed in a private folder first; only a file
    that parses is moved into uploads/ and indexed, so a bad file changes nothing."""
    from rag.index import IndexError_, IndexLockedError
    from rag.indexing import ingest_paths
    from rag.ingest import IngestError
    from rag.ingest.isolation import close_parser, make_parser

    settings = pipeline.settings
    # the same parse as `vraagbaak ingest`: a worker process with the settings' limits
    # (parse_isolation), used for the check and for the indexing below
    parse = make_parser(settings)
    uploads = cfg.uploads_dir
    incoming = uploads.parent / ".incoming" / secrets.token_hex(8)
    incoming.mkdir(parents=True, exist_ok=True)
    tmp = incoming / name
    try:
        size = 0
        with open(tmp, "wb") as out:
            while chunk := fh.read(1 << 20):
                size += len(chunk)
                if size > cfg.max_upload_bytes:
                    raise ApiError(413, "too_large", f"file too large (at most {cfg.max_upload_bytes} bytes)")
                out.write(chunk)
        try:
            parse(tmp, root=incoming, groups=groups)
        except IngestError as exc:
            raise RequestValidationError(
                [{"loc": ("body", "file"), "msg": f"cannot ingest {name}: {exc.reason}", "type": "ingest_error"}]
            ) from None

        uploads.mkdir(parents=True, exist_ok=True)
        final = uploads / name
        backup = None
        if final.exists():
            backup = incoming / (name + ".previous")
            os.replace(final, backup)
        os.replace(tmp, final)

        def parse_upload(path, root=None, groups=None, **kw):  # doc ids "uploads/<name>"
            return parse(path, root=uploads.parent, groups=groups, **kw)

        try:
            report = ingest_paths([final], settings, pipeline.retriever.embedder, groups=groups, parse=parse_upload)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, final)
                else:
                    final.unlink()
            if isinstance(exc, IndexLockedError):
                raise _ingest_running() from None
            if isinstance(exc, IndexError_):
                raise ApiError(503, "index_unavailable", str(exc)) from None
            raise
        if report.failed:
            reasons = "; ".join(r for _p, r in report.failed)
            raise RequestValidationError(
                [{"loc": ("body", "file"), "msg": f"cannot ingest {name}: {reasons}", "type": "ingest_error"}]
            )
        d = report.to_dict()
        return IngestResult(
            doc_ids=report.added + report.updated + report.unchanged,
            added=report.added,
            updated=report.updated,
            unchanged=report.unchanged,
            failed=[IngestFailure(**f) for f in d["failed"]],
            chunks_embedded=report.chunks_embedded,
            seconds=d["seconds"],
            generation=report.generation,
        )
    finally:
        close_parser(parse)
        shutil.rmtree(incoming, ignore_errors=True)


def remove_document(cfg: ServiceSettings, pipeline: Any, doc_id: str) -> bool:
    """Remove ``doc_id`` from the index (and its uploaded copy); False when there is no such document."""
    from rag.index import IndexLockedError
    from rag.indexing import remove_documents

    snap = pipeline.retriever.reader.snapshot()
    doc = snap.document(doc_id)
    if doc is None:
        return False
    try:
        removed = remove_documents([doc_id], pipeline.settings)
    except IndexLockedError:
        raise _ingest_running() from None
    path = (doc.get("metadata") or {}).get("path")
    if removed and path:
        p = Path(path)
        with contextlib.suppress(OSError, ValueError):
            if p.resolve().is_relative_to(cfg.uploads_dir.resolve()):
                p.unlink()  # a deleted upload leaves no copy behind
    return bool(removed)
