"""Index: incremental ingest, removal, sync, manifest checks, crash safety, reader pick-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rag.index import (
    EmbedderMismatchError,
    IndexLockedError,
    IndexNotFoundError,
    IndexReader,
    open_snapshot,
    read_current,
    write_index,
)
from rag.indexing import ingest_paths, remove_documents
from rag.retrieve import Filters, Retriever
from tests.conftest import REPO, HashEmbedder


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    _write(
        d,
        "begroting-2023-zorg.md",
        "# Zorg\n\n## Mantelzorg\n\nDe gemeente besteedt 2 miljoen euro aan mantelzorgondersteuning in 2023.\n\n## Jeugd\n\nVoor jeugdhulp is 40 miljoen euro begroot, vooral voor wijkteams.\n",
    )
    _write(
        d,
        "raadsbrief-2022-parkeren.md",
        "# Parkeren\n\n## Tarieven\n\nEen parkeervergunning voor bewoners kost 105 euro per jaar in de binnenstad.\n",
    )
    _write(
        d,
        "nota-2021-sport.md",
        "# Sport\n\n## Zwembaden\n\nHet nieuwe zwembad in Haren opent in het voorjaar met een wedstrijdbad van 50 meter.\n",
    )
    return d


def test_ingest_then_search_finds_the_right_document(corpus, settings, hash_embedder):
    report = ingest_paths([corpus], settings, hash_embedder)
    assert report.ok and len(report.added) == 3 and report.chunks_embedded >= 3
    r = Retriever(settings, hash_embedder)
    hits = r.search("Wat kost een parkeervergunning voor bewoners?", top_k=3).hits
    assert hits[0].doc_id == "docs/raadsbrief-2022-parkeren"
    assert hits[0].heading_path[-1] == "Tarieven"
    assert hits[0].title == "Parkeren"


def test_reingest_unchanged_does_nothing(corpus, settings, hash_embedder):
    ingest_paths([corpus], settings, hash_embedder)
    calls = hash_embedder.calls
    gen = read_current(settings.index_dir)
    report = ingest_paths([corpus], settings, hash_embedder)
    assert len(report.unchanged) == 3 and not report.added and not report.updated
    assert report.chunks_embedded == 0
    # nothing new to embed: the embedder is called with an empty list at most
    assert hash_embedder.calls - calls <= 1
    assert read_current(settings.index_dir) != gen  # a new (identical) generation is fine
    assert open_snapshot(settings.index_dir).manifest.n_documents == 3


def test_changed_file_replaces_its_chunks(corpus, settings, hash_embedder):
    ingest_paths([corpus], settings, hash_embedder)
    _write(corpus, "nota-2021-sport.md", "# Sport\n\n## IJsbaan\n\nDe ijsbaan in Kardinge krijgt een nieuw dak.\n")
    report = ingest_paths([corpus], settings, hash_embedder)
    assert report.updated == ["docs/nota-2021-sport"]
    snap = open_snapshot(settings.index_dir)
    texts = " ".join(c.text for c in snap.chunks_of("docs/nota-2021-sport"))
    assert "ijsbaan" in texts and "zwembad" not in texts
    hits = Retriever(settings, hash_embedder).search("zwembad wedstrijdbad Haren", top_k=5).hits
    assert all("zwembad" not in h.text for h in hits)
    assert snap.vectors.ntotal == snap.manifest.n_chunks


def test_remove_and_sync(corpus, settings, hash_embedder):
    ingest_paths([corpus], settings, hash_embedder)
    assert remove_documents(["docs/nota-2021-sport", "docs/nope"], settings) == ["docs/nota-2021-sport"]
    snap = open_snapshot(settings.index_dir)
    assert {d["doc_id"] for d in snap.documents()} == {"docs/begroting-2023-zorg", "docs/raadsbrief-2022-parkeren"}
    assert snap.vectors.ntotal == snap.manifest.n_chunks
    (corpus / "raadsbrief-2022-parkeren.md").unlink()
    report = ingest_paths([corpus], settings, hash_embedder, sync=True)
    assert report.removed == ["docs/raadsbrief-2022-parkeren"]
    assert report.added == ["docs/nota-2021-sport"]  # still on disk: comes back
    docs = [d["doc_id"] for d in open_snapshot(settings.index_dir).documents()]
    assert docs == ["docs/begroting-2023-zorg", "docs/nota-2021-sport"]


def test_bad_files_are_reported_and_the_rest_is_indexed(corpus, settings, hash_embedder):
    (corpus / "kapot.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf \x00\x01\x02")
    (corpus / "leeg.txt").write_text("", encoding="utf-8")
    (corpus / "tabel.xlsx").write_bytes(b"PK\x03\x04")
    # an unsupported file named explicitly is a failure (inside a folder it is not picked up)
    report = ingest_paths([corpus, corpus / "tabel.xlsx", corpus.parent / "bestaat-niet"], settings, hash_embedder)
    failed = {Path(p).name: reason for p, reason in report.failed}
    assert set(failed) == {"kapot.pdf", "leeg.txt", "tabel.xlsx", "bestaat-niet"}
    assert all(reason for reason in failed.values())
    assert len(report.added) == 3 and not report.ok


def test_sync_keeps_a_document_whose_new_version_fails_to_parse(corpus, settings, hash_embedder):
    ingest_paths([corpus], settings, hash_embedder)
    (corpus / "nota-2021-sport.md").write_bytes(b"")  # now empty: fails
    report = ingest_paths([corpus], settings, hash_embedder, sync=True)
    assert [Path(p).name for p, _ in report.failed] == ["nota-2021-sport.md"]
    assert report.removed == []
    assert "docs/nota-2021-sport" in {d["doc_id"] for d in open_snapshot(settings.index_dir).documents()}


def test_opening_with_another_embedder_is_refused(corpus, settings, hash_embedder):
    ingest_paths([corpus], settings, hash_embedder)
    other = HashEmbedder(dim=128, model_id="another-model")
    with pytest.raises(EmbedderMismatchError, match="another-model"):
        Retriever(settings, other)
    with pytest.raises(EmbedderMismatchError):
        ingest_paths([corpus], settings, other)
    # the refused writer left nothing behind
    assert not list(settings.index_dir.glob(".tmp-*"))


def test_no_index_gives_a_clear_error(settings, hash_embedder):
    with pytest.raises(IndexNotFoundError, match="vraagbaak ingest"):
        Retriever(settings, hash_embedder)


def test_one_writer_at_a_time(corpus, settings, hash_embedder):
    ingest_paths([corpus], settings, hash_embedder)
    with write_index(settings.index_dir, hash_embedder.model_id, hash_embedder.dim):
        with pytest.raises(IndexLockedError, match="Another ingest"):
            ingest_paths([corpus], settings, hash_embedder)


def test_failed_write_keeps_previous_generation(corpus, settings, hash_embedder):
    ingest_paths([corpus], settings, hash_embedder)
    before = read_current(settings.index_dir)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with write_index(settings.index_dir, hash_embedder.model_id, hash_embedder.dim) as w:
            w.remove("docs/begroting-2023-zorg")
            raise Boom
    assert read_current(settings.index_dir) == before
    assert not list(settings.index_dir.glob(".tmp-*"))
    assert open_snapshot(settings.index_dir).manifest.n_documents == 3


def test_reader_picks_up_new_generation_without_restart(corpus, settings, hash_embedder):
    ingest_paths([corpus], settings, hash_embedder)
    reader = IndexReader(settings.index_dir, check_interval=0)
    r = Retriever(settings, hash_embedder, reader=reader)
    assert not [h for h in r.search("ijsbaan Kardinge dak", top_k=3).hits if "ijsbaan" in h.text]
    _write(corpus, "nota-2024-ijs.md", "# IJs\n\nDe ijsbaan in Kardinge krijgt een nieuw dak.\n")
    ingest_paths([corpus], settings, hash_embedder)
    hits = r.search("ijsbaan Kardinge dak", top_k=3).hits
    assert hits[0].doc_id == "docs/nota-2024-ijs"


def test_filters_apply_before_ranking(corpus, settings, hash_embedder):
    ingest_paths([corpus], settings, hash_embedder)
    ingest_paths(
        [
            _write(
                corpus.parent / "geheim", "nota-2024-geheim.md", "# Geheim\n\nHet parkeerbudget Zuiderdiep is 7 ton.\n"
            ).parent
        ],
        settings,
        hash_embedder,
        groups=["financien"],
    )
    r = Retriever(settings, hash_embedder)
    q = "parkeerbudget Zuiderdiep"
    assert r.search(q, top_k=1).hits[0].doc_id == "geheim/nota-2024-geheim"  # trusted caller
    for fusion in ("dense", "bm25", "rrf", "score"):
        hits = r.search(q, top_k=10, filters=Filters(groups=["sociaal"]), fusion=fusion).hits
        assert all(h.doc_id != "geheim/nota-2024-geheim" for h in hits), fusion
        hits = r.search(q, top_k=10, filters=Filters(groups=["financien"]), fusion=fusion).hits
        assert hits[0].doc_id == "geheim/nota-2024-geheim", fusion
    hits = r.search("zorg", top_k=10, filters=Filters(doc_types=["raadsbrief"])).hits
    assert hits and {h.doc_type for h in hits} == {"raadsbrief"}
    hits = r.search("zorg", top_k=10, filters=Filters(years=[2021])).hits
    assert hits and {h.year for h in hits} == {2021}
    assert r.search("zorg", top_k=10, filters=Filters(doc_ids=[])).hits == []


_KILL_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    sys.path.insert(0, {repo!r})
    from tests.conftest import HashEmbedder
    from rag.index import IndexWriter
    from rag.indexing import ingest_paths
    from rag.settings import Settings

    stage = sys.argv[1]
    orig = IndexWriter.upsert if stage == "write" else IndexWriter._finish

    def slow(self, *a, **kw):
        orig(self, *a, **kw)
        print("READY", flush=True)
        time.sleep(60)

    if stage == "write":
        IndexWriter.upsert = slow
    else:
        IndexWriter._finish = slow
    ingest_paths([sys.argv[2]], Settings(index_dir=sys.argv[3]), HashEmbedder())
    """
)


@pytest.mark.parametrize("stage", ["write", "finish"])
def test_killed_ingest_leaves_previous_index_usable(stage, corpus, settings, hash_embedder, tmp_path):
    ingest_paths([corpus], settings, hash_embedder)
    before = read_current(settings.index_dir)
    _write(corpus, "nota-2025-nieuw.md", "# Nieuw\n\nDe bibliotheek in Beijum gaat in 2025 open.\n")
    script = tmp_path / "child.py"
    script.write_text(_KILL_CHILD.format(repo=str(REPO)), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script), stage, str(corpus), str(settings.index_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "READY"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert read_current(settings.index_dir) == before
    hits = Retriever(settings, hash_embedder).search("parkeervergunning bewoners", top_k=1).hits
    assert hits[0].doc_id == "docs/raadsbrief-2022-parkeren"
    # the next writer cleans up what the killed one left and goes on
    report = ingest_paths([corpus], settings, hash_embedder)
    assert report.added == ["docs/nota-2025-nieuw"]
    assert not list(settings.index_dir.glob(".tmp-*"))
    t0 = time.time()
    assert (
        Retriever(settings, hash_embedder).search("bibliotheek Beijum", top_k=1).hits[0].doc_id
        == "docs/nota-2025-nieuw"
    )
    assert time.time() - t0 < 30


def test_swapped_out_snapshots_are_closed_and_their_files_released(tmp_path, settings, hash_embedder):
    """A reader closes a generation it swapped out ``retire_after`` seconds later, so deleted
    generations do not keep their SQLite file open (the soak found one fd per ingest)."""
    import sqlite3

    docs = tmp_path / "d"
    _write(docs, "a.md", "# A\n\nTekst nul.\n")
    ingest_paths([docs], settings, hash_embedder)
    reader = IndexReader(settings.index_dir, check_interval=0, retire_after=0)
    first = reader.snapshot()
    held = [first]  # something that keeps a reference to an old snapshot
    for i in range(4):
        _write(docs, "a.md", f"# A\n\nTekst {i + 1}.\n")
        ingest_paths([docs], settings, hash_embedder)
        held.append(reader.snapshot())
    reader.snapshot()
    with pytest.raises(sqlite3.ProgrammingError):
        first.db.execute("SELECT 1")  # closed, although still referenced
    assert first.vectors is None and first.bm25 is None
    live = reader.snapshot()
    assert live.document("d/a") is not None and live.name == read_current(settings.index_dir)
    open_files = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            open_files.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    leaked = [p for p in open_files if p.endswith("chunks.sqlite (deleted)") and str(settings.index_dir) in p]
    assert not leaked, leaked
    reader.close()
