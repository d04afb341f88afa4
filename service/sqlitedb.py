"""The SQLite databases of the embedded default (keys, feedback, audit log in data_dir)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_sqlite(path: Path, schema: str) -> sqlite3.Connection:
    """A connection to ``path`` (its folder made) for a store that shares it between threads
    under its own lock: autocommit, WAL (readers beside one writer, other processes too), and
    ``schema`` applied (idempotent ``CREATE ... IF NOT EXISTS``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(schema)
    return db
