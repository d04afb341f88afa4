"""``GET/POST /v1/documents`` and ``GET/DELETE /v1/documents/{doc_id}``.

A reader sees the public documents and those sharing a group with its key — the same rule
as retrieval (``Caller.can_see``, ``rag.retrieve.Filters``); any other document is a 404,
exactly like one that does not exist. Admins see everything, with the groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from .. import viewer
from ..auth import Caller, _api_key_header, _bearer, enforce_rate_limit, get_caller, parse_groups
from ..auth import KeyError_ as _KeyError
from ..deps import Admin, Reader, State
from ..errors import ApiError, error_responses, invalid
from ..schemas import ChunkInfo, DocumentDetail, DocumentInfo, DocumentList, IngestResult, Removed
from ..uploads import ingest_upload, remove_document, safe_filename

router = APIRouter(tags=["documents"])
DocId = Annotated[str, PathParam(description="e.g. voorbeeld/begroting-2023-welzijn-gezondheid-zorg")]


def _doc_info(d: dict[str, Any], caller: Caller) -> DocumentInfo:
    meta = dict(d.get("metadata") or {})
    if not caller.is_admin:
        meta.pop("path", None)  # server file system layout
    return DocumentInfo(
        doc_id=d["doc_id"],
        title=d["title"],
        source=d["source"],
        date=d.get("date"),
        doc_type=d.get("doc_type"),
        year=d.get("year"),
        n_chunks=int(d.get("n_chunks") or 0),
        ingested_at=float(d.get("ingested_at") or 0.0),
        groups=d.get("groups") if caller.is_admin else None,
        metadata=meta,
    )


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "document not found")


@router.get("/v1/documents", response_model=DocumentList, responses=error_responses(401, 422, 429, 503))
async def list_documents(
    caller: Reader,
    state: State,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DocumentList:
    snap = state.require_pipeline().retriever.reader.snapshot()

    def visible() -> list[dict[str, Any]]:
        return [d for d in snap.documents() if caller.can_see(d["groups"])]

    docs = await anyio.to_thread.run_sync(visible)
    return DocumentList(count=len(docs), documents=[_doc_info(d, caller) for d in docs[offset : offset + limit]])


# --------------------------------------------------------------------------- the viewer

_VIEW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "The document as HTML, the cited passage marked"},
    **error_responses(401, 404, 429, 503),
}


async def _viewer_access(
    request: Request,
    state: State,
    doc_id: str,
    exp: str | None,
    g: str | None,
    sig: str | None,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
) -> tuple[Callable[[list[str]], bool], list[str] | None]:
    """Who may see what through a viewer or file link: a signed link (service/links.py)
    grants its groups, an API key its own; a request with both needs both. A link that was
    tampered with or expired is a 404, like a document that does not exist."""
    has_link = sig is not None or exp is not None or g is not None
    link_groups: list[str] | None = None  # the groups a link grants; None: all (or no link)
    if has_link:
        assert state.links is not None  # set by ServiceState
        verified = state.links.verify(doc_id, g or "", exp or "", sig or "")
        if isinstance(verified, bool):  # False: tampered or expired
            raise _not_found()
        link_groups = verified
    has_key = bearer is not None or bool(api_key) or "authorization" in request.headers
    caller: Caller | None = None
    if has_key or not has_link:
        caller = await get_caller(request, bearer, api_key)  # 401 without a key; rate limit
    else:
        client = request.client.host if request.client else "unknown"
        await anyio.to_thread.run_sync(enforce_rate_limit, state, f"link@{client}", f"links opened from {client}")

    def allowed(doc_groups: list[str]) -> bool:
        if caller is not None and not caller.can_see(doc_groups):
            return False
        return link_groups is None or not doc_groups or bool(set(doc_groups) & set(link_groups))

    # the groups that further links from this page (the original file) are signed with
    grant: list[str] | None
    if not has_link:
        grant = caller.access_groups() if caller is not None else []
    elif caller is None or caller.is_admin:
        grant = link_groups
    elif link_groups is None:
        grant = list(caller.groups)
    else:
        grant = sorted(set(caller.groups) & set(link_groups))
    return allowed, grant


def _original_file(doc: dict[str, Any]) -> Path | None:
    """The file the document was ingested from, if it is still there and unchanged."""
    path = (doc.get("metadata") or {}).get("path")
    if not path:
        return None
    p = Path(path)
    try:
        if not p.is_file():
            return None
        digest = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return p if digest.hexdigest() == doc.get("content_hash") else None


_HL = r"^\d{1,7}-\d{1,7}$"


@router.get(
    "/v1/documents/{doc_id:path}/view",
    response_class=HTMLResponse,
    summary="The document as HTML, opened at the cited passage (highlighted)",
    description="Opened with an API key, or without one through the signed, expiring ``url`` of a citation. "
    "``chunk`` marks a passage and ``hl`` (offsets in it) the sentence the answer rests on. A document the "
    "caller may not see, a tampered or an expired link: 404.",
    responses=_VIEW_RESPONSES,
)
async def view_document(
    doc_id: DocId,
    request: Request,
    state: State,
    chunk: Annotated[int | None, Query(ge=0, description="The cited chunk (a citation's chunk_id)")] = None,
    hl: Annotated[str | None, Query(pattern=_HL, description="start-end of the quote in the chunk")] = None,
    exp: Annotated[str | None, Query(max_length=20)] = None,
    g: Annotated[str | None, Query(max_length=4000)] = None,
    sig: Annotated[str | None, Query(max_length=128)] = None,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    api_key: str | None = Depends(_api_key_header),
) -> HTMLResponse:
    allowed, grant = await _viewer_access(request, state, doc_id, exp, g, sig, bearer, api_key)
    snap = state.require_pipeline().retriever.reader.snapshot()

    def load():
        doc = snap.document(doc_id)
        if doc is None or not allowed(doc["groups"]):
            return None
        sections = snap.sections_of(doc_id)
        cited = snap.chunk(chunk) if chunk is not None else None
        if cited is not None and cited.doc_id != doc_id:
            cited = None
        chunks = [] if sections else snap.chunks_of(doc_id)
        original = _original_file(doc) if (doc.get("metadata") or {}).get("format") == "pdf" else None
        return doc, sections, chunks, cited, original

    loaded = await anyio.to_thread.run_sync(load)
    if loaded is None:
        raise _not_found()
    doc, sections, chunks, cited, original = loaded
    span = (int(hl.split("-")[0]), int(hl.split("-")[1])) if hl else None
    file_url = None
    if original is not None:
        assert state.links is not None
        file_url = state.links.file_url(doc_id, grant, cited.page if cited is not None else None)
    page = viewer.document_page(doc, sections, chunks, cited, span, file_url)
    return HTMLResponse(viewer.render(page), headers=_viewer_headers(viewer.content_security_policy()))


def _viewer_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "Cache-Control": "private, no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Robots-Tag": "noindex, nofollow",
    }


@router.get(
    "/v1/documents/{doc_id:path}/file",
    response_class=Response,
    summary="The original file the document was indexed from (PDFs open inline, at #page=N)",
    responses={200: {"content": {"application/pdf": {}}}, **error_responses(401, 404, 429, 503)},
)
async def document_file(
    doc_id: DocId,
    request: Request,
    state: State,
    exp: Annotated[str | None, Query(max_length=20)] = None,
    g: Annotated[str | None, Query(max_length=4000)] = None,
    sig: Annotated[str | None, Query(max_length=128)] = None,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    api_key: str | None = Depends(_api_key_header),
) -> Response:
    allowed, _ = await _viewer_access(request, state, doc_id, exp, g, sig, bearer, api_key)
    snap = state.require_pipeline().retriever.reader.snapshot()

    def load():
        doc = snap.document(doc_id)
        if doc is None or not allowed(doc["groups"]):
            return None
        original = _original_file(doc)
        return (original, original.read_bytes(), doc) if original is not None else None

    loaded = await anyio.to_thread.run_sync(load)
    if loaded is None:
        raise ApiError(404, "not_found", "document not found, or its original file changed since it was indexed")
    path, data, doc = loaded
    fmt = (doc.get("metadata") or {}).get("format")
    media = _MEDIA_TYPES.get(fmt or "", "application/octet-stream")
    name = safe_filename(path.name) or "document"
    disposition = "inline" if fmt == "pdf" else "attachment"
    headers = {
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "private, no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(data, media_type=media, headers=headers)


_MEDIA_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "txt": "text/plain; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "json": "application/json",
}


@router.get(
    "/v1/documents/{doc_id:path}",
    response_model=DocumentDetail,
    summary="A document's metadata and chunks",
    responses=error_responses(401, 404, 429, 503),
)
async def get_document(doc_id: DocId, caller: Reader, state: State) -> DocumentDetail:
    snap = state.require_pipeline().retriever.reader.snapshot()

    def load():
        doc = snap.document(doc_id)
        if doc is None or not caller.can_see(doc["groups"]):
            return None, []
        chunks = snap.chunks_of(doc_id)
        return {**doc, "n_chunks": len(chunks)}, chunks

    doc, chunks = await anyio.to_thread.run_sync(load)
    if doc is None:
        raise _not_found()
    info = _doc_info(doc, caller)
    return DocumentDetail(
        **info.model_dump(),
        chunks=[
            ChunkInfo(
                chunk_id=c.chunk_id,
                position=c.position,
                section=c.section,
                heading_path=c.heading_path,
                page=c.page,
                text=c.text,
            )
            for c in chunks
        ],
    )


@router.post(
    "/v1/documents",
    response_model=IngestResult,
    status_code=201,
    summary="Upload a document and index it (admin)",
    responses=error_responses(401, 403, 409, 413, 422, 429, 503),
)
async def upload_document(
    caller: Admin,
    state: State,
    file: Annotated[UploadFile, File(description="A .txt, .md, .html, .pdf, .docx or FAQ .json file")],
    groups: Annotated[
        str | None, Form(description="Comma-separated access groups; empty = everyone", max_length=2000)
    ] = None,
) -> IngestResult:
    pipeline = state.require_pipeline()
    try:
        group_list = parse_groups(groups)
    except _KeyError as exc:
        invalid(("body", "groups"), str(exc))
    name = safe_filename(file.filename or "")
    async with state.document_lock():
        return await state.in_worker(ingest_upload, state.cfg, pipeline, file.file, name, group_list)


@router.delete(
    "/v1/documents/{doc_id:path}",
    response_model=Removed,
    summary="Remove a document from the index (admin)",
    responses=error_responses(401, 403, 404, 409, 429, 503),
)
async def delete_document(doc_id: DocId, caller: Admin, state: State) -> Removed:
    pipeline = state.require_pipeline()
    async with state.document_lock():
        removed = await state.in_worker(remove_document, state.cfg, pipeline, doc_id)
    if not removed:
        raise _not_found()
    return Removed(removed=doc_id)
