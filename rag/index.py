"""The persisted hybrid index: FAISS vectors + SQLite chunk store + BM25, in generations.

Layout of ``index_dir``::

    CURRENT              name of the live generation ("gen-000007"), replaced atomically
    .lock                held (flock) by the one writer at a time
    gen-000007/
        manifest.json    embedder id, dimension, normalisation, counts, chunking settings
        chunks.sqlite    documents + chunks (text, heading path, page, metadata)
        vectors.faiss    IndexIDMap2 over inner product; ids are chunk ids
        bm25/            bm25s index + row -> chunk id map

A writer copies the live generation into a temporary folder, applies its changes there,
writes everything, fsyncs, renames the folder to the next generation name and only then
points CURRENT at it. A process killed at any moment leaves CURRENT on a complete
generation; readers notice a new CURRENT and reload without restart.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .lexical import BM25Index
from .types import Chunk, Document

FORMAT_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    date TEXT,
    doc_type TEXT,
    year INTEGER,
    groups TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    heading_path TEXT NOT NULL DEFAULT '[]',
    page INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class IndexError_(Exception):
    """Base class for index problems (named to avoid shadowing the builtin IndexError)."""


class IndexNotFoundError(IndexError_):
    pass


class EmbedderMismatchError(IndexError_):
    pass


class IndexLockedError(IndexError_):
    pass


@dataclass
class Manifest:
    embedder: str
    dim: int
    normalised: bool = True
    metric: str = "inner_product"
    generation: int = 0
    format_version: int = FORMAT_VERSION
    created_at: float = field(default_factory=time.time)
    n_documents: int = 0
    n_chunks: int = 0
    chunking: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, ensure_ascii=False)

    @classmethod
    def from_file(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _gen_name(n: int) -> str:
    return f"gen-{n:06d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


def read_current(index_dir: Path) -> str | None:
    try:
        name = (Path(index_dir) / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def check_embedder(manifest: Manifest, embedder_id: str, dim: int) -> None:
    if manifest.embedder != embedder_id or manifest.dim != dim:
        raise EmbedderMismatchError(
            f"This index was built with embedder '{manifest.embedder}' (dim {manifest.dim}), "
            f"but the configured embedder is '{embedder_id}' (dim {dim}). Use the same embedder, "
            "or rebuild the index into an empty folder (vraagbaak ingest --index-dir NEW ...)."
        )


# --------------------------------------------------------------------------- reading


class IndexSnapshot:
    """One generation of the index, opened read-only. Cheap to keep, safe to share."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = folder.name
        self.manifest = Manifest.from_file(folder / "manifest.json")
        self.vectors = faiss.read_index(str(folder / "vectors.faiss"))
        self.bm25 = BM25Index.load(folder / "bm25")
        # immutable=1: the generation never changes once published
        uri = f"file:{folder / 'chunks.sqlite'}?mode=ro&immutable=1"
        self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    # -- metadata queries ------------------------------------------------------------
    def chunk_rows(self, chunk_ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        if not chunk_ids:
            return {}
        q = (
            "SELECT c.chunk_id, c.doc_id, c.position, c.text, c.heading_path, c.page, "
            "d.title, d.source, d.date, d.doc_type, d.year, d.groups "
            "FROM chunks c JOIN documents d USING(doc_id) WHERE c.chunk_id IN (%s)"
        )
        out: dict[int, sqlite3.Row] = {}
        ids = [int(i) for i in chunk_ids]
        for start in range(0, len(ids), 900):
            part = ids[start : start + 900]
            for row in self.db.execute(q % ",".join("?" * len(part)), part):
                out[int(row["chunk_id"])] = row
        return out

    def filtered_chunk_ids(self, where: str, params: Sequence[Any]) -> np.ndarray:
        q = f"SELECT c.chunk_id FROM chunks c JOIN documents d USING(doc_id) WHERE {where}"
        return np.fromiter((r[0] for r in self.db.execute(q, list(params))), dtype=np.int64)

    def documents(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT d.*, (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.doc_id) AS n_chunks "
            "FROM documents d ORDER BY d.doc_id"
        )
        return [_doc_dict(r) for r in rows]

    def document(self, doc_id: str) -> dict[str, Any] | None:
        r = self.db.execute("SELECT * FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return _doc_dict(r) if r else None

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        rows = self.db.execute(
            "SELECT * FROM chunks WHERE doc_id = ? ORDER BY position", (doc_id,)
        ).fetchall()
        return [
            Chunk(
                doc_id=r["doc_id"],
                text=r["text"],
                heading_path=json.loads(r["heading_path"]),
                page=r["page"],
                position=r["position"],
                chunk_id=r["chunk_id"],
            )
            for r in rows
        ]


def _doc_dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["groups"] = json.loads(d.get("groups") or "[]")
    d["metadata"] = json.loads(d.get("metadata") or "{}")
    return d


def open_snapshot(index_dir: Path) -> IndexSnapshot:
    name = read_current(index_dir)
    if name is None:
        raise IndexNotFoundError(
            f"No index in '{index_dir}'. Build one first: vraagbaak ingest data/voorbeeld"
        )
    return IndexSnapshot(Path(index_dir) / name)


class IndexReader:
    """Holds the live snapshot and swaps to a newer generation when CURRENT changes.

    Checking costs one small file read, done at most every ``check_interval`` seconds.
    """

    def __init__(self, index_dir: Path, check_interval: float = 1.0) -> None:
        self.index_dir = Path(index_dir)
        self.check_interval = check_interval
        self._snapshot = open_snapshot(self.index_dir)
        self._checked = time.monotonic()

    def snapshot(self) -> IndexSnapshot:
        now = time.monotonic()
        if now - self._checked >= self.check_interval:
            self._checked = now
            name = read_current(self.index_dir)
            if name and name != self._snapshot.name:
                self._snapshot = IndexSnapshot(self.index_dir / name)
        return self._snapshot


# --------------------------------------------------------------------------- writing


class IndexWriter:
    """Changes to one new generation. Use through :func:`write_index`."""

    def __init__(self, folder: Path, manifest: Manifest, vectors: faiss.Index) -> None:
        self.folder = folder
        self.manifest = manifest
        self.vectors = vectors
        self.db = sqlite3.connect(folder / "chunks.sqlite")
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.executescript(_SCHEMA)

    def content_hash(self, doc_id: str) -> str | None:
        r = self.db.execute("SELECT content_hash FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return r[0] if r else None

    def doc_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT doc_id FROM documents")}

    def document_paths(self) -> dict[str, str | None]:
        """doc_id -> the file it was ingested from (metadata ``path``)."""
        rows = self.db.execute("SELECT doc_id, json_extract(metadata, '$.path') FROM documents")
        return {r[0]: r[1] for r in rows}

    def remove(self, doc_id: str) -> bool:
        ids = [r[0] for r in self.db.execute("SELECT chunk_id FROM chunks WHERE doc_id = ?", (doc_id,))]
        if ids:
            self.vectors.remove_ids(np.asarray(ids, dtype=np.int64))
        cur = self.db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        self.db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        return cur.rowcount > 0

    def upsert(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk expected")
        self.remove(doc.doc_id)
        self.db.execute(
            "INSERT INTO documents (doc_id, title, source, content_hash, date, doc_type, year, "
            "groups, metadata, ingested_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                doc.doc_id,
                doc.title,
                doc.source,
                doc.content_hash,
                doc.date,
                doc.doc_type,
                doc.year,
                json.dumps(sorted(doc.groups)),
                json.dumps(doc.metadata, ensure_ascii=False, default=str),
                time.time(),
            ),
        )
        ids = []
        for c in chunks:
            cur = self.db.execute(
                "INSERT INTO chunks (doc_id, position, text, heading_path, page) VALUES (?,?,?,?,?)",
                (doc.doc_id, c.position, c.text, json.dumps(c.heading_path, ensure_ascii=False), c.page),
            )
            c.chunk_id = int(cur.lastrowid)
            ids.append(c.chunk_id)
        if ids:
            self.vectors.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def _finish(self) -> None:
        rows = self.db.execute(
            "SELECT c.chunk_id, c.text, c.heading_path, d.title FROM chunks c "
            "JOIN documents d USING(doc_id) ORDER BY c.chunk_id"
        ).fetchall()
        bm25 = BM25Index.build(
            [r["chunk_id"] for r in rows],
            (
                Chunk(doc_id="", text=r["text"], heading_path=json.loads(r["heading_path"])).embed_text(r["title"])
                for r in rows
            ),
        )
        bm25.save(self.folder / "bm25")
        self.manifest.n_chunks = len(rows)
        self.manifest.n_documents = self.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        self.manifest.created_at = time.time()
        self.db.commit()
        self.db.execute("VACUUM")
        self.db.close()
        faiss.write_index(self.vectors, str(self.folder / "vectors.faiss"))
        (self.folder / "manifest.json").write_text(self.manifest.to_json(), encoding="utf-8")

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.db.close()


@contextlib.contextmanager
def _writer_lock(index_dir: Path, wait: bool) -> Iterator[None]:
    index_dir.mkdir(parents=True, exist_ok=True)
    fh = open(index_dir / ".lock", "a+")
    try:
        flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fh.fileno(), flags)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise IndexLockedError(
                    f"Another ingest is running on '{index_dir}'. Wait for it to finish "
                    "(or use --wait)."
                ) from exc
            raise
        yield
    finally:
        fh.close()


@contextlib.contextmanager
def write_index(
    index_dir: Path,
    embedder_id: str | None,
    dim: int | None,
    chunking: dict[str, Any] | None = None,
    wait: bool = False,
    keep_generations: int = 2,
) -> Iterator[IndexWriter]:
    """Open the next generation for writing; publish it when the block ends without error.

    ``embedder_id``/``dim`` must match the index's manifest; ``None`` (removal only) takes
    them from the existing index.
    """
    index_dir = Path(index_dir)
    with _writer_lock(index_dir, wait):
        for stale in index_dir.glob(".tmp-*"):  # left by a killed writer
            shutil.rmtree(stale, ignore_errors=True)
        current = read_current(index_dir)
        tmp = index_dir / f".tmp-{os.getpid()}-{int(time.time() * 1000)}"
        if current:
            if embedder_id is not None:
                check_embedder(Manifest.from_file(index_dir / current / "manifest.json"), embedder_id, dim or 0)
            shutil.copytree(index_dir / current, tmp)
            manifest = Manifest.from_file(tmp / "manifest.json")
            vectors = faiss.read_index(str(tmp / "vectors.faiss"))
            shutil.rmtree(tmp / "bm25", ignore_errors=True)
        else:
            if embedder_id is None or dim is None:
                raise IndexNotFoundError(f"No index in '{index_dir}'.")
            tmp.mkdir(parents=True)
            manifest = Manifest(embedder=embedder_id, dim=dim)
            vectors = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        manifest.generation += 1
        if chunking is not None:
            manifest.chunking = chunking
        writer = IndexWriter(tmp, manifest, vectors)
        try:
            yield writer
            writer._finish()
            _fsync_tree(tmp)
            final = index_dir / _gen_name(manifest.generation)
            if final.exists():  # a generation folder that was never published
                shutil.rmtree(final)
            os.rename(tmp, final)
            pointer = index_dir / "CURRENT.tmp"
            with open(pointer, "w", encoding="utf-8") as fh:
                fh.write(final.name + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(pointer, index_dir / "CURRENT")
            _fsync_dir(index_dir)
        except BaseException:
            writer.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _collect_garbage(index_dir, keep_generations)


def _collect_garbage(index_dir: Path, keep: int) -> None:
    gens = sorted(p for p in index_dir.glob("gen-*") if p.is_dir())
    current = read_current(index_dir)
    for old in gens[: max(0, len(gens) - max(keep, 1))]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
