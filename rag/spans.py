"""Where each chunk stands in its document: character spans and pages, kept at ingest.

A document's *normalised text* is ``Document.text``: its sections' texts joined by one blank
line (``"\\n\\n"``), exactly what the document viewer renders (service/viewer.py). Every chunk
gets ``char_start``/``char_end`` (a half-open span in that text) and, for paged formats,
``page``/``page_end`` (the pages its first and last character stand on), so a citation can
open the source at the exact place.

Chunk texts are cut from the section texts (rag/chunking.py), so a chunk is found verbatim,
searching forward from the previous chunk's start (chunks overlap). Where the chunker joined
pieces with other whitespace than the source had, the words are matched with any whitespace
between them; a chunk that starts with a repeated table heading row is located by the rest
of its lines. A chunk that cannot be located keeps ``None`` spans (the viewer then marks
the passage by its text alone); nothing here ever fails an ingest.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .types import Chunk, Document

SECTION_JOINER = "\n\n"


@dataclass(frozen=True)
class SectionSpan:
    """A section's place in the normalised text."""

    start: int
    end: int
    page: int | None


def section_spans(doc: Document) -> list[SectionSpan]:
    """The span of every section in ``doc.text`` (sections joined by a blank line)."""
    spans: list[SectionSpan] = []
    offset = 0
    for section in doc.sections:
        spans.append(SectionSpan(offset, offset + len(section.text), section.page))
        offset += len(section.text) + len(SECTION_JOINER)
    return spans


def _pattern(text: str) -> re.Pattern[str] | None:
    words = text.split()
    if not words:
        return None
    return re.compile(r"\s+".join(re.escape(w) for w in words))


def find_span(text: str, needle: str, start: int = 0) -> tuple[int, int] | None:
    """The first place of ``needle`` in ``text`` at or after ``start``: verbatim, else with any
    whitespace between its words. None when it is not there."""
    if not needle.strip():
        return None
    at = text.find(needle, start)
    if at >= 0:
        return at, at + len(needle)
    pattern = _pattern(needle)
    if pattern is not None and (m := pattern.search(text, start)):
        return m.start(), m.end()
    return None


def _locate(text: str, chunk_text: str, start: int) -> tuple[int, int] | None:
    found = find_span(text, chunk_text, start)
    if found is None and "\n" in chunk_text:
        # a table chunk that repeats the heading row: located by its own rows
        found = find_span(text, chunk_text.split("\n", 1)[1], start)
    if found is None and start > 0:
        found = _locate(text, chunk_text, 0)
    return found


def locate_chunks(doc: Document, chunks: Sequence[Chunk]) -> None:
    """Set ``char_start``, ``char_end``, ``page`` and ``page_end`` of ``chunks`` (in document
    order, as rag/chunking.py gives them) in place."""
    text = doc.text
    spans = section_spans(doc)
    starts = [s.start for s in spans]
    cursor = 0
    for chunk in chunks:
        found = _locate(text, chunk.text, cursor)
        if found is None:
            chunk.char_start = chunk.char_end = None
            chunk.page_end = chunk.page
            continue
        chunk.char_start, chunk.char_end = found
        cursor = found[0] + 1
        first = spans[max(0, bisect.bisect_right(starts, found[0]) - 1)]
        last = spans[max(0, bisect.bisect_right(starts, max(found[0], found[1] - 1)) - 1)]
        if first.page is not None:
            chunk.page = first.page
        chunk.page_end = last.page if last.page is not None else chunk.page


def page_of(doc: Document, offset: int) -> int | None:
    """The page the character at ``offset`` of ``doc.text`` stands on (None: no pages)."""
    spans = section_spans(doc)
    if not spans:
        return None
    i = max(0, bisect.bisect_right([s.start for s in spans], offset) - 1)
    return spans[i].page
