"""Plain text (council website exports, letters): unwrapping, letter heads, page markers, headings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rag.ingest.common import Parsed, decode_text, first_line, normalise_text, parse_dutch_date, strip_build_footer
from rag.types import Section

_LEVEL1 = re.compile(r"^(?:deelprogramma|programma|hoofdstuk)\s+\d+(?:\.\d+)*\b", re.IGNORECASE)
_BULLET = re.compile(r"^(?:[-*•·–—▪◦‣]|[a-z]\)|\(\w{1,3}\))\s*")
_PAGE_MARKER = re.compile(
    r"^(?:volgvel|vervolgvel|pagina|page|blad|bladzijde)\s*\d+(?:\s*(?:van|of|/)\s*\d+)?$", re.IGNORECASE
)
_SALUTATION = re.compile(r"^(?:geachte|hooggeachte|zeer geachte|beste|waarde)\b", re.IGNORECASE)
_VALEDICTION = re.compile(
    r"^(?:met )?(?:(?:een )?(?:vriendelijke|hartelijke) groet(?:en)?|hoogachtend)\b", re.IGNORECASE
)
_SENTENCE_END = ".!?…:;"
_NO_HEADING_END = ".,;:!…"
_MAX_HEADING_CHARS = 100
_MAX_HEADING_WORDS = 15
_MAX_DEPTH = 4
_LETTERHEAD_MAX_LINES = 60
_MIN_WRAP_WIDTH = 40  # below this, lines are too short to tell wrapping from structure


def parse_txt(data: bytes) -> Parsed:
    text, found_date = strip_build_footer(decode_text(data))
    lines = normalise_text(text, tab=" | ").split("\n")
    lines = _remove_page_markers(lines)
    if _looks_hard_wrapped(lines):
        lines = unwrap(lines)

    head, body = _split_letterhead(lines)
    sections: list[Section] = []
    title: str | None = None
    metadata: dict[str, Any] = {}
    if head:
        fields = _letterhead_fields(head)
        title = fields.get("subject")
        found_date = found_date or fields.get("date")
        if fields.get("reference"):
            metadata["reference"] = fields["reference"]
        sections.append(Section("\n".join(head).strip()))
    sections += _txt_sections(body)
    if title is None:
        title = first_line("\n".join(lines))
    return Parsed(sections=sections, title=title, date=found_date, metadata=metadata)


def _ends_sentence(line: str) -> bool:
    return line.rstrip("\"'’”)]").endswith(tuple(_SENTENCE_END))


def _remove_page_markers(lines: list[str]) -> list[str]:
    """Drop page-marker lines; rejoin a sentence that a page break split in two."""
    out: list[str] = []
    after_marker = False
    for line in lines:
        if _PAGE_MARKER.match(line):
            while out and not out[-1]:
                out.pop()
            after_marker = True
            continue
        if after_marker:
            if not line:
                continue
            after_marker = False
            prev = out[-1] if out else ""
            if prev and not _ends_sentence(prev) and line[0].islower():
                out[-1] = f"{prev} {line}"
                continue
            if out and not (_BULLET.match(prev) and _BULLET.match(line)):
                out.append("")
        out.append(line)
    return out


def _looks_hard_wrapped(lines: list[str]) -> bool:
    """True when most lines inside paragraphs end near one width (<= 100 chars)."""
    nonblank = [line for line in lines if line]
    if not nonblank:
        return False
    width = max(len(line) for line in nonblank)
    inner = [a for a, b in zip(lines, lines[1:], strict=False) if a and b]
    if width > 100 or len(inner) < 8:
        return False
    near = sum(1 for line in inner if len(line) >= 0.75 * width)
    return near >= 0.6 * len(inner)


def unwrap(lines: list[str], width: int | None = None) -> list[str]:
    """Join visually wrapped lines (long lines continue on the next one); dehyphenate.

    A line of at least 60% of the widest line (or of ``width`` when given, e.g. the
    widest line of the whole page when only a part of it is unwrapped) is taken to be
    wrapped and continues on the next line, unless that one is blank or a list item.
    """
    if width is None:
        width = max((len(line) for line in lines if line), default=0)
    if width < _MIN_WRAP_WIDTH:
        return lines
    limit = 0.6 * width
    out: list[str] = []
    joinable = False
    for line in lines:
        if joinable and line and not _BULLET.match(line):
            prev = out[-1]
            if prev.endswith("-") and len(prev) > 1 and prev[-2].isalpha() and line[0].islower():
                out[-1] = prev[:-1] + line
            else:
                out[-1] = f"{prev} {line}"
        else:
            out.append(line)
        joinable = bool(line) and len(line) >= limit
    return out


def _split_letterhead(lines: list[str]) -> tuple[list[str], list[str]]:
    """Split a letter into (letter head, body) at the salutation; ([], lines) otherwise."""
    for i, line in enumerate(lines[:_LETTERHEAD_MAX_LINES]):
        if line and len(line) <= 80 and _SALUTATION.match(line):
            head = lines[:i]
            return (head, lines[i:]) if any(head) else ([], lines)
    return [], lines


_LABEL = r"[ \t]*(?::|\|)?[ \t]*"
_SUBJECT = re.compile(r"^(?:onderwerp|betreft|subject)\b" + _LABEL + r"(.+)$", re.IGNORECASE)
_DATE_LABEL = re.compile(r"^(?:datum|date)\b" + _LABEL + r"(.+)$", re.IGNORECASE)
_REFERENCE = re.compile(r"\bons kenmerk" + _LABEL + r"([^|]+)", re.IGNORECASE)
_PLACE_DATE = re.compile(r"^[A-Z][\w .'-]{1,40},\s*\d{1,2}\s+[a-z]+\.?\s+\d{4}$")


def _letterhead_fields(head: list[str]) -> dict[str, str]:
    """Subject, date and own reference from letter-head lines ("Onderwerp", "Datum")."""
    fields: dict[str, str] = {}
    for line in head:
        first_cell = line.split(" | ")
        if (m := _SUBJECT.match(line)) and "subject" not in fields:
            fields["subject"] = m[1].split(" | ")[0].strip()
        elif (m := _DATE_LABEL.match(line)) and "date" not in fields:
            if found := parse_dutch_date(m[1].split(" | ")[0]):
                fields["date"] = found
        elif _PLACE_DATE.match(first_cell[0]) and "date" not in fields:
            if found := parse_dutch_date(first_cell[0]):
                fields["date"] = found
        if (m := _REFERENCE.search(line)) and "reference" not in fields:
            value = m[1].strip()
            if value and value != "-":
                fields["reference"] = value
    return fields


def _is_txt_heading(lines: list[str], i: int) -> bool:
    line = lines[i]
    if i > 0 and lines[i - 1]:
        return False  # a heading starts a block
    if len(line) > _MAX_HEADING_CHARS or len(line.split()) > _MAX_HEADING_WORDS:
        return False
    if line.endswith(tuple(_NO_HEADING_END)) or " | " in line or _BULLET.match(line):
        return False
    if not (line[0].isupper() or line[0].isdigit()):
        return False
    letters = sum(ch.isalpha() for ch in line)
    return letters >= 2 and letters >= 0.5 * sum(not ch.isspace() for ch in line)


@dataclass
class HeadingState:
    """Where heading detection stands; carried from page to page by the PDF parser."""

    path: list[str] = field(default_factory=list)
    after_heading: bool = False
    closing: bool = False  # after a letter's closing: no more headings


def _txt_sections(lines: list[str]) -> list[Section]:
    """Split plain-text lines into sections by detected headings (module docstring)."""
    return sections_from_lines(lines, HeadingState())


def sections_from_lines(
    lines: list[str], state: HeadingState, page: int | None = None, *, continues_block: bool = False
) -> list[Section]:
    """Sections of ``lines`` by the plain-text heading rules, continuing from ``state``.

    ``state`` is updated in place, so that the next call (the next page) goes on under
    the same heading path; every section gets ``page``. ``continues_block``: the first
    line goes on with the text before it (a paragraph split by a page break), so it
    cannot be a heading.
    """
    sections: list[Section] = []
    body: list[str] = []

    def flush() -> None:
        text = "\n".join(body).strip()
        if text:
            sections.append(Section(text=text, heading_path=list(state.path), page=page))
        body.clear()

    for i, line in enumerate(lines):
        if not line:
            body.append("")
            continue
        if state.closing or (continues_block and i == 0) or not _is_txt_heading(lines, i):
            state.closing = state.closing or bool(_VALEDICTION.match(line))
            body.append(line)
            state.after_heading = False
            continue
        path = state.path
        if state.after_heading and path and path[-1] == line:
            continue  # the same heading repeated
        flush()
        if _LEVEL1.match(line):
            path = [line]
        elif state.after_heading and len(path) < _MAX_DEPTH:
            path = [*path, line]
        elif path and not (len(path) == 1 and _LEVEL1.match(path[0])):
            path = [*path[:-1], line]
        else:
            path = [*path, line]
        state.path = path
        state.after_heading = True
    flush()
    return sections
