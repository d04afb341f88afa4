"""eval/pg_benchmark.py loads PostgreSQL through the migration's bulk path (COPY, the indexes
after the load) to reach 1M chunks in minutes; its numbers stand for the production writer
only if that database is the one ``PgWriter.upsert`` would have written document by document.
Checked here on a small corpus: the same manifest counts, rows, BM25 statistics and
tsvectors, the same indexes, and the same ranking for dense, BM25 and hybrid queries."""

from __future__ import annotations

import random

import numpy as np
import psycopg
import pytest

from eval.index_benchmark import _vocabulary
from eval.pg_benchmark import PER_DOC, corpus, hit_key, load_pg
from rag.retrieve import Filters, rank
from rag.store.postgres import PgReader, pg_writer

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

N, DIM = 305, 48  # the last document is short; the mixture needs dim >= 32


def _state(url: str) -> tuple:
    with psycopg.connect(url) as c:
        manifest = c.execute("SELECT n_documents, n_chunks, n_terms FROM manifest").fetchone()
        chunks = c.execute(
            "SELECT doc_id, position, text, heading_path, embedding::text, terms, tfs, n_terms, tsv::text "
            "FROM chunks ORDER BY doc_id, position"
        ).fetchall()
        docs = c.execute("SELECT doc_id, title, doc_type, year, groups FROM documents ORDER BY doc_id").fetchall()
        sections = c.execute("SELECT * FROM sections ORDER BY doc_id, position").fetchall()
        indexes = sorted(r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'"))
    return manifest, chunks, docs, sections, indexes


def test_bulk_load_equals_the_writer(pg_server):
    bulk, written = pg_server.database(), pg_server.database()
    load_pg(bulk, N, DIM, "64MB")
    with pg_writer(written, "synthetic", DIM) as w:
        for doc, chunks, v in corpus(N, DIM):
            w.upsert(doc, chunks, v)

    a, b = _state(bulk), _state(written)
    assert a[0] == b[0] and a[0][1] == N
    assert a[1] == b[1]  # every chunk: text, vector, BM25 statistics, tsvector
    assert a[2] == b[2] and a[3] == b[3]
    assert a[4] == b[4] and "chunks_embedding" in a[4]

    words = _vocabulary()
    rnd = random.Random(5)
    queries = np.random.default_rng(5).standard_normal((6, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    readers = [PgReader(bulk, exact_below=10**9), PgReader(written, exact_below=10**9)]
    try:
        snaps = [r.snapshot() for r in readers]
        for qv in queries:
            text = " ".join(rnd.choices(words, k=5))
            for fusion, filters in (("dense", None), ("bm25", None), ("score", None), ("score", Filters(years=[2020]))):
                got = [
                    [(h.doc_id, h.position, round(h.score, 5)) for h in rank(s, text, qv, 10, filters, fusion)]
                    for s in snaps
                ]
                assert got[0] == got[1] and got[0], (fusion, text)
    finally:
        for r in readers:
            r.close()


def test_corpus_rows_follow_the_vectors_of_the_ground_truth():
    """Row i of the corpus is document i // PER_DOC, position i % PER_DOC, with the mixture's
    vector i (the rows ground_truth searches), across the generator's batch boundaries."""
    from eval.ann_benchmark import MixtureData
    from eval.pg_benchmark import N_CLUSTERS

    n = 65_536 + 25  # one full batch, then a document straddling the boundary
    data = MixtureData(DIM, N_CLUSTERS, seed=0)
    rows = {}
    for doc, chunks, v in corpus(n, DIM):
        for c, vec in zip(chunks, v):
            rows[(doc.doc_id, c.position)] = vec
    assert len(rows) == n
    for ids, x in data.batches(n):
        for i in (0, len(ids) - 1):
            row = int(ids[i])
            assert np.array_equal(rows[hit_key(row)], x[i])
    assert hit_key(65_536 + 3) == (f"syn/{(65_536 + 3) // PER_DOC}", (65_536 + 3) % PER_DOC)
