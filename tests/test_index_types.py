"""Vector index types: auto choice by size, rebuilds across the threshold (both ways) inside the
generation mechanism, removal and filtered search on ivf_sq8, the manifest, and a reader that
keeps serving the previous generation while a rebuild runs. Fast: no models, small thresholds."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np
import pydantic
import pytest

import rag.index as index_mod
from rag.index import (
    IndexReader,
    Manifest,
    VectorIndexConfig,
    auto_nlist,
    open_snapshot,
    read_current,
    search_params,
    write_index,
)
from rag.indexing import ingest_paths, remove_documents
from rag.retrieve import Filters, Retriever, rank
from rag.settings import Settings
from rag.types import Chunk, Document
from tests.conftest import HashEmbedder

SYLLABLES = ["ka", "lo", "mi", "ru", "se", "po", "na", "te", "vi", "du", "ge", "bo", "fa", "ni", "zo", "he"]
PER_DOC = 10


def _word(i: int) -> str:
    return "".join(SYLLABLES[(i >> (4 * k)) % 16] for k in range(4)) + "q"


def _doc(
    n: int, groups: tuple[str, ...] = (), per_doc: int = PER_DOC, version: str = ""
) -> tuple[Document, list[Chunk]]:
    """Document ``n``: ``per_doc`` chunks, each with a few words of its own."""
    doc = Document(
        doc_id=f"syn/{n:04d}",
        title=f"Document {n}",
        source=f"syn/{n:04d}.txt",
        sections=[],
        content_hash=f"{n}{version}",
        doc_type="raadsbrief" if n % 2 else "begroting",
        year=2020 + n % 5,
        groups=list(groups),
    )
    chunks = [
        Chunk(
            doc_id=doc.doc_id,
            text=" ".join(_word(n * 97 + i * 7 + j + len(version) * 5000) for j in range(6)),
            heading_path=["Sectie"],
            position=i,
        )
        for i in range(per_doc)
    ]
    return doc, chunks


def _config(settings: Settings) -> VectorIndexConfig:
    return VectorIndexConfig.from_settings(settings)


def _write(settings: Settings, emb: HashEmbedder, docs: range, groups: tuple[str, ...] = ()) -> None:
    with write_index(settings.index_dir, emb.model_id, emb.dim, vector_config=_config(settings)) as w:
        for n in docs:
            doc, chunks = _doc(n, groups)
            w.upsert(doc, chunks, emb.embed_documents([c.text for c in chunks]))


def _remove(settings: Settings, docs: range) -> None:
    remove_documents([f"syn/{n:04d}" for n in docs], settings)


def _vector_ids(index: faiss.Index) -> set[int]:
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return set(faiss.vector_to_array(index.id_map).tolist())
    lists = ivf.invlists
    return {int(i) for lst in range(ivf.nlist) for i in faiss.rev_swig_ptr(lists.get_ids(lst), lists.list_size(lst))}


def _db_ids(snap) -> set[int]:
    return {r[0] for r in snap.db.execute("SELECT chunk_id FROM chunks")}


def _check_consistent(settings: Settings, index_type: str) -> None:
    snap = open_snapshot(settings.index_dir)
    assert snap.manifest.index_type == index_type
    expected = faiss.IndexIVFScalarQuantizer if index_type == "ivf_sq8" else faiss.IndexIDMap2
    assert isinstance(snap.vectors, expected)
    assert snap.vectors.ntotal == snap.manifest.n_chunks
    assert _vector_ids(snap.vectors) == _db_ids(snap)


@pytest.fixture
def small(tmp_path: Path) -> Settings:
    """auto with a threshold of 200 chunks."""
    return Settings(index_dir=tmp_path / "index", models_dir=tmp_path / "models", index_auto_threshold=200)


def test_auto_rebuilds_across_the_threshold_both_ways(small, hash_embedder):
    _write(small, hash_embedder, range(15))  # 150 chunks
    _check_consistent(small, "flat")
    assert open_snapshot(small.index_dir).manifest.index_params == {}

    _write(small, hash_embedder, range(15, 25))  # 250
    _check_consistent(small, "ivf_sq8")
    m = open_snapshot(small.index_dir).manifest
    assert m.index_params == {
        "nlist": auto_nlist(250),
        "nprobe": auto_nlist(250),
        "quantizer": "SQ8",
        "trained_on": 250,
    }

    _remove(small, range(20, 25))  # 200: still ivf
    _check_consistent(small, "ivf_sq8")
    _remove(small, range(18, 20))  # 180 = 90% of the threshold: still ivf (hysteresis)
    _check_consistent(small, "ivf_sq8")
    _remove(small, range(17, 18))  # 170: back to flat
    _check_consistent(small, "flat")
    _write(small, hash_embedder, range(17, 19))  # 190 < 200: stays flat
    _check_consistent(small, "flat")


def test_vectors_survive_the_rebuilds(small, hash_embedder):
    """Chunks still find themselves first after flat -> ivf (exact vectors) -> flat (SQ8-decoded)."""
    _write(small, hash_embedder, range(25))
    for expected in ("ivf_sq8", "flat"):
        _check_consistent(small, expected)
        snap = open_snapshot(small.index_dir)
        for doc_id in ("syn/0003", "syn/0007"):
            for chunk in snap.chunks_of(doc_id):
                hits = rank(snap, chunk.text, hash_embedder.embed_query(chunk.text), top_k=1, fusion="dense")
                assert hits[0].chunk_id == chunk.chunk_id
        _remove(small, range(10, 25))


def test_ivf_removal_and_update(small, hash_embedder):
    _write(small, hash_embedder, range(30))
    _check_consistent(small, "ivf_sq8")
    gone = [c.chunk_id for c in open_snapshot(small.index_dir).chunks_of("syn/0004")]
    _remove(small, range(4, 5))
    snap = open_snapshot(small.index_dir)
    _check_consistent(small, "ivf_sq8")
    assert not set(gone) & _vector_ids(snap.vectors)
    with pytest.raises(RuntimeError):
        snap.vectors.reconstruct(gone[0])
    text = _doc(4)[1][0].text
    assert all(
        h.doc_id != "syn/0004" for h in rank(snap, text, hash_embedder.embed_query(text), top_k=10, fusion="dense")
    )

    # a changed document: other chunks, fewer of them
    with write_index(small.index_dir, hash_embedder.model_id, hash_embedder.dim, vector_config=_config(small)) as w:
        doc, chunks = _doc(5, per_doc=4, version="-v2")
        w.upsert(doc, chunks, hash_embedder.embed_documents([c.text for c in chunks]))
    _check_consistent(small, "ivf_sq8")
    snap = open_snapshot(small.index_dir)
    assert snap.manifest.n_chunks == 29 * PER_DOC - PER_DOC + 4
    hits = rank(snap, chunks[2].text, hash_embedder.embed_query(chunks[2].text), top_k=1, fusion="score")
    assert hits[0].doc_id == "syn/0005" and hits[0].text == chunks[2].text


@pytest.mark.parametrize("index_type", ["flat", "ivf_sq8"])
def test_filtered_search_on_every_type(index_type, tmp_path, hash_embedder):
    # nprobe 1: an unscaled IVF search would scan 1 of 8 lists and miss most allowed chunks
    settings = Settings(index_dir=tmp_path / "index", index_type=index_type, ivf_nprobe=1)
    _write(settings, hash_embedder, range(30))
    _write(settings, hash_embedder, range(30, 33), groups=("financien",))
    _check_consistent(settings, index_type)
    r = Retriever(settings, hash_embedder)
    secret = _doc(31)[1][3].text
    assert r.search(secret, top_k=1).hits[0].doc_id == "syn/0031"  # trusted caller
    for fusion in ("dense", "bm25", "rrf", "score"):
        hits = r.search(secret, top_k=20, filters=Filters(groups=["sociaal"]), fusion=fusion).hits
        assert hits or fusion == "bm25"  # no word in common with the public chunks
        assert all(h.doc_id not in {"syn/0030", "syn/0031", "syn/0032"} for h in hits), fusion
        hits = r.search(secret, top_k=5, filters=Filters(groups=["financien"]), fusion=fusion).hits
        assert hits[0].doc_id == "syn/0031", fusion
    # a very selective filter: all of one document's chunks, wherever they sit in the IVF
    hits = r.search(secret, top_k=50, filters=Filters(doc_ids=["syn/0012"]), fusion="dense").hits
    assert len(hits) == PER_DOC and {h.doc_id for h in hits} == {"syn/0012"}
    hits = r.search(secret, top_k=50, filters=Filters(doc_types=["begroting"], years=[2022]), fusion="dense").hits
    assert hits and {(h.doc_type, h.year) for h in hits} == {("begroting", 2022)}
    assert r.search(secret, top_k=5, filters=Filters(doc_ids=[]), fusion="dense").hits == []


def test_search_params_scale_nprobe_with_the_filter(small, hash_embedder):
    _write(small, hash_embedder, range(100))  # 1,000 chunks: nlist 25
    snap = open_snapshot(small.index_dir)
    nlist = auto_nlist(1000)
    assert snap.vectors.nlist == nlist
    ids = np.fromiter(_db_ids(snap), dtype=np.int64)
    assert search_params(snap.vectors, None, 4).nprobe == 4
    assert search_params(snap.vectors, None).nprobe == min(small.ivf_nprobe, nlist)  # stored in the index
    assert search_params(snap.vectors, ids[: len(ids) // 2], 4).nprobe == 8  # half allowed: twice the lists
    assert search_params(snap.vectors, ids[:10], 4).nprobe == nlist  # 1%: every list
    p = search_params(snap.vectors, ids[:10], 4)
    assert p.sel.is_member(int(ids[0])) and not p.sel.is_member(int(ids[10]))


def test_forced_types_and_the_ivf_minimum(tmp_path, hash_embedder):
    flat = Settings(index_dir=tmp_path / "a", index_type="flat", index_auto_threshold=100)
    _write(flat, hash_embedder, range(30))
    _check_consistent(flat, "flat")
    ivf = Settings(index_dir=tmp_path / "b", index_type="ivf_sq8", index_auto_threshold=10**9)
    _write(ivf, hash_embedder, range(5))  # 50 < 64 vectors: too few to train, stays flat
    _check_consistent(ivf, "flat")
    _write(ivf, hash_embedder, range(5, 8))
    _check_consistent(ivf, "ivf_sq8")
    # switching the setting back to flat rebuilds on the next write
    _remove(flat.model_copy(update={"index_dir": ivf.index_dir}), range(1))
    _check_consistent(ivf, "flat")


def test_ivf_is_retrained_when_the_corpus_grows_4x_or_nlist_changes(small, hash_embedder):
    _write(small, hash_embedder, range(25))  # 250 chunks: nlist 6
    assert open_snapshot(small.index_dir).manifest.index_params["nlist"] == 6
    _write(small, hash_embedder, range(25, 40))  # 400: auto nlist 10 < 12, kept
    m = open_snapshot(small.index_dir).manifest
    assert (m.index_params["nlist"], m.index_params["trained_on"]) == (6, 250)
    _write(small, hash_embedder, range(40, 110))  # 1,100: auto nlist 28 >= 12, retrained
    m = open_snapshot(small.index_dir).manifest
    assert (m.index_params["nlist"], m.index_params["trained_on"]) == (28, 1100)
    _check_consistent(small, "ivf_sq8")
    fixed = small.model_copy(update={"ivf_nlist": 16, "ivf_nprobe": 4})
    _remove(fixed, range(1))
    m = open_snapshot(small.index_dir).manifest
    assert m.index_params == {"nlist": 16, "nprobe": 4, "quantizer": "SQ8", "trained_on": 1090}
    _check_consistent(small, "ivf_sq8")


def test_manifest_of_an_older_index_reads_as_flat(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"embedder": "e", "dim": 8, "generation": 3}', encoding="utf-8")
    m = Manifest.from_file(path)
    assert (m.index_type, m.index_params) == ("flat", {})


def test_bad_index_settings_are_refused(tmp_path):
    with pytest.raises(pydantic.ValidationError):
        Settings(index_dir=tmp_path, index_type="hnsw")
    with pytest.raises(pydantic.ValidationError):
        Settings(index_dir=tmp_path, ivf_nprobe=0)
    with pytest.raises(ValueError, match="index_type"):
        VectorIndexConfig(index_type="hnsw")


def test_reader_serves_the_old_generation_while_a_rebuild_runs(small, hash_embedder, monkeypatch):
    _write(small, hash_embedder, range(15))  # flat
    before = read_current(small.index_dir)
    reader = IndexReader(small.index_dir, check_interval=0)
    retriever = Retriever(small, hash_embedder, reader=reader)
    query = _doc(3)[1][2].text
    started, release = threading.Event(), threading.Event()
    real = index_mod.rebuild_vector_index

    def slow_rebuild(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(index_mod, "rebuild_vector_index", slow_rebuild)
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            _write(small, hash_embedder, range(15, 30))  # crosses 200: rebuild to ivf
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    writer = threading.Thread(target=ingest)
    writer.start()
    try:
        assert started.wait(30)
        for _ in range(3):  # the rebuild is running: readers see the complete old generation
            result = retriever.search(query, top_k=3, fusion="dense")
            assert result.generation == before and result.hits[0].doc_id == "syn/0003"
            assert reader.snapshot().manifest.index_type == "flat"
        assert read_current(small.index_dir) == before
        assert list(small.index_dir.glob(".tmp-*"))
    finally:
        release.set()
        writer.join(60)
    assert not errors
    result = retriever.search(query, top_k=3, fusion="dense")
    assert result.generation != before and result.hits[0].doc_id == "syn/0003"
    assert reader.snapshot().manifest.index_type == "ivf_sq8"


def test_ingest_and_remove_follow_the_settings(tmp_path, hash_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(70):
        words = " ".join(_word(n * 31 + j) for j in range(12))
        (docs / f"nota-{n:03d}.md").write_text(f"# Nota {n}\n\nDe gemeente schrijft over {words}.\n", encoding="utf-8")
    settings = Settings(index_dir=tmp_path / "index", index_auto_threshold=64)
    report = ingest_paths([docs], settings, hash_embedder)
    assert report.ok and report.chunks_embedded == 70
    _check_consistent(settings, "ivf_sq8")
    remove_documents([f"docs/nota-{n:03d}" for n in range(15)], settings)  # 55 < 0.9 * 64
    _check_consistent(settings, "flat")


def test_filter_results_are_cached_per_snapshot(small, hash_embedder):
    _write(small, hash_embedder, range(5))
    _write(small, hash_embedder, range(5, 7), groups=("financien",))
    snap = open_snapshot(small.index_dir)
    where, params = Filters(groups=["sociaal"]).sql()
    first = snap.filtered_chunk_ids(where, params)
    assert len(first) == 5 * PER_DOC and not first.flags.writeable
    assert snap.filtered_chunk_ids(where, list(params)) is first
    assert len(snap.filtered_chunk_ids(*Filters(groups=["financien"]).sql())) == 7 * PER_DOC
    _write(small, hash_embedder, range(7, 8))  # a new generation has its own cache
    assert len(open_snapshot(small.index_dir).filtered_chunk_ids(where, params)) == 6 * PER_DOC
