"""The postgres index backend (rag/store/postgres.py) against a real PostgreSQL + pgvector
server (tests/pg.py: pgserver, started once per session)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


def test_server_has_pgvector(pg_url, pg_server):
    import psycopg

    with psycopg.connect(pg_url) as conn:
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert version is not None
        assert conn.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetchone()[0] == pytest.approx(1.0)
    print(f"pgserver started in {pg_server.start_seconds:.1f} s, pgvector {version[0]}")
