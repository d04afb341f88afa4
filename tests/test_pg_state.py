"""The service's state in PostgreSQL (service/pgstate.py, chosen by service/stores.py when
``database_url`` is set) against a real server (tests/pg.py): the same behaviour as the SQLite
stores (tests/test_service.py's checks, run on both backends), two replicas that agree on keys
at once and share one rate-limit budget, the CLI, and a database restart or outage answered with
a clear 503 instead of a crash."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rag.settings import Settings
from service.auth import Caller, KeyError_
from service.config import ServiceSettings
from service.stores import ServiceStores, StateUnavailable
from service.testing import free_port
from tests.pg import PgServer
from tests.test_service import (
    Env,
    check_audit_log,
    check_feedback_store,
    check_keystore,
    check_rate_limiter_refills,
    corpus_root,  # noqa: F401  (the module's corpus fixture)
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


def _stores(folder: Path, url: str, **cfg) -> ServiceStores:
    """The stores one replica opens: ``folder`` is its own data_dir, ``url`` the shared database."""
    settings = Settings(index_dir=folder / "index", models_dir=folder / "models", database_url=url)
    return ServiceStores(settings, ServiceSettings(data_dir=folder / "data", **cfg))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request) -> str:
    """ "" (the SQLite default) or a fresh PostgreSQL database: every check runs on both."""
    return request.getfixturevalue("pg_url") if request.param == "postgres" else ""


@pytest.fixture
def stores(db_url, tmp_path) -> Iterator[ServiceStores]:
    s = _stores(tmp_path, db_url, rate_limit_per_minute=60, rate_limit_burst=2)
    assert s.backend == ("postgres" if db_url else "sqlite")
    yield s
    s.close()


def _stored_bytes(stores: ServiceStores, folder: Path) -> Callable[[], bytes]:
    """Everything the key store wrote: the SQLite files, or every row of ``api_keys``."""
    pg = stores.pg
    if pg is None:
        return lambda: b"".join(p.read_bytes() for p in (folder / "data").iterdir())
    return lambda: repr(pg.all("SELECT * FROM api_keys")).encode()


# --------------------------------------------------------------------------- the same behaviour


def test_keystore(stores, tmp_path):
    check_keystore(stores.keys(), _stored_bytes(stores, tmp_path))


def test_feedback_store(stores):
    check_feedback_store(stores.feedback())


def test_rate_limiter(stores):
    check_rate_limiter_refills(stores.limiter())


def test_audit_log_and_feedback_export(db_url, corpus_root, tmp_path):  # noqa: F811
    env = Env(corpus_root, tmp_path / "data", database_url=db_url, audit_log=True, audit_retention_days=7)
    check_audit_log(env, lambda: _stores(tmp_path, db_url, audit_log=True, audit_retention_days=7).audit())


# --------------------------------------------------------------------------- replicas


def _in_threads(fn: Callable[[int], None], n: int) -> None:
    """``fn(0)`` … ``fn(n - 1)`` at once, one thread each; returns when all are done."""
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_a_key_revoked_on_one_replica_is_refused_by_the_other_at_once(tmp_path, pg_url):
    one, two = _stores(tmp_path / "1", pg_url).keys(), _stores(tmp_path / "2", pg_url).keys()  # two pools
    key = one.add("balie", "reader", "sociaal")
    assert two.verify(key) == Caller("balie", "reader", ("sociaal",))  # added on one, known to the other
    one.revoke("balie")
    t0 = time.perf_counter()
    assert two.verify(key) is None  # the very next check: no replica caches a key
    seconds = time.perf_counter() - t0
    assert seconds < 1.0
    print(f"revoked on replica 1, refused by replica 2 {seconds * 1000:.1f} ms later (one verify)")
    assert [(k.name, k.active) for k in two.list()] == [("balie", False)]
    with pytest.raises(KeyError_):
        two.revoke("balie")  # already revoked, whichever replica asks
    again = two.add("balie", "admin")  # a revoked name may be given a new key, through any replica
    assert one.verify(again) == Caller("balie", "admin", ()) and one.verify(key) is None


def test_replicas_adding_the_same_name_at_once_make_one_key(tmp_path, pg_url):
    replicas = [_stores(tmp_path / str(i), pg_url).keys() for i in range(2)]
    made, refused = [], []

    def add(i: int) -> None:
        try:
            made.append(replicas[i % 2].add("dubbel"))
        except KeyError_:
            refused.append(i)

    _in_threads(add, 8)
    assert len(made) == 1 and len(refused) == 7
    assert all(r.verify(made[0]) == Caller("dubbel") for r in replicas)


def test_replicas_share_one_rate_limit_budget_per_key(tmp_path, pg_url):
    one, two = (_stores(tmp_path / n, pg_url, rate_limit_per_minute=60, rate_limit_burst=10).limiter() for n in "12")
    waits: list[float] = []
    lock = threading.Lock()

    def hammer(i: int) -> None:
        limiter = (one, two)[i % 2]
        for _ in range(5):
            w = limiter.hit("key:balie", now=100.0)  # one instant: no refill
            with lock:
                waits.append(w)

    _in_threads(hammer, 8)
    # 40 hits through two replicas, 8 threads: exactly the burst is allowed, the rest wait 1 s
    assert sorted(waits) == [0.0] * 10 + [pytest.approx(1.0)] * 30
    assert one.hit("key:ander", now=100.0) == 0  # per key
    assert two.hit("key:balie", now=101.0) == 0  # one second refills one token, for both
    assert one.hit("key:balie", now=101.0) == pytest.approx(1.0)
    assert one.hit("key:klok") == 0 and two.hit("key:klok") == 0  # the database's own clock


def test_a_key_revoked_through_one_app_gets_401_from_the_other(corpus_root, tmp_path, pg_url):  # noqa: F811
    cfg = {"rate_limit_per_minute": 6, "rate_limit_burst": 3}  # 3 at once, then one per 10 s
    a = Env(corpus_root, tmp_path / "a", database_url=pg_url, **cfg)
    b = Env(corpus_root, tmp_path / "b", database_url=pg_url, add_keys=False, **cfg)
    b.keys = a.keys  # made through replica a
    with TestClient(a.app) as ca, TestClient(b.app) as cb:
        assert cb.get("/v1/documents", headers=b.h("pub")).status_code == 200
        # feedback given through a is exported by b
        r = ca.post("/v1/feedback", json={"answer_id": "x1", "rating": "down", "comment": "Mis."}, headers=a.h("soc"))
        assert r.status_code == 201
        rows = [json.loads(x) for x in cb.get("/v1/feedback/export", headers=b.h("admin")).text.splitlines()]
        assert [(x["answer_id"], x["rating"], x["comment"], x["caller"]) for x in rows] == [
            ("x1", "down", "Mis.", "soc")
        ]
        # one rate-limit budget per key over both replicas
        codes = [c.get("/v1/documents", headers=a.h("fin")).status_code for c in (ca, cb, ca, cb)]
        assert codes == [200, 200, 200, 429]
        # revoked through a (as `vraagbaak keys revoke` would): b refuses it at its next request
        a.app.state.vb.keys.revoke("pub")
        t0 = time.perf_counter()
        r = cb.get("/v1/documents", headers=b.h("pub"))
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert time.perf_counter() - t0 < 1.0
        assert ca.get("/v1/documents", headers=a.h("pub")).status_code == 401
        assert cb.get("/v1/documents", headers=b.h("soc")).status_code == 200  # the others still work
    # nothing of the state went to the replicas' data folders
    assert not any((tmp_path / n / f).exists() for n in "ab" for f in ("keys.sqlite", "feedback.sqlite"))


# --------------------------------------------------------------------------- the CLI


def test_keys_and_feedback_cli_on_postgres(tmp_path, pg_url, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from service.cli import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    d = str(tmp_path / "data")
    monkeypatch.setenv("VRAAGBAAK_DATABASE_URL", pg_url)
    r = runner.invoke(app, ["keys", "add", "balie", "--groups", "sociaal", "--data-dir", d])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[0]
    service = _stores(tmp_path / "service", pg_url)  # a running replica
    assert service.keys().verify(key) == Caller("balie", "reader", ("sociaal",))
    r = runner.invoke(app, ["keys", "list", "--json", "--data-dir", d])
    assert r.exit_code == 0 and [x["name"] for x in json.loads(r.stdout)] == ["balie"]
    service.feedback().add("a1", "up", "Helder.", "balie")
    r = runner.invoke(app, ["feedback", "export", "--data-dir", d])
    assert r.exit_code == 0, r.output
    assert [(x["answer_id"], x["comment"]) for x in map(json.loads, r.stdout.splitlines())] == [("a1", "Helder.")]
    assert runner.invoke(app, ["keys", "revoke", "balie", "--data-dir", d]).exit_code == 0
    assert service.keys().verify(key) is None
    assert runner.invoke(app, ["keys", "revoke", "balie", "--data-dir", d]).exit_code == 1
    assert not (tmp_path / "data" / "keys.sqlite").exists()
    # no database: one clear line, exit 1, no traceback
    monkeypatch.setenv("VRAAGBAAK_DATABASE_URL", f"postgresql://vb@127.0.0.1:{free_port()}/vb")
    r = runner.invoke(app, ["keys", "list", "--data-dir", d])
    assert r.exit_code == 1 and "state database is unavailable" in r.output
    assert not isinstance(r.exception, StateUnavailable)


# --------------------------------------------------------------------------- outages


def test_a_database_restart_or_outage_is_a_clear_503_not_a_crash(corpus_root, tmp_path):  # noqa: F811
    from pgserver._commands import pg_ctl

    server = PgServer()  # a server of its own: this test stops and restarts it
    srv = server.server

    def ctl(action: str) -> None:
        pg_ctl(["-w", "-m", "fast", action], pgdata=srv.pgdata, user=srv.system_user)

    try:
        env = Env(corpus_root, tmp_path / "data", database_url=server.database(), audit_log=True)
        docs = ("/v1/documents", env.h("pub"))
        with TestClient(env.app) as c:
            assert c.get(docs[0], headers=docs[1]).status_code == 200
            ctl("restart")  # every pooled connection is broken now
            assert c.get(docs[0], headers=docs[1]).status_code == 200  # replaced, no error
            ctl("stop")
            for r in (
                c.get(docs[0], headers=docs[1]),
                c.post("/v1/feedback", json={"answer_id": "x", "rating": "up"}, headers=env.h("soc")),
            ):
                assert r.status_code == 503 and r.headers["retry-after"] == "5"
                assert r.json()["error"]["code"] == "state_unavailable"
            assert c.get("/healthz").status_code == 200  # the process is fine
            srv.ensure_postgres_running()
            assert c.get(docs[0], headers=docs[1]).status_code == 200  # back without a restart of ours
    finally:
        server.stop()
    # a database that is not there at start-up: the app starts, and answers 503 until it is
    url = f"postgresql://vb@127.0.0.1:{free_port()}/vb"
    app_env = Env(corpus_root, tmp_path / "down", database_url=url, add_keys=False, audit_log=True)
    with TestClient(app_env.app) as c:
        r = c.get("/v1/documents", headers={"Authorization": "Bearer vbk_0123456789ab_x"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "state_unavailable"
