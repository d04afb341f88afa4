"""A real PostgreSQL 16 + pgvector server for the tests marked ``postgres``.

``pgserver`` (in the ``test`` extra) ships the server binaries and pgvector in a wheel: no
system package, no root. One server per test session, started in a temporary folder on first
use (~5 s on 2 cores, initdb included) and stopped at the end; every test gets a database of
its own (``CREATE DATABASE``: milliseconds) with the vector extension created. The tests skip,
saying why, only when pgserver cannot be imported (the extra is not installed); scripts/setup.sh
installs it, so CI (.ci/run -> scripts/test.sh) runs them.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

SKIP_REASON = "pgserver is not installed: pip install -e '.[test,postgres]' (scripts/setup.sh does)"
_names = itertools.count()


def pg_available() -> bool:
    try:
        import pgserver  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


class PgServer:
    """A running pgserver instance; ``database()`` makes a fresh database and returns its DSN."""

    def __init__(self) -> None:
        import pgserver

        self.folder = tempfile.mkdtemp(prefix="vb-pg-")
        t0 = time.perf_counter()
        self.server: Any = pgserver.get_server(self.folder, cleanup_mode="stop")
        self.start_seconds = time.perf_counter() - t0
        self.uri: str = self.server.get_uri()

    def database(self) -> str:
        import psycopg
        from psycopg.conninfo import make_conninfo

        name = f"vb_test_{next(_names)}_{int(time.time() * 1000) % 10**9}"
        with psycopg.connect(self.uri, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        dsn = make_conninfo(self.uri, dbname=name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return dsn

    def stop(self) -> None:
        try:
            self.server.cleanup()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if not pg_available():
        pytest.skip(SKIP_REASON)
    server = PgServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The DSN of a new, empty database (with the vector extension) on the session's server."""
    return pg_server.database()
