"""``vraagbaak backup`` / ``vraagbaak restore`` (service/backup.py): a backup taken while a
writer ingests holds one published generation; restored onto "a fresh machine" (other
folders) the service answers the same questions with the same citations, the old keys and
links work and the feedback is there; a damaged archive or a non-empty target is refused
and changes nothing. HashEmbedder and the fake LLM: no models."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sqlite3
import stat
import tarfile
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rag.index import read_current
from rag.indexing import ingest_paths
from rag.settings import Settings
from service.app import create_app
from service.backup import BackupError, DamagedArchiveError, TargetNotEmptyError, backup, restore
from service.config import ServiceSettings
from service.feedback import FeedbackStore
from service.testing import FakeLLM, build_index, make_pipeline
from tests.conftest import HashEmbedder

pytestmark = pytest.mark.timeout(180)

QUESTIONS = [
    ("admin", "Wat krijgen mantelzorgers van de gemeente?"),
    ("pub", "Welke motie nam de raad aan over preventie?"),
    ("fin", "Wat levert de grondexploitatie zwavelkoepel op?"),
    ("admin", "Wat staat er over de haven in het uploadbestand?"),
]


class SlowEmbedder(HashEmbedder):
    """Holds the writer's lock a while: the backup runs during the ingest."""

    def __init__(self, started: threading.Event) -> None:
        super().__init__()
        self.started = started

    def embed_documents(self, texts, progress: bool = False):
        self.started.set()
        time.sleep(1.0)
        return super().embed_documents(texts, progress)


def _settings(root: Path) -> Settings:
    return Settings(index_dir=root / "index", models_dir=root / "models", refusal_min_score=0.0)


def _folders(root: Path) -> tuple[Settings, ServiceSettings]:
    return _settings(root), ServiceSettings(data_dir=root / "data", rate_limit_per_minute=0)


def _app(root: Path):
    settings, cfg = _folders(root)
    app = create_app(settings, make_pipeline(settings, HashEmbedder(), FakeLLM()), service_settings=cfg)
    return settings, cfg, app


def _answers(client: TestClient, keys: dict[str, str]) -> list[tuple]:
    out = []
    for who, question in QUESTIONS:
        r = client.post("/v1/ask", json={"question": question}, headers={"Authorization": f"Bearer {keys[who]}"})
        assert r.status_code == 200, r.text
        a = r.json()
        cites = [
            (c["marker"], c["doc_id"], c["chunk_id"], c["section"], c["page"], c["snippet"]) for c in a["citations"]
        ]
        out.append((a["answer"], a["refused"], cites))
    return out


def _tree(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A running service's state: an index (with an upload), keys, feedback, a link secret."""
    root = tmp_path_factory.mktemp("source")
    build_index(root / "corpus", _settings(root), HashEmbedder())
    settings, cfg, app = _app(root)
    store = app.state.vb.keys
    keys = {"admin": store.add("admin", "admin"), "fin": store.add("fin", "reader", "financien")}
    keys["pub"] = store.add("pub", "reader")
    with TestClient(app) as client:
        files = {"file": ("havenplan.txt", b"Het havenplan: de haven krijgt een nieuwe kade in 2025.", "text/plain")}
        r = client.post("/v1/documents", files=files, headers={"Authorization": f"Bearer {keys['admin']}"})
        assert r.status_code in (200, 201), r.text
        before = _answers(client, keys)
        a = client.post("/v1/ask", json={"question": QUESTIONS[1][1]}, headers={"X-API-Key": keys["pub"]}).json()
        url = a["citations"][0]["url"]
        for who, rating in (("pub", "up"), ("fin", "down")):
            r = client.post(
                "/v1/feedback",
                json={"answer_id": a["id"], "rating": rating, "comment": f"van {who}"},
                headers={"X-API-Key": keys[who]},
            )
            assert r.status_code == 201
    assert (cfg.uploads_dir / "havenplan.txt").is_file() and cfg.link_secret_file.is_file()
    return {"root": root, "settings": settings, "cfg": cfg, "app": app, "keys": keys, "before": before, "url": url}


@pytest.fixture(scope="module")
def archive(source, tmp_path_factory):
    """A backup taken while a writer ingests another document (in a thread)."""
    root, settings, cfg = source["root"], source["settings"], source["cfg"]
    gen_before = read_current(settings.index_dir)
    extra = root / "extra"
    extra.mkdir()
    (extra / "fietsplan.md").write_text("# Fietsplan\n\nDe gemeente legt 12 km fietspad aan.\n", encoding="utf-8")
    started = threading.Event()
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            report = ingest_paths([extra], settings, SlowEmbedder(started), wait=True)
            assert report.ok, report.failed
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writer = threading.Thread(target=ingest)
    writer.start()
    assert started.wait(60)  # the writer holds the lock and is embedding
    dest = tmp_path_factory.mktemp("backups") / "state.tar.gz"
    report = backup(settings, cfg, dest)
    writer.join(60)
    assert not errors, errors
    gen_after = read_current(settings.index_dir)
    assert gen_after != gen_before
    assert report.generation in (gen_before, gen_after)  # one published generation, before or after
    # the answers of the live service at the archived generation
    with TestClient(source["app"]) as client:
        expected = source["before"] if report.generation == gen_before else _answers(client, source["keys"])
    return {"path": dest, "report": report, "expected": expected}


def test_archive_contents_and_mode(archive):
    report, path = archive["report"], archive["path"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert report.has_link_secret and report.n_documents >= 5
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        meta = json.loads(tar.extractfile("backup.json").read())
        for name, info in meta["files"].items():
            data = tar.extractfile(name).read()
            assert hashlib.sha256(data).hexdigest() == info["sha256"], name
    gen = report.generation
    assert {
        "index/CURRENT",
        f"index/{gen}/manifest.json",
        f"index/{gen}/chunks.sqlite",
        f"index/{gen}/vectors.faiss",
    } <= names
    assert {"data/keys.sqlite", "data/feedback.sqlite", "data/link-secret", "data/uploads/havenplan.txt"} <= names
    assert not [n for n in names if n.startswith("index/") and gen not in n and n != "index/CURRENT"]
    assert meta["format_version"] == 1 and meta["index"]["generation"] == gen
    assert meta["index"]["embedder"] == "test-hash-embedder" and meta["vraagbaak_version"]
    assert set(meta["files"]) == names - {"backup.json"}


def test_restore_on_a_fresh_machine_answers_the_same(source, archive, tmp_path):
    fresh = tmp_path / "fresh"
    settings, cfg = _folders(fresh)
    report = restore(settings, cfg, archive["path"])
    assert report.generation == archive["report"].generation == read_current(settings.index_dir)
    assert stat.S_IMODE(cfg.link_secret_file.stat().st_mode) == 0o600
    assert cfg.link_secret_file.read_bytes() == source["cfg"].link_secret_file.read_bytes()
    assert (cfg.uploads_dir / "havenplan.txt").read_bytes().startswith(b"Het havenplan")
    assert any("original file" in w for w in report.warnings)  # another data_dir path
    settings, cfg, app = _app(fresh)
    with TestClient(app) as client:
        assert _answers(client, source["keys"]) == archive["expected"]  # the old keys authenticate
        assert client.get(source["url"]).status_code == 200  # a viewer link signed before the backup
        export = client.get("/v1/feedback/export", headers={"X-API-Key": source["keys"]["admin"]})
        rows = [json.loads(x) for x in export.text.splitlines()]
        assert sorted((r["caller"], r["rating"], r["comment"]) for r in rows) == [
            ("fin", "down", "van fin"),
            ("pub", "up", "van pub"),
        ]
        assert (
            client.post("/v1/ask", json={"question": "x"}, headers={"X-API-Key": "vbk_000000000000_no"}).status_code
            == 401
        )


def _state(root: Path) -> dict[str, bytes]:
    return _tree(root / "index") | {f"data/{k}": v for k, v in _tree(root / "data").items()}


def test_damaged_archive_is_refused_and_changes_nothing(archive, tmp_path):
    data = bytearray(archive["path"].read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped byte
    bad = tmp_path / "flipped.tar.gz"
    bad.write_bytes(bytes(data))
    fresh = tmp_path / "fresh"
    settings, cfg = _folders(fresh)
    with pytest.raises(DamagedArchiveError, match="damaged"):
        restore(settings, cfg, bad)
    assert not (fresh / "index").exists() and not (fresh / "data").exists()
    assert not list(fresh.glob(".vraagbaak-restore-*"))  # no staging left behind

    # a well-formed archive with one changed file: the checksum refuses it, even with --force
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive["path"]) as src, tarfile.open(tampered, "w:gz") as dst:
        for m in src.getmembers():
            body = src.extractfile(m).read()
            if m.name == "data/link-secret":
                body = bytes([body[0] ^ 1]) + body[1:]
            dst.addfile(m, io.BytesIO(body))
    restore(settings, cfg, archive["path"])  # a target that holds state
    state = _state(fresh)
    with pytest.raises(DamagedArchiveError, match="data/link-secret does not match its checksum"):
        restore(settings, cfg, tampered, force=True)
    assert _state(fresh) == state


def test_restore_onto_a_non_empty_target_needs_force(source, archive, tmp_path):
    root = tmp_path / "busy"
    build_index(root / "corpus", _settings(root), HashEmbedder())
    settings, cfg, app = _app(root)
    other_key = app.state.vb.keys.add("someone", "reader")
    state = _state(root)
    with pytest.raises(TargetNotEmptyError, match="--force"):
        restore(settings, cfg, archive["path"])
    assert _state(root) == state
    # --force while this service runs: the restored generation is published next to the
    # existing ones, the live key store sees the restored keys at its next request
    with TestClient(app) as client:
        before = read_current(settings.index_dir)
        report = restore(settings, cfg, archive["path"], force=True)
        assert report.generation > before and read_current(settings.index_dir) == report.generation
        assert (settings.index_dir / before).is_dir()  # left for a later ingest's clean-up
        h = {"X-API-Key": source["keys"]["admin"]}
        assert client.get("/v1/documents", headers=h).status_code == 200
        assert client.get("/v1/documents", headers={"X-API-Key": other_key}).status_code == 401
        assert _answers(client, source["keys"]) == archive["expected"]
    manifest = json.loads((settings.index_dir / report.generation / "manifest.json").read_text())
    assert manifest["generation"] == int(report.generation[4:])  # the next writer numbers after it
    assert FeedbackStore(cfg.feedback_db).count() == 2
    with sqlite3.connect(cfg.keys_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_backup_errors(source, tmp_path):
    settings = _settings(tmp_path / "nothing")
    cfg = ServiceSettings(data_dir=tmp_path / "nothing" / "data")
    with pytest.raises(BackupError, match="no index"):
        backup(settings, cfg, tmp_path / "x.tar.gz")
    existing = tmp_path / "old.tar.gz"
    existing.write_bytes(b"old")
    with pytest.raises(BackupError, match="exists"):
        backup(source["settings"], source["cfg"], existing)
    assert existing.read_bytes() == b"old"
    not_gz = tmp_path / "notes.tar.gz"
    not_gz.write_bytes(gzip.compress(b"just text"))
    with pytest.raises(DamagedArchiveError):
        restore(settings, cfg, not_gz)


def test_cli_backup_and_restore(source, tmp_path, monkeypatch):
    from rag.cli import app as cli_app
    from service.cli import register

    register(cli_app)
    monkeypatch.setenv("VRAAGBAAK_REFUSAL_MIN_SCORE", "0")
    runner = CliRunner()
    src = ["--index-dir", str(source["settings"].index_dir), "--data-dir", str(source["cfg"].data_dir)]
    r = runner.invoke(cli_app, ["backup", str(tmp_path), *src])
    assert r.exit_code == 0, r.output
    assert "backup written" in r.output and "gen-" in r.output and "store it like a secret" in r.output
    (path,) = tmp_path.glob("vraagbaak-backup-*.tar.gz")
    dst = ["--index-dir", str(tmp_path / "new" / "index"), "--data-dir", str(tmp_path / "new" / "data")]
    r = runner.invoke(cli_app, ["restore", str(path), *dst])
    assert r.exit_code == 0, r.output
    assert "is live" in r.output
    r = runner.invoke(cli_app, ["restore", str(path), *dst])
    assert r.exit_code == 1 and "--force" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli_app, ["restore", str(path), "--force", *dst])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(path.read_bytes()[:-100])
    r = runner.invoke(cli_app, ["restore", str(bad), "--force", *dst])
    assert r.exit_code == 1 and "damaged" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli_app, ["backup", str(tmp_path / "x.tar.gz"), "--index-dir", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no index" in r.output
    # with the PostgreSQL backend configured, the archive would hold stale SQLite state: refused
    monkeypatch.setenv("VRAAGBAAK_DATABASE_URL", "postgresql://vb@127.0.0.1:1/vb")
    for args in (["backup", str(tmp_path / "y.tar.gz"), *src], ["restore", str(path), "--force", *dst]):
        r = runner.invoke(cli_app, args)
        assert r.exit_code == 1 and "pg_dump" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "y.tar.gz").exists()
    assert os.listdir(tmp_path / "new" / "data")
