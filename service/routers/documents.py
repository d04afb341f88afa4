"""``GET/POST /v1/documents`` and ``GET/DELETE /v1/documents/{doc_id}``.

A reader sees the public documents and those sharing a group with its key — the same rule
as retrieval (``Caller.can_see``, ``rag.retrieve.Filters``); any other document is a 404,
exactly like one that does not exist. Admins see everything, with the groups.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi import Path as PathParam

from ..auth import Caller, parse_groups
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
