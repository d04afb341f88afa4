"""The one exception type the ingest layer raises for bad input."""

from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """A source could not be turned into a ``Document``.

    ``reason`` is a short human-readable explanation ("encrypted PDF (password
    protected)", "empty file", ...); ``path`` is the offending file when known.
    """

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = Path(path) if path is not None else None

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path is not None else self.reason

    def __repr__(self) -> str:
        return f"IngestError(reason={self.reason!r}, path={self.path!r})"
