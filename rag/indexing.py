"""Ingest files into the index: discover → parse → chunk → embed → write one generation.

Incremental by content hash: an unchanged file costs a hash and nothing more, a changed
file replaces its chunks, ``sync=True`` drops documents that were not seen in this run.
Bad files are reported with their reason and skipped; the rest of the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .chunking import chunk_document
from .embed import Embedder
from .ingest import IngestError, discover
from .ingest.isolation import close_parser, make_parser
from .settings import Settings
from .spans import locate_chunks
from .store import write_store
from .types import Chunk, Document


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    chunks_embedded: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    generation: int | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        rate = self.chunks_embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0
        return (
            f"added {len(self.added)}, updated {len(self.updated)}, unchanged {len(self.unchanged)}, "
            f"removed {len(self.removed)}, failed {len(self.failed)} — "
            f"{self.chunks_embedded} chunks embedded in {self.embed_seconds:.1f}s ({rate:.2f} chunks/s), "
            f"total {self.seconds:.1f}s"
        )

    def to_dict(self) -> dict:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "chunks_embedded": self.chunks_embedded,
            "seconds": round(self.seconds, 2),
            "embed_seconds": round(self.embed_seconds, 2),
            "generation": self.generation,
        }


def chunking_settings(settings: Settings) -> dict:
    return {
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "min_chunk_chars": settings.min_chunk_chars,
    }


def _root_for(path: Path) -> Path:
    """doc ids are relative to the parent of each path given (``data/voorbeeld`` → ``voorbeeld/…``)."""
    p = path.resolve()
    return p.parent


def ingest_paths(
    paths: Sequence[Path],
    settings: Settings,
    embedder: Embedder,
    sync: bool = False,
    groups: list[str] | None = None,
    progress: bool = False,
    wait: bool = False,
    parse: Callable[..., Document] | None = None,
) -> IngestReport:
    """``parse`` defaults to :func:`rag.ingest.isolation.make_parser` (``settings.parse_isolation``:
    a worker process with the settings' limits, ended when the run ends)."""
    own_parser = parse is None
    if parse is None:
        parse = make_parser(settings)
    try:
        return _ingest_paths(paths, settings, embedder, sync, groups, progress, wait, parse)
    finally:
        if own_parser:
            close_parser(parse)


def _ingest_paths(
    paths: Sequence[Path],
    settings: Settings,
    embedder: Embedder,
    sync: bool,
    groups: list[str] | None,
    progress: bool,
    wait: bool,
    parse: Callable[..., Document],
) -> IngestReport:
    report = IngestReport()
    t0 = time.perf_counter()
    files: list[tuple[Path, Path]] = []
    for given in paths:
        given = Path(given)
        if not given.exists():
            report.failed.append((str(given), "file or folder not found"))
            continue
        root = _root_for(given)
        files += [(f, root) for f in discover([given])]

    # the embedded index: one new generation; PostgreSQL (database_url): one transaction per document
    with write_store(
        settings, embedder.model_id, embedder.dim, chunking=chunking_settings(settings), wait=wait
    ) as writer:
        pending: list[tuple[Document, list[Chunk], bool]] = []
        seen: set[str] = set()
        for path, root in files:
            try:
                doc = parse(path, root=root, groups=groups)
            except IngestError as exc:
                report.failed.append((str(path), exc.reason))
                continue
            if doc.doc_id in seen:
                report.failed.append((str(path), f"duplicate document id '{doc.doc_id}' in this run"))
                continue
            seen.add(doc.doc_id)
            doc.metadata["path"] = str(path.resolve())
            old_hash = writer.content_hash(doc.doc_id)  # "" : indexed before spans were kept
            if old_hash == doc.content_hash:
                report.unchanged.append(doc.doc_id)
                continue
            chunks = chunk_document(
                doc, chunk_size=settings.chunk_size, overlap=settings.chunk_overlap, min_chars=settings.min_chunk_chars
            )
            if not chunks:
                report.failed.append((str(path), "no text to index after parsing"))
                continue
            locate_chunks(doc, chunks)
            pending.append((doc, chunks, old_hash is not None))

        texts = [c.embed_text(doc.title) for doc, chunks, _ in pending for c in chunks]
        t_embed = time.perf_counter()
        vectors = embedder.embed_documents(texts, progress=progress)
        report.embed_seconds = time.perf_counter() - t_embed
        report.chunks_embedded = len(texts)

        start = 0
        for doc, chunks, existed in pending:
            writer.upsert(doc, chunks, vectors[start : start + len(chunks)])
            start += len(chunks)
            (report.updated if existed else report.added).append(doc.doc_id)

        if sync:
            # gone = not seen in this run and its file no longer exists (a file that is
            # still there but failed to parse keeps its previous version)
            paths_by_doc = writer.document_paths()
            for doc_id in sorted(writer.doc_ids() - seen):
                known = paths_by_doc.get(doc_id)
                if known and Path(known).exists():
                    continue
                writer.remove(doc_id)
                report.removed.append(doc_id)
        report.generation = writer.manifest.generation
    report.seconds = time.perf_counter() - t0
    return report


def remove_documents(doc_ids: Sequence[str], settings: Settings) -> list[str]:
    """Drop documents by id; returns the ids that were present."""
    removed: list[str] = []
    with write_store(settings, None, None) as writer:
        for doc_id in doc_ids:
            if writer.remove(doc_id):
                removed.append(doc_id)
    return removed
