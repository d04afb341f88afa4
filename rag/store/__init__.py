"""Where the index lives: the embedded index (rag/index.py: FAISS + SQLite + BM25 in
generations under ``index_dir``, the default) or PostgreSQL with pgvector
(rag/store/postgres.py), chosen by the setting ``database_url`` ("" = embedded).

Both give a reader whose ``snapshot()`` offers what the retriever, the pipeline and the service
read (``name``, ``manifest``, ``documents``, ``document``, ``chunks_of``, ``chunk``,
``chunk_at``, ``sections_of``, ``bm25``; ranking through :func:`rag.retrieve.rank`), and a
writer (``content_hash``, ``doc_ids``, ``document_paths``, ``upsert``, ``remove``,
``manifest``) opened by :func:`write_store`. With ``database_url`` empty every function here
does exactly what the embedded index did before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..index import IndexReader, IndexWriter, VectorIndexConfig, read_current, write_index


def database_url(settings: Any) -> str:
    """The configured PostgreSQL URL, "" for the embedded index."""
    url = getattr(settings, "database_url", None)
    return url.get_secret_value() if url is not None else ""


def open_reader(settings: Any, check_interval: float = 1.0) -> Any:
    """The index reader for ``settings``: an :class:`~rag.index.IndexReader` over
    ``index_dir``, or a :class:`~rag.store.postgres.PgReader` when ``database_url`` is set."""
    url = database_url(settings)
    if not url:
        return IndexReader(settings.index_dir, check_interval=check_interval)
    from .postgres import PgReader

    return PgReader(
        url,
        check_interval=check_interval,
        exact_below=settings.index_auto_threshold,
        ef_search=settings.pg_hnsw_ef_search,
    )


def index_present(settings: Any) -> bool:
    """Whether an index has been written (the service waits for one before it loads)."""
    url = database_url(settings)
    if not url:
        return read_current(settings.index_dir) is not None
    from .postgres import manifest_present

    return manifest_present(url)


@contextlib.contextmanager
def write_store(
    settings: Any,
    embedder_id: str | None,
    dim: int | None,
    chunking: dict[str, Any] | None = None,
    wait: bool = False,
) -> Iterator[IndexWriter | Any]:
    """The writer for ``settings``: the embedded :func:`~rag.index.write_index` (one new
    generation published when the block ends), or a PostgreSQL writer whose every ``upsert`` and
    ``remove`` is one transaction of its own (no copy of the corpus)."""
    url = database_url(settings)
    if not url:
        with write_index(
            settings.index_dir,
            embedder_id,
            dim,
            chunking=chunking,
            wait=wait,
            keep_generations=settings.keep_generations,
            vector_config=VectorIndexConfig.from_settings(settings),
        ) as writer:
            yield writer
        return
    from .postgres import pg_writer

    with pg_writer(url, embedder_id, dim, chunking=chunking) as pg:
        yield pg
