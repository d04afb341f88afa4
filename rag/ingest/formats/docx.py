"""DOCX (python-docx): paragraphs, heading styles, tables."""

from __future__ import annotations

import io
import re

from rag.ingest.common import Parsed, clean_line, first_line, normalise_text
from rag.ingest.errors import IngestError
from rag.ingest.limits import ParseLimits, check_zip_package
from rag.types import Section

_DOCX_HEADING = re.compile(r"^(?:heading|kop)\s*([1-9])$", re.IGNORECASE)
_DOCX_TITLE = re.compile(r"^(?:title|titel)$", re.IGNORECASE)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def parse_docx(data: bytes, *, limits: ParseLimits | None = None) -> Parsed:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    if data.startswith(_OLE_MAGIC):
        raise IngestError("not a DOCX package: encrypted (password protected) or an old .doc file")
    check_zip_package(data, limits or ParseLimits())  # from the central directory, nothing inflated
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise IngestError(f"corrupt DOCX: {exc or type(exc).__name__}") from exc

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    blocks: list[str] = []
    first_heading: str | None = None
    title_para: str | None = None

    def flush() -> None:
        if blocks:
            sections.append(Section(text="\n\n".join(blocks), heading_path=[h for _, h in stack]))
            blocks.clear()

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = _docx_table_rows(item)
            if rows:
                blocks.append("\n".join(rows))
            continue
        if not isinstance(item, Paragraph):
            continue
        text = normalise_text(item.text).replace("\n\n", "\n")
        if not text:
            continue
        level = _docx_heading_level(item)
        if level is None:
            style = _style_name(item).lower()
            blocks.append(f"- {text}" if style.startswith(("list", "lijst")) else text)
            continue
        flush()
        heading = " ".join(text.split())
        if level == 0:
            title_para = title_para or heading
        first_heading = first_heading or heading
        stack = [(lv, h) for lv, h in stack if lv < level] + [(level, heading)]
    flush()

    core_title = clean_line(document.core_properties.title or "")
    title = core_title or title_para or first_heading or first_line("\n".join(s.text for s in sections))
    return Parsed(sections=sections, title=title)


def _style_name(paragraph) -> str:
    try:
        style = paragraph.style
    except Exception:
        return ""
    return (style.name or "") if style is not None else ""


def _docx_heading_level(paragraph) -> int | None:
    """1-9 for "Heading N"/"Kop N" (name or style id), 0 for "Title"/"Titel", else None."""
    try:
        style = paragraph.style
    except Exception:
        return None
    if style is None:
        return None
    for name in (style.name or "", style.style_id or ""):
        if m := _DOCX_HEADING.match(name.strip()):
            return int(m[1])
        if _DOCX_TITLE.match(name.strip()):
            return 0
    return None


def _docx_table_rows(table) -> list[str]:
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if text and (not cells or cells[-1] != text):  # merged cells repeat
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return rows
