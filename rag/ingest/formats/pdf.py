"""PDF (pypdf): text per page, title from the metadata when it is a real one."""

from __future__ import annotations

import io
import re

from rag.ingest.common import MAX_TITLE_CHARS, Parsed, clean_line, first_line, normalise_text, strip_build_footer
from rag.ingest.errors import IngestError
from rag.ingest.formats.txt import unwrap
from rag.types import Section

_PDF_TITLE_JUNK = re.compile(r"^(?:untitled|naamloos|document\d*)$|\.(?:docx?|pdf|odt|rtf)$", re.IGNORECASE)


def parse_pdf(data: bytes) -> Parsed:
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

    sections: list[Section] = []
    found_date: str | None = None
    try:
        pages = list(reader.pages)
    except Exception as exc:
        raise IngestError(f"corrupt PDF: cannot read the page tree ({exc})") from exc
    for number, page in enumerate(pages, start=1):
        try:
            raw = page.extract_text() or ""
        except Exception as exc:
            raise IngestError(f"corrupt PDF: text extraction failed on page {number} ({exc})") from exc
        raw, page_date = strip_build_footer(raw)
        found_date = page_date or found_date
        text = "\n".join(unwrap(normalise_text(raw).split("\n")))
        if text.strip():
            sections.append(Section(text=text, page=number))
    if not sections:
        raise IngestError("no extractable text in PDF (scanned images only?)")

    title = _pdf_title(reader) or first_line(sections[0].text)
    return Parsed(sections=sections, title=title, date=found_date, metadata={"pages": len(pages)})


def _pdf_title(reader) -> str | None:
    try:
        raw = reader.metadata.title if reader.metadata else None
    except Exception:
        return None
    title = clean_line(str(raw or "")).removeprefix("Microsoft Word - ")
    if not title or _PDF_TITLE_JUNK.search(title) or len(title) > MAX_TITLE_CHARS:
        return None
    return title
