"""The rows a document is stored as, the same for every store (rag/index.py: SQLite;
rag/store/postgres.py: PostgreSQL): column order and JSON encoding written once."""

from __future__ import annotations

import json
import time
from typing import Any

from .types import Chunk, Document

DOCUMENT_COLUMNS = (
    "doc_id",
    "title",
    "source",
    "content_hash",
    "date",
    "doc_type",
    "year",
    "groups",
    "metadata",
    "ingested_at",
)
CHUNK_COLUMNS = ("doc_id", "position", "text", "heading_path", "page", "char_start", "char_end", "page_end")


def document_row(doc: Document, groups: Any, ingested_at: float | None = None) -> tuple[Any, ...]:
    """``DOCUMENT_COLUMNS`` of ``doc``; ``groups`` as the store keeps them (JSON text, an array);
    ``ingested_at`` now unless given (a migration keeps the original time)."""
    return (
        doc.doc_id,
        doc.title,
        doc.source,
        doc.content_hash,
        doc.date,
        doc.doc_type,
        doc.year,
        groups,
        json.dumps(doc.metadata, ensure_ascii=False, default=str),
        time.time() if ingested_at is None else ingested_at,
    )


def section_rows(doc: Document) -> list[tuple[Any, ...]]:
    """(doc_id, position, heading_path, page, text) of every section, in order."""
    return [
        (doc.doc_id, i, json.dumps(s.heading_path, ensure_ascii=False), s.page, s.text)
        for i, s in enumerate(doc.sections)
    ]


def chunk_row(doc_id: str, c: Chunk) -> tuple[Any, ...]:
    """``CHUNK_COLUMNS`` of chunk ``c``."""
    return (
        doc_id,
        c.position,
        c.text,
        json.dumps(c.heading_path, ensure_ascii=False),
        c.page,
        c.char_start,
        c.char_end,
        c.page_end,
    )
