"""Feedback on answers (thumbs up/down + optional comment) in SQLite (or PostgreSQL when
``database_url`` is set: service/pgstate.py), exportable as JSONL.

Each exported line::

    {"id": 1, "answer_id": "…", "rating": "up", "comment": null, "caller": "balie",
     "created_at": "2025-…Z", "question": …, "answer": …, "citations": […]}

``question``/``answer``/``citations`` are filled in only when the audit log is enabled and
still holds the answer (see service/logging.py); otherwise they are null, and the eval
joins on ``answer_id`` with its own run records.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .sqlitedb import open_sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    answer_id TEXT NOT NULL,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT,
    caller TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_answer ON feedback(answer_id);
"""


class FeedbackStoreBase:
    """What every feedback store does; a backend keeps the rows: :class:`FeedbackStore`
    (SQLite, the default) or ``service.pgstate.PgFeedbackStore`` (PostgreSQL)."""

    def close(self) -> None:
        """Release the store's connection(s)."""

    # -- the backend's rows -------------------------------------------------------------
    def _upsert(self, answer_id: str, rating: str, comment: str | None, caller: str | None) -> int:
        """Insert, or update the latest row of (answer, caller) keeping its comment when
        ``comment`` is None, in one transaction; returns the row's id."""
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def _all(self) -> list[tuple]:
        """(id, answer_id, rating, comment, caller, created_at) of every row, by id."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------
    def add(self, answer_id: str, rating: str, comment: str | None = None, caller: str | None = None) -> int:
        """Store a caller's verdict on an answer; one row per (answer, caller), the latest wins.

        The widget and the bots send the thumb first and the comment after it, and a user may
        change the thumb; each of those updates the same row (the comment is kept when a later
        call brings none), so an export holds one verdict per person per answer. Returns the id.
        """
        if rating not in ("up", "down"):
            raise ValueError("rating must be 'up' or 'down'")
        return self._upsert(answer_id, rating, comment or None, caller)

    def rows(self, audit=None) -> Iterator[dict[str, Any]]:
        """All feedback, oldest first; joined with the audit log when one is given."""
        for r in self._all():
            d: dict[str, Any] = {
                "id": r[0],
                "answer_id": r[1],
                "rating": r[2],
                "comment": r[3],
                "caller": r[4],
                "created_at": datetime.fromtimestamp(r[5], tz=UTC).isoformat().replace("+00:00", "Z"),
                "question": None,
                "answer": None,
                "citations": None,
            }
            rec = audit.by_answer_id(r[1]) if audit is not None else None
            if rec is not None:
                d.update(question=rec["question"], answer=rec["answer"], citations=rec["citations"])
            yield d

    def export_jsonl(self, out: IO[str], audit=None) -> int:
        n = 0
        for d in self.rows(audit):
            out.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
        return n


class FeedbackStore(FeedbackStoreBase):
    """Feedback in ``path`` (SQLite)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_sqlite(self.path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _upsert(self, answer_id: str, rating: str, comment: str | None, caller: str | None) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id FROM feedback WHERE answer_id = ? AND caller IS ? ORDER BY id DESC LIMIT 1",
                    (answer_id, caller),
                ).fetchone()
                if row is None:
                    cur = self._db.execute(
                        "INSERT INTO feedback (answer_id, rating, comment, caller, created_at) VALUES (?,?,?,?,?)",
                        (answer_id, rating, comment, caller, time.time()),
                    )
                    assert cur.lastrowid is not None  # set by every INSERT
                    fid = int(cur.lastrowid)
                else:
                    fid = int(row[0])
                    self._db.execute(
                        "UPDATE feedback SET rating = ?, comment = COALESCE(?, comment), created_at = ? WHERE id = ?",
                        (rating, comment, time.time(), fid),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return fid

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def _all(self) -> list[tuple]:
        with self._lock:
            return self._db.execute(
                "SELECT id, answer_id, rating, comment, caller, created_at FROM feedback ORDER BY id"
            ).fetchall()
