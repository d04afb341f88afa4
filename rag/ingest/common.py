"""What every format parser shares: the parse result, decoding, whitespace, slugs, Dutch dates, document types."""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rag.ingest.errors import IngestError
from rag.types import Section

MAX_TITLE_CHARS = 120


@dataclass
class Parsed:
    """What a format parser found; turned into a Document by ``parse_file``."""

    sections: list[Section]
    title: str | None = None
    date: str | None = None
    doc_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # identity, set for formats that carry their own (FAQ JSON)
    doc_id: str | None = None
    source: str | None = None
    year_from_name: bool = True


_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None)
_SPACE_RUN = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_TAB_RUN = re.compile(r"[ \u00a0]*\t[\t \u00a0]*")


def clean_line(line: str, tab: str = " ") -> str:
    """Strip invisible characters (soft hyphens, zero-width, BOM) and collapse spaces."""
    line = line.translate(_INVISIBLE).strip()
    if tab != " ":
        line = _TAB_RUN.sub(tab, line)
    return _SPACE_RUN.sub(" ", line).strip()


def normalise_text(text: str, tab: str = " ") -> str:
    """Clean every line; runs of blank lines become one blank line (a paragraph break)."""
    out: list[str] = []
    pending_blank = False
    for raw in text.splitlines():
        line = clean_line(raw, tab)
        if not line:
            pending_blank = bool(out)
            continue
        if pending_blank:
            out.append("")
            pending_blank = False
        out.append(line)
    return "\n".join(out)


def decode_text(data: bytes) -> str:
    """Decode text bytes: UTF-16 (with BOM), UTF-8 (with or without BOM), else cp1252.

    cp1252 is only accepted when the result looks like text; binary data (NUL bytes,
    control characters) is rejected with a clear reason.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise IngestError("undecodable text: invalid UTF-16") from None
    if b"\x00" in data:
        raise IngestError("binary content (contains NUL bytes), not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise IngestError("undecodable text: neither UTF-8 nor Windows-1252") from None
    if not _looks_like_text(text):
        raise IngestError("undecodable text: not UTF-8, and as Windows-1252 it does not look like text")
    return text


def _looks_like_text(text: str) -> bool:
    if not text:
        return False
    wordish = 0
    for ch in text:
        if ch in "\t\n\r\f":
            wordish += 1
            continue
        cat = unicodedata.category(ch)
        if cat[0] == "C":  # control, private use, unassigned
            return False
        if cat[0] in "LN" or ch == " ":
            wordish += 1
    return wordish / len(text) >= 0.75


def slugify(text: str) -> str:
    """ASCII slug that keeps ``/`` as a separator (see the module docstring)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    parts = (re.sub(r"[^a-z0-9]+", "-", seg).strip("-") for seg in ascii_text.split("/"))
    return "/".join(p for p in parts if p)


def humanise(stem: str) -> str:
    """``begroting-2023_welzijn`` -> ``Begroting 2023 welzijn``."""
    words = re.sub(r"[-_]+", " ", stem).split()
    text = " ".join(words)
    return text[:1].upper() + text[1:] if text else stem


_MONTHS = {
    "januari": 1, "jan": 1, "februari": 2, "feb": 2, "maart": 3, "mrt": 3, "mar": 3,
    "april": 4, "apr": 4, "mei": 5, "juni": 6, "jun": 6, "juli": 7, "jul": 7,
    "augustus": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9, "oktober": 10,
    "okt": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_DMY_DATE = re.compile(r"(?<!\d)(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?!\d)")
_WORD_DATE = re.compile(r"(?<!\d)(\d{1,2})\s+(" + "|".join(_MONTHS) + r")\.?\s+(\d{4})(?!\d)", re.IGNORECASE)
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")


def iso_date(year: int, month: int, day: int) -> str | None:
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def parse_dutch_date(text: str) -> str | None:
    """First date in ``text`` as ISO: ``2022-01-26``, ``26-1-2022``, ``26 januari 2022``."""
    candidates: list[tuple[int, str | None]] = []
    if m := _ISO_DATE.search(text):
        candidates.append((m.start(), iso_date(int(m[1]), int(m[2]), int(m[3]))))
    if m := _DMY_DATE.search(text):
        candidates.append((m.start(), iso_date(int(m[3]), int(m[2]), int(m[1]))))
    if m := _WORD_DATE.search(text):
        candidates.append((m.start(), iso_date(int(m[3]), _MONTHS[m[2].lower()], int(m[1]))))
    for _, value in sorted(candidates, key=lambda c: c[0]):
        if value:
            return value
    return None


def year_from_text(text: str) -> int | None:
    m = _YEAR.search(text)
    return int(m[1]) if m else None


_BUILD_FOOTER = re.compile(
    r"^[ \t\u00a0]*Deze pagina is gebouwd op (\d{1,2})/(\d{1,2})/(\d{4})\b[^\n]*$", re.IGNORECASE | re.MULTILINE
)


def strip_build_footer(text: str) -> tuple[str, str | None]:
    """Remove "Deze pagina is gebouwd op MM/DD/YYYY ..." lines; return (text, ISO date).

    The export writes month/day (e.g. ``11/15/2022``); when the first number cannot be a
    month the order is taken as day/month.
    """
    found: str | None = None
    for m in _BUILD_FOOTER.finditer(text):
        a, b, year = int(m[1]), int(m[2]), int(m[3])
        found = iso_date(year, a, b) if a <= 12 else iso_date(year, b, a)
    return _BUILD_FOOTER.sub("", text), found


_DOC_TYPES: list[tuple[str, re.Pattern[str]]] = [
    ("begroting", re.compile(r"begroting")),
    ("jaarstukken", re.compile(r"jaarstukken|jaarrekening|jaarverslag")),
    ("raadsbrief", re.compile(r"raadsbrief|collegebrief|raadsinformatiebrief|\bbrief\b")),
    ("motie", re.compile(r"\bmoties?\b")),
    ("beleidsnota", re.compile(r"\b(?:beleids)?nota\b")),
]


def guess_doc_type(name: str, title: str = "") -> str | None:
    """Document type from keywords in the file name, then in the title (first rule wins)."""
    for text in (name, title):
        words = re.sub(r"[-_.]+", " ", text.lower())
        for doc_type, pattern in _DOC_TYPES:
            if pattern.search(words):
                return doc_type
    return None


def _same_text(a: str, b: str) -> bool:
    def key(s: str) -> str:
        return " ".join(re.sub(r"[^\w\s]", " ", s.casefold()).split())

    return key(a) == key(b)


def tidy_sections(sections: list[Section], titles: list[str]) -> list[Section]:
    """Normalise text and headings, drop empty sections, merge neighbours with one path.

    A leading heading equal to a title is dropped (the title is indexed separately).
    """
    out: list[Section] = []
    texts: list[list[str]] = []  # joined once at the end: += on an attribute copies (quadratic)
    for sec in sections:
        text = normalise_text(sec.text)
        if not text:
            continue
        path = [h for h in (clean_line(p) for p in sec.heading_path) if h]
        if path and any(t and _same_text(path[0], t) for t in titles):
            path = path[1:]
        if out and out[-1].heading_path == path and out[-1].page == sec.page:
            texts[-1].append(text)
        else:
            out.append(Section(text=text, heading_path=path, page=sec.page))
            texts.append([text])
    for sec, parts in zip(out, texts, strict=True):
        if len(parts) > 1:
            sec.text = "\n\n".join(parts)
    return out


def first_line(text: str) -> str | None:
    for line in text.splitlines():
        line = clean_line(line)
        if line:
            return line if len(line) <= MAX_TITLE_CHARS else None
    return None
