"""Damaged index generations are detected when they are opened (sha256 of every file in the
manifest), refused with a clear message, and the previous intact generation is served and
built on; a disk that fills up during an ingest leaves the live generation as it was."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from rag.index import (
    IndexCorruptError,
    IndexReader,
    IndexWriteError,
    Manifest,
    open_snapshot,
    read_current,
    verify_generation,
)
from rag.indexing import ingest_paths
from rag.retrieve import Retriever


def _doc(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def two_generations(tmp_path, settings, hash_embedder):
    """gen 1: the zwembad document; gen 2: + the bibliotheek document (live)."""
    docs = tmp_path / "docs"
    _doc(docs, "zwembad.md", "# Zwembad\n\nHet zwembad in Haren opent in het voorjaar.\n")
    assert ingest_paths([docs], settings, hash_embedder).ok
    _doc(docs, "bibliotheek.md", "# Bibliotheek\n\nDe bibliotheek in Beijum krijgt een leeszaal.\n")
    assert ingest_paths([docs], settings, hash_embedder).ok
    index = Path(settings.index_dir)
    assert read_current(index) == "gen-000002"
    return docs, index


def _flip(path: Path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_file_of_a_generation_has_a_checksum(two_generations):
    _, index = two_generations
    manifest = verify_generation(index / "gen-000002")
    files = {p.relative_to(index / "gen-000002").as_posix() for p in (index / "gen-000002").rglob("*") if p.is_file()}
    assert set(manifest.checksums) == files - {"manifest.json"}
    assert {"vectors.faiss", "chunks.sqlite"} <= set(manifest.checksums)


@pytest.mark.parametrize("damage", ["flip-faiss", "truncate-sqlite", "delete-bm25", "manifest"])
def test_a_damaged_live_generation_is_refused_and_the_previous_one_served(
    two_generations, settings, hash_embedder, caplog, damage
):
    _, index = two_generations
    live = index / "gen-000002"
    if damage == "flip-faiss":
        _flip(live / "vectors.faiss")
    elif damage == "truncate-sqlite":
        with open(live / "chunks.sqlite", "r+b") as fh:
            fh.truncate(4096)
    elif damage == "delete-bm25":
        next(p for p in (live / "bm25").iterdir() if p.is_file()).unlink()
    else:
        (live / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="gen-000002"):
        verify_generation(live)
    with caplog.at_level(logging.ERROR, logger="vraagbaak.index"):
        snap = open_snapshot(index)
    assert snap.name == "gen-000001" and snap.fallback_from == "gen-000002"
    assert any("gen-000002" in r.getMessage() and "gen-000001" in r.getMessage() for r in caplog.records)
    # answers come from the intact generation
    hits = Retriever(settings, hash_embedder).search("zwembad Haren", top_k=1).hits
    assert hits and hits[0].doc_id == "docs/zwembad"


def test_the_next_ingest_builds_on_the_intact_generation_and_makes_the_lost_changes_again(
    two_generations, settings, hash_embedder
):
    docs, index = two_generations
    _flip(index / "gen-000002" / "vectors.faiss")
    report = ingest_paths([docs], settings, hash_embedder)
    assert report.ok and report.added == ["docs/bibliotheek"] and report.unchanged == ["docs/zwembad"]
    snap = open_snapshot(index)
    assert snap.name == "gen-000003" and snap.fallback_from is None
    assert {d["doc_id"] for d in snap.documents()} == {"docs/zwembad", "docs/bibliotheek"}


def test_a_running_reader_keeps_its_generation_when_a_damaged_one_is_published(
    two_generations, settings, hash_embedder
):
    docs, index = two_generations
    reader = IndexReader(index, check_interval=0)
    assert reader.snapshot().name == "gen-000002"
    _doc(docs, "sport.md", "# Sport\n\nDe sporthal in Zuid wordt verbouwd.\n")
    assert ingest_paths([docs], settings, hash_embedder).ok
    _flip(index / "gen-000003" / "chunks.sqlite", offset=200)
    assert reader.snapshot().name == "gen-000002"  # not the damaged gen-000003
    assert reader.snapshot().name == "gen-000002"  # and not re-checked on every call
    assert ingest_paths([docs], settings, hash_embedder).ok  # repaired by the next write
    assert reader.snapshot().name == "gen-000004"


def test_no_intact_generation_left_is_a_clear_error(two_generations):
    _, index = two_generations
    _flip(index / "gen-000001" / "vectors.faiss")
    _flip(index / "gen-000002" / "vectors.faiss")
    with pytest.raises(IndexCorruptError, match="no older intact generation.*(restore|rebuild)"):
        open_snapshot(index)


def test_a_generation_from_before_checksums_is_opened_and_its_damage_still_caught(two_generations):
    _, index = two_generations
    live = index / "gen-000002"
    manifest = json.loads((live / "manifest.json").read_text())
    manifest.pop("checksums")
    (live / "manifest.json").write_text(json.dumps(manifest))
    assert Manifest.from_file(live / "manifest.json").checksums == {}
    assert open_snapshot(index).name == "gen-000002"
    with open(live / "vectors.faiss", "r+b") as fh:
        fh.truncate(16)
    snap = open_snapshot(index)
    assert snap.name == "gen-000001" and snap.fallback_from == "gen-000002"


# --------------------------------------------------------------------------- disk full


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (needs root and mount; skipped with the reason otherwise)."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_during_ingest_leaves_the_live_generation(small_disk, tmp_path, settings, hash_embedder):
    s = settings.model_copy(update={"index_dir": small_disk / "index"})
    docs = tmp_path / "docs"
    _doc(docs, "klein.md", "# Klein\n\nEen korte tekst over de markt op zaterdag.\n")
    assert ingest_paths([docs], s, hash_embedder).ok
    before = read_current(s.index_dir)
    # ~5 MB of distinct text: more than the disk has left
    words = " ".join(f"woord{i} zin{i % 97}." for i in range(300_000))
    _doc(docs, "groot.md", "# Groot\n\n" + words + "\n")
    with pytest.raises(IndexWriteError, match="no space left.*stays live"):
        ingest_paths([docs], s, hash_embedder)
    assert read_current(s.index_dir) == before
    assert not list(Path(s.index_dir).glob(".tmp-*"))  # nothing half-written left
    snap = open_snapshot(s.index_dir)
    assert snap.name == before and [d["doc_id"] for d in snap.documents()] == ["docs/klein"]


def test_readyz_names_the_damaged_generation(two_generations, settings, hash_embedder, tmp_path):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config import ServiceSettings
    from service.testing import FakeLLM, make_pipeline

    _, index = two_generations
    _flip(index / "gen-000002" / "vectors.faiss")
    app = create_app(
        settings,
        make_pipeline(settings, hash_embedder, FakeLLM()),
        service_settings=ServiceSettings(data_dir=tmp_path / "d"),
    )
    with TestClient(app) as client:
        r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["index_generation"] == "gen-000001" and r.json()["index_damaged"] == "gen-000002"
