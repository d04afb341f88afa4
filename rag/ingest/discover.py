"""Find the source files under the given paths (sidecar metadata and hidden files skipped)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SUPPORTED_EXTENSIONS = frozenset({".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".json"})
SIDECAR_SUFFIX = ".meta.json"
FOLDER_META_NAME = ".vraagbaak.json"


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
