"""The index in PostgreSQL with pgvector (``database_url``): shared by replicas on any host,
changed one document at a time.

Tables (created by the first writer, under an advisory lock)::

    manifest   one row: embedder, dim, chunking, generation (+1 per committed change), and the
               counts BM25 needs (chunks, documents, total terms), kept in the same transactions
    documents  doc_id, title, source, content_hash, date, doc_type, year,
               groups text[] ('{}' = public; GIN), metadata jsonb, ingested_at
    chunks     chunk_id (identity), doc_id (ON DELETE CASCADE), position, text, heading_path
               (JSON text, as in SQLite), page, char_start, char_end, page_end,
               embedding vector(dim) (HNSW, vector_cosine_ops),
               terms text[] + tfs int[] + n_terms (the BM25 statistics: the same Dutch stemmed
               tokens as the embedded BM25, rag.text.tokens; GIN on terms),
               tsv = to_tsvector('dutch', title › headings + text) (GIN; ts_rank_cd, measured only)
    sections   doc_id, position, heading_path, page, text (the viewer's text)
    term_stats term, df: the chunks holding each term (BM25's document frequency), kept by the
               writers in the transaction that changes the chunks (an index from before this
               table gets it, counted, from its next writer)

Writes: :class:`PgWriter` ``upsert``/``remove`` run in ONE transaction per document, under
``pg_advisory_xact_lock`` on the document id (two writers of the same document wait for each
other; writers of different documents run side by side) and end with one UPDATE of the
manifest row (a row lock held only until the commit right after it). Nothing is copied.

Reads: every :meth:`PgSnapshot.rank` runs in one REPEATABLE READ, READ ONLY transaction, so a
search sees one committed state; listings and lookups see the latest committed state.

Ranking gives the same candidate scores as the embedded index, fused by rag/fusion.py:

- dense: cosine ``1 - (embedding <=> q)`` under the filters. Exact (a sequential scan) when the
  chunks the filter allows are fewer than ``exact_below`` (the setting
  ``index_auto_threshold``, where FAISS is flat too); else the HNSW index with
  ``hnsw.ef_search`` = the setting ``pg_hnsw_ef_search`` (200), raised to the candidates asked
  for over the allowed fraction (eval/pg_benchmark.py at 1M chunks, dim 768: recall@10 0.87 at
  40, 0.93 at 100, 0.95 at 200, 0.97 at 400). pgvector
  before 0.8 has no iterative scan: HNSW filters its ``ef_search`` nearest and may return fewer
  rows than asked for under a filter; then the query is run again exactly. With pgvector >= 0.8,
  ``hnsw.iterative_scan = relaxed_order`` is set as well.
- lexical: BM25 (Lucene variant, k1 1.2, b 0.75, as bm25s) computed in SQL from the stored
  term statistics: the same scores as the embedded BM25 (float rounding aside). Exact top-n
  without scoring every chunk that holds a common word (MaxScore): the chunks holding the
  rarest query terms are scored with all the query terms first; when the n-th best score
  already exceeds what the remaining (common) terms could add together at most
  (idf x query count each, as tf / (tf + k) < 1), no chunk holding only those can enter the
  top n, and the search stops; else the next rarest term joins, while the chunks to score stay
  under ``SCORED_CHUNKS_MAX`` (beyond it: the top n among the chunks holding the rarer terms; a
  question of only very common words gets no lexical hits). Every search transaction has a
  ``statement_timeout`` (``SEARCH_TIMEOUT_MS``) as a backstop.
- access groups and the other filters are SQL conditions of both queries, applied before any
  ranking: a chunk the caller may not see is never a candidate.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import psycopg
from psycopg.rows import dict_row

from ..fusion import best_ids, build_hits, fuse
from ..index import EmbedderMismatchError, IndexNotFoundError, Manifest, check_embedder
from ..rows import CHUNK_COLUMNS, DOCUMENT_COLUMNS, chunk_row, document_row, section_rows
from ..text.idf import IdfFn, bm25_idf
from ..text.tokens import tokenize
from ..types import Chunk, Document, Hit, Section

K1, B = 1.2, 0.75  # bm25s defaults (rag/lexical.py)
EMPTY_TOKEN = "\u2205"  # rag/lexical.py: a chunk without tokens counts one placeholder token
SCHEMA_LOCK = 0x5642_0001  # advisory lock key for creating the schema
MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search
# BM25 scores at most this many (chunk, term) matches of the terms that find candidates: a
# question made only of words most chunks hold gets the top n among the chunks holding its
# rarer words (exact below this; the embedded BM25 is always exact)
SCORED_CHUNKS_MAX = 100_000
SEARCH_TIMEOUT_MS = 15_000  # a backstop for one search transaction (statement_timeout)


def _schema(dim: int) -> str:
    return f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS manifest (
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    embedder text NOT NULL,
    dim integer NOT NULL,
    normalised boolean NOT NULL DEFAULT true,
    metric text NOT NULL DEFAULT 'cosine',
    chunking jsonb NOT NULL DEFAULT '{{}}',
    generation bigint NOT NULL DEFAULT 0,
    n_documents bigint NOT NULL DEFAULT 0,
    n_chunks bigint NOT NULL DEFAULT 0,
    n_terms bigint NOT NULL DEFAULT 0,
    created_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    doc_id text PRIMARY KEY,
    title text NOT NULL,
    source text NOT NULL,
    content_hash text NOT NULL,
    date text,
    doc_type text,
    year integer,
    groups text[] NOT NULL DEFAULT '{{}}',
    metadata jsonb NOT NULL DEFAULT '{{}}',
    ingested_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_groups ON documents USING gin (groups);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    doc_id text NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
    position integer NOT NULL,
    text text NOT NULL,
    heading_path text NOT NULL DEFAULT '[]',
    page integer,
    char_start integer,
    char_end integer,
    page_end integer,
    embedding vector({int(dim)}) NOT NULL,
    terms text[] NOT NULL,
    tfs integer[] NOT NULL,
    n_terms integer NOT NULL,
    tsv tsvector NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id, position);
CREATE INDEX IF NOT EXISTS chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops);
CREATE INDEX IF NOT EXISTS chunks_terms ON chunks USING gin (terms);
CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv);
CREATE TABLE IF NOT EXISTS term_stats (
    term text PRIMARY KEY,
    df bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS sections (
    doc_id text NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
    position integer NOT NULL,
    heading_path text NOT NULL DEFAULT '[]',
    page integer,
    text text NOT NULL,
    PRIMARY KEY (doc_id, position)
);
"""


def vector_literal(v: np.ndarray) -> str:
    """pgvector's text form; float32 values round-trip exactly (shortest repr of each)."""
    return "[" + ",".join(map(str, np.asarray(v, dtype=np.float32).reshape(-1).tolist())) + "]"


def chunk_terms(text: str) -> tuple[list[str], list[int], int]:
    """The BM25 statistics of one chunk's indexed text: distinct terms, their counts, length."""
    tokens = tokenize(text) or [EMPTY_TOKEN]
    counts = Counter(tokens)
    terms = sorted(counts)
    return terms, [counts[t] for t in terms], len(tokens)


class FilterLike(Protocol):
    """rag.retrieve.Filters (not imported: rag.retrieve imports this package)."""

    doc_types: list[str] | None
    years: list[int] | None
    source_prefix: str | None
    doc_ids: list[str] | None
    groups: list[str] | None


def filter_sql(filters: FilterLike | None) -> tuple[str, list[Any]]:
    """The WHERE condition over ``documents d`` for the filters, as rag.retrieve.Filters.sql()
    for SQLite: a document with no groups is public, else it needs a group in common with the
    caller; ``groups=None`` = no access filter (trusted caller)."""
    if filters is None:
        return "true", []
    clauses: list[str] = []
    params: list[Any] = []
    if filters.doc_types is not None:
        clauses.append("d.doc_type = ANY(%s::text[])")
        params.append(list(filters.doc_types))
    if filters.years is not None:
        clauses.append("d.year = ANY(%s::int[])")
        params.append(list(filters.years))
    if filters.source_prefix:
        # ILIKE: SQLite's LIKE ignores ASCII case, and the embedded index uses it
        clauses.append("d.source ILIKE %s ESCAPE '\\'")
        esc = filters.source_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.append(esc + "%")
    if filters.doc_ids is not None:
        clauses.append("d.doc_id = ANY(%s::text[])")
        params.append(list(filters.doc_ids))
    if filters.groups is not None:
        clauses.append("(d.groups = '{}' OR d.groups && %s::text[])")
        params.append(sorted(filters.groups))
    return (" AND ".join(clauses) or "true"), params


def _is_empty(filters: FilterLike | None) -> bool:
    return filters is None or all(
        v is None for v in (filters.doc_types, filters.years, filters.source_prefix, filters.doc_ids, filters.groups)
    )


# --------------------------------------------------------------------------- connections


class Pool:
    """A few connections shared by threads (one per thread at a time); a broken one is dropped."""

    def __init__(self, url: str, size: int = 8) -> None:
        self.url = url
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._sem = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        self._sem.acquire()
        conn: psycopg.Connection[Any] | None = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = psycopg.connect(self.url, autocommit=True)
            yield conn
        finally:
            if conn is not None:
                if conn.closed or conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    with contextlib.suppress(Exception):
                        conn.close()
                else:
                    self._idle.put(conn)
            self._sem.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _read_manifest(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    exists = conn.execute("SELECT to_regclass('manifest') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM manifest WHERE id = 1").fetchone()


def manifest_present(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return _read_manifest(conn) is not None


def _manifest(row: dict[str, Any]) -> Manifest:
    return Manifest(
        embedder=row["embedder"],
        dim=int(row["dim"]),
        normalised=bool(row["normalised"]),
        metric=row["metric"],
        generation=int(row["generation"]),
        created_at=float(row["created_at"]),
        n_documents=int(row["n_documents"]),
        n_chunks=int(row["n_chunks"]),
        chunking=dict(row["chunking"] or {}),
        index_type="pgvector_hnsw",
        index_params={"n_terms": int(row["n_terms"])},
    )


def _pgvector_version(conn: psycopg.Connection[Any]) -> tuple[int, ...]:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if not row:
        return (0,)
    return tuple(int(p) for p in str(row[0]).split(".") if p.isdigit())


# --------------------------------------------------------------------------- reading


def _chunk(r: dict[str, Any]) -> Chunk:
    return Chunk(
        doc_id=r["doc_id"],
        text=r["text"],
        heading_path=json.loads(r["heading_path"]),
        page=r["page"],
        position=r["position"],
        chunk_id=int(r["chunk_id"]),
        char_start=r["char_start"],
        char_end=r["char_end"],
        page_end=r["page_end"],
    )


def _doc_dict(r: dict[str, Any]) -> dict[str, Any]:
    d = dict(r)
    d["groups"] = list(d.get("groups") or [])
    d["metadata"] = dict(d.get("metadata") or {})
    return d


_CHUNK_COLS = "chunk_id, doc_id, position, text, heading_path, page, char_start, char_end, page_end"
_DOC_COLS = ", ".join(DOCUMENT_COLUMNS)


class PgLexical:
    """What the pipeline reads from ``snapshot.bm25``: the size and the BM25 IDF (rag.text.idf)."""

    def __init__(self, pool: Pool, n_chunks: int) -> None:
        self.pool = pool
        self.n_chunks = n_chunks
        self._df: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.n_chunks

    def doc_freq(self, term: str) -> int:
        with self._lock:
            if term in self._df:
                return self._df[term]
        with self.pool.connection() as conn:
            df = term_dfs(conn, [term]).get(term, 0)
        with self._lock:
            self._df[term] = df
        return df

    def idf(self) -> IdfFn:
        return bm25_idf(self.doc_freq, self.n_chunks)


class PgSnapshot:
    """The index as committed at the manifest's ``generation`` (lookups read the latest
    committed rows; :meth:`rank` reads one consistent state)."""

    fallback_from: str | None = None  # the embedded index's damage report; never set here

    def __init__(
        self, pool: Pool, manifest: Manifest, exact_below: int, pgvector: tuple[int, ...], ef_search: int = 200
    ) -> None:
        self.pool = pool
        self.manifest = manifest
        self.name = f"pg-{manifest.generation:06d}"
        self.exact_below = exact_below
        self.pgvector = pgvector
        self.ef_search = ef_search
        self.bm25 = PgLexical(pool, manifest.n_chunks)
        self.last_dense_plan = ""  # "exact", "hnsw", "hnsw+exact" (for tests and measurements)

    def close(self) -> None:
        """Nothing to close: the connections belong to the reader."""

    # -- lookups (the service, the viewer, the pipeline) -------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, params).fetchall()

    def documents(self) -> list[dict[str, Any]]:
        rows = self._rows(
            f"SELECT {', '.join('d.' + c for c in _DOC_COLS.split(', '))}, "
            "(SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id) AS n_chunks "
            'FROM documents d ORDER BY d.doc_id COLLATE "C"'
        )
        return [_doc_dict(r) for r in rows]

    def document(self, doc_id: str) -> dict[str, Any] | None:
        rows = self._rows(f"SELECT {_DOC_COLS} FROM documents WHERE doc_id = %s", (doc_id,))
        return _doc_dict(rows[0]) if rows else None

    def chunk_at(self, doc_id: str, position: int) -> Chunk | None:
        rows = self._rows(f"SELECT {_CHUNK_COLS} FROM chunks WHERE doc_id = %s AND position = %s", (doc_id, position))
        return _chunk(rows[0]) if rows else None

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        rows = self._rows(f"SELECT {_CHUNK_COLS} FROM chunks WHERE doc_id = %s ORDER BY position", (doc_id,))
        return [_chunk(r) for r in rows]

    def chunk(self, chunk_id: int) -> Chunk | None:
        rows = self._rows(f"SELECT {_CHUNK_COLS} FROM chunks WHERE chunk_id = %s", (int(chunk_id),))
        return _chunk(rows[0]) if rows else None

    def sections_of(self, doc_id: str) -> list[Section]:
        rows = self._rows(
            "SELECT heading_path, page, text FROM sections WHERE doc_id = %s ORDER BY position", (doc_id,)
        )
        return [Section(text=r["text"], heading_path=json.loads(r["heading_path"]), page=r["page"]) for r in rows]

    def chunk_rows(self, chunk_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        with self.pool.connection() as conn:
            return _chunk_rows(conn, chunk_ids)

    def filtered_count(self, filters: FilterLike | None) -> int:
        with self.pool.connection() as conn:
            return _allowed_count(conn, filters, self.manifest.n_chunks)

    # -- ranking (rag.retrieve.rank calls this) ----------------------------------------
    def rank(
        self,
        query: str,
        qv: np.ndarray | None,
        top_k: int,
        filters: FilterLike | None = None,
        fusion: str = "score",
        weight_bm25: float = 0.2,
        candidates: int = 50,
        lexical: str = "bm25",
    ) -> list[Hit]:
        n = max(candidates, top_k)
        where, params = filter_sql(filters)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(SEARCH_TIMEOUT_MS),))
            stats = conn.execute("SELECT n_chunks, n_terms FROM manifest WHERE id = 1").fetchone()
            n_chunks, n_terms = (int(stats[0]), int(stats[1])) if stats else (0, 0)
            filtered = not _is_empty(filters)
            dense: dict[int, float] = {}
            if fusion != "bm25" and qv is not None and n_chunks:
                allowed = _allowed_count(conn, filters, n_chunks) if filtered else n_chunks
                dense = self._dense(conn, qv, n, where, params, filtered, allowed, n_chunks)
            bm25: dict[int, float] = {}
            bm25_max = 0.0
            if fusion != "dense" and n_chunks:
                score = _bm25_sql if lexical == "bm25" else _ts_rank_sql
                bm25 = score(conn, query, where, params, n, None, n_chunks, n_terms)
                bm25 = {c: s for c, s in bm25.items() if s > 0}
                bm25_max = max(bm25.values(), default=0.0)
                if fusion == "score" and dense:  # every dense candidate also needs its lexical score
                    extra = score(conn, query, where, params, len(dense), list(dense), n_chunks, n_terms)
                    bm25.update({c: extra.get(c, 0.0) for c in dense})  # 0.0 as the embedded BM25
            q = vector_literal(qv) if qv is not None else None
            dense_for: Callable[[list[int]], dict[int, float]] | None = (
                (lambda ids: _cosines(conn, q, ids)) if q is not None else None
            )
            fused = fuse(dense, bm25, bm25_max, fusion, weight_bm25, dense_for)
            best = best_ids(fused, top_k)
            rows = _chunk_rows(conn, best)
        return build_hits(best, fused, rows, dense, bm25)

    def _dense(
        self,
        conn: psycopg.Connection[Any],
        qv: np.ndarray,
        n: int,
        where: str,
        params: list[Any],
        filtered: bool,
        allowed: int,
        n_chunks: int,
    ) -> dict[int, float]:
        if allowed == 0:
            return {}
        q = vector_literal(qv)
        want = min(n, allowed)
        join = "JOIN documents d USING (doc_id) " if filtered else ""
        base = f"SELECT c.chunk_id, 1 - (c.embedding <=> %s::vector) AS score FROM chunks c {join}WHERE {where} "
        if allowed < self.exact_below:
            self.last_dense_plan = "exact"
            # "+ 0": an expression the HNSW index cannot serve, so the scan is exact
            sql = base + "ORDER BY (c.embedding <=> %s::vector) + 0, c.chunk_id LIMIT %s"
            return _pairs(conn.execute(sql, [q, *params, q, n]).fetchall())
        ef = min(MAX_EF_SEARCH, max(self.ef_search, int(np.ceil(n * n_chunks / allowed))))
        conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
        if self.pgvector >= (0, 8):
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        sql = base + "ORDER BY c.embedding <=> %s::vector LIMIT %s"
        found = _pairs(conn.execute(sql, [q, *params, q, n]).fetchall())
        self.last_dense_plan = "hnsw"
        if len(found) < want:  # the filter left fewer than asked for among ef_search neighbours
            self.last_dense_plan = "hnsw+exact"
            sql = base + "ORDER BY (c.embedding <=> %s::vector) + 0, c.chunk_id LIMIT %s"
            found = _pairs(conn.execute(sql, [q, *params, q, n]).fetchall())
        return found


def _pairs(rows: Sequence[Any]) -> dict[int, float]:
    return {int(r[0]): float(r[1]) for r in rows}


def _allowed_count(conn: psycopg.Connection[Any], filters: FilterLike | None, n_chunks: int) -> int:
    if _is_empty(filters):
        return n_chunks
    where, params = filter_sql(filters)
    row = conn.execute(
        f"SELECT count(*) FROM chunks c JOIN documents d USING (doc_id) WHERE {where}",
        params,
    ).fetchone()
    return int(row[0]) if row else 0


def _cosines(conn: psycopg.Connection[Any], q: str | None, ids: list[int]) -> dict[int, float]:
    if not ids or q is None:
        return {}
    rows = conn.execute(
        "SELECT chunk_id, 1 - (embedding <=> %s::vector) FROM chunks WHERE chunk_id = ANY(%s::bigint[])", (q, ids)
    ).fetchall()
    return _pairs(rows)


def term_dfs(conn: psycopg.Connection[Any], terms: Sequence[str]) -> dict[str, int]:
    """Document frequencies of ``terms`` (those in no chunk are left out)."""
    if not terms:
        return {}
    rows = conn.execute("SELECT term, df FROM term_stats WHERE term = ANY(%s::text[]) AND df > 0", (list(terms),))
    return {str(r[0]): int(r[1]) for r in rows.fetchall()}


def _bm25_sql(
    conn: psycopg.Connection[Any],
    query: str,
    where: str,
    params: list[Any],
    n: int,
    only: list[int] | None,
    n_chunks: int,
    n_terms: int,
) -> dict[int, float]:
    """BM25 (bm25s' Lucene variant) from the stored statistics: idf over the whole index, as
    the embedded BM25, whose statistics cover every chunk whatever the filter. The top ``n``
    by MaxScore (module docstring); ``only``: the scores of those chunks."""
    qn = Counter(tokenize(query))
    if not qn or not n_chunks:
        return {}
    df = term_dfs(conn, list(qn))
    if not df:
        return {}
    avgdl = n_terms / n_chunks
    rarest = sorted(df, key=lambda t: (df[t], t))
    idf = {t: math.log(1 + (n_chunks - df[t] + 0.5) / (df[t] + 0.5)) for t in rarest}
    bound = [qn[t] * idf[t] for t in rarest]  # what each term can add to a chunk's score, at most

    def score(essential: list[str]) -> dict[int, float]:
        only_sql = "AND c.chunk_id = ANY(%s::bigint[]) " if only is not None else ""
        sql = f"""
        WITH q AS (SELECT * FROM unnest(%s::text[], %s::float8[], %s::float8[]) AS q(term, qn, df))
        SELECT c.chunk_id,
               sum(q.qn * ln(1 + (%s - q.df + 0.5) / (q.df + 0.5))
                   * t.tf / (%s * ((1 - %s) + %s * c.n_terms / %s) + t.tf)) AS score
        FROM chunks c JOIN documents d USING (doc_id)
             CROSS JOIN LATERAL unnest(c.terms, c.tfs) AS t(term, tf)
             JOIN q ON q.term = t.term
        WHERE c.terms && %s::text[] {only_sql}AND {where}
        GROUP BY c.chunk_id
        ORDER BY score DESC, c.chunk_id
        LIMIT %s
        """
        args: list[Any] = [
            rarest,
            [float(qn[t]) for t in rarest],
            [float(df[t]) for t in rarest],
            float(n_chunks),
            K1,
            B,
            B,
            avgdl,
            essential,
        ]
        if only is not None:
            args.append(only)
        args += [*params, n]
        return _pairs(conn.execute(sql, args).fetchall())

    if only is not None:
        return score(rarest)
    # the terms whose chunks are scored: the rarest, while their chunks stay within the budget
    reach = list(itertools.accumulate(df[t] for t in rarest))
    most = sum(1 for r in reach if r <= SCORED_CHUNKS_MAX)
    if most == 0:
        return {}  # only words that most chunks hold: no lexical signal worth a scan
    k = 1
    while True:
        found = score(rarest[:k])
        if k == len(rarest):
            return found
        if len(found) >= n and min(found.values()) > sum(bound[k:]):
            return found  # no chunk without one of the first k terms can reach the top n
        if k == most:
            return found  # the budget: the top n among the chunks holding the rarer terms
        k += 1


def _ts_rank_sql(
    conn: psycopg.Connection[Any],
    query: str,
    where: str,
    params: list[Any],
    n: int,
    only: list[int] | None,
    n_chunks: int,
    n_terms: int,
) -> dict[int, float]:
    """PostgreSQL's own Dutch full text: ts_rank_cd of the chunks matching any query word (an
    alternative to BM25, measured in eval/pg_benchmark.py; not the default)."""
    only_sql = "AND c.chunk_id = ANY(%s::bigint[]) " if only is not None else ""
    sql = f"""
    WITH q AS (SELECT replace(plainto_tsquery('dutch', %s)::text, '&', '|')::tsquery AS tq)
    SELECT c.chunk_id, ts_rank_cd(c.tsv, q.tq) AS score
    FROM chunks c JOIN documents d USING (doc_id), q
    WHERE c.tsv @@ q.tq {only_sql}AND {where}
    ORDER BY score DESC, c.chunk_id
    LIMIT %s
    """
    args: list[Any] = [query]
    if only is not None:
        args.append(only)
    args += [*params, n]
    return _pairs(conn.execute(sql, args).fetchall())


def _chunk_rows(conn: psycopg.Connection[Any], chunk_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not chunk_ids:
        return {}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {', '.join('c.' + c for c in _CHUNK_COLS.split(', '))}, "
            "d.title, d.source, d.date, d.doc_type, d.year, d.groups "
            "FROM chunks c JOIN documents d USING (doc_id) WHERE c.chunk_id = ANY(%s::bigint[])",
            ([int(i) for i in chunk_ids],),
        ).fetchall()
    return {int(r["chunk_id"]): r for r in rows}


class PgReader:
    """Like rag.index.IndexReader: ``snapshot()`` re-reads the manifest row at most every
    ``check_interval`` seconds and returns a new :class:`PgSnapshot` when its generation moved."""

    def __init__(
        self,
        url: str,
        check_interval: float = 1.0,
        exact_below: int = 30_000,
        pool_size: int = 8,
        ef_search: int = 200,
    ) -> None:
        self.url = url
        self.check_interval = check_interval
        self.exact_below = exact_below
        self.pool = Pool(url, pool_size)
        with self.pool.connection() as conn:
            row = _read_manifest(conn)
            self.pgvector = _pgvector_version(conn)
            if row is not None:
                ensure_term_stats(conn)
        if row is None:
            raise IndexNotFoundError(
                "No index in the PostgreSQL database (database_url). Build one first: vraagbaak ingest data/voorbeeld"
            )
        self.ef_search = ef_search
        self._snapshot = PgSnapshot(self.pool, _manifest(row), exact_below, self.pgvector, ef_search)
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def snapshot(self) -> PgSnapshot:
        now = time.monotonic()
        if now - self._checked >= self.check_interval:
            with self._lock:
                self._checked = now
                with self.pool.connection() as conn:
                    row = _read_manifest(conn)
                if row is not None and int(row["generation"]) != self._snapshot.manifest.generation:
                    self._snapshot = PgSnapshot(
                        self.pool, _manifest(row), self.exact_below, self.pgvector, self.ef_search
                    )
        return self._snapshot

    def close(self) -> None:
        self.pool.close()


# --------------------------------------------------------------------------- writing


class PgWriter:
    """Per-document changes, each one transaction (see the module docstring)."""

    def __init__(self, url: str, manifest: Manifest) -> None:
        self.url = url
        self.manifest = manifest
        self.conn = psycopg.connect(url, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def content_hash(self, doc_id: str) -> str | None:
        row = self.conn.execute("SELECT content_hash FROM documents WHERE doc_id = %s", (doc_id,)).fetchone()
        return row[0] if row else None

    def doc_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT doc_id FROM documents")}

    def document_paths(self) -> dict[str, str | None]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT doc_id, metadata->>'path' FROM documents")}

    def _lock(self, doc_id: str) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (doc_id,))

    def _terms_of(self, doc_id: str) -> Counter[str]:
        """How many of the document's chunks hold each term (what it adds to ``term_stats``)."""
        rows = self.conn.execute(
            "SELECT t, count(*) FROM chunks, unnest(terms) AS t WHERE doc_id = %s GROUP BY t", (doc_id,)
        ).fetchall()
        return Counter({str(r[0]): int(r[1]) for r in rows})

    def _count_terms(self, delta: Counter[str]) -> None:
        """Add ``delta`` to the document frequencies, rows locked in term order (two writers
        sharing common words wait for each other, never deadlock)."""
        changed = sorted(t for t, d in delta.items() if d)
        if not changed:
            return
        self.conn.execute(
            "INSERT INTO term_stats (term, df) SELECT * FROM unnest(%s::text[], %s::bigint[]) ORDER BY 1 "
            "ON CONFLICT (term) DO UPDATE SET df = term_stats.df + excluded.df",
            (changed, [delta[t] for t in changed]),
        )
        self.conn.execute("DELETE FROM term_stats WHERE term = ANY(%s::text[]) AND df <= 0", (changed,))

    def _delete(self, doc_id: str) -> tuple[int, int, int]:
        """Delete the document (chunks and sections cascade); the counts it took away."""
        self._count_terms(Counter({t: -c for t, c in self._terms_of(doc_id).items()}))
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(n_terms), 0) FROM chunks WHERE doc_id = %s", (doc_id,)
        ).fetchone()
        n_chunks, n_terms = (int(row[0]), int(row[1])) if row else (0, 0)
        docs = self.conn.execute("DELETE FROM documents WHERE doc_id = %s", (doc_id,)).rowcount
        return docs, n_chunks, n_terms

    def _bump(self, docs: int, chunks: int, terms: int) -> None:
        row = self.conn.execute(
            "UPDATE manifest SET generation = generation + 1, n_documents = n_documents + %s, "
            "n_chunks = n_chunks + %s, n_terms = n_terms + %s WHERE id = 1 "
            "RETURNING generation, n_documents, n_chunks",
            (docs, chunks, terms),
        ).fetchone()
        if row:
            self.manifest.generation, self.manifest.n_documents, self.manifest.n_chunks = map(int, row)

    def remove(self, doc_id: str) -> bool:
        with self.conn.transaction():
            self._lock(doc_id)
            docs, chunks, terms = self._delete(doc_id)
            if docs:
                self._bump(-docs, -chunks, -terms)
        return docs > 0

    def upsert(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk expected")
        if len(vectors) and np.asarray(vectors).shape[1] != self.manifest.dim:
            raise EmbedderMismatchError(
                f"vectors of dim {np.asarray(vectors).shape[1]}, the index has {self.manifest.dim}"
            )
        stats = [chunk_terms(c.embed_text(doc.title)) for c in chunks]
        with self.conn.transaction():
            self._lock(doc.doc_id)
            old_docs, old_chunks, old_terms = self._delete(doc.doc_id)
            self.conn.execute(
                f"INSERT INTO documents ({_DOC_COLS}) VALUES ({','.join(['%s'] * len(DOCUMENT_COLUMNS))})",
                document_row(doc, sorted(doc.groups)),
            )
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO sections (doc_id, position, heading_path, page, text) VALUES (%s,%s,%s,%s,%s)",
                    section_rows(doc),
                )
                ids = [
                    int(r[0])
                    for r in cur.execute(
                        "SELECT nextval(pg_get_serial_sequence('chunks', 'chunk_id')) FROM generate_series(1, %s)",
                        (len(chunks),),
                    ).fetchall()
                ]
                cur.executemany(
                    f"INSERT INTO chunks (chunk_id, {', '.join(CHUNK_COLUMNS)}, embedding, terms, tfs, n_terms, tsv) "
                    f"VALUES (%s,{','.join(['%s'] * len(CHUNK_COLUMNS))},%s::vector,%s,%s,%s,to_tsvector('dutch', %s))",
                    [
                        (
                            cid,
                            *chunk_row(doc.doc_id, c),
                            vector_literal(v),
                            terms,
                            tfs,
                            length,
                            c.embed_text(doc.title),
                        )
                        for cid, c, v, (terms, tfs, length) in zip(ids, chunks, vectors, stats)
                    ],
                )
            self._count_terms(Counter(t for terms, _, _ in stats for t in terms))
            self._bump(1 - old_docs, len(chunks) - old_chunks, sum(s[2] for s in stats) - old_terms)
        for cid, c in zip(ids, chunks):
            c.chunk_id = cid


TERM_STATS_FILL = "INSERT INTO term_stats (term, df) SELECT t, count(*) FROM chunks, unnest(terms) AS t GROUP BY t"


def ensure_term_stats(conn: psycopg.Connection[Any]) -> None:
    """Give an index written before ``term_stats`` existed its document frequencies, counted
    once from the chunks (under the schema lock; the first reader or writer to open it)."""
    have = conn.execute("SELECT to_regclass('term_stats') IS NOT NULL").fetchone()
    if have and have[0]:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        created = conn.execute("SELECT to_regclass('term_stats') IS NULL").fetchone()
        if created and created[0]:
            conn.execute("CREATE TABLE term_stats (term text PRIMARY KEY, df bigint NOT NULL)")
            conn.execute(TERM_STATS_FILL)


def _open_manifest(url: str, embedder_id: str | None, dim: int | None, chunking: dict[str, Any] | None) -> Manifest:
    with psycopg.connect(url, autocommit=True) as conn:
        row = _read_manifest(conn)
        if row is None:
            if embedder_id is None or dim is None:
                raise IndexNotFoundError("No index in the PostgreSQL database (database_url).")
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                # IF NOT EXISTS and ON CONFLICT: another first writer may have made them meanwhile
                # (to_regclass may not see its commit yet: the catalog cache is refreshed on locks)
                conn.execute(_schema(dim))
                conn.execute(
                    "INSERT INTO manifest (embedder, dim, chunking, created_at) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING",
                    (embedder_id, dim, json.dumps(chunking or {}), time.time()),
                )
            row = _read_manifest(conn)
            assert row is not None
        ensure_term_stats(conn)
        manifest = _manifest(row)
        if embedder_id is not None:
            check_embedder(manifest, embedder_id, dim or 0)
        if chunking is not None and chunking != manifest.chunking:
            conn.execute("UPDATE manifest SET chunking = %s WHERE id = 1", (json.dumps(chunking),))
            manifest.chunking = chunking
    return manifest


@contextlib.contextmanager
def pg_writer(
    url: str, embedder_id: str | None, dim: int | None, chunking: dict[str, Any] | None = None
) -> Iterator[PgWriter]:
    """A writer on the database at ``url``; creates the schema and the manifest on first use.
    ``embedder_id``/``dim`` must match the manifest (``None``: removal only)."""
    writer = PgWriter(url, _open_manifest(url, embedder_id, dim, chunking))
    try:
        yield writer
    finally:
        writer.close()
