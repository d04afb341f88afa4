"""Structured JSON logs, and the opt-in audit log.

Privacy (AVG/GDPR): the service never writes question or answer text, comments or API keys
to its logs. A request line has the request id, method, route, status, duration and the
key's *name*. Whoever needs the texts (to review answers) enables the audit log
(``VRAAGBAAK_AUDIT_LOG=true``): question, answer, citations and caller go into
``data_dir/audit.sqlite`` (or the table ``audit_log`` in PostgreSQL when ``database_url`` is
set: service/pgstate.py), and rows older than ``audit_retention_days`` are deleted at
start-up and every hour.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .sqlitedb import open_sqlite

log = logging.getLogger("vraagbaak.service")

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and any ``extra={...}`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", json_logs: bool = True, stream=None) -> None:
    """JSON lines on stderr for the service's and uvicorn's loggers (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    handler._vraagbaak = True  # type: ignore[attr-defined]
    for name in ("vraagbaak", "uvicorn", "uvicorn.error", "rag"):
        lg = logging.getLogger(name)
        lg.handlers = [h for h in lg.handlers if not getattr(h, "_vraagbaak", False)]
        if name in ("vraagbaak", "uvicorn", "rag"):
            lg.addHandler(handler)
            lg.propagate = False
        lg.setLevel(level.upper())
    # the service writes its own request lines (without query strings)
    logging.getLogger("uvicorn.access").disabled = True


# --------------------------------------------------------------------------- audit log

_AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT,
    caller TEXT,
    endpoint TEXT,
    answer_id TEXT,
    question TEXT,
    answer TEXT,
    refused INTEGER,
    citations TEXT
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
CREATE INDEX IF NOT EXISTS audit_answer ON audit(answer_id);
"""


AUDIT_COLUMNS = ("ts", "request_id", "caller", "endpoint", "answer_id", "question", "answer", "refused", "citations")


class AuditLogBase:
    """What every audit log does (the rows' shape, retention); a backend keeps the rows:
    :class:`AuditLog` (SQLite in data_dir, the default) or ``service.pgstate.PgAuditLog``."""

    retention_s: float
    _last_purge: float = 0.0

    def close(self) -> None:
        """Release the log's connection(s)."""

    # -- the backend's rows -------------------------------------------------------------
    def _insert(self, row: tuple) -> None:
        """Append one row, its values in the order of :data:`AUDIT_COLUMNS`."""
        raise NotImplementedError

    def _delete_before(self, cutoff: float) -> int:
        raise NotImplementedError

    def _by_answer(self, answer_id: str) -> tuple | None:
        """(ts, caller, endpoint, question, answer, refused, citations) of the answer."""
        raise NotImplementedError

    def _all(self) -> list[tuple]:
        """Every row (columns as :data:`AUDIT_COLUMNS`), oldest first."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------
    def record(self, *, request_id: str, caller: str, endpoint: str, question: str, answer) -> None:
        """``answer`` is a rag.schema.Answer."""
        self._insert(
            (
                time.time(),
                request_id,
                caller,
                endpoint,
                answer.id,
                question,
                answer.answer,
                int(answer.refused),
                json.dumps([c.model_dump() for c in answer.citations], ensure_ascii=False),
            )
        )
        if time.monotonic() - self._last_purge > 3600:
            self.purge()

    def purge(self, now: float | None = None) -> int:
        """Delete rows past the retention period; returns how many."""
        n = self._delete_before((now or time.time()) - self.retention_s)
        self._last_purge = time.monotonic()
        return n

    def by_answer_id(self, answer_id: str) -> dict[str, Any] | None:
        row = self._by_answer(answer_id)
        if row is None:
            return None
        return {
            "ts": row[0],
            "caller": row[1],
            "endpoint": row[2],
            "question": row[3],
            "answer": row[4],
            "refused": bool(row[5]),
            "citations": json.loads(row[6] or "[]"),
        }

    def rows(self) -> Iterator[dict[str, Any]]:
        for r in self._all():
            d = dict(zip(AUDIT_COLUMNS, r))
            d["refused"] = bool(d["refused"])
            d["citations"] = json.loads(d["citations"] or "[]")
            yield d


class AuditLog(AuditLogBase):
    """Question/answer records with retention in ``path`` (SQLite). Only created when the
    audit log is enabled."""

    def __init__(self, path: Path, retention_days: int) -> None:
        self.path = Path(path)
        self.retention_s = retention_days * 86400
        self._lock = threading.Lock()
        self._db = open_sqlite(self.path, _AUDIT_SCHEMA)
        self._last_purge = 0.0
        self.purge()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _insert(self, row: tuple) -> None:
        with self._lock:
            self._db.execute(f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES (?,?,?,?,?,?,?,?,?)", row)

    def _delete_before(self, cutoff: float) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM audit WHERE ts < ?", (cutoff,)).rowcount

    def _by_answer(self, answer_id: str) -> tuple | None:
        with self._lock:
            return self._db.execute(
                "SELECT ts, caller, endpoint, question, answer, refused, citations FROM audit WHERE answer_id = ?",
                (answer_id,),
            ).fetchone()

    def _all(self) -> list[tuple]:
        with self._lock:
            return self._db.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit ORDER BY id").fetchall()
