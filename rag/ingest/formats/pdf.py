"""PDF (pypdf): text per page, running headers/footers removed, headings, tables as " | " rows.

Each page is read twice: ``extract_text()`` (plain) gives the text, ``extract_text(
extraction_mode="layout")`` gives the geometry: its blank lines (vertical gaps) mark where
a block starts, and runs of lines with aligned columns are tables. The two are lined up
line by line (difflib on whitespace-normalised lines); when the layout extraction fails
the plain text is used alone.

* Running headers and footers: a line among the first or last 2 lines of a page whose
  digit-normalised form (``Pagina 3 van 7`` -> ``Pagina 0 van 0``) is found there on at
  least half of the pages, and on at least 2 pages, is dropped.
* Tables: in the layout text, a run of non-blank lines whose text pieces (separated by 2+
  spaces) all start at the column positions of its first line (at least 2 columns, each
  piece fitting in its column, at least 2 lines with 2+ pieces; a bullet glyph is no
  column). A line that fills only some of the columns of the row above continues that
  row's cells (wrapped cell text); any other line starts a row. Each row becomes one
  line ``cell | cell | ...`` (the heading row first, as the DOCX parser writes tables),
  replacing the plain text of the table, as a block of its own.
* Prose: wrapped lines are joined (:func:`rag.ingest.formats.txt.unwrap`, page width),
  bullet glyphs become ``- ``; the title at the top of page 1 (also wrapped) is dropped, as
  the plain-text parser drops a leading heading equal to the title.
* Letters: on page 1 the letter head (lines before "Geachte ...") is a section of its
  own; its ``Datum`` gives the date (as for plain text).
* Headings: a heading wrapped onto a short next line (starting lowercase or with a digit,
  at most 5 words, no sentence end) is joined first. Then the plain-text rules (:func:`rag.ingest.formats.txt.sections_from_lines`),
  with the heading path carried from page to page; every section has its page and
  never spans two pages (a paragraph split by a page break stays split; its second part
  cannot be a heading). The first line of a page only starts a block (can be a heading)
  when the layout text shows a gap above it, so a title line at the very top of a page
  (right under a dropped running header) is body text.
"""

from __future__ import annotations

import difflib
import io
import re
from dataclasses import dataclass
from typing import Any

from rag.ingest.common import MAX_TITLE_CHARS, Parsed, clean_line, first_line, normalise_text, strip_build_footer
from rag.ingest.errors import IngestError
from rag.ingest.formats.txt import (
    HeadingState,
    _ends_sentence,
    _is_txt_heading,
    _letterhead_fields,
    _split_letterhead,
    sections_from_lines,
    unwrap,
)
from rag.ingest.limits import ParseLimits, check_page_count
from rag.types import Section

_PDF_TITLE_JUNK = re.compile(r"^(?:untitled|naamloos|document\d*)$|\.(?:docx?|pdf|odt|rtf)$", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_BULLET_GLYPH = re.compile(r"^[\uf0b7\uf0a7\uf076\uf0d8\u2022\u25aa\u25cf\u25e6\u2023\u2043]\s*")
_COLUMN_GAP = re.compile(r"\S+(?: \S+)*")  # a piece of text: words separated by single spaces
_EDGE_LINES = 2
_COLUMN_SLACK = 1
_WRAPPED_HEADING_WORDS = 5
_MAX_HEADING_CHARS = 100


def parse_pdf(data: bytes, *, limits: ParseLimits | None = None) -> Parsed:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    if b"%PDF-" not in data[:1024]:
        raise IngestError("corrupt PDF: no PDF header")
    try:
        reader = PdfReader(io.BytesIO(data))
    except Exception as exc:
        raise IngestError(f"corrupt PDF: {exc}") from exc
    if reader.is_encrypted:
        try:
            opened = bool(reader.decrypt(""))  # PasswordType.NOT_DECRYPTED is 0
        except DependencyError as exc:
            raise IngestError(f"encrypted PDF: cannot decrypt ({exc})") from exc
        except Exception:
            opened = False
        if not opened:
            raise IngestError("encrypted PDF (password protected): cannot extract text")

    found_date: str | None = None
    limits = limits or ParseLimits()
    try:
        check_page_count(len(reader.pages), limits)  # the page tree, before any text is extracted
        pages = list(reader.pages)
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(f"corrupt PDF: cannot read the page tree ({exc})") from exc
    texts: list[_PageText] = []
    for number, page in enumerate(pages, start=1):
        try:
            raw = page.extract_text() or ""
        except Exception as exc:
            raise IngestError(f"corrupt PDF: text extraction failed on page {number} ({exc})") from exc
        try:
            layout: str | None = page.extract_text(extraction_mode="layout") or ""
        except Exception:  # layout mode is optional: plain text alone still works
            layout = None
        raw, page_date = strip_build_footer(raw)
        found_date = page_date or found_date
        if layout is not None:
            layout = strip_build_footer(layout)[0]
        plain = [line for line in normalise_text(raw).split("\n") if line]
        texts.append(_PageText(plain, layout.split("\n") if layout is not None else None))
    _drop_running_lines(texts)

    meta_title = _pdf_title(reader)
    sections: list[Section] = []
    metadata: dict[str, Any] = {"pages": len(pages)}
    state = HeadingState()
    previous_last = ""
    first_text = ""
    for number, page_text in enumerate(texts, start=1):
        lines, starts_block = _page_lines(page_text)
        first_text = first_text or next((line for line in lines if line), "")
        if number == 1 and meta_title:
            lines = _drop_title(lines, meta_title)
        if number == 1:
            head, lines = _split_letterhead(lines)
            if head:
                fields = _letterhead_fields(head)
                found_date = found_date or fields.get("date")
                if fields.get("reference"):
                    metadata["reference"] = fields["reference"]
                sections.append(Section("\n".join(head).strip(), page=number))
        lines = _join_wrapped_headings(lines)
        if not lines:
            continue
        split_sentence = bool(previous_last) and not _ends_sentence(previous_last) and not state.after_heading
        continues = split_sentence or not starts_block
        sections += sections_from_lines(lines, state, page=number, continues_block=continues)
        previous_last = lines[-1]
    if not sections:
        raise IngestError("no extractable text in PDF (scanned images only?)")

    title = meta_title or first_line(first_text) or first_line(sections[0].text)
    return Parsed(sections=sections, title=title, date=found_date, metadata=metadata)


@dataclass
class _PageText:
    plain: list[str]  # normalised, non-blank lines
    layout: list[str] | None  # raw layout lines (blank lines kept), None when unavailable


def _norm(line: str) -> str:
    return " ".join(clean_line(line).split())


def _edge_key(line: str) -> str:
    return _DIGITS.sub("0", _norm(line)).casefold()


def _edge_indices(lines: list[str]) -> list[int]:
    """Indices of the first and last ``_EDGE_LINES`` non-blank lines."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return sorted(set(filled[:_EDGE_LINES] + filled[-_EDGE_LINES:]))


def _drop_running_lines(texts: list[_PageText]) -> None:
    """Remove running headers/footers (see the module docstring) from plain and layout lines."""
    counts: dict[str, int] = {}
    for page in texts:
        for key in {_edge_key(page.plain[i]) for i in _edge_indices(page.plain)}:
            counts[key] = counts.get(key, 0) + 1
    needed = max(2, (len(texts) + 1) // 2)
    running = {key for key, n in counts.items() if n >= needed and key}
    if not running:
        return
    for page in texts:
        drop = {i for i in _edge_indices(page.plain) if _edge_key(page.plain[i]) in running}
        page.plain = [line for i, line in enumerate(page.plain) if i not in drop]
        if page.layout is not None:
            drop = {i for i in _edge_indices(page.layout) if _edge_key(page.layout[i]) in running}
            page.layout = [line for i, line in enumerate(page.layout) if i not in drop]


# --- one page: plain text + layout geometry -----------------------------------------------


def _page_lines(page: _PageText) -> tuple[list[str], bool]:
    """The page's lines (prose unwrapped, blank lines where a block starts, tables as rows).

    The flag: the first line starts a block (the layout shows a gap above it; always
    True without layout text).
    """
    plain = [_BULLET_GLYPH.sub("- ", line) for line in page.plain]
    if not plain:
        return [], False
    width = max(len(line) for line in plain)
    if page.layout is None:
        return unwrap(plain, width), True

    layout = page.layout
    layout_idx = [j for j, line in enumerate(layout) if line.strip()]
    matcher = difflib.SequenceMatcher(
        None, [_norm(line) for line in page.plain], [_norm(layout[j]) for j in layout_idx], autojunk=False
    )
    to_plain: dict[int, int] = {}  # layout line index -> plain line index, for identical lines
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            to_plain[layout_idx[block.b + k]] = block.a + k

    # plain line index -> table rows replacing plain lines [start, end)
    tables: dict[int, tuple[int, list[str]]] = {}
    for start, end, rows in _layout_tables(layout):
        before = [p for j, p in to_plain.items() if j < start]
        after = [p for j, p in to_plain.items() if j >= end]
        p_start = max(before) + 1 if before else 0
        p_end = min(after) if after else len(plain)
        if p_start <= p_end and not any(p_start <= s < p_end or s <= p_start < e for s, (e, _) in tables.items()):
            tables[p_start] = (p_end, rows)

    block_start = set()
    for j, p in to_plain.items():
        if j > 0 and not layout[j - 1].strip():
            block_start.add(p)

    out: list[str] = []
    prose: list[str] = []

    def flush_prose() -> None:
        out.extend(unwrap(prose, width))
        prose.clear()

    inserted: set[int] = set()
    i = 0
    while i <= len(plain):
        if i in tables and i not in inserted:
            end, rows = tables[i]
            flush_prose()
            out.extend(["", *rows, ""])
            inserted.add(i)
            i = max(end, i)
            continue
        if i == len(plain):
            break
        if i in block_start and (prose or out):
            prose.append("")
        prose.append(plain[i])
        i += 1
    flush_prose()
    return _tidy_blank_lines(out), 0 in block_start or 0 in tables


def _tidy_blank_lines(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def _join_wrapped_headings(lines: list[str]) -> list[str]:
    """Join a heading and the short line it wrapped onto (lowercase/digit start, <= 5 words)."""
    out = list(lines)
    i = 0
    while i + 1 < len(out):
        nxt = out[i + 1]
        if (
            out[i]
            and nxt
            and not nxt[0].isupper()
            and len(nxt.split()) <= _WRAPPED_HEADING_WORDS
            and not _ends_sentence(nxt)
            and not nxt.startswith("- ")
            and len(out[i]) + 1 + len(nxt) <= _MAX_HEADING_CHARS
            and _is_txt_heading(out, i)
        ):
            out[i : i + 2] = [f"{out[i]} {nxt}"]
        i += 1
    return out


def _drop_title(lines: list[str], title: str) -> list[str]:
    """Drop the title (also when wrapped over up to 3 lines) from the top of page 1."""
    wanted = _norm(title)
    for k in (1, 2, 3):
        head = lines[:k]
        if len(head) == k and all(head) and _norm(" ".join(head)) == wanted:
            return lines[k:]
    return lines


# --- tables from the layout text -----------------------------------------------------------


def _pieces(line: str) -> list[tuple[int, str]]:
    """(start column, text) of the pieces of a layout line, split at runs of 2+ spaces."""
    return [(m.start(), m.group()) for m in _COLUMN_GAP.finditer(line)]


def _column_of(start: int, columns: list[int]) -> int | None:
    for c, col in enumerate(columns):
        if abs(start - col) <= _COLUMN_SLACK:
            return c
    return None


def _fits(pieces: list[tuple[int, str]], columns: list[int]) -> list[int] | None:
    """Column numbers of ``pieces`` when each starts at a column and fits before the next."""
    found: list[int] = []
    for start, text in pieces:
        c = _column_of(start, columns)
        if c is None or (found and c <= found[-1]):
            return None
        if c + 1 < len(columns) and start + len(text) >= columns[c + 1]:
            return None
        found.append(c)
    return found


def _is_table_start(pieces: list[tuple[int, str]]) -> bool:
    if len(pieces) < 2:
        return False
    first = pieces[0][1]
    return not (len(first) == 1 and not first.isalnum())  # "•  text" is a list item, not a table


def _layout_tables(layout: list[str]) -> list[tuple[int, int, list[str]]]:
    """Tables in the layout lines: (first line, end line, rows as "a | b | c")."""
    tables: list[tuple[int, int, list[str]]] = []
    j = 0
    while j < len(layout):
        head = _pieces(layout[j])
        if not _is_table_start(head):
            j += 1
            continue
        columns = [start for start, _ in head]
        rows: list[list[list[str]]] = []
        row_columns: set[int] = set()
        multi = 0
        end = j
        while end < len(layout) and layout[end].strip():
            pieces = _pieces(layout[end])
            found = _fits(pieces, columns)
            if found is None:
                break
            occupied = set(found)
            if not rows or not occupied < row_columns:
                rows.append([[] for _ in columns])
                row_columns = occupied
            for c, (_, text) in zip(found, pieces, strict=True):
                rows[-1][c].append(text)
            multi += len(pieces) >= 2
            end += 1
        if multi >= 2 and len(rows) >= 2:
            tables.append((j, end, [_row_text(row) for row in rows]))
            j = end
        else:
            j += 1
    return tables


def _row_text(row: list[list[str]]) -> str:
    cells: list[str] = []
    for parts in row:
        text = _norm(" ".join(parts))
        if text and (not cells or cells[-1] != text):
            cells.append(text)
    return " | ".join(cells)


def _pdf_title(reader) -> str | None:
    try:
        raw = reader.metadata.title if reader.metadata else None
    except Exception:
        return None
    title = clean_line(str(raw or "")).removeprefix("Microsoft Word - ")
    if not title or _PDF_TITLE_JUNK.search(title) or len(title) > MAX_TITLE_CHARS:
        return None
    return title
