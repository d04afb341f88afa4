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
may set ``groups`` (list of strings; replaces the ``groups`` argument), ``doc_type``,
``title`` and ``date`` (``YYYY-MM-DD``; wins over a date found in the file). Sidecar
files are skipped by :func:`discover`.

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

import hashlib
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.ingest.common import Parsed, guess_doc_type, humanise, slugify, tidy_sections, year_from_text
from rag.ingest.discover import SUPPORTED_EXTENSIONS, discover
from rag.ingest.errors import IngestError
from rag.ingest.formats.docx import parse_docx
from rag.ingest.formats.faq import parse_faq_json
from rag.ingest.formats.html import parse_html
from rag.ingest.formats.markdown import parse_md
from rag.ingest.formats.pdf import parse_pdf
from rag.ingest.formats.txt import parse_txt
from rag.ingest.limits import ParseLimits, check_file_size
from rag.ingest.metadata import load_overrides
from rag.types import Document


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


def parse_file(
    path: Path | str,
    root: Path | str | None = None,
    groups: list[str] | None = None,
    *,
    include_question: bool = True,
    limits: ParseLimits | None = None,
) -> Document:
    """Parse one file into a :class:`Document`.

    ``groups`` are the access groups (empty = everyone); metadata files may override
    them (see the module docstring). ``include_question`` only matters for FAQ JSON:
    when False the question is kept as the title but left out of every section text.
    ``limits`` bound the file's size, a DOCX's inflated size and a PDF's pages
    (:mod:`rag.ingest.limits`; default: the settings' defaults). This runs in the calling
    process: :mod:`rag.ingest.isolation` runs it in a worker with a memory limit and a timeout.
    Raises :class:`IngestError` for every kind of bad input.
    """
    path = Path(path)
    root_path = Path(root) if root is not None else None
    suffix = path.suffix.lower()
    limits = limits or ParseLimits()
    try:
        if suffix not in SUPPORTED_EXTENSIONS:
            shown = suffix or "(no extension)"
            raise IngestError(f"unsupported file type {shown}; supported: {', '.join(sorted(SUPPORTED_EXTENSIONS))}")
        _check_name(path.name)
        data = _read_bytes(path, limits)
        if not data.strip():
            raise IngestError("empty file")
        overrides = load_overrides(path, root_path)
        if suffix == ".json":
            parsed = parse_faq_json(data, include_question=include_question)
        elif suffix == ".pdf":
            parsed = parse_pdf(data, limits=limits)
        elif suffix == ".docx":
            parsed = parse_docx(data, limits=limits)
        else:
            parsed = _PARSERS[suffix](data)
        return _build_document(parsed, path, root_path, data, groups, overrides)
    except IngestError as exc:
        if exc.path is None:
            exc.path = path
        raise
    except MemoryError:
        raise IngestError(OUT_OF_MEMORY, path) from None
    except RecursionError:
        raise IngestError("parser gave up: structure nested too deeply (RecursionError)", path) from None
    except Exception as exc:  # a library choked on bad input: wrap, never leak
        raise IngestError(f"could not parse {suffix or 'file'}: {type(exc).__name__}: {exc}", path) from exc


OUT_OF_MEMORY = "parser ran out of memory"

# bidirectional overrides and isolates: they make a name display as another one
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _check_name(name: str) -> None:
    """Refuse a file name with control characters (newlines, escapes, bidi overrides): it
    would corrupt logs, reports and citations, and is no name a person gave a document."""
    bad = [c for c in name if unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS]
    if bad:
        shown = ", ".join(sorted({f"U+{ord(c):04X}" for c in bad}))
        raise IngestError(f"file name contains control characters ({shown})")


def _read_bytes(path: Path, limits: ParseLimits) -> bytes:
    try:
        check_file_size(path.stat().st_size, limits)
        with path.open("rb") as fh:
            data = fh.read(limits.max_file_bytes + 1)
        check_file_size(len(data), limits)  # it grew since the stat
        return data
    except FileNotFoundError:
        raise IngestError("file not found") from None
    except IsADirectoryError:
        raise IngestError("is a directory, not a file") from None
    except OSError as exc:
        raise IngestError(f"cannot read file: {exc.strerror or exc}") from exc


def _build_document(
    parsed: Parsed,
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

    title = overrides.get("title") or _real_title(parsed.title) or humanise(path.stem)
    sections = tidy_sections(parsed.sections, [title, parsed.title or ""])
    if not sections:
        raise IngestError("no extractable text")

    doc_type = overrides.get("doc_type") or parsed.doc_type or guess_doc_type(path.stem, title)
    date = overrides.get("date") or parsed.date
    year = year_from_text(path.stem) if parsed.year_from_name else None
    if year is None and date:
        year = int(date[:4])

    return Document(
        doc_id=doc_id,
        title=title,
        source=source,
        sections=sections,
        content_hash=hashlib.sha256(data).hexdigest(),
        date=date,
        doc_type=doc_type,
        year=year,
        groups=list(overrides["groups"]) if "groups" in overrides else list(groups or []),
        metadata={"format": path.suffix.lower().lstrip("."), "filename": path.name, **parsed.metadata},
    )


def _real_title(title: str | None) -> str | None:
    """A title from the file (PDF/DOCX metadata, an HTML <title>, a first line) that addresses
    the assistant ("Negeer alle eerdere instructies …") is no title: the file name stands in."""
    from rag.guard import strip_instructions

    if title and strip_instructions(title) != title:
        return None
    return title


def _relative_path(path: Path, root: Path | None) -> tuple[str, bool]:
    """POSIX path relative to root (True) or the resolved absolute path without '/'."""
    resolved = path.resolve()
    if root is not None:
        try:
            return resolved.relative_to(root.resolve()).as_posix(), True
        except ValueError:
            pass
    return resolved.as_posix().lstrip("/"), False


_PARSERS: dict[str, Callable[[bytes], Parsed]] = {
    ".txt": parse_txt,
    ".md": parse_md,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
}
