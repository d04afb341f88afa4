"""Rijksoverheid "vraag en antwoord" pages as JSON."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from rag.ingest.common import Parsed, clean_line, decode_text, parse_dutch_date, slugify
from rag.ingest.errors import IngestError
from rag.ingest.formats.html import html_fragment_sections
from rag.types import Section

FAQ_ID_PREFIX = "rijksoverheid/"


def parse_faq_json(data: bytes, *, include_question: bool = True) -> Parsed:
    try:
        obj = json.loads(decode_text(data))
    except json.JSONDecodeError as exc:
        raise IngestError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    if not _is_faq_page(obj):
        raise IngestError(
            "unsupported JSON: expected a Rijksoverheid FAQ page with 'question', 'canonical' "
            "and 'introduction' or 'content'"
        )
    question = clean_line(obj["question"])
    canonical = obj["canonical"].strip()

    sections = html_fragment_sections(obj.get("introduction") or "")
    if include_question and question:
        if sections and not sections[0].heading_path:
            sections[0].text = f"{question}\n\n{sections[0].text}"
        else:
            sections.insert(0, Section(text=question))
    for item in obj.get("content") or []:
        if not isinstance(item, dict):
            continue
        heading = clean_line(str(item.get("paragraphtitle") or ""))
        sections += html_fragment_sections(str(item.get("paragraph") or ""), [heading] if heading else [])

    slug = slugify(canonical.rstrip("/").rsplit("/", 1)[-1]) or slugify(str(obj.get("id") or ""))
    metadata = {
        key: obj[key]
        for key in ("subjects", "license", "themes", "authorities", "lastmodified", "language")
        if obj.get(key)
    }
    if obj.get("id"):
        metadata["faq_id"] = obj["id"]
    return Parsed(
        sections=sections,
        title=question or None,
        date=_iso_timestamp_date(str(obj.get("lastmodified") or "")),
        doc_type="faq",
        metadata=metadata,
        doc_id=FAQ_ID_PREFIX + (slug or hashlib.sha1(canonical.encode()).hexdigest()[:12]),
        source=canonical,
        year_from_name=False,
    )


def _is_faq_page(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("question"), str)
        and isinstance(obj.get("canonical"), str)
        and bool(obj["canonical"].strip())
        and (isinstance(obj.get("introduction"), str) or isinstance(obj.get("content"), list))
    )


def _iso_timestamp_date(value: str) -> str | None:
    """``2024-04-04T08:49:13.941Z`` -> ``2024-04-04`` (the date as written, UTC)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        return parse_dutch_date(value)
