"""Where the service keeps its state: API keys, feedback, the audit log, the rate-limit buckets.

One switch, the setting ``database_url`` (``VRAAGBAAK_DATABASE_URL``, the same database as the
index, rag/store/__init__.py):

- empty (the default): SQLite files in ``data_dir`` (``keys.sqlite``, ``feedback.sqlite``,
  ``audit.sqlite``) and the rate limit's token buckets in memory, per process: one host;
- set: tables in PostgreSQL (service/pgstate.py: ``api_keys``, ``feedback``, ``audit_log``,
  ``rate_buckets``), shared by every replica on any host: a key revoked through one replica
  is refused by all from their next request (no replica caches a key), and N replicas share
  one rate-limit budget per key.

Either way the callers get the same interfaces (:class:`~service.auth.KeyStoreBase`,
:class:`~service.feedback.FeedbackStoreBase`, :class:`~service.logging.AuditLogBase`,
:class:`~service.limits.RateLimiter`) and never branch on the backend. A database that cannot
be reached raises :class:`StateUnavailable`: the API answers 503 ``state_unavailable`` with
Retry-After (service/errors.py), the CLI says so in one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rag.store import database_url

from .auth import KeyStore, KeyStoreBase
from .config import ServiceSettings
from .feedback import FeedbackStore, FeedbackStoreBase
from .limits import RateLimiter
from .logging import AuditLog, AuditLogBase

if TYPE_CHECKING:
    from .pgstate import PgState


class StateUnavailable(RuntimeError):
    """The database that holds the service's state cannot be reached (or broke mid-query,
    twice: one retry on a fresh connection is made first)."""


class ServiceStores:
    """Opens the service's stores for ``settings`` (``database_url``) and ``cfg`` (``data_dir``,
    the rate limit, the audit log's switch and retention). With PostgreSQL, the stores opened
    here share one small pool of connections (service/pgstate.py: ``PgState``)."""

    def __init__(self, settings: Any, cfg: ServiceSettings) -> None:
        self.cfg = cfg
        self.pg: PgState | None = None
        url = database_url(settings)
        if url:
            from .pgstate import PgState

            self.pg = PgState(url)

    @property
    def backend(self) -> str:
        return "sqlite" if self.pg is None else "postgres"

    def keys(self) -> KeyStoreBase:
        if self.pg is None:
            return KeyStore(self.cfg.keys_db)
        from .pgstate import PgKeyStore

        return PgKeyStore(self.pg)

    def feedback(self) -> FeedbackStoreBase:
        if self.pg is None:
            return FeedbackStore(self.cfg.feedback_db)
        from .pgstate import PgFeedbackStore

        return PgFeedbackStore(self.pg)

    def audit(self) -> AuditLogBase | None:
        """The audit log, when it is enabled (``audit_log``); None when it is off."""
        return self._audit() if self.cfg.audit_log else None

    def audit_for_export(self) -> AuditLogBase | None:
        """The audit log a feedback export joins with: one that exists (it may have been
        enabled on another replica or earlier), whether or not it is enabled here."""
        if self.pg is None and not self.cfg.audit_db.exists():
            return None
        return self._audit()

    def _audit(self) -> AuditLogBase:
        if self.pg is None:
            return AuditLog(self.cfg.audit_db, self.cfg.audit_retention_days)
        from .pgstate import PgAuditLog

        return PgAuditLog(self.pg, self.cfg.audit_retention_days)

    def limiter(self) -> RateLimiter:
        if self.pg is None:
            return RateLimiter(self.cfg.rate_limit_per_minute, self.cfg.rate_limit_burst)
        from .pgstate import PgRateLimiter

        return PgRateLimiter(self.pg, self.cfg.rate_limit_per_minute, self.cfg.rate_limit_burst)

    def close(self) -> None:
        """Close the idle database connections (the stores stay usable: they reconnect)."""
        if self.pg is not None:
            self.pg.close()
