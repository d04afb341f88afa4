"""Parse source files into :class:`rag.types.Document` objects.

Supported formats: ``.txt``, ``.md``, ``.html``/``.htm``, ``.pdf``, ``.docx`` and
Rijksoverheid "vraag en antwoord" pages as ``.json``. Every kind of bad input (unsupported
extension, empty file, corrupt or encrypted PDF, undecodable text, invalid JSON, ...)
raises :class:`rag.ingest.errors.IngestError` with a readable ``reason``; no other
exception type escapes :func:`parse_file`.

Identity
--------
``doc_id``
    *Files*: ``slugify(<relative path without its extension>)``. The path is taken
    relative to ``root`` when one is given and the file lies under it, otherwise the
    resolved absolute path is used (without its leading ``/``). ``slugify`` folds
    accents to ASCII (``é`` -> ``e``), lowercases, keeps ``a-z``, ``0-9`` and ``/``,
    turns every other run of characters into ``-`` and drops empty path segments:
    ``data/voorbeeld/Begroting 2023 (WGZ).txt`` with ``root=data`` gives
    ``voorbeeld/begroting-2023-wgz``.
    *FAQ JSON*: ``rijksoverheid/`` + the slug of the last path segment of the page's
    ``canonical`` URL, e.g. ``rijksoverheid/waar-vind-ik-vacatures-en-...``.
    Two files that differ only in their extension (``a.txt``/``a.md``) or in characters
    the slug drops get the same id; :func:`parse_paths` reports the second as a failure.
``source``
    the root-relative POSIX path (absolute when there is no usable root), or the
    ``canonical`` URL for FAQ pages.
``content_hash``
    sha256 hex digest of the raw file bytes.

Metadata overrides
------------------
A JSON object in ``<dir>/.vraagbaak.json`` (folder; nearer folders win, searched from
``root`` down to the file's folder) or ``<file>.meta.json`` (per file, wins over folders)
may set ``groups`` (list of strings; replaces the ``groups`` argument), ``doc_type`` and
``title``. Sidecar files are skipped by :func:`discover`.

Plain-text conventions (council website exports)
------------------------------------------------
* The footer ``Deze pagina is gebouwd op MM/DD/YYYY hh:mm:ss met de export van ...`` gives
  ``date`` and is removed.
* Headings: a line that starts a block (after a blank line), is short (<= 100 chars,
  <= 15 words), starts with a capital or digit, contains letters, is no list item or
  table row and does not end in ``. , ; :`` (a question mark is allowed). Lines like
  ``Programma 4 ...``/``Deelprogramma 3.3: ...``/``Hoofdstuk 2 ...`` are level 1 and reset
  the path; other headings replace the deepest level, except that a heading directly
  following another heading (no body in between) nests under it. A heading repeated
  directly after itself is dropped. Heading detection stops after a letter's closing
  ("Met vriendelijke groet", ...).
* Letters: lines before the salutation ("Geachte ...") are the letter head; its
  ``Onderwerp`` gives the title and its ``Datum`` the date. Page markers such as
  ``Volgvel 2`` / ``Pagina 3 van 5`` are removed and a sentence they split is rejoined.
* Hard-wrapped text (most lines near one width of <= 100 chars) is unwrapped first.

A leading heading equal to the document title is dropped from heading paths (the index
adds the title itself, see ``Chunk.embed_text``).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rag.ingest.errors import IngestError
from rag.types import Document, Section

SUPPORTED_EXTENSIONS = frozenset({".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".json"})
SIDECAR_SUFFIX = ".meta.json"
FOLDER_META_NAME = ".vraagbaak.json"
FAQ_ID_PREFIX = "rijksoverheid/"

MAX_TITLE_CHARS = 120

# ---------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------


def discover(paths: Iterable[Path | str]) -> list[Path]:
    """Expand folders (recursively, sorted) into the supported files they contain.

    Hidden files and folders (name starting with ``.``), Office lock files (``~$...``)
    and metadata sidecars (``*.meta.json``) are skipped inside folders. Paths given
    explicitly are always kept, whatever their extension (or even when missing), so
    that :func:`parse_file` reports them as failures. Duplicates are removed, order kept.
    """
    found: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        if p not in seen:
            seen.add(p)
            found.append(p)

    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            add(p)
            continue
        for f in sorted(p.rglob("*")):
            rel = f.relative_to(p)
            if _is_hidden(rel) or not f.is_file():
                continue
            if f.suffix.lower() in SUPPORTED_EXTENSIONS and not f.name.endswith(SIDECAR_SUFFIX):
                add(f)
    return found


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith((".", "~$")) for part in rel.parts)


# ---------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------


@dataclass
class IngestResult:
    """Outcome of :func:`parse_paths`: parsed documents and per-file failures."""

    documents: list[Document] = field(default_factory=list)
    failures: list[IngestError] = field(default_factory=list)


def parse_paths(
    paths: Iterable[Path | str],
    root: Path | None = None,
    groups: list[str] | None = None,
    *,
    include_question: bool = True,
) -> IngestResult:
    """Discover and parse ``paths``; failures (incl. duplicate doc_ids) are collected."""
    result = IngestResult()
    owner: dict[str, str] = {}
    for path in discover(paths):
        try:
            doc = parse_file(path, root=root, groups=groups, include_question=include_question)
        except IngestError as exc:
            result.failures.append(exc)
            continue
        if doc.doc_id in owner:
            result.failures.append(
                IngestError(f"duplicate doc_id '{doc.doc_id}' (already used by {owner[doc.doc_id]})", path)
            )
            continue
        owner[doc.doc_id] = doc.source
        result.documents.append(doc)
    return result


@dataclass
class _Parsed:
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


def parse_file(
    path: Path | str,
    root: Path | str | None = None,
    groups: list[str] | None = None,
    *,
    include_question: bool = True,
) -> Document:
    """Parse one file into a :class:`Document`.

    ``groups`` are the access groups (empty = everyone); metadata files may override
    them (see the module docstring). ``include_question`` only matters for FAQ JSON:
    when False the question is kept as the title but left out of every section text.
    Raises :class:`IngestError` for every kind of bad input.
    """
    path = Path(path)
    root_path = Path(root) if root is not None else None
    suffix = path.suffix.lower()
    try:
        if suffix not in SUPPORTED_EXTENSIONS:
            shown = suffix or "(no extension)"
            raise IngestError(f"unsupported file type {shown}; supported: {', '.join(sorted(SUPPORTED_EXTENSIONS))}")
        data = _read_bytes(path)
        if not data.strip():
            raise IngestError("empty file")
        overrides = _load_overrides(path, root_path)
        if suffix == ".json":
            parsed = _parse_faq_json(data, include_question=include_question)
        else:
            parsed = _PARSERS[suffix](data)
        return _build_document(parsed, path, root_path, data, groups, overrides)
    except IngestError as exc:
        if exc.path is None:
            exc.path = path
        raise
    except Exception as exc:  # a library choked on bad input: wrap, never leak
        raise IngestError(f"could not parse {suffix or 'file'}: {type(exc).__name__}: {exc}", path) from exc


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IngestError("file not found") from None
    except IsADirectoryError:
        raise IngestError("is a directory, not a file") from None
    except OSError as exc:
        raise IngestError(f"cannot read file: {exc.strerror or exc}") from exc


def _build_document(
    parsed: _Parsed,
    path: Path,
    root: Path | None,
    data: bytes,
    groups: list[str] | None,
    overrides: dict[str, Any],
) -> Document:
    rel, is_relative = _relative_path(path, root)
    stem_path = rel[: -len(path.suffix)] if path.suffix else rel
    doc_id = parsed.doc_id or slugify(stem_path) or hashlib.sha1(rel.encode()).hexdigest()[:12]
    source = parsed.source or (rel if is_relative else "/" + rel)

    title = overrides.get("title") or parsed.title or humanise(path.stem)
    sections = _tidy_sections(parsed.sections, [title, parsed.title or ""])
    if not sections:
        raise IngestError("no extractable text")

    doc_type = overrides.get("doc_type") or parsed.doc_type or guess_doc_type(path.stem, title)
    year = year_from_text(path.stem) if parsed.year_from_name else None
    if year is None and parsed.date:
        year = int(parsed.date[:4])

    return Document(
        doc_id=doc_id,
        title=title,
        source=source,
        sections=sections,
        content_hash=hashlib.sha256(data).hexdigest(),
        date=parsed.date,
        doc_type=doc_type,
        year=year,
        groups=list(overrides["groups"]) if "groups" in overrides else list(groups or []),
        metadata={"format": path.suffix.lower().lstrip("."), "filename": path.name, **parsed.metadata},
    )


def _relative_path(path: Path, root: Path | None) -> tuple[str, bool]:
    """POSIX path relative to root (True) or the resolved absolute path without '/'."""
    resolved = path.resolve()
    if root is not None:
        try:
            return resolved.relative_to(root.resolve()).as_posix(), True
        except ValueError:
            pass
    return resolved.as_posix().lstrip("/"), False


# ---------------------------------------------------------------------------------------
# Metadata overrides (.vraagbaak.json / <file>.meta.json)
# ---------------------------------------------------------------------------------------

_OVERRIDE_KEYS = ("groups", "doc_type", "title")


def _load_overrides(path: Path, root: Path | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for meta_file in [*_folder_meta_files(path, root), path.with_name(path.name + SIDECAR_SUFFIX)]:
        if meta_file.is_file():
            merged.update(_read_meta_file(meta_file))
    return merged


def _folder_meta_files(path: Path, root: Path | None) -> list[Path]:
    """``.vraagbaak.json`` candidates from ``root`` (or the file's folder) down to the file."""
    folder = path.resolve().parent
    folders = [folder]
    if root is not None:
        top = root.resolve()
        if top == folder or top in folder.parents:
            folders = [folder, *[p for p in folder.parents if p == top or top in p.parents]]
    return [f / FOLDER_META_NAME for f in reversed(folders)]


def _read_meta_file(meta_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(meta_file.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IngestError(f"invalid metadata file {meta_file.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise IngestError(f"invalid metadata file {meta_file.name}: expected a JSON object")
    out: dict[str, Any] = {}
    if "groups" in data:
        groups = data["groups"]
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise IngestError(f"invalid metadata file {meta_file.name}: 'groups' must be a list of strings")
        out["groups"] = [g.strip() for g in groups if g.strip()]
    for key in ("doc_type", "title"):
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise IngestError(f"invalid metadata file {meta_file.name}: '{key}' must be a string")
        if value.strip():
            out[key] = value.strip()
    return out


# ---------------------------------------------------------------------------------------
# Text helpers: decoding, whitespace, slugs, dates, document types
# ---------------------------------------------------------------------------------------

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


def _tidy_sections(sections: list[Section], titles: list[str]) -> list[Section]:
    """Normalise text and headings, drop empty sections, merge neighbours with one path.

    A leading heading equal to a title is dropped (the title is indexed separately).
    """
    out: list[Section] = []
    for sec in sections:
        text = normalise_text(sec.text)
        if not text:
            continue
        path = [h for h in (clean_line(p) for p in sec.heading_path) if h]
        if path and any(t and _same_text(path[0], t) for t in titles):
            path = path[1:]
        if out and out[-1].heading_path == path and out[-1].page == sec.page:
            out[-1].text += "\n\n" + text
        else:
            out.append(Section(text=text, heading_path=path, page=sec.page))
    return out


def _first_line(text: str) -> str | None:
    for line in text.splitlines():
        line = clean_line(line)
        if line:
            return line if len(line) <= MAX_TITLE_CHARS else None
    return None


# ---------------------------------------------------------------------------------------
# Plain text
# ---------------------------------------------------------------------------------------

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


def _parse_txt(data: bytes) -> _Parsed:
    text, found_date = strip_build_footer(decode_text(data))
    lines = normalise_text(text, tab=" | ").split("\n")
    lines = _remove_page_markers(lines)
    if _looks_hard_wrapped(lines):
        lines = _unwrap(lines)

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
        title = _first_line("\n".join(lines))
    return _Parsed(sections=sections, title=title, date=found_date, metadata=metadata)


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


def _unwrap(lines: list[str]) -> list[str]:
    """Join visually wrapped lines (long lines continue on the next one); dehyphenate.

    A line of at least 60% of the widest line is taken to be wrapped and continues on
    the next line, unless that one is blank or a list item.
    """
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


def _txt_sections(lines: list[str]) -> list[Section]:
    """Split plain-text lines into sections by detected headings (module docstring)."""
    sections: list[Section] = []
    path: list[str] = []
    body: list[str] = []
    after_heading = False
    closing = False

    def flush() -> None:
        text = "\n".join(body).strip()
        if text:
            sections.append(Section(text=text, heading_path=list(path)))
        body.clear()

    for i, line in enumerate(lines):
        if not line:
            body.append("")
            continue
        if closing or not _is_txt_heading(lines, i):
            closing = closing or bool(_VALEDICTION.match(line))
            body.append(line)
            after_heading = False
            continue
        if after_heading and path and path[-1] == line:
            continue  # the same heading repeated
        flush()
        if _LEVEL1.match(line):
            path = [line]
        elif after_heading and len(path) < _MAX_DEPTH:
            path.append(line)
        elif path and not (len(path) == 1 and _LEVEL1.match(path[0])):
            path[-1] = line
        else:
            path.append(line)
        after_heading = True
    flush()
    return sections


# ---------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _parse_md(data: bytes) -> _Parsed:
    text, found_date = strip_build_footer(decode_text(data))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    front: dict[str, str] = {}
    if m := _FRONT_MATTER.match(text):
        front = _simple_yaml(m[1])
        text = text[m.end() :]
    lines = text.split("\n")
    headings = _md_headings(text)

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    start = 0
    for first, end, level, heading in [*headings, (len(lines), len(lines), 0, "")]:
        body = _md_inline("\n".join(lines[start:first]))
        sections.append(Section(text=body, heading_path=[h for _, h in stack]))
        if level:
            stack = [(lv, h) for lv, h in stack if lv < level] + [(level, heading)]
        start = end

    h1 = next((h for _, _, lv, h in headings if lv == 1), None)
    title = front.get("title") or h1 or (headings[0][3] if headings else None) or _first_line(text)
    found_date = (parse_dutch_date(front["date"]) if "date" in front else None) or found_date
    return _Parsed(sections=sections, title=title, date=found_date)


def _simple_yaml(block: str) -> dict[str, str]:
    """``key: value`` lines of a front-matter block (no nesting)."""
    out: dict[str, str] = {}
    for line in block.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.startswith((" ", "\t")):
            out[key.strip().lower()] = value.strip().strip("\"'")
    return out


def _md_headings(text: str) -> list[tuple[int, int, int, str]]:
    """(first line, end line, level, text) of top-level headings."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # pragma: no cover - markdown-it-py ships with rich/typer
        return _md_headings_atx(text)
    tokens = MarkdownIt("commonmark").parse(text)
    out: list[tuple[int, int, int, str]] = []
    for tok, inline in zip(tokens, tokens[1:], strict=False):
        if tok.type == "heading_open" and tok.level == 0 and tok.map:
            out.append((tok.map[0], tok.map[1], int(tok.tag[1]), _md_inline(inline.content)))
    return out


def _md_headings_atx(text: str) -> list[tuple[int, int, int, str]]:
    out: list[tuple[int, int, int, str]] = []
    fence: str | None = None
    for i, line in enumerate(text.split("\n")):
        if m := _FENCE.match(line):
            marker = m[1][0] * 3
            fence = None if fence == marker else (fence or marker)
            continue
        if fence is None and (m := _ATX.match(line)):
            out.append((i, i + 1, len(m[1]), _md_inline(m[2] or "")))
    return out


def _md_inline(text: str) -> str:
    return _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", text)).strip()


# ---------------------------------------------------------------------------------------
# HTML (files and the HTML fragments inside FAQ JSON)
# ---------------------------------------------------------------------------------------

_DROP_TAGS = ["script", "style", "noscript", "template", "svg", "iframe", "nav", "head"]
_PAGE_CHROME = ["header", "footer"]  # dropped unless inside <article>/<main>
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    "address article aside blockquote body center dd details dialog div dl dt fieldset figcaption "
    "figure footer form header hgroup hr html li main ol p pre section summary table tbody td tfoot "
    "th thead tr ul caption".split()
)
_DATE_META_NAMES = (
    "dcterms.modified", "dcterms.issued", "dcterms.date", "dcterms.created", "dc.date",
    "date", "article:published_time", "article:modified_time",
)  # fmt: skip


def _soup(markup: str | bytes):  # -> bs4.BeautifulSoup
    from bs4 import BeautifulSoup

    return BeautifulSoup(markup, "lxml")


def _parse_html(data: bytes) -> _Parsed:
    if b"\x00" in data and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise IngestError("binary content (contains NUL bytes), not an HTML file")
    soup = _soup(data)
    title_tag = soup.find("title")
    title = clean_line(title_tag.get_text(" ")) if title_tag else ""
    found_date = _html_meta_date(soup)
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all(_PAGE_CHROME):
        if not tag.find_parent(["article", "main"]):
            tag.decompose()
    root = soup.body or soup
    sections = _HtmlSections().collect(root)
    if not title:
        h1 = root.find("h1")
        title = _text_of(h1) if h1 else ""
    title = title or _first_line("\n\n".join(s.text for s in sections)) or ""
    return _Parsed(sections=sections, title=title[:MAX_TITLE_CHARS] or None, date=found_date)


def _html_meta_date(soup) -> str | None:
    for meta in soup.find_all("meta"):
        name = (meta.get("name") or meta.get("property") or "").lower()
        if name in _DATE_META_NAMES and (value := parse_dutch_date(meta.get("content") or "")):
            return value
    return None


def html_fragment_sections(fragment: str, base_path: list[str] | None = None) -> list[Section]:
    """Sections of an HTML fragment; its headings nest under ``base_path``."""
    if not fragment or not fragment.strip():
        return []
    soup = _soup(fragment)
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    return _HtmlSections(base_path).collect(soup.body or soup)


def _is_plain_string(node) -> bool:
    from bs4 import NavigableString

    return type(node) is NavigableString


def _text_of(tag, skip: tuple[str, ...] = ()) -> str:
    """Text of an element on one line: block children and <br> separate words.

    Elements named in ``skip`` (e.g. nested lists) are left out.
    """
    parts: list[str] = []
    _collect_text(tag, parts, skip)
    return clean_line(" ".join("".join(parts).split()))


def _collect_text(node, parts: list[str], skip: tuple[str, ...]) -> None:
    for child in node.children:
        if child.name is None:
            if _is_plain_string(child):
                parts.append(str(child))
        elif child.name in skip:
            continue
        elif child.name == "br" or child.name in _BLOCK_TAGS:
            parts.append(" ")
            _collect_text(child, parts, skip)
            parts.append(" ")
        else:
            _collect_text(child, parts, skip)


class _HtmlSections:
    """Walks an element tree in document order, collecting text blocks per heading path."""

    def __init__(self, base_path: list[str] | None = None) -> None:
        self.base = list(base_path or [])
        self.stack: list[tuple[int, str]] = []
        self.sections: list[Section] = []
        self.blocks: list[str] = []
        self.inline: list[str] = []

    def collect(self, root) -> list[Section]:
        self._visit(root)
        self._flush_section()
        return self.sections

    def _path(self) -> list[str]:
        return self.base + [h for _, h in self.stack]

    def _flush_inline(self) -> None:
        lines = [clean_line(part) for part in "".join(self.inline).split("\n")]
        self.inline.clear()
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append(text)

    def _flush_section(self) -> None:
        self._flush_inline()
        if self.blocks:
            self.sections.append(Section(text="\n\n".join(self.blocks), heading_path=self._path()))
        self.blocks = []

    def _visit(self, node) -> None:
        for child in node.children:
            if child.name is None:  # a string
                if _is_plain_string(child):
                    self.inline.append(re.sub(r"\s+", " ", str(child)))
                continue
            name = child.name
            if name in _HEADING_TAGS:
                text = _text_of(child)
                if text:
                    self._flush_section()
                    level = _HEADING_TAGS[name]
                    self.stack = [(lv, h) for lv, h in self.stack if lv < level] + [(level, text)]
            elif name == "br":
                self.inline.append("\n")
            elif name == "table":
                self._add_block("\n".join(_table_rows(child)))
            elif name in ("ul", "ol"):
                self._add_block("\n".join(_list_lines(child)))
            elif name in _BLOCK_TAGS:
                self._flush_inline()
                self._visit(child)
                self._flush_inline()
            else:  # inline element
                self._visit(child)

    def _add_block(self, text: str) -> None:
        self._flush_inline()
        if text.strip():
            self.blocks.append(text)


def _table_rows(table) -> list[str]:
    rows: list[str] = []
    caption = table.find("caption")
    if caption and caption.find_parent("table") is table and (text := _text_of(caption)):
        rows.append(text)
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue
        cells = [_text_of(c) for c in tr.find_all(["td", "th"], recursive=False)]
        if any(cells):
            rows.append(" | ".join(c for c in cells if c))
    return rows


def _list_lines(lst) -> list[str]:
    """One line per list item ("- text" or "1. text"); nested lists follow their item."""
    lines: list[str] = []
    ordered = lst.name == "ol"
    for n, li in enumerate(lst.find_all("li", recursive=False), start=1):
        text = _text_of(li, skip=("ul", "ol"))
        if text:
            lines.append(f"{n}. {text}" if ordered else f"- {text}")
        for sub in li.find_all(["ul", "ol"]):
            if sub.find_parent("li") is li:
                lines.extend(_list_lines(sub))
    return lines


# ---------------------------------------------------------------------------------------
# PDF
# ---------------------------------------------------------------------------------------

_PDF_TITLE_JUNK = re.compile(r"^(?:untitled|naamloos|document\d*)$|\.(?:docx?|pdf|odt|rtf)$", re.IGNORECASE)


def _parse_pdf(data: bytes) -> _Parsed:
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
            opened = reader.decrypt("")
        except DependencyError as exc:
            raise IngestError(f"encrypted PDF: cannot decrypt ({exc})") from exc
        except Exception:
            opened = 0
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
        text = "\n".join(_unwrap(normalise_text(raw).split("\n")))
        if text.strip():
            sections.append(Section(text=text, page=number))
    if not sections:
        raise IngestError("no extractable text in PDF (scanned images only?)")

    title = _pdf_title(reader) or _first_line(sections[0].text)
    return _Parsed(sections=sections, title=title, date=found_date, metadata={"pages": len(pages)})


def _pdf_title(reader) -> str | None:
    try:
        raw = reader.metadata.title if reader.metadata else None
    except Exception:
        return None
    title = clean_line(str(raw or "")).removeprefix("Microsoft Word - ")
    if not title or _PDF_TITLE_JUNK.search(title) or len(title) > MAX_TITLE_CHARS:
        return None
    return title


# ---------------------------------------------------------------------------------------
# DOCX
# ---------------------------------------------------------------------------------------

_DOCX_HEADING = re.compile(r"^(?:heading|kop)\s*([1-9])$", re.IGNORECASE)
_DOCX_TITLE = re.compile(r"^(?:title|titel)$", re.IGNORECASE)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _parse_docx(data: bytes) -> _Parsed:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    if data.startswith(_OLE_MAGIC):
        raise IngestError("not a DOCX package: encrypted (password protected) or an old .doc file")
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
    title = core_title or title_para or first_heading or _first_line("\n".join(s.text for s in sections))
    return _Parsed(sections=sections, title=title)


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


# ---------------------------------------------------------------------------------------
# Rijksoverheid FAQ JSON
# ---------------------------------------------------------------------------------------


def _parse_faq_json(data: bytes, *, include_question: bool = True) -> _Parsed:
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
    return _Parsed(
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


_PARSERS: dict[str, Callable[[bytes], _Parsed]] = {
    ".txt": _parse_txt,
    ".md": _parse_md,
    ".html": _parse_html,
    ".htm": _parse_html,
    ".pdf": _parse_pdf,
    ".docx": _parse_docx,
}
