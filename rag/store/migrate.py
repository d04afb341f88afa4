"""Move an index from one backend to the other without embedding anything again
(``vraagbaak index migrate --to postgres|embedded``).

What moves: every document (its row: title, source, content hash, date, type, year, access
groups, metadata, ingested_at), its sections (the viewer's text), its chunks with their ids,
positions, texts, heading paths, pages and spans, one vector per chunk, and the manifest's
embedder, dimension and chunking. Chunk ids are kept, so links and feedback that name a chunk
stay valid.

Vectors:

- from the embedded index: read back from FAISS. A ``flat`` index gives the stored float32
  vectors exactly; an ``ivf_sq8`` index keeps only 8-bit quantised vectors, so what comes back
  is the SQ8-decoded vector (about 1% noise per component), re-normalised. The report says
  which (``exact_vectors``); ``reembed`` embeds the chunk texts again instead, for that case.
- from PostgreSQL: read exactly (``vector_send``: pgvector's binary float4 form).

Targets, never half visible to a reader:

- PostgreSQL: ONE transaction. The tables are built in a schema of their own
  (``vraagbaak_migrate_<pid>``) with bulk ``COPY`` in batches, the indexes (HNSW, GIN) built
  after the load, and only at the end the old tables (if any) are dropped and the new ones
  moved into place. Readers see the old index (or none) until the commit, then the whole new
  one; the lock that blocks them is held only for that last step. The manifest's generation
  moves past the old one, so running replicas reload.
- embedded: one normal atomic generation (:func:`rag.index.write_index`, ``fresh``: it does
  not start from a copy of the live one); FAISS and BM25 are built by the writer as for an
  ingest.

A target that holds documents is refused unless ``replace`` is given.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ..index import (
    IndexCorruptError,
    IndexError_,
    IndexNotFoundError,
    IndexSnapshot,
    Manifest,
    VectorIndexConfig,
    index_type_of,
    read_current,
    write_index,
)
from ..rows import CHUNK_COLUMNS, DOCUMENT_COLUMNS, chunk_row, document_row, section_rows
from ..types import Chunk, Document, Section

Backend = Literal["embedded", "postgres"]
Progress = Callable[[int], None]  # called with the number of chunks just written
Embed = Callable[[list[str]], np.ndarray]  # chunk texts -> vectors (``reembed``)

TABLES = ("manifest", "documents", "chunks", "sections", "term_stats")
BATCH_CHUNKS = 2_000  # chunks per COPY batch into PostgreSQL
MAINTENANCE_WORK_MEM = "1GB"  # for the index builds after the load (PostgreSQL's default: 64MB)
READ_DOCUMENTS = 256  # documents fetched per query from a PostgreSQL source


class TargetNotEmptyError(IndexError_):
    """The target already holds an index with documents (use ``replace``)."""


@dataclass
class StoredDocument:
    """One document as an index keeps it: the row, its sections, its chunks (with their ids)
    and one vector per chunk."""

    doc: Document
    chunks: list[Chunk]
    vectors: np.ndarray
    ingested_at: float | None = None


@dataclass
class SourceInfo:
    backend: Backend
    location: str  # the index folder, or the database without its password
    name: str  # the generation read ("gen-000007", "pg-000042")
    generation: int
    embedder: str
    dim: int
    chunking: dict[str, Any]
    n_documents: int
    n_chunks: int
    vector_index: str  # flat | ivf_sq8 | pgvector
    exact_vectors: bool  # False: SQ8-decoded vectors (ivf_sq8)

    @classmethod
    def of(cls, backend: Backend, location: str, name: str, m: Manifest, vector_index: str) -> SourceInfo:
        return cls(
            backend=backend,
            location=location,
            name=name,
            generation=m.generation,
            embedder=m.embedder,
            dim=m.dim,
            chunking=dict(m.chunking),
            n_documents=m.n_documents,
            n_chunks=m.n_chunks,
            vector_index=vector_index,
            exact_vectors=vector_index != "ivf_sq8",
        )


class Source(Protocol):
    info: SourceInfo

    def documents(self) -> Iterator[StoredDocument]: ...

    def close(self) -> None: ...


@dataclass
class MigrationReport:
    source: SourceInfo
    target: Backend
    location: str
    generation: int
    n_documents: int = 0
    n_chunks: int = 0
    vectors: str = "exact"  # exact | sq8-decoded | re-embedded
    replaced: bool = False  # the target held an index that was replaced
    without_sections: int = 0  # documents indexed before sections were kept (no viewer text)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = self.source
        return (
            f"migrated {self.n_documents} documents, {self.n_chunks} chunks from {s.backend} {s.name} "
            f"({s.location}) to {self.target} ({self.location}), generation {self.generation}, "
            f"vectors {self.vectors}{', replaced the index there' if self.replaced else ''} "
            f"in {self.seconds:.1f}s"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_url(url: str) -> str:
    """The database at ``url`` without its password (for messages and run files)."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    host = str(info.get("host") or "localhost")
    if host.startswith("/"):
        host = "[socket]"
    port = f":{info['port']}" if info.get("port") else ""
    user = f"{info['user']}@" if info.get("user") else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname') or ''}"


def sq8_note() -> str:
    return (
        "the source is an ivf_sq8 index: FAISS keeps only 8-bit quantised vectors, so the vectors "
        "moved are SQ8-decoded approximations (about 1% noise per component), not the embedder's "
        "own (on the demo and FAQ sets this changed no retrieval metric: deploy/README.md); "
        "--reembed embeds the chunk texts again instead"
    )


# --------------------------------------------------------------------------- sources


def _document(row: dict[str, Any], sections: list[Section]) -> Document:
    return Document(
        doc_id=row["doc_id"],
        title=row["title"],
        source=row["source"],
        sections=sections,
        content_hash=row["content_hash"],
        date=row["date"],
        doc_type=row["doc_type"],
        year=row["year"],
        groups=list(row["groups"] or []),
        metadata=dict(row["metadata"] or {}),
    )


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.where(norms > 0, vectors / np.where(norms > 0, norms, 1.0), vectors).astype(np.float32)


class EmbeddedSource:
    """The live generation of an embedded index (a damaged one is refused, not replaced by an
    older generation as the service would)."""

    def __init__(self, index_dir: Path) -> None:
        index_dir = Path(index_dir)
        name = read_current(index_dir)
        if name is None:
            raise IndexNotFoundError(f"No index in '{index_dir}'.")
        self.snap = IndexSnapshot(index_dir / name)  # IndexCorruptError when a file is damaged
        m = self.snap.manifest
        self.info = SourceInfo.of("embedded", str(index_dir), name, m, index_type_of(self.snap.vectors))
        self._normalised = m.normalised

    def documents(self) -> Iterator[StoredDocument]:
        snap = self.snap
        for row in snap.documents():
            chunks = snap.chunks_of(row["doc_id"])
            ids = np.array([c.chunk_id for c in chunks], dtype=np.int64)
            vectors = np.zeros((0, self.info.dim), np.float32)
            if len(ids):
                vectors = np.ascontiguousarray(snap.vectors.reconstruct_batch(ids), dtype=np.float32)
                if not self.info.exact_vectors and self._normalised:
                    vectors = _normalise(vectors)
            yield StoredDocument(
                _document(row, snap.sections_of(row["doc_id"])), chunks, vectors, float(row["ingested_at"])
            )

    def close(self) -> None:
        self.snap.close()


class PostgresSource:
    """The index in PostgreSQL, read in ONE repeatable-read transaction (one committed state,
    whatever writers do meanwhile)."""

    def __init__(self, url: str) -> None:
        import psycopg

        from .postgres import _manifest, _read_manifest

        self.conn = psycopg.connect(url)
        self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = _read_manifest(self.conn)
        if row is None:
            self.conn.close()
            raise IndexNotFoundError(f"No index in the PostgreSQL database {describe_url(url)}.")
        m = _manifest(row)
        self.info = SourceInfo.of("postgres", describe_url(url), f"pg-{m.generation:06d}", m, "pgvector")

    def documents(self) -> Iterator[StoredDocument]:
        import json

        from psycopg.rows import dict_row

        from .postgres import _CHUNK_COLS, _chunk

        with self.conn.cursor(row_factory=dict_row) as cur:
            docs = cur.execute(
                f'SELECT {", ".join(DOCUMENT_COLUMNS)} FROM documents ORDER BY doc_id COLLATE "C"'
            ).fetchall()
            for start in range(0, len(docs), READ_DOCUMENTS):
                part = docs[start : start + READ_DOCUMENTS]
                ids = [d["doc_id"] for d in part]
                sections: dict[str, list[Section]] = {i: [] for i in ids}
                for r in cur.execute(
                    "SELECT doc_id, heading_path, page, text FROM sections WHERE doc_id = ANY(%s::text[]) "
                    "ORDER BY doc_id, position",
                    (ids,),
                ):
                    sections[r["doc_id"]].append(
                        Section(text=r["text"], heading_path=json.loads(r["heading_path"]), page=r["page"])
                    )
                chunks: dict[str, list[tuple[Chunk, bytes]]] = {i: [] for i in ids}
                for r in cur.execute(
                    f"SELECT {_CHUNK_COLS}, vector_send(embedding) AS vec FROM chunks "
                    "WHERE doc_id = ANY(%s::text[]) ORDER BY doc_id, position",
                    (ids,),
                ):
                    chunks[r["doc_id"]].append((_chunk(r), bytes(r["vec"])))
                for d in part:
                    pairs = chunks[d["doc_id"]]
                    yield StoredDocument(
                        _document(d, sections[d["doc_id"]]),
                        [c for c, _ in pairs],
                        vectors_from_pg([v for _, v in pairs], self.info.dim),
                        float(d["ingested_at"]),
                    )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.rollback()
        self.conn.close()


def vectors_from_pg(values: Sequence[bytes], dim: int) -> np.ndarray:
    """float32 vectors from pgvector's binary form (``vector_send``: int16 dim, int16 unused,
    then dim big-endian float4): exactly what is stored."""
    out = np.zeros((len(values), dim), np.float32)
    for i, b in enumerate(values):
        n = int.from_bytes(b[:2], "big")
        if n != dim:
            raise IndexCorruptError(f"a stored vector has dim {n}, the manifest says {dim}")
        out[i] = np.frombuffer(b, dtype=">f4", count=n, offset=4)
    return out


@contextlib.contextmanager
def open_source(backend: Backend, location: str | Path) -> Iterator[Source]:
    """The index to migrate from: an index folder (``embedded``) or a database URL (``postgres``)."""
    source: Source = EmbeddedSource(Path(location)) if backend == "embedded" else PostgresSource(str(location))
    try:
        yield source
    finally:
        source.close()


def _reembedded(docs: Iterator[StoredDocument], embed: Embed) -> Iterator[StoredDocument]:
    """The documents with vectors embedded again from their chunks' texts (as an ingest does)."""
    for d in docs:
        if d.chunks:
            d.vectors = np.asarray(embed([c.embed_text(d.doc.title) for c in d.chunks]), dtype=np.float32)
        yield d


def _stream(source: Source, embed: Embed | None) -> tuple[Iterator[StoredDocument], str]:
    if embed is not None:
        return _reembedded(source.documents(), embed), "re-embedded"
    return source.documents(), "exact" if source.info.exact_vectors else "sq8-decoded"


# --------------------------------------------------------------------------- PostgreSQL target


def migrate_to_postgres(
    source: Source,
    url: str,
    replace: bool = False,
    batch_chunks: int = BATCH_CHUNKS,
    progress: Progress | None = None,
    embed: Embed | None = None,
    maintenance_work_mem: str = MAINTENANCE_WORK_MEM,
) -> MigrationReport:
    """Write ``source`` into the database at ``url`` in one transaction (see the module
    docstring). Refuses a target with documents unless ``replace``. ``maintenance_work_mem``
    (this transaction only) bounds the memory of the index builds: the HNSW graph is built in
    memory while it fits (about 1.3 x the vectors: ~4 GB at 1M chunks of dim 768), on disk and
    many times slower beyond."""
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from .postgres import SCHEMA_LOCK, TERM_STATS_FILL, _schema

    info = source.info
    t0 = time.perf_counter()
    report = MigrationReport(source=info, target="postgres", location=describe_url(url), generation=0)
    docs, report.vectors = _stream(source, embed)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        schema = conn.execute("SELECT current_schema()").fetchone()
        if not schema or not schema[0]:
            raise IndexError_("no schema to create the tables in (search_path names none that exists)")
        target = str(schema[0])
        old = _existing_index(conn, target)
        if old is not None and old[0] > 0 and not replace:
            raise TargetNotEmptyError(
                f"the database {report.location} already holds an index ({old[0]} documents). "
                "Use --replace to replace it, or another database."
            )
        report.replaced = old is not None and old[0] > 0
        report.generation = max(info.generation, old[1] + 1 if old is not None else 0)
        staging = f"vraagbaak_migrate_{os.getpid()}"
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(staging)))
        conn.execute(
            "SELECT set_config('search_path', %s || ', ' || current_setting('search_path'), true)",
            (sql.Identifier(staging).as_string(conn),),
        )
        conn.execute(_schema(info.dim))
        # the indexes are built once after the load, not row by row (_schema creates them again)
        conn.execute(
            sql.SQL("DROP INDEX {s}.chunks_embedding, {s}.chunks_terms, {s}.chunks_tsv, {s}.documents_groups").format(
                s=sql.Identifier(staging)
            )
        )
        conn.execute(
            "CREATE TEMP TABLE chunk_load (chunk_id bigint, doc_id text, position integer, text text, "
            "heading_path text, page integer, char_start integer, char_end integer, page_end integer, "
            f"embedding vector({int(info.dim)}), terms text[], tfs integer[], n_terms integer, indexed text) "
            "ON COMMIT DROP"
        )
        n_terms = 0
        batch: list[StoredDocument] = []
        for d in docs:
            _check(d, info.dim)
            report.n_documents += 1
            report.without_sections += not d.doc.sections
            batch.append(d)
            if sum(len(b.chunks) for b in batch) >= batch_chunks:
                n_terms += _copy_batch(conn, batch)
                report.n_chunks += _done(batch, progress)
                batch = []
        if batch:
            n_terms += _copy_batch(conn, batch)
            report.n_chunks += _done(batch, progress)
        conn.execute(
            "INSERT INTO manifest (embedder, dim, chunking, generation, n_documents, n_chunks, n_terms, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                info.embedder,
                info.dim,
                Jsonb(info.chunking),
                report.generation,
                report.n_documents,
                report.n_chunks,
                n_terms,
                time.time(),
            ),
        )
        conn.execute(TERM_STATS_FILL)  # BM25's document frequencies, counted once
        conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (maintenance_work_mem,))
        conn.execute(_schema(info.dim))  # HNSW and GIN indexes over the loaded rows
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('chunks', 'chunk_id'), coalesce(max(chunk_id), 0) + 1, false) "
            "FROM chunks"
        )
        conn.execute("ANALYZE documents, chunks, sections")
        # the swap: the only step that blocks readers, until the commit right after it
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.SQL(", ").join(sql.Identifier(target, t) for t in reversed(TABLES))
            )
        )
        for t in TABLES:
            conn.execute(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(sql.Identifier(staging, t), sql.Identifier(target))
            )
        conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(staging)))
    report.seconds = time.perf_counter() - t0
    _notes(report)
    return report


def _existing_index(conn: Any, schema: str) -> tuple[int, int] | None:
    """(documents, generation) of the index in ``schema``; None when it has none."""
    from psycopg import sql

    have = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".manifest',)).fetchone()
    if not have or not have[0]:
        return None
    row = conn.execute(
        sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT coalesce(max(generation), 0) FROM {})").format(
            sql.Identifier(schema, "documents"), sql.Identifier(schema, "manifest")
        )
    ).fetchone()
    return int(row[0]), int(row[1])


def _copy_batch(conn: Any, batch: Sequence[StoredDocument]) -> int:
    """COPY one batch of documents into the staging tables; returns the BM25 terms added."""
    from .postgres import chunk_terms, vector_literal

    n_terms = 0
    with conn.cursor() as cur:
        with cur.copy(f"COPY documents ({', '.join(DOCUMENT_COLUMNS)}) FROM STDIN") as cp:
            for d in batch:
                cp.write_row(document_row(d.doc, sorted(d.doc.groups), d.ingested_at))
        with cur.copy("COPY sections (doc_id, position, heading_path, page, text) FROM STDIN") as cp:
            for d in batch:
                for row in section_rows(d.doc):
                    cp.write_row(row)
        columns = ("chunk_id", *CHUNK_COLUMNS, "embedding", "terms", "tfs", "n_terms")
        with cur.copy(f"COPY chunk_load ({', '.join(columns)}, indexed) FROM STDIN") as cp:
            for d in batch:
                for c, v in zip(d.chunks, d.vectors):
                    indexed = c.embed_text(d.doc.title)
                    terms, tfs, length = chunk_terms(indexed)
                    n_terms += length
                    cp.write_row(
                        (c.chunk_id, *chunk_row(d.doc.doc_id, c), vector_literal(v), terms, tfs, length, indexed)
                    )
        cur.execute(
            f"INSERT INTO chunks ({', '.join(columns)}, tsv) "
            f"SELECT {', '.join(columns)}, to_tsvector('dutch', indexed) FROM chunk_load"
        )
        cur.execute("TRUNCATE chunk_load")
    return n_terms


def _check(d: StoredDocument, dim: int) -> None:
    if len(d.chunks) != len(d.vectors):
        raise IndexCorruptError(f"{d.doc.doc_id}: {len(d.chunks)} chunks but {len(d.vectors)} vectors")
    if len(d.vectors) and d.vectors.shape[1] != dim:
        raise IndexCorruptError(f"{d.doc.doc_id}: vectors of dim {d.vectors.shape[1]}, the manifest says {dim}")
    if any(c.chunk_id is None for c in d.chunks):
        raise IndexCorruptError(f"{d.doc.doc_id}: a chunk without its id")


def _done(batch: Sequence[StoredDocument], progress: Progress | None) -> int:
    n = sum(len(d.chunks) for d in batch)
    if progress is not None:
        progress(n)
    return n


def _notes(report: MigrationReport) -> None:
    if report.vectors == "sq8-decoded":
        report.notes.append(sq8_note())
    if report.without_sections:
        report.notes.append(
            f"{report.without_sections} documents were indexed before sections were kept: the viewer has no "
            "text for them until their files are ingested again"
        )


# --------------------------------------------------------------------------- embedded target


def migrate_to_embedded(
    source: Source,
    index_dir: Path,
    replace: bool = False,
    vector_config: VectorIndexConfig | None = None,
    keep_generations: int = 2,
    wait: bool = False,
    progress: Progress | None = None,
    embed: Embed | None = None,
) -> MigrationReport:
    """Write ``source`` as one new generation of the embedded index in ``index_dir`` (published
    atomically when complete). Refuses an index with documents unless ``replace``."""
    info = source.info
    index_dir = Path(index_dir)
    t0 = time.perf_counter()
    report = MigrationReport(source=info, target="embedded", location=str(index_dir), generation=0)
    docs, report.vectors = _stream(source, embed)
    with write_index(
        index_dir,
        info.embedder,
        info.dim,
        chunking=info.chunking,
        wait=wait,
        keep_generations=keep_generations,
        vector_config=vector_config,
        fresh=True,
    ) as writer:
        held = _documents_in(index_dir)  # under the writer's lock: no ingest can change it now
        if held and not replace:
            raise TargetNotEmptyError(
                f"'{index_dir}' already holds an index ({held} documents). Use --replace to replace it "
                "(a new generation; the old one stays on disk as the previous generation)."
            )
        report.replaced = held > 0
        for d in docs:
            _check(d, info.dim)
            writer.upsert(d.doc, d.chunks, d.vectors, keep_ids=True, ingested_at=d.ingested_at)
            report.n_documents += 1
            report.without_sections += not d.doc.sections
            report.n_chunks += _done([d], progress)
        report.generation = writer.manifest.generation
    report.seconds = time.perf_counter() - t0
    _notes(report)
    return report


def _documents_in(index_dir: Path) -> int:
    """Documents in the live generation of ``index_dir`` (0: none; a manifest that cannot be
    read counts as an index, so it is not replaced unasked)."""
    name = read_current(index_dir)
    if name is None:
        return 0
    try:
        return Manifest.from_file(index_dir / name / "manifest.json").n_documents
    except (OSError, ValueError, TypeError):
        return 1


# --------------------------------------------------------------------------- from the settings


def migrate(
    source: Source,
    to: Backend,
    settings: Any,
    index_dir: Path | None = None,
    database_url: str | None = None,
    replace: bool = False,
    progress: Progress | None = None,
    embed: Embed | None = None,
    maintenance_work_mem: str = MAINTENANCE_WORK_MEM,
) -> MigrationReport:
    """Migrate ``source`` to the ``to`` backend at ``database_url``/``index_dir`` (default: the
    settings' ``database_url``/``index_dir``)."""
    if to == "postgres":
        url = database_url or _configured_url(settings)
        if not url:
            raise IndexError_("no database to migrate to: give --database-url or set VRAAGBAAK_DATABASE_URL")
        return migrate_to_postgres(
            source, url, replace=replace, progress=progress, embed=embed, maintenance_work_mem=maintenance_work_mem
        )
    return migrate_to_embedded(
        source,
        Path(index_dir or settings.index_dir),
        replace=replace,
        vector_config=VectorIndexConfig.from_settings(settings),
        keep_generations=settings.keep_generations,
        progress=progress,
        embed=embed,
    )


def source_location(to: Backend, settings: Any, index_dir: Path | None, database_url: str | None) -> str | Path:
    """Where the index to move is: the other backend than ``to``, as given or configured."""
    if to == "postgres":
        return Path(index_dir or settings.index_dir)
    url = database_url or _configured_url(settings)
    if not url:
        raise IndexError_("no database to migrate from: give --database-url or set VRAAGBAAK_DATABASE_URL")
    return url


def _configured_url(settings: Any) -> str:
    from . import database_url

    return database_url(settings)
