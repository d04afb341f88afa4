"""The document viewer: a document as clean, accessible HTML with the cited passage marked.

``GET /v1/documents/{doc_id}/view?chunk=ID&hl=A-B`` (service/routers/documents.py) renders
the document's stored sections (rag/index.py: the text as ingested, the same normalised text
that chunk spans point into): headings from the heading paths, paragraphs, lists, tables
(lines of `` | ``-separated cells, the first row as column headings) and, for PDFs, a marker
at the start of every page (``id="page-N"``). The cited chunk is marked (``<mark>``, the
first one ``id="passage"``) and, where attribution knows it, the sentence the answer rests
on more strongly (``id="quote"``; ``hl`` = its offsets in the chunk). The links the service
hands out end in ``#quote``/``#passage``, so the browser opens the document there.

All text from documents goes through Jinja's autoescaping: a document that contains
``<script>`` or ``onerror=`` renders as inert text. The page carries no script at all and
its Content-Security-Policy allows none (only its own stylesheet, by hash).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2

from rag.cite import document_label
from rag.types import Chunk, Section

_BULLET = re.compile(r"^(?:[-*•·–▪◦‣])\s+")
_CELL = " | "


@dataclass
class Segment:
    """A run of text, marked when it lies in the cited passage (and more when in the quote)."""

    text: str
    mark: str = ""  # "" | "passage" | "quote"
    anchors: list[str] = field(default_factory=list)  # ids of empty anchors before it: passage, quote


@dataclass
class Block:
    kind: str  # heading | paragraph | list | table | page
    level: int = 0
    id: str = ""
    text: str = ""  # heading text, page label
    lines: list[list[Segment]] = field(default_factory=list)  # paragraph lines, list items
    rows: list[list[list[Segment]]] = field(default_factory=list)  # table rows of cells


@dataclass
class Highlight:
    """Absolute spans in the document's normalised text."""

    passage: tuple[int, int] | None = None
    quote: tuple[int, int] | None = None
    _ids: set[str] = field(default_factory=set)

    def segments(self, text: str, offset: int) -> list[Segment]:
        cuts = {0, len(text)}
        for span in (self.passage, self.quote):
            if span:
                cuts |= {min(max(p - offset, 0), len(text)) for p in span}
        points = sorted(cuts)
        out: list[Segment] = []
        for a, b in zip(points, points[1:], strict=False):
            if a == b:
                continue
            pos = offset + a
            mark = ""
            if self.quote and self.quote[0] <= pos < self.quote[1]:
                mark = "quote"
            elif self.passage and self.passage[0] <= pos < self.passage[1]:
                mark = "passage"
            anchors = []
            if mark and "passage" not in self._ids:
                anchors.append("passage")
            if mark == "quote" and "quote" not in self._ids:
                anchors.append("quote")
            self._ids.update(anchors)
            seg = Segment(text[a:b], mark, anchors)
            out.append(seg)
        return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "kop"


def _split(text: str, sep: str, offset: int) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    pos = 0
    for part in text.split(sep):
        out.append((part, offset + pos))
        pos += len(part) + len(sep)
    return out


def _paragraph_block(text: str, offset: int, hl: Highlight) -> Block:
    lines = _split(text, "\n", offset)
    if len(lines) >= 2 and all(_CELL in line for line, _ in lines):
        rows = [[hl.segments(cell, at) for cell, at in _split(line, _CELL, start)] for line, start in lines]
        return Block("table", rows=rows)
    if all(_BULLET.match(line) for line, _ in lines):
        items = []
        for line, start in lines:
            cut = _BULLET.match(line).end()  # type: ignore[union-attr]
            items.append(hl.segments(line[cut:], start + cut))
        return Block("list", lines=items)
    return Block("paragraph", lines=[hl.segments(line, start) for line, start in lines])


def build_blocks(sections: Sequence[Section], hl: Highlight) -> list[Block]:
    """Headings, page markers and text blocks of ``sections`` (joined by a blank line)."""
    blocks: list[Block] = []
    used_ids: set[str] = set()
    path: list[str] = []
    page: int | None = None
    offset = 0
    for sec in sections:
        if sec.page is not None and sec.page != page:
            blocks.append(Block("page", id=f"page-{sec.page}", text=f"Pagina {sec.page}", level=sec.page))
            page = sec.page
        same = 0
        while same < min(len(path), len(sec.heading_path)) and path[same] == sec.heading_path[same]:
            same += 1
        for depth in range(same, len(sec.heading_path)):
            title = sec.heading_path[depth]
            anchor = base = "h-" + _slug(title)
            n = 2
            while anchor in used_ids:
                anchor, n = f"{base}-{n}", n + 1
            used_ids.add(anchor)
            blocks.append(Block("heading", level=min(depth + 2, 6), id=anchor, text=title))
        path = list(sec.heading_path)
        for para, start in _split(sec.text, "\n\n", offset):
            if para.strip():
                blocks.append(_paragraph_block(para, start, hl))
        offset += len(sec.text) + 2
    return blocks


@dataclass
class ViewerPage:
    """Everything the viewer template shows."""

    title: str
    label: str | None
    source: str
    source_url: str | None
    date: str | None
    blocks: list[Block]
    passage_page: int | None = None
    passage_section: str = ""
    file_url: str | None = None
    file_kind: str | None = None
    cited: bool = False
    quoted: bool = False
    notice: str | None = None


def highlight_for(
    sections: Sequence[Section], chunks: Sequence[Chunk], chunk: Chunk | None, hl: tuple[int, int] | None
) -> tuple[list[Section], Highlight]:
    """The sections to render and the spans to mark; for a document indexed before sections
    were kept, its chunks stand in for them (the passage is then the whole chunk)."""
    if not sections:
        sections = [Section(text=c.text, heading_path=c.heading_path, page=c.page) for c in chunks]
        offset = 0
        spans: dict[int | None, tuple[int, int]] = {}
        for c in chunks:
            spans[c.chunk_id] = (offset, offset + len(c.text))
            offset += len(c.text) + 2
        passage = spans.get(chunk.chunk_id) if chunk is not None else None
    elif chunk is not None and chunk.char_start is not None and chunk.char_end is not None:
        passage = (chunk.char_start, chunk.char_end)
    else:
        passage = None
    quote = None
    if passage is not None and hl is not None:
        a, b = hl
        if 0 <= a < b <= passage[1] - passage[0]:
            quote = (passage[0] + a, passage[0] + b)
    return list(sections), Highlight(passage, quote)


def document_page(
    doc: dict[str, Any],
    sections: Sequence[Section],
    chunks: Sequence[Chunk],
    chunk: Chunk | None,
    hl: tuple[int, int] | None,
    file_url: str | None = None,
) -> ViewerPage:
    shown, highlight = highlight_for(sections, chunks, chunk, hl)
    source = str(doc.get("source") or "")
    fmt = str((doc.get("metadata") or {}).get("format") or "").upper() or None
    return ViewerPage(
        title=str(doc.get("title") or doc.get("doc_id")),
        label=document_label(doc.get("doc_type"), doc.get("year"), doc.get("date")),
        source=source,
        source_url=source if source.startswith(("https://", "http://")) else None,
        date=_dutch_date(doc.get("date")),
        blocks=build_blocks(shown, highlight),
        passage_page=chunk.page if chunk is not None else None,
        passage_section=chunk.section if chunk is not None else "",
        file_url=file_url,
        file_kind=fmt,
        cited=highlight.passage is not None,
        quoted=highlight.quote is not None,
        notice=None
        if sections
        else "Dit document is geïndexeerd voordat Vraagbaak de opmaak bewaarde; "
        "u ziet de passages zoals ze zijn opgeslagen.",
    )


_MONTHS = "januari februari maart april mei juni juli augustus september oktober november december".split()


def _dutch_date(value: Any) -> str | None:
    if not value:
        return None
    try:
        d = datetime.strptime(str(value)[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return str(value)
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("service.viewer", "."),
        autoescape=True,  # every {{ }} is escaped: document text cannot become markup
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


@lru_cache(maxsize=1)
def stylesheet() -> str:
    return resources.files("service.viewer").joinpath("viewer.css").read_text(encoding="utf-8")


def content_security_policy() -> str:
    digest = base64.b64encode(hashlib.sha256(stylesheet().encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; script-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    )


def render(page: ViewerPage) -> str:
    return _environment().get_template("viewer.html").render(page=page, css=stylesheet())
