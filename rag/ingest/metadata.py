"""Metadata overrides: ``<dir>/.vraagbaak.json`` (folders) and ``<file>.meta.json`` (one file)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from rag.ingest.discover import FOLDER_META_NAME, SIDECAR_SUFFIX
from rag.ingest.errors import IngestError

_OVERRIDE_KEYS = ("groups", "doc_type", "title", "date")


def load_overrides(path: Path, root: Path | None) -> dict[str, Any]:
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
    if data.get("date") is not None:
        out["date"] = _iso_date(data["date"], meta_file)
    return out


def _iso_date(value: Any, meta_file: Path) -> str:
    """``date`` must be an ISO date string (``YYYY-MM-DD``), as ``Document.date`` is."""
    try:
        if isinstance(value, str) and len(value.strip()) == 10:
            return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        pass
    raise IngestError(f"invalid metadata file {meta_file.name}: 'date' must be a date as YYYY-MM-DD")
