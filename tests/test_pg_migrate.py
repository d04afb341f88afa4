"""``vraagbaak index migrate`` (rag/store/migrate.py) against a real PostgreSQL + pgvector
server (tests/pg.py): embedded -> PostgreSQL -> embedded keeps everything, nothing is embedded
again, a non-empty target is refused, and a reader never sees half an index."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from rag.index import IndexNotFoundError, IndexSnapshot, read_current
from rag.indexing import ingest_paths
from rag.retrieve import Filters, Retriever
from rag.settings import Settings
from rag.store.migrate import (
    TargetNotEmptyError,
    migrate_to_embedded,
    migrate_to_postgres,
    open_source,
)
from rag.store.postgres import PgReader, manifest_present
from tests.conftest import HashEmbedder
from tests.pdf_fixture import make_pdf

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

QUERIES = ["begroting jeugdhulp", "afvalinzameling containers", "subsidie sportvereniging", "pagina twee parkeren"]


def _write_corpus(root: Path) -> tuple[Path, Path]:
    public, restricted = root / "openbaar", root / "financien"
    public.mkdir()
    restricted.mkdir()
    (public / "begroting.md").write_text(
        "# Begroting 2024\n\n## Jeugd\n\nDe begroting voor jeugdhulp stijgt met 4 procent naar 12 miljoen euro.\n\n"
        "## Afval\n\nDe afvalinzameling krijgt nieuwe ondergrondse containers in drie wijken.\n\n"
        "### Kosten\n\nDe containers kosten samen 800.000 euro.\n",
        encoding="utf-8",
    )
    (public / "sport.txt").write_text(
        "Raadsbrief sport\n\nDe gemeente verhoogt de subsidie voor elke sportvereniging met een jeugdafdeling. "
        + "Verenigingen vragen de subsidie aan voor 1 april. " * 20,
        encoding="utf-8",
    )
    (public / "parkeren.pdf").write_bytes(
        make_pdf(
            [
                ["Parkeerbeleid", "Pagina een over vergunningen voor bewoners."],
                ["Pagina twee over parkeren bij de markt en tarieven."],
                ["Pagina drie over fietsparkeren."],
            ]
        )
    )
    (restricted / "memo.md").write_text(
        "# Memo reserves\n\nDe algemene reserve daalt; de begroting jeugdhulp wordt geheim bijgesteld.\n",
        encoding="utf-8",
    )
    return public, restricted


@pytest.fixture(scope="module")
def embedded_index(tmp_path_factory) -> Path:
    """A small embedded (flat) index: markdown with headings, text, a 3-page PDF, and a document
    only the group 'financien' may see."""
    root = tmp_path_factory.mktemp("migrate-src")
    public, restricted = _write_corpus(root)
    settings = Settings(index_dir=root / "index", models_dir=root / "models")
    emb = HashEmbedder()
    assert ingest_paths([public], settings, emb).ok
    assert ingest_paths([restricted], settings, emb, groups=["financien"]).ok
    return root / "index"


def _snapshot_of(index_dir: Path) -> IndexSnapshot:
    name = read_current(index_dir)
    assert name is not None
    return IndexSnapshot(index_dir / name)


def _docs(snap) -> list[dict]:
    return list(snap.documents())


def _chunks(snap, doc_id: str) -> list[tuple]:
    return [
        (c.chunk_id, c.position, c.text, c.heading_path, c.page, c.char_start, c.char_end, c.page_end)
        for c in snap.chunks_of(doc_id)
    ]


def _pg_vectors(url: str) -> dict[int, np.ndarray]:
    import psycopg

    from rag.store.migrate import vectors_from_pg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT chunk_id, vector_send(embedding) FROM chunks").fetchall()
    return {int(cid): vectors_from_pg([bytes(b)], len(b) // 4 - 1)[0] for cid, b in rows}


def _hits(retriever: Retriever, q: str, fusion: str, filters: Filters | None = None) -> list[tuple]:
    return [
        (h.chunk_id, h.doc_id, h.position) for h in retriever.search(q, top_k=8, fusion=fusion, filters=filters).hits
    ]


def test_round_trip_keeps_everything(embedded_index, pg_url, tmp_path):
    emb = HashEmbedder()
    with open_source("embedded", embedded_index) as src:
        assert src.info.exact_vectors and src.info.vector_index == "flat"
        done: list[int] = []
        to_pg = migrate_to_postgres(src, pg_url, batch_chunks=3, progress=done.append)
    assert to_pg.vectors == "exact" and not to_pg.replaced
    assert sum(done) == to_pg.n_chunks == src.info.n_chunks and len(done) > 1  # written in batches
    back_dir = tmp_path / "back"
    with open_source("postgres", pg_url) as src:
        back = migrate_to_embedded(src, back_dir)
    assert (back.n_documents, back.n_chunks) == (to_pg.n_documents, to_pg.n_chunks)

    a, b = _snapshot_of(embedded_index), _snapshot_of(back_dir)
    pg = PgReader(pg_url).snapshot()
    # every document row (ingested_at, groups and metadata included), section and chunk
    assert _docs(a) == _docs(b)
    assert _docs(pg) == _docs(a)
    assert any(d["groups"] == ["financien"] for d in _docs(a))
    for d in _docs(a):
        assert a.sections_of(d["doc_id"]) == b.sections_of(d["doc_id"]) == pg.sections_of(d["doc_id"])
        assert a.sections_of(d["doc_id"])
        assert _chunks(a, d["doc_id"]) == _chunks(b, d["doc_id"]) == _chunks(pg, d["doc_id"])
    pages = [c.page_end for d in _docs(a) for c in a.chunks_of(d["doc_id"]) if c.page_end]
    assert pages and max(pages) == 3  # the PDF's pages came along
    assert any(len(c.heading_path) == 2 for d in _docs(a) for c in a.chunks_of(d["doc_id"]))
    # identical vectors (flat: exact), chunk ids kept
    ids = np.array(sorted(_pg_vectors(pg_url)), dtype=np.int64)
    va, vb = a.vectors.reconstruct_batch(ids), b.vectors.reconstruct_batch(ids)
    vp = np.vstack([_pg_vectors(pg_url)[int(i)] for i in ids])
    assert np.array_equal(va, vb) and np.array_equal(va, vp)
    # the manifests
    for m in (b.manifest, pg.manifest):
        assert (m.embedder, m.dim, m.chunking, m.n_documents, m.n_chunks) == (
            a.manifest.embedder,
            a.manifest.dim,
            a.manifest.chunking,
            a.manifest.n_documents,
            a.manifest.n_chunks,
        )
    # identical search hits on all three, with and without an access filter
    settings = lambda **kw: Settings(models_dir=tmp_path / "m", **kw)  # noqa: E731
    r_a = Retriever(settings(index_dir=embedded_index), emb)
    r_b = Retriever(settings(index_dir=back_dir), emb)
    r_p = Retriever(settings(index_dir=tmp_path / "unused", database_url=pg_url), emb)
    for q in QUERIES:
        for fusion in ("dense", "bm25", "score"):
            for f in (None, Filters(groups=[]), Filters(groups=["financien"])):
                want = _hits(r_a, q, fusion, f)
                assert want == _hits(r_b, q, fusion, f) == _hits(r_p, q, fusion, f), (q, fusion, f)
    assert all(h.doc_id != "financien/memo" for h in r_p.search("geheim", filters=Filters(groups=[])).hits)
    a.close()
    b.close()


def test_a_non_empty_target_is_refused_unless_replace(embedded_index, pg_url, tmp_path):
    with open_source("embedded", embedded_index) as src:
        first = migrate_to_postgres(src, pg_url)
    with open_source("embedded", embedded_index) as src, pytest.raises(TargetNotEmptyError, match="--replace"):
        migrate_to_postgres(src, pg_url)
    with open_source("embedded", embedded_index) as src:
        again = migrate_to_postgres(src, pg_url, replace=True)
    assert again.replaced and again.generation > first.generation
    assert PgReader(pg_url).snapshot().manifest.n_chunks == first.n_chunks

    target = tmp_path / "target"
    with open_source("postgres", pg_url) as src:
        migrate_to_embedded(src, target)
    live = read_current(target)
    with open_source("postgres", pg_url) as src, pytest.raises(TargetNotEmptyError, match="--replace"):
        migrate_to_embedded(src, target)
    assert read_current(target) == live and not list(target.glob(".tmp-*"))
    with open_source("postgres", pg_url) as src:
        replaced = migrate_to_embedded(src, target, replace=True)
    assert replaced.replaced and read_current(target) != live and (target / live).is_dir()


def test_a_reader_sees_the_old_index_or_the_whole_new_one(embedded_index, pg_url, tmp_path):
    """While the migration's transaction is open (paused after its first batch), a reader of the
    database sees the index that was there (or none); after the commit, the whole new one."""
    emb = HashEmbedder()
    old_docs = tmp_path / "oud"
    old_docs.mkdir()
    (old_docs / "oud.md").write_text("# Oud\n\nDe oude nota over de ijsbaan.\n", encoding="utf-8")

    def paused_migration(replace: bool) -> tuple[threading.Thread, threading.Event, threading.Event, list]:
        first_batch, release = threading.Event(), threading.Event()
        out: list = []

        def progress(n: int) -> None:
            first_batch.set()
            assert release.wait(30)

        def work() -> None:
            try:
                with open_source("embedded", embedded_index) as src:
                    out.append(migrate_to_postgres(src, pg_url, replace=replace, batch_chunks=2, progress=progress))
            except BaseException as exc:  # noqa: BLE001
                out.append(exc)

        t = threading.Thread(target=work)
        t.start()
        assert first_batch.wait(30)
        return t, release, first_batch, out

    # an empty database: nothing is visible until the commit
    t, release, _, out = paused_migration(replace=False)
    assert not manifest_present(pg_url)
    with pytest.raises(IndexNotFoundError):
        PgReader(pg_url)
    release.set()
    t.join(60)
    assert not isinstance(out[0], BaseException), out
    assert manifest_present(pg_url)

    # an index that is replaced: the old one until the commit, then the whole new one
    settings = Settings(index_dir=tmp_path / "unused", models_dir=tmp_path / "m", database_url=pg_url)
    with open_source("embedded", embedded_index) as src:
        migrate_to_postgres(src, pg_url, replace=True)
    assert ingest_paths([old_docs], settings, emb).ok  # the old state: the migrated index + one document
    reader = Retriever(settings, emb)
    reader.reader.check_interval = 0.0
    before = [d["doc_id"] for d in reader.reader.snapshot().documents()]
    assert "oud/oud" in before
    t, release, _, out = paused_migration(replace=True)
    try:
        hits = reader.search("ijsbaan", top_k=3, fusion="bm25").hits
        assert hits and hits[0].doc_id == "oud/oud"
        assert [d["doc_id"] for d in reader.reader.snapshot().documents()] == before
    finally:
        release.set()
        t.join(60)
    assert not isinstance(out[0], BaseException), out
    after = [d["doc_id"] for d in reader.reader.snapshot().documents()]
    assert "oud/oud" not in after and len(after) == len(before) - 1
    assert not reader.search("ijsbaan", top_k=3, fusion="bm25").hits
    assert reader.search("afvalinzameling containers", top_k=1).hits[0].doc_id == "openbaar/begroting"
    assert reader.reader.snapshot().manifest.n_chunks == out[0].n_chunks


def test_a_failed_migration_leaves_the_target_as_it_was(embedded_index, pg_url):
    with open_source("embedded", embedded_index) as src:
        first = migrate_to_postgres(src, pg_url)

    def boom(n: int) -> None:
        raise RuntimeError("disk on fire")

    with open_source("embedded", embedded_index) as src, pytest.raises(RuntimeError, match="disk on fire"):
        migrate_to_postgres(src, pg_url, replace=True, batch_chunks=2, progress=boom)
    m = PgReader(pg_url).snapshot().manifest
    assert (m.generation, m.n_chunks) == (first.generation, first.n_chunks)
    import psycopg

    with psycopg.connect(pg_url) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'vraagbaak_migrate%'").fetchone()
    assert left is not None and left[0] == 0


def test_an_ivf_sq8_source_is_approximate_and_reembed_is_exact(tmp_path, pg_url):
    """ivf_sq8 keeps 8-bit codes: the vectors moved are SQ8-decoded (near, not equal); with
    ``embed`` the chunk texts are embedded again and the vectors are the embedder's own."""
    folder = tmp_path / "veel"
    folder.mkdir()
    words = ["haven", "dijk", "school", "bibliotheek", "markt", "brug", "molen", "park", "kerk", "station"]
    for i in range(80):
        (folder / f"n{i:02d}.txt").write_text(
            f"Notitie {i} over de {words[i % 10]} en de {words[(i * 3) % 10]} in wijk {i}.", encoding="utf-8"
        )
    emb = HashEmbedder()
    settings = Settings(index_dir=tmp_path / "ivf", models_dir=tmp_path / "m", index_type="ivf_sq8")
    assert ingest_paths([folder], settings, emb).ok
    with open_source("embedded", settings.index_dir) as src:
        assert src.info.vector_index == "ivf_sq8" and not src.info.exact_vectors
        report = migrate_to_postgres(src, pg_url)
    assert report.vectors == "sq8-decoded" and "--reembed" in " ".join(report.notes)
    stored = _pg_vectors(pg_url)
    snap = _snapshot_of(settings.index_dir)
    texts = {c.chunk_id: c.embed_text(d["title"]) for d in snap.documents() for c in snap.chunks_of(d["doc_id"])}
    exact = {cid: emb.embed_documents([t])[0] for cid, t in texts.items()}
    cos = [float(stored[c] @ exact[c]) for c in exact]
    assert min(cos) > 0.99 and any(not np.array_equal(stored[c], exact[c]) for c in exact)
    with open_source("embedded", settings.index_dir) as src:
        again = migrate_to_postgres(src, pg_url, replace=True, embed=emb.embed_documents)
    assert again.vectors == "re-embedded"
    stored = _pg_vectors(pg_url)
    assert all(np.array_equal(stored[c], exact[c]) for c in exact)
    snap.close()


def test_the_cli_command_end_to_end(embedded_index, pg_url, tmp_path):
    from typer.testing import CliRunner

    from rag.cli import app

    runner = CliRunner()
    env = {"VRAAGBAAK_MODELS_DIR": str(tmp_path / "m")}
    args = ["index", "migrate", "--index-dir", str(embedded_index), "--database-url", pg_url]
    r = runner.invoke(app, [*args, "--to", "postgres"], env=env)
    assert r.exit_code == 0, r.output
    assert "migrated" in r.output and "vectors exact" in r.output
    assert "password" not in r.output.lower()
    r = runner.invoke(app, [*args, "--to", "postgres"], env=env)
    assert r.exit_code == 1 and "--replace" in r.output
    r = runner.invoke(app, [*args, "--to", "postgres", "--replace", "--json"], env=env)
    assert r.exit_code == 0, r.output
    import json

    data = json.loads(r.output)
    assert data["replaced"] and data["target"] == "postgres" and data["vectors"] == "exact"
    back = tmp_path / "terug"
    r = runner.invoke(
        app, ["index", "migrate", "--to", "embedded", "--index-dir", str(back), "--database-url", pg_url], env=env
    )
    assert r.exit_code == 0, r.output
    a, b = _snapshot_of(embedded_index), _snapshot_of(back)
    assert _docs(a) == _docs(b)
    assert np.array_equal(a.vectors.reconstruct_batch(np.arange(1, 4)), b.vectors.reconstruct_batch(np.arange(1, 4)))
    # no database given or configured
    r = runner.invoke(app, ["index", "migrate", "--to", "embedded", "--index-dir", str(back)], env=env)
    assert r.exit_code != 0 and "--database-url" in r.output
    # `vraagbaak documents` lists the index of the configured backend
    r = runner.invoke(app, ["documents", "--json"], env={**env, "VRAAGBAAK_DATABASE_URL": pg_url})
    assert r.exit_code == 0, r.output
    assert sorted(d["doc_id"] for d in json.loads(r.output)) == sorted(d["doc_id"] for d in a.documents())


def test_the_eval_harness_runs_retrieval_on_postgres(pg_url, tmp_path):
    """``python -m eval run --database-url``: the dataset's embedded index is migrated into a
    schema of the eval's own (the database's index tables are left alone) and retrieval gives
    the same rows as on the embedded index."""
    import psycopg

    from eval import run as R
    from tests.conftest import DEMO_CORPUS

    emb = HashEmbedder()
    settings = Settings(index_dir=tmp_path / "index", models_dir=tmp_path / "m")
    assert ingest_paths([DEMO_CORPUS], settings, emb).ok
    # the database already serves an index of its own (the first schema of its search_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.md").write_text("# X\n\nIets heel anders.\n", encoding="utf-8")
    ingest_paths([other], settings.model_copy(update={"database_url": SecretStr(pg_url)}), emb)
    with psycopg.connect(pg_url) as conn:
        before = conn.execute("SELECT generation, n_chunks FROM manifest").fetchone()

    rows = {}
    for backend, url in (("embedded", ""), ("postgres", pg_url)):
        cfg = R.RunConfig(dataset="demo", only="retrieval", index_dir=str(settings.index_dir), limit=25)
        run_dir, res = R.run(
            cfg,
            run_dir=tmp_path / f"run-{backend}",
            settings=settings,
            embedder=emb,
            progress=False,
            log=lambda m: None,
            database_url=url,
        )
        index = res["config"]["index"]
        assert index["backend"] == backend
        rows[backend] = res
    pg_index = rows["postgres"]["config"]["index"]
    assert pg_index["schema"].startswith("vraagbaak_eval_") and pg_index["vectors"] == "exact"
    assert "password" not in json_dumps(rows["postgres"]["config"]) and pg_url not in json_dumps(rows["postgres"])
    a, b = rows["embedded"], rows["postgres"]
    assert a["summary"]["metrics"] == b["summary"]["metrics"]
    for x, y in zip(a["rows"], b["rows"]):
        # the same ranking; within a run of (near-)equal scores the order may differ (float32
        # inner products in FAISS, float64 cosines in SQL), and the last run may be cut apart
        assert _score_runs(x["retrieval"]["hits"]) == _score_runs(y["retrieval"]["hits"]), x["id"]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT generation, n_chunks FROM manifest").fetchone() == before


def json_dumps(obj) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)


def _score_runs(hits: list[dict]) -> list[tuple[float, frozenset]]:
    runs: list[tuple[float, set]] = []
    for h in hits:
        if runs and abs(runs[-1][0] - h["score"]) <= 1e-4:
            runs[-1][1].add(h["chunk_id"])
        else:
            runs.append((h["score"], {h["chunk_id"]}))
    return [(round(score, 3), frozenset(ids)) for score, ids in runs[:-1]]
