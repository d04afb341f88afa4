"""API keys: a small store of hashed keys with a role and access groups (SQLite in data_dir,
or PostgreSQL when ``database_url`` is set: service/pgstate.py).

A key looks like ``vbk_<key_id>_<secret>``: ``key_id`` (12 hex characters) finds the row,
the stored value is ``sha256(key)`` and it is compared in constant time
(:func:`hmac.compare_digest`). The key itself is printed once by ``vraagbaak keys add`` and
never stored. Keys are random (256 bits), so a plain sha256 is enough (no password KDF).

Roles: ``reader`` may ask and read the documents its groups allow; ``admin`` may also
upload and delete documents, export feedback, and sees every document.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from .sqlitedb import open_sqlite

Role = Literal["reader", "admin"]
ROLES: tuple[str, ...] = ("reader", "admin")
KEY_PREFIX = "vbk"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    key_id TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    groups TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""


class KeyError_(ValueError):
    """A key cannot be added or revoked (bad name, duplicate, unknown)."""


@dataclass(frozen=True)
class Caller:
    """Who is asking: the key's name, role and access groups."""

    name: str
    role: Role = "reader"
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def access_groups(self) -> list[str] | None:
        """The ``Filters.groups`` for this caller: None (everything) for admins."""
        return None if self.is_admin else list(self.groups)

    def can_see(self, doc_groups: list[str] | None) -> bool:
        """Same rule as rag.retrieve.Filters: no groups = everyone, else one in common."""
        if self.is_admin or not doc_groups:
            return True
        return bool(set(doc_groups) & set(self.groups))


@dataclass
class KeyInfo:
    name: str
    role: str
    groups: list[str]
    created_at: float
    revoked_at: float | None
    key_id: str

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_groups(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    groups = sorted({g.strip() for g in items if g and g.strip()})
    for g in groups:
        if not _GROUP_RE.match(g):
            raise KeyError_(f"invalid group name {g!r}: use letters, digits and . _ : @ - (max 64)")
    return groups


class KeyStoreBase:
    """What every key store does: the naming rules, the key's format and its constant-time
    check. A backend keeps the rows: :class:`KeyStore` (SQLite, the default) or
    ``service.pgstate.PgKeyStore`` (PostgreSQL, shared by replicas on any host). Nothing is
    cached: every :meth:`verify` reads the row, so a revocation counts from the next request."""

    def close(self) -> None:
        """Release the store's connection(s)."""

    # -- the backend's rows -------------------------------------------------------------
    def _put(self, name: str, key_id: str, key_hash: str, role: str, groups: str, created_at: float) -> bool:
        """Store a new key (``groups`` as JSON), replacing a revoked one of the same name;
        False (and nothing stored) when an active key has that name."""
        raise NotImplementedError

    def _revoke(self, name: str, at: float) -> int:
        """Mark the active key ``name`` revoked; the number of rows changed (0 or 1)."""
        raise NotImplementedError

    def _all(self) -> list[tuple]:
        """(name, role, groups JSON, created_at, revoked_at, key_id) of every key, by name."""
        raise NotImplementedError

    def _by_key_id(self, key_id: str) -> tuple | None:
        """(name, key_hash, role, groups JSON, revoked_at) of the key with ``key_id``."""
        raise NotImplementedError

    # -- management -------------------------------------------------------------------
    def add(self, name: str, role: str = "reader", groups: str | list[str] | None = None) -> str:
        """Create a key; returns the key (shown once, only its hash is kept)."""
        if not _NAME_RE.match(name or ""):
            raise KeyError_(f"invalid key name {name!r}: use letters, digits and . _ @ - (max 64)")
        if role not in ROLES:
            raise KeyError_(f"invalid role {role!r}: choose from {', '.join(ROLES)}")
        group_list = parse_groups(groups)
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        if not self._put(name, key_id, hash_key(key), role, json.dumps(group_list), time.time()):
            raise KeyError_(f"a key named {name!r} exists; revoke it first or choose another name")
        return key

    def revoke(self, name: str) -> None:
        if self._revoke(name, time.time()) == 0:
            raise KeyError_(f"no active key named {name!r}")

    def list(self, include_revoked: bool = True) -> list[KeyInfo]:
        out = [KeyInfo(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5]) for r in self._all()]
        return [k for k in out if include_revoked or k.active]

    # -- verification -----------------------------------------------------------------
    def verify(self, key: str) -> Caller | None:
        """The caller for a presented key, or None (unknown, malformed or revoked)."""
        parts = (key or "").split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX or not re.fullmatch(r"[0-9a-f]{12}", parts[1]):
            # still spend the hash, so a malformed key costs the same as a wrong one
            hmac.compare_digest(hash_key(key or ""), "0" * 64)
            return None
        row = self._by_key_id(parts[1])
        presented = hash_key(key)
        if row is None:
            hmac.compare_digest(presented, "0" * 64)
            return None
        if not hmac.compare_digest(presented, row[1]) or row[4] is not None:
            return None
        return Caller(name=row[0], role=row[2], groups=tuple(json.loads(row[3])))


class KeyStore(KeyStoreBase):
    """API keys in ``path`` (SQLite). Safe to share between threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_sqlite(self.path, _SCHEMA)
        try:
            self.path.chmod(0o600)
        except OSError:  # pragma: no cover - e.g. a read-only mount
            pass

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _put(self, name: str, key_id: str, key_hash: str, role: str, groups: str, created_at: float) -> bool:
        with self._lock:
            row = self._db.execute("SELECT revoked_at FROM api_keys WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is None:
                return False
            self._db.execute("DELETE FROM api_keys WHERE name = ?", (name,))  # a revoked one
            self._db.execute(
                "INSERT INTO api_keys (name, key_id, key_hash, role, groups, created_at) VALUES (?,?,?,?,?,?)",
                (name, key_id, key_hash, role, groups, created_at),
            )
        return True

    def _revoke(self, name: str, at: float) -> int:
        with self._lock:
            cur = self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (at, name)
            )
        return cur.rowcount

    def _all(self) -> list[tuple]:
        with self._lock:
            return self._db.execute(
                "SELECT name, role, groups, created_at, revoked_at, key_id FROM api_keys ORDER BY name"
            ).fetchall()

    def _by_key_id(self, key_id: str) -> tuple | None:
        with self._lock:
            return self._db.execute(
                "SELECT name, key_hash, role, groups, revoked_at FROM api_keys WHERE key_id = ?", (key_id,)
            ).fetchone()


# --------------------------------------------------------------------------- FastAPI dependencies

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: KEY")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def get_caller(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    api_key: str | None = Depends(_api_key_header),
) -> Caller:
    """Authenticate the request (and apply the per-key rate limit)."""
    from .errors import ApiError

    state = request.app.state.vb
    auth_header = request.headers.get("authorization")
    if auth_header and bearer is None:
        raise ApiError(
            401,
            "unauthorized",
            "malformed Authorization header: use 'Bearer KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = bearer.credentials.strip() if bearer is not None else (api_key or "").strip() or None
    client = request.client.host if request.client else None
    if key is None:
        proxied = "x-forwarded-for" in request.headers or "forwarded" in request.headers
        if state.cfg.dev_mode and _is_loopback(client) and not proxied:  # a local proxy is no local user
            caller = Caller(name="anonymous", role=state.cfg.dev_role, groups=())
            rate_key = f"anonymous@{client}"
        else:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
    else:
        caller = await anyio.to_thread.run_sync(state.keys.verify, key)  # a database round trip
        if caller is None:
            raise ApiError(401, "unauthorized", "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        rate_key = f"key:{caller.name}"
    request.scope.setdefault("state", {})["caller"] = caller.name
    await anyio.to_thread.run_sync(enforce_rate_limit, state, rate_key, f"'{caller.name}'")
    return caller


def enforce_rate_limit(state, rate_key: str, who: str) -> None:
    """429 with Retry-After when ``rate_key`` has used up its requests (the per-key limit)."""
    from .errors import ApiError
    from .limits import retry_after_header

    wait = state.limiter.hit(rate_key)
    if wait > 0:
        state.metrics.rate_limited.inc()
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit exceeded for {who}; retry after {retry_after_header(wait)} s",
            headers={"Retry-After": retry_after_header(wait)},
        )


async def require_reader(caller: Caller = Depends(get_caller)) -> Caller:
    """Any valid key (reader or admin)."""
    return caller


async def require_admin(caller: Caller = Depends(get_caller)) -> Caller:
    from .errors import ApiError

    if not caller.is_admin:
        raise ApiError(403, "forbidden", "this needs an admin key")
    return caller
