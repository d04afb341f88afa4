"""The persisted hybrid index: FAISS vectors + SQLite chunk store + BM25, in generations.

Layout of ``index_dir``::

    CURRENT              name of the live generation ("gen-000007"), replaced atomically
    .lock                held (flock) by the one writer at a time
    gen-000007/
        manifest.json    embedder id, dimension, normalisation, counts, chunking settings
        chunks.sqlite    documents + chunks (text, heading path, page, span in the document's
                         normalised text) + sections (the document's text, for the viewer)
        vectors.faiss    inner product over normalised vectors; ids are chunk ids (see below)
        bm25/            bm25s index + row -> chunk id map

A writer copies the live generation into a temporary folder, applies its changes there,
writes everything, fsyncs, renames the folder to the next generation name and only then
points CURRENT at it. A process killed at any moment leaves CURRENT on a complete
generation; readers notice a new CURRENT and reload without restart.

Vector index types (``VectorIndexConfig``, from the settings ``index_type``,
``index_auto_threshold``, ``ivf_nlist``, ``ivf_nprobe``):

- ``flat``     ``IndexIDMap2(IndexFlatIP)``: exact, 4 bytes x dim per vector;
- ``ivf_sq8``  ``IndexIVFScalarQuantizer`` (8-bit, inner product, hashtable direct map for
  ``reconstruct``/``remove_ids`` by chunk id): approximate, ~dim bytes per vector.

``auto`` picks flat below the threshold and ivf_sq8 from it (back to flat below 90% of it,
so an index near the threshold does not flip on every ingest). At the end of a write the
writer rebuilds the vector index when the wanted type changed or the IVF's list count is
off by 2x or more from the one its size calls for (the corpus grew or shrank ~4x): train on
a sample of the stored vectors, then add all of them in batches. Everything happens in the
temporary folder, so readers keep serving the previous generation meanwhile. Vectors come
back from the old index: exact from flat, SQ8-decoded (about 1% noise per component) from
ivf_sq8; no float copy is kept on disk. The manifest records the type and its parameters.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import shutil
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from filelock import FileLock
from filelock import Timeout as FileLockTimeout

from .lexical import BM25Index
from .rows import CHUNK_COLUMNS, DOCUMENT_COLUMNS, chunk_row, document_row, section_rows
from .types import Chunk, Document, Section

log = logging.getLogger("vraagbaak.index")

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
    page INTEGER,
    char_start INTEGER,
    char_end INTEGER,
    page_end INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS sections (
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    heading_path TEXT NOT NULL DEFAULT '[]',
    page INTEGER,
    text TEXT NOT NULL,
    PRIMARY KEY (doc_id, position)
);
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


class IndexCorruptError(IndexError_):
    """A generation whose files do not match its manifest's checksums, or cannot be opened."""


class IndexWriteError(IndexError_):
    """Writing the next generation failed (disk full, ...); the live generation is unchanged."""


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
    # indexes written before index types existed are flat
    index_type: str = "flat"
    index_params: dict[str, Any] = field(default_factory=dict)
    # sha256 of every file of the generation (relative POSIX path -> hex), checked when it is
    # opened; empty for generations written before checksums were kept (not checked)
    checksums: dict[str, str] = field(default_factory=dict)

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


# --------------------------------------------------------------------------- integrity


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def generation_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file of a generation folder except its manifest."""
    return {
        p.relative_to(folder).as_posix(): _sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def verify_generation(folder: Path) -> Manifest:
    """The generation's manifest, after checking every file against its checksum. Raises
    :class:`IndexCorruptError` naming what is wrong (a missing, changed or extra file, an
    unreadable manifest)."""
    try:
        manifest = Manifest.from_file(folder / "manifest.json")
    except (OSError, ValueError, TypeError) as exc:
        raise IndexCorruptError(f"index generation {folder.name}: unreadable manifest ({exc})") from exc
    if not manifest.checksums:
        return manifest  # written before checksums were kept: nothing to check against
    problems: list[str] = []
    for rel, want in manifest.checksums.items():
        path = folder / rel
        try:
            got = _sha256(path)
        except FileNotFoundError:
            problems.append(f"{rel} is missing")
            continue
        except OSError as exc:
            problems.append(f"{rel} cannot be read ({exc.strerror or exc})")
            continue
        if got != want:
            problems.append(f"{rel} is damaged (checksum mismatch)")
    if problems:
        raise IndexCorruptError(f"index generation {folder.name}: " + "; ".join(problems))
    return manifest


def check_embedder(manifest: Manifest, embedder_id: str, dim: int) -> None:
    if manifest.embedder != embedder_id or manifest.dim != dim:
        raise EmbedderMismatchError(
            f"This index was built with embedder '{manifest.embedder}' (dim {manifest.dim}), "
            f"but the configured embedder is '{embedder_id}' (dim {dim}). Use the same embedder, "
            "or rebuild the index into an empty folder (vraagbaak ingest --index-dir NEW ...)."
        )


# --------------------------------------------------------------------------- vector index types

INDEX_TYPES = ("auto", "flat", "ivf_sq8")
MIN_IVF_VECTORS = 64  # below this an IVF cannot be trained sensibly: the index stays flat
AUTO_DOWN_FACTOR = 0.9  # auto: back to flat only below 90% of the threshold (hysteresis)
TRAIN_POINTS_PER_LIST = 50  # k-means sample per IVF list (faiss warns below 39)
REBUILD_BATCH = 65_536  # vectors moved per batch during a rebuild (192 MB at dim 768)


@dataclass(frozen=True)
class VectorIndexConfig:
    """How the writer lays out ``vectors.faiss``. See the module docstring."""

    index_type: str = "auto"
    auto_threshold: int = 30_000  # chunks; flat search stays under ~20 ms below it (1 thread, dim 768)
    nlist: int = 0  # IVF lists; 0 = auto_nlist(chunks)
    nprobe: int = 32  # IVF lists scanned per query (stored in the index; the reader may override)

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"unknown index_type '{self.index_type}', choose from {INDEX_TYPES}")

    @classmethod
    def from_settings(cls, settings: Any) -> VectorIndexConfig:
        return cls(
            index_type=settings.index_type,
            auto_threshold=settings.index_auto_threshold,
            nlist=settings.ivf_nlist,
            nprobe=settings.ivf_nprobe,
        )

    def wanted_type(self, n: int, current: str) -> str:
        """The index type for ``n`` vectors, given the ``current`` one (for the hysteresis)."""
        if self.index_type == "flat" or n < MIN_IVF_VECTORS:
            return "flat"
        if self.index_type == "ivf_sq8":
            return "ivf_sq8"
        limit = self.auto_threshold * (AUTO_DOWN_FACTOR if current == "ivf_sq8" else 1.0)
        return "ivf_sq8" if n >= limit else "flat"

    def nlist_for(self, n: int) -> int:
        """The configured list count (capped so that each list has 39 vectors to train on), or auto."""
        return min(self.nlist, max(1, n // 39)) if self.nlist > 0 else auto_nlist(n)


def auto_nlist(n: int) -> int:
    """~4·sqrt(n) IVF lists, and never fewer than 39 vectors per list to train on."""
    return max(1, min(round(4 * math.sqrt(max(n, 1))), n // 39))


def index_type_of(index: faiss.Index) -> str:
    return "ivf_sq8" if faiss.try_extract_index_ivf(index) is not None else "flat"


def new_flat_index(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def new_ivf_sq8_index(dim: int, nlist: int, nprobe: int) -> faiss.Index:
    """An untrained IVF + 8-bit scalar quantiser over inner product (spherical k-means)."""
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.spherical = True
    index.nprobe = min(nprobe, nlist)
    return index


def needs_rebuild(index: faiss.Index, wanted: str, nlist: int, fixed_nlist: bool = False) -> bool:
    """Another type is wanted, or the IVF's list count is off: by 2x or more from the size-based
    one (the corpus grew or shrank ~4x since training), or different from a fixed ``ivf_nlist``."""
    if index_type_of(index) != wanted:
        return True
    if wanted != "ivf_sq8":
        return False
    current = faiss.try_extract_index_ivf(index).nlist
    if fixed_nlist:
        return current != nlist
    return current >= 2 * nlist or 2 * current <= nlist


def rebuild_vector_index(
    source: faiss.Index, ids: np.ndarray, index_type: str, dim: int, nlist: int, nprobe: int, seed: int = 0
) -> faiss.Index:
    """A new index of ``index_type`` holding the vectors of ``source`` for ``ids`` (sorted chunk ids).

    IVF: train on a random sample of ``TRAIN_POINTS_PER_LIST`` vectors per list, then add every
    vector in batches, so the extra memory is the new index plus one batch.
    """
    if index_type == "flat":
        index = new_flat_index(dim)
    else:
        index = new_ivf_sq8_index(dim, nlist, nprobe)
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(ids, size=min(len(ids), nlist * TRAIN_POINTS_PER_LIST), replace=False))
        index.train(_reconstruct(source, sample))
        faiss.extract_index_ivf(index).set_direct_map_type(faiss.DirectMap.Hashtable)
    for start in range(0, len(ids), REBUILD_BATCH):
        part = np.ascontiguousarray(ids[start : start + REBUILD_BATCH], dtype=np.int64)
        index.add_with_ids(_reconstruct(source, part), part)
    return index


def _reconstruct(index: faiss.Index, ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64)), dtype=np.float32)


def remove_vectors(index: faiss.Index, ids: Sequence[int]) -> int:
    """Drop vectors by chunk id; the IVF's hashtable direct map needs an ``IDSelectorArray``."""
    arr = np.ascontiguousarray(ids, dtype=np.int64)
    if faiss.try_extract_index_ivf(index) is not None:
        return int(index.remove_ids(faiss.IDSelectorArray(arr)))
    return int(index.remove_ids(arr))


def id_selector(allowed: np.ndarray) -> faiss.IDSelector:
    """A selector over chunk ids: a bitmap (max id / 8 bytes; ~3 ms for 900k of 1M ids, where a
    ``IDSelectorBatch`` hash set took ~130 ms), O(1) per check."""
    bits = np.zeros(int(allowed.max()) + 1, dtype=bool)
    bits[allowed] = True
    return faiss.IDSelectorBitmap(np.packbits(bits, bitorder="little"))


def search_params(
    index: faiss.Index, allowed: np.ndarray | None, nprobe: int | None = None
) -> faiss.SearchParameters | None:
    """Search parameters for one query: the filter as an ID selector, and for an IVF the
    number of lists to scan.

    A filter keeping a fraction f of the vectors leaves about f of each scanned list, so an
    IVF scans ``nprobe / f`` lists (at most all of them) to see as many allowed vectors as an
    unfiltered search; with a very selective filter that is every list, i.e. an exact search
    over the allowed SQ8 vectors (the other vectors cost only a bitmap check).
    """
    sel = id_selector(allowed) if allowed is not None and len(allowed) else None
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return faiss.SearchParameters(sel=sel) if sel is not None else None
    probe = nprobe or ivf.nprobe
    if sel is not None and allowed is not None and index.ntotal:
        fraction = min(1.0, len(allowed) / index.ntotal)
        probe = int(np.ceil(probe / fraction))
    kwargs: dict[str, Any] = {"nprobe": max(1, min(probe, ivf.nlist))}
    if sel is not None:
        kwargs["sel"] = sel
    return faiss.SearchParametersIVF(**kwargs)


# --------------------------------------------------------------------------- reading

FILTER_CACHE_SIZE = 32  # distinct filters (e.g. callers' group sets) whose chunk ids a snapshot keeps


class IndexSnapshot:
    """One generation of the index, opened read-only. Cheap to keep, safe to share."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = folder.name
        self.manifest = verify_generation(folder)  # IndexCorruptError when a file is damaged
        try:
            self.vectors = faiss.read_index(str(folder / "vectors.faiss"))
            self.bm25 = BM25Index.load(folder / "bm25")
            # immutable=1: the generation never changes once published
            uri = f"file:{folder / 'chunks.sqlite'}?mode=ro&immutable=1"
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("SELECT COUNT(*) FROM documents").fetchone()
        except Exception as exc:  # an unchecked (older) generation with a damaged file
            raise IndexCorruptError(f"index generation {folder.name} cannot be opened: {exc}") from exc
        # generations written before spans and sections were kept lack them
        self.has_spans = "char_start" in _columns(self.db, "chunks")
        self.has_sections = bool(_columns(self.db, "sections"))
        self.fallback_from: str | None = None  # the damaged live generation this one stands in for
        self._filter_cache: OrderedDict[tuple[str, tuple[Any, ...]], np.ndarray] = OrderedDict()
        self._filter_lock = threading.Lock()

    def close(self) -> None:
        """Release the generation: its SQLite connection, vectors and BM25 (used after this: an error)."""
        self.db.close()
        self.vectors = None
        self.bm25 = None  # type: ignore[assignment]
        with self._filter_lock:
            self._filter_cache.clear()

    # -- metadata queries ------------------------------------------------------------
    def chunk_rows(self, chunk_ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        if not chunk_ids:
            return {}
        q = (
            "SELECT c.chunk_id, c.doc_id, c.position, c.text, c.heading_path, c.page, "
            + ("c.char_start, c.char_end, c.page_end, " if self.has_spans else _NO_SPANS)
            + "d.title, d.source, d.date, d.doc_type, d.year, d.groups "
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
        """Chunk ids matching a filter (read-only array). Cached: a generation never changes, and
        the query is slow on large indexes (a groups filter: ~260 ms at 50k chunks)."""
        key = (where, tuple(params))
        with self._filter_lock:
            if (hit := self._filter_cache.get(key)) is not None:
                self._filter_cache.move_to_end(key)
                return hit
        q = f"SELECT c.chunk_id FROM chunks c JOIN documents d USING(doc_id) WHERE {where}"
        ids = np.fromiter((r[0] for r in self.db.execute(q, list(params))), dtype=np.int64)
        ids.setflags(write=False)
        with self._filter_lock:
            self._filter_cache[key] = ids
            while len(self._filter_cache) > FILTER_CACHE_SIZE:
                self._filter_cache.popitem(last=False)
        return ids

    def documents(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT d.*, (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.doc_id) AS n_chunks "
            "FROM documents d ORDER BY d.doc_id"
        )
        return [_doc_dict(r) for r in rows]

    def document(self, doc_id: str) -> dict[str, Any] | None:
        r = self.db.execute("SELECT * FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return _doc_dict(r) if r else None

    def chunk_at(self, doc_id: str, position: int) -> Chunk | None:
        r = self.db.execute("SELECT * FROM chunks WHERE doc_id = ? AND position = ?", (doc_id, position)).fetchone()
        return _chunk(r) if r else None

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        rows = self.db.execute("SELECT * FROM chunks WHERE doc_id = ? ORDER BY position", (doc_id,)).fetchall()
        return [_chunk(r) for r in rows]

    def chunk(self, chunk_id: int) -> Chunk | None:
        r = self.db.execute("SELECT * FROM chunks WHERE chunk_id = ?", (int(chunk_id),)).fetchone()
        return _chunk(r) if r else None

    def sections_of(self, doc_id: str) -> list[Section]:
        """The document's sections as ingested (their texts joined by a blank line are the
        normalised text that chunk spans point into); [] for a generation or document indexed
        before they were kept."""
        if not self.has_sections:
            return []
        rows = self.db.execute(
            "SELECT heading_path, page, text FROM sections WHERE doc_id = ? ORDER BY position", (doc_id,)
        ).fetchall()
        return [Section(text=r["text"], heading_path=json.loads(r["heading_path"]), page=r["page"]) for r in rows]


_NO_SPANS = "NULL AS char_start, NULL AS char_end, NULL AS page_end, "


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a copied older generation's tables up to the current schema (new columns are
    NULL for the rows already there; the sections table is created by the schema)."""
    have = _columns(db, "chunks")
    if have:
        for column in ("char_start", "char_end", "page_end"):
            if column not in have:
                db.execute(f"ALTER TABLE chunks ADD COLUMN {column} INTEGER")


def _chunk(r: sqlite3.Row) -> Chunk:
    keys = r.keys()
    return Chunk(
        doc_id=r["doc_id"],
        text=r["text"],
        heading_path=json.loads(r["heading_path"]),
        page=r["page"],
        position=r["position"],
        chunk_id=r["chunk_id"],
        char_start=r["char_start"] if "char_start" in keys else None,
        char_end=r["char_end"] if "char_end" in keys else None,
        page_end=r["page_end"] if "page_end" in keys else None,
    )


def _doc_dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["groups"] = json.loads(d.get("groups") or "[]")
    d["metadata"] = json.loads(d.get("metadata") or "{}")
    return d


def open_snapshot(index_dir: Path, skip: set[str] | frozenset[str] = frozenset()) -> IndexSnapshot:
    """The live generation (``CURRENT``); when it is damaged, the newest older generation that
    is intact, with the damage logged as an error. Raises IndexCorruptError when none is."""
    index_dir = Path(index_dir)
    name = read_current(index_dir)
    if name is None:
        raise IndexNotFoundError(f"No index in '{index_dir}'. Build one first: vraagbaak ingest data/voorbeeld")
    try:
        if name in skip:
            raise IndexCorruptError(f"index generation {name} was found damaged before")
        return IndexSnapshot(index_dir / name)
    except IndexCorruptError as exc:
        damage = str(exc)
    for folder in sorted((p for p in index_dir.glob("gen-*") if p.is_dir() and p.name < name), reverse=True):
        if folder.name in skip:
            continue
        try:
            snap = IndexSnapshot(folder)
        except IndexCorruptError:
            continue
        log.error("%s; serving the previous intact generation %s instead", damage, folder.name)
        snap.fallback_from = name
        return snap
    raise IndexCorruptError(
        f"{damage}, and no older intact generation is left in '{index_dir}'. "
        "Restore a backup (vraagbaak restore) or rebuild the index (vraagbaak ingest --sync …)."
    )


class IndexReader:
    """Holds the live snapshot and swaps to a newer generation when CURRENT changes.

    Checking costs one small file read, done at most every ``check_interval`` seconds. A
    snapshot that was swapped out is closed ``retire_after`` seconds later (its SQLite file,
    vectors and BM25 released): a request reads its snapshot only while it retrieves and builds
    its context (after its wait for the LLM gate, seconds before generation), so it has long
    finished with it by then, and nothing that keeps a reference to an old snapshot can keep its
    generation's memory and file descriptors (found by the 30-minute soak: one deleted
    generation's chunks.sqlite stayed open per new generation, +54 fds and +475 MB).
    """

    def __init__(self, index_dir: Path, check_interval: float = 1.0, retire_after: float = 60.0) -> None:
        self.index_dir = Path(index_dir)
        self.check_interval = check_interval
        self.retire_after = retire_after
        self._snapshot = open_snapshot(self.index_dir)
        self._checked = time.monotonic()
        self._retired: list[tuple[float, IndexSnapshot]] = []
        self._lock = threading.Lock()

    def snapshot(self) -> IndexSnapshot:
        now = time.monotonic()
        if now - self._checked < self.check_interval:
            return self._snapshot
        with self._lock:
            if now - self._checked < self.check_interval:  # another thread just checked
                return self._snapshot
            self._checked = now
            name = read_current(self.index_dir)
            if name and name != self._snapshot.name and name != self._snapshot.fallback_from:
                try:
                    new = IndexSnapshot(self.index_dir / name)
                except IndexCorruptError as exc:
                    # keep serving the generation in use; report the damaged one once
                    log.error("%s; still serving %s", exc, self._snapshot.name)
                    self._snapshot.fallback_from = name
                else:
                    self._retired.append((now, self._snapshot))
                    self._snapshot = new
            while self._retired and now - self._retired[0][0] >= self.retire_after:
                self._retired.pop(0)[1].close()
        return self._snapshot

    def close(self) -> None:
        with self._lock:
            for _, snap in self._retired:
                snap.close()
            self._retired.clear()
            self._snapshot.close()


# --------------------------------------------------------------------------- writing


class IndexWriter:
    """Changes to one new generation. Use through :func:`write_index`."""

    def __init__(
        self, folder: Path, manifest: Manifest, vectors: faiss.Index, config: VectorIndexConfig | None = None
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.vectors = vectors
        self.config = config or VectorIndexConfig()
        self.db = sqlite3.connect(folder / "chunks.sqlite")
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA foreign_keys = ON")
        _migrate(self.db)
        self.db.executescript(_SCHEMA)

    def content_hash(self, doc_id: str) -> str | None:
        """The stored hash of ``doc_id``; "" for a document indexed before sections and spans
        were kept (so that the next ingest indexes it again, even when its file is unchanged)."""
        r = self.db.execute(
            "SELECT content_hash, EXISTS(SELECT 1 FROM sections s WHERE s.doc_id = d.doc_id) "
            "FROM documents d WHERE doc_id = ?",
            (doc_id,),
        ).fetchone()
        if r is None:
            return None
        return r[0] if r[1] else ""

    def doc_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT doc_id FROM documents")}

    def document_paths(self) -> dict[str, str | None]:
        """doc_id -> the file it was ingested from (metadata ``path``)."""
        rows = self.db.execute("SELECT doc_id, json_extract(metadata, '$.path') FROM documents")
        return {r[0]: r[1] for r in rows}

    def remove(self, doc_id: str) -> bool:
        ids = [r[0] for r in self.db.execute("SELECT chunk_id FROM chunks WHERE doc_id = ?", (doc_id,))]
        if ids:
            remove_vectors(self.vectors, ids)
        cur = self.db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        self.db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        self.db.execute("DELETE FROM sections WHERE doc_id = ?", (doc_id,))
        return cur.rowcount > 0

    def upsert(
        self,
        doc: Document,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        keep_ids: bool = False,
        ingested_at: float | None = None,
    ) -> None:
        """Replace ``doc``; its chunks get new ids, or keep their own ``chunk_id`` with
        ``keep_ids`` (a migration: links and feedback that name chunk ids stay valid)."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk expected")
        self.remove(doc.doc_id)
        self.db.execute(
            f"INSERT INTO documents ({', '.join(DOCUMENT_COLUMNS)}) VALUES ({','.join('?' * len(DOCUMENT_COLUMNS))})",
            document_row(doc, json.dumps(sorted(doc.groups)), ingested_at),
        )
        self.db.executemany(
            "INSERT INTO sections (doc_id, position, heading_path, page, text) VALUES (?,?,?,?,?)", section_rows(doc)
        )
        columns = ("chunk_id", *CHUNK_COLUMNS) if keep_ids else CHUNK_COLUMNS
        ids = []
        for c in chunks:
            row = chunk_row(doc.doc_id, c)
            cur = self.db.execute(
                f"INSERT INTO chunks ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})",
                (c.chunk_id, *row) if keep_ids else row,
            )
            assert cur.lastrowid is not None  # set by every INSERT
            c.chunk_id = int(cur.lastrowid)
            ids.append(c.chunk_id)
        if ids:
            self.vectors.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def _fit_vectors(self) -> None:
        """Rebuild the vector index when its type or IVF size no longer fits the chunk count."""
        ids = np.fromiter((r[0] for r in self.db.execute("SELECT chunk_id FROM chunks ORDER BY chunk_id")), np.int64)
        wanted = self.config.wanted_type(len(ids), index_type_of(self.vectors))
        nlist = self.config.nlist_for(len(ids))
        trained_on = self.manifest.index_params.get("trained_on", 0)
        if needs_rebuild(self.vectors, wanted, nlist, fixed_nlist=self.config.nlist > 0):
            self.vectors = rebuild_vector_index(self.vectors, ids, wanted, self.manifest.dim, nlist, self.config.nprobe)
            trained_on = len(ids)
        self.manifest.index_type = wanted
        self.manifest.index_params = {}
        ivf = faiss.try_extract_index_ivf(self.vectors)
        if ivf is not None:
            ivf.nprobe = min(self.config.nprobe, ivf.nlist)
            self.manifest.index_params = {
                "nlist": int(ivf.nlist),
                "nprobe": int(ivf.nprobe),
                "quantizer": "SQ8",
                "trained_on": trained_on,
            }

    def _finish(self) -> None:
        self._fit_vectors()
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
    lock = FileLock(index_dir / ".lock")
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except FileLockTimeout as exc:
        raise IndexLockedError(
            f"Another ingest is running on '{index_dir}'. Wait for it to finish (or use --wait)."
        ) from exc
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def write_index(
    index_dir: Path,
    embedder_id: str | None,
    dim: int | None,
    chunking: dict[str, Any] | None = None,
    wait: bool = False,
    keep_generations: int = 2,
    vector_config: VectorIndexConfig | None = None,
    fresh: bool = False,
) -> Iterator[IndexWriter]:
    """Open the next generation for writing; publish it when the block ends without error.

    ``embedder_id``/``dim`` must match the index's manifest; ``None`` (removal only) takes
    them from the existing index. ``vector_config`` (default: the defaults of the settings)
    decides the vector index type at the end of the write. ``fresh``: the new generation
    starts empty instead of as a copy of the live one (``vraagbaak index migrate --replace``),
    and may have another embedder.
    """
    index_dir = Path(index_dir)
    with _writer_lock(index_dir, wait):
        for stale in index_dir.glob(".tmp-*"):  # left by a killed writer
            shutil.rmtree(stale, ignore_errors=True)
        current = read_current(index_dir)
        tmp = index_dir / f".tmp-{os.getpid()}-{int(time.time() * 1000)}"
        if current and not fresh:
            current = _intact_base(index_dir, current)
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
            vectors = new_flat_index(dim)
        # after the newest folder there is (when the live generation was damaged and an older
        # one is the base, its successor's number is taken already)
        manifest.generation = max([manifest.generation, *_generation_numbers(index_dir)]) + 1
        if chunking is not None:
            manifest.chunking = chunking
        writer = IndexWriter(tmp, manifest, vectors, vector_config)
        try:
            yield writer
            writer._finish()
            manifest.checksums = generation_checksums(tmp)
            (tmp / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
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
        except BaseException as exc:
            writer.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            if _disk_full(exc):
                raise IndexWriteError(
                    f"no space left on the device of '{index_dir}' while writing the next index generation; "
                    f"nothing was changed: {current or 'no generation'} stays live. Free space and run the ingest again."
                ) from exc
            raise
        _collect_garbage(index_dir, keep_generations)


def _generation_numbers(index_dir: Path) -> list[int]:
    out = []
    for p in index_dir.glob("gen-*"):
        with contextlib.suppress(ValueError):
            out.append(int(p.name[4:]))
    return out


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT anywhere in the exception chain (SQLite says "database or disk is full")."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(e, sqlite3.OperationalError) and "full" in str(e):
            return True
        if "No space left on device" in str(e):  # faiss and bm25s raise RuntimeError/others
            return True
        e = e.__cause__ or e.__context__
    return False


def _intact_base(index_dir: Path, current: str) -> str:
    """The generation a writer starts from: the live one when it is intact, else the newest
    intact older one (the changes of the damaged one are then made again by the next ingest:
    its documents are missing or older in the base, so their files count as new or changed)."""
    try:
        verify_generation(index_dir / current)
        return current
    except IndexCorruptError as exc:
        damage = str(exc)
    for folder in sorted((p for p in index_dir.glob("gen-*") if p.is_dir() and p.name < current), reverse=True):
        try:
            verify_generation(folder)
        except IndexCorruptError:
            continue
        log.error("%s; the next generation is built on %s", damage, folder.name)
        return folder.name
    raise IndexCorruptError(
        f"{damage}, and no older intact generation is left to build on. Rebuild into an empty folder "
        "(vraagbaak ingest --index-dir NEW …) or restore a backup."
    )


def _collect_garbage(index_dir: Path, keep: int) -> None:
    gens = sorted(p for p in index_dir.glob("gen-*") if p.is_dir())
    current = read_current(index_dir)
    for old in gens[: max(0, len(gens) - max(keep, 1))]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
