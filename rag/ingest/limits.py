"""Limits on what one source file may cost to parse, checked before the costly work.

* ``max_file_bytes``: the size on disk, from ``stat`` before the file is read (and the read
  itself stops one byte past the limit, for a file that grows meanwhile).
* ``max_inflated_bytes`` / ``max_compression_ratio``: a DOCX is a zip package; its central
  directory states every member's compressed and uncompressed size. The total and each
  member must stay within ``max_inflated_bytes``, and a member over 1 MB must not be more
  than ``max_compression_ratio`` times its compressed size. Nothing is inflated for this
  check, and :mod:`zipfile` (python-docx reads through it) never inflates a member past the
  size its central directory entry states, so the check bounds what the parse can inflate.
* ``max_pages``: PDF pages, counted from the page tree before any text is extracted.

``parse_timeout_s`` and ``parse_memory_mb`` bound the parse worker (:mod:`rag.ingest.isolation`).
Every refusal is an :class:`IngestError` whose reason names the limit and its setting.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

from rag.ingest.errors import IngestError

RATIO_MIN_MEMBER_BYTES = 1024 * 1024  # the ratio check applies to members larger than this
_MB = 1024 * 1024


@dataclass(frozen=True)
class ParseLimits:
    """The per-file limits (defaults: those of :class:`rag.settings.Settings`)."""

    max_file_bytes: int = 100 * _MB
    max_inflated_bytes: int = 256 * _MB
    max_compression_ratio: float = 100.0
    max_pages: int = 2000

    @classmethod
    def from_settings(cls, settings: Any) -> ParseLimits:
        return cls(
            max_file_bytes=settings.max_file_bytes,
            max_inflated_bytes=settings.max_inflated_bytes,
            max_compression_ratio=settings.max_compression_ratio,
            max_pages=settings.max_pages,
        )


def _mb(n: float) -> str:
    return f"{n / _MB:,.1f} MB"


def check_file_size(size: int, limits: ParseLimits) -> None:
    if size > limits.max_file_bytes:
        raise IngestError(
            f"file too large: {_mb(size)} on disk, over the limit of {_mb(limits.max_file_bytes)} (max_file_bytes)"
        )


def check_zip_package(data: bytes, limits: ParseLimits, kind: str = "DOCX") -> None:
    """Refuse a zip package whose central directory announces too much inflated data."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        raise IngestError(f"corrupt {kind}: not a zip package ({exc or type(exc).__name__})") from exc
    total = 0
    for info in members:
        size = info.file_size
        total += size
        if size > limits.max_inflated_bytes:
            raise IngestError(
                f"{kind} member {info.filename!r} inflates to {_mb(size)}, over the limit of "
                f"{_mb(limits.max_inflated_bytes)} (max_inflated_bytes); refused without inflating it"
            )
        if size > RATIO_MIN_MEMBER_BYTES:
            ratio = size / max(info.compress_size, 1)
            if ratio > limits.max_compression_ratio:
                raise IngestError(
                    f"{kind} member {info.filename!r} has a compression ratio of {ratio:,.0f}:1 "
                    f"({_mb(size)} from {info.compress_size:,} bytes), over the limit of "
                    f"{limits.max_compression_ratio:g}:1 (max_compression_ratio): a zip bomb; refused without inflating it"
                )
    if total > limits.max_inflated_bytes:
        raise IngestError(
            f"{kind} package inflates to {_mb(total)} in all, over the limit of "
            f"{_mb(limits.max_inflated_bytes)} (max_inflated_bytes); refused without inflating it"
        )


def check_page_count(pages: int, limits: ParseLimits) -> None:
    if pages > limits.max_pages:
        raise IngestError(f"PDF has {pages:,} pages, over the limit of {limits.max_pages:,} (max_pages)")
