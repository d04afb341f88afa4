"""The postgres index backend (rag/store/postgres.py) against a real PostgreSQL + pgvector
server (tests/pg.py: pgserver, started once per session)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


def test_server_has_pgvector(pg_url, pg_server):
    import psycopg

    with psycopg.connect(pg_url) as conn:
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert version is not None
        assert conn.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetchone()[0] == pytest.approx(1.0)
    print(f"pgserver started in {pg_server.start_seconds:.1f} s, pgvector {version[0]}")


# --------------------------------------------------------------------------- the backend

import shutil  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from rag.index import EmbedderMismatchError, IndexNotFoundError  # noqa: E402
from rag.indexing import ingest_paths, remove_documents  # noqa: E402
from rag.retrieve import Filters, Retriever, rank  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.text.tokens import tokenize  # noqa: E402
from tests.conftest import DEMO_CORPUS, HashEmbedder  # noqa: E402

QUERIES = [
    "Hoeveel geld gaat er naar de Wmo?",
    "preventie in plaats van zorg",
    "jeugdhulp kosten",
    "sociaal domein welzijn gezondheid",
    "schuldhulpverlening armoede",
    "sportaccommodaties en bewegen",
]


def _pg_settings(tmp_path: Path, url: str, **kw) -> Settings:
    return Settings(index_dir=tmp_path / "unused-index", models_dir=tmp_path / "models", database_url=url, **kw)


@pytest.fixture(scope="module")
def both(tmp_path_factory, pg_server):
    """The demo corpus in the embedded index and in PostgreSQL, ingested the same way."""
    tmp = tmp_path_factory.mktemp("both")
    corpus = tmp / "voorbeeld"
    shutil.copytree(DEMO_CORPUS, corpus)
    emb = HashEmbedder()
    embedded = Settings(index_dir=tmp / "index", models_dir=tmp / "models")
    pg = _pg_settings(tmp, pg_server.database())
    assert ingest_paths([corpus], embedded, emb).ok
    assert ingest_paths([corpus], pg, emb).ok
    return Retriever(embedded, emb), Retriever(pg, emb), emb


def _key(hits):
    return [(h.doc_id, h.position) for h in hits]


def _untied(hits):
    """The hits above the last one's score (those cannot be an arbitrary pick among ties)."""
    return [(h.doc_id, h.position) for h in hits if h.score > hits[-1].score + 1e-6] if hits else []


@pytest.mark.parametrize("fusion", ["dense", "bm25", "rrf", "score"])
def test_same_hits_as_the_embedded_index(both, fusion):
    embedded, pg, _ = both
    assert type(pg.reader).__name__ == "PgReader"
    found = 0
    for q in QUERIES:
        a = embedded.search(q, top_k=10, fusion=fusion).hits
        b = pg.search(q, top_k=10, fusion=fusion).hits
        assert len(a) == len(b), q
        if not a:  # no query word in the corpus (BM25)
            continue
        found += 1
        assert _key(a)[0] == _key(b)[0], q  # the top hit agrees
        # ... and so does the whole list, but for exact ties at its end (FAISS keeps any of
        # equally scored vectors), with the same scores to float rounding
        if fusion == "rrf":
            # ranks, not scores: equal BM25 scores (float32 in bm25s, float64 in SQL) are ranked
            # in an arbitrary order by either side, which moves the fused order a little
            assert len(set(_key(a)) & set(_key(b))) >= 8, q
            continue
        assert len(a) == len(b) and _untied(a) == _untied(b), q
        for x, y in zip(a, b):
            assert x.score == pytest.approx(y.score, rel=1e-4, abs=1e-5)
        for x, y in ((x, y) for x, y in zip(a, b) if (x.doc_id, x.position) == (y.doc_id, y.position)):
            assert x.score == pytest.approx(y.score, rel=1e-4, abs=1e-5)
            assert (x.text, x.title, x.heading_path, x.page, x.char_start, x.char_end) == (
                y.text,
                y.title,
                y.heading_path,
                y.page,
                y.char_start,
                y.char_end,
            )
            if x.bm25_score is not None or y.bm25_score is not None:
                assert x.bm25_score == pytest.approx(y.bm25_score, rel=1e-4, abs=1e-5)
    assert found >= 4


def test_filters_and_snapshot_lookups_agree(both):
    embedded, pg, _ = both
    a, b = embedded.reader.snapshot(), pg.reader.snapshot()
    docs_a, docs_b = a.documents(), b.documents()
    strip = lambda ds: [{k: v for k, v in d.items() if k != "ingested_at"} for d in ds]  # noqa: E731
    assert strip(docs_a) == strip(docs_b)
    doc_id = docs_a[1]["doc_id"]
    assert [(c.position, c.text, c.heading_path) for c in a.chunks_of(doc_id)] == [
        (c.position, c.text, c.heading_path) for c in b.chunks_of(doc_id)
    ]
    assert a.sections_of(doc_id) == b.sections_of(doc_id)
    assert a.chunk_at(doc_id, 2).text == b.chunk_at(doc_id, 2).text
    assert b.chunk(b.chunk_at(doc_id, 2).chunk_id).text == a.chunk_at(doc_id, 2).text
    assert len(a.bm25) == len(b.bm25)
    idf_a, idf_b = a.bm25.idf(), b.bm25.idf()
    for term in ["zorg", "wmo", "jeugd", "nietsbestaand"]:
        assert idf_a(term) == pytest.approx(idf_b(term))
    for f in [
        Filters(doc_ids=[doc_id]),
        Filters(source_prefix=doc_id.split("/")[0]),
        Filters(groups=["niemand"]),
        Filters(doc_ids=[]),
        Filters(years=[2023]),
    ]:
        for fusion in ("dense", "score"):
            ha = embedded.search("zorg en welzijn", top_k=5, filters=f, fusion=fusion).hits
            hb = pg.search("zorg en welzijn", top_k=5, filters=f, fusion=fusion).hits
            assert _untied(ha) == _untied(hb) and len(ha) == len(hb), f


def test_hnsw_path_under_a_selective_filter_falls_back_to_exact(both, tmp_path):
    """With the exact threshold at 0 every search goes through HNSW; a filter that keeps one
    document (fewer rows than ef_search finds among its neighbours, pgvector < 0.8) is re-run
    exactly, and the hits are those of the exact search."""
    embedded, pg, emb = both
    from rag.store.postgres import PgReader

    reader = PgReader(pg.reader.url, exact_below=0)
    doc_id = embedded.reader.snapshot().documents()[3]["doc_id"]
    snap = reader.snapshot()
    qv = emb.embed_query("zorg")
    unfiltered = rank(snap, "zorg", qv, top_k=10, fusion="dense")
    assert snap.last_dense_plan == "hnsw" and len(unfiltered) == 10
    hits = rank(snap, "zorg", qv, top_k=10, filters=Filters(doc_ids=[doc_id]), fusion="dense")
    assert snap.last_dense_plan in ("hnsw", "hnsw+exact")
    exact = embedded.search("zorg", top_k=10, filters=Filters(doc_ids=[doc_id]), fusion="dense", query_vector=qv).hits
    assert _untied(hits) == _untied(exact) and len(hits) == len(exact)
    reader.close()


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(4):
        (folder / f"nota-{i}.md").write_text(
            f"# Nota {i}\n\n## Inhoud\n\nDeze nota {i} gaat over onderwerp{i} en de gemeente.\n", encoding="utf-8"
        )
    return folder


def test_incremental_upsert_and_delete_touch_one_document(corpus, tmp_path, pg_url):
    import psycopg

    settings = _pg_settings(tmp_path, pg_url)
    emb = HashEmbedder()
    ingest_paths([corpus], settings, emb)
    with psycopg.connect(pg_url) as conn:
        before = dict(conn.execute("SELECT chunk_id, doc_id FROM chunks").fetchall())
        xmins = dict(conn.execute("SELECT chunk_id, xmin::text FROM chunks").fetchall())
    gen = Retriever(settings, emb).reader.snapshot().manifest.generation
    (corpus / "nota-2.md").write_text("# Nota 2\n\nNieuwe tekst over ijsbaan Kardinge.\n", encoding="utf-8")
    report = ingest_paths([corpus], settings, emb)
    assert report.updated == ["docs/nota-2"] and len(report.unchanged) == 3
    with psycopg.connect(pg_url) as conn:
        after = dict(conn.execute("SELECT chunk_id, doc_id FROM chunks").fetchall())
        xmins_after = dict(conn.execute("SELECT chunk_id, xmin::text FROM chunks").fetchall())
        m = conn.execute("SELECT generation, n_documents, n_chunks, n_terms FROM manifest").fetchone()
        real = conn.execute("SELECT count(DISTINCT doc_id), count(*), sum(n_terms) FROM chunks").fetchone()
    # the other documents' rows were not rewritten (same ids, same creating transaction)
    others = {c for c, d in before.items() if d != "docs/nota-2"}
    assert others <= set(after) and all(xmins[c] == xmins_after[c] for c in others)
    assert not any(c in after for c, d in before.items() if d == "docs/nota-2")
    assert m[0] == gen + 1 and tuple(m[1:]) == tuple(real)
    r = Retriever(settings, emb)
    assert r.search("ijsbaan Kardinge", top_k=1, fusion="bm25").hits[0].doc_id == "docs/nota-2"
    assert remove_documents(["docs/nota-1", "docs/bestaat-niet"], settings) == ["docs/nota-1"]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM chunks WHERE doc_id = 'docs/nota-1'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM sections WHERE doc_id = 'docs/nota-1'").fetchone()[0] == 0
        assert conn.execute("SELECT n_documents FROM manifest").fetchone()[0] == 3
    # sync drops a document whose file is gone
    (corpus / "nota-3.md").unlink()
    assert ingest_paths([corpus], settings, emb, sync=True).removed == ["docs/nota-3"]


def test_a_search_sees_one_committed_state(corpus, tmp_path, pg_url):
    """A writer's open transaction is invisible: a search during it sees the old document; after
    the commit, the new one. A failed upsert leaves nothing behind."""
    from rag.store.postgres import pg_writer
    from rag.types import Chunk, Document, Section

    settings = _pg_settings(tmp_path, pg_url)
    emb = HashEmbedder()
    ingest_paths([corpus], settings, emb)
    reader_settings = settings.model_copy()
    r = Retriever(reader_settings, emb)
    from rag.store import open_reader

    r.reader = open_reader(settings, check_interval=0.0)

    doc = Document(doc_id="docs/nota-0", title="Nota 0", source="x", content_hash="h2", sections=[Section("ijsbaan")])
    chunk = Chunk(doc_id="docs/nota-0", text="De ijsbaan Kardinge krijgt een dak.", position=0)
    with pg_writer(pg_url, emb.model_id, emb.dim) as w:
        started, release = threading.Event(), threading.Event()
        original = w._bump

        def slow_bump(*a):
            original(*a)
            started.set()
            release.wait(10)

        w._bump = slow_bump  # type: ignore[method-assign]
        t = threading.Thread(target=w.upsert, args=(doc, [chunk], emb.embed_documents([chunk.text])))
        t.start()
        assert started.wait(10)
        # inside the writer's transaction: everything written but not committed
        hits = r.search("ijsbaan Kardinge", top_k=3, fusion="bm25").hits
        assert not hits
        assert r.reader.snapshot().document("docs/nota-0")["content_hash"] != "h2"
        release.set()
        t.join()
    hits = r.search("ijsbaan Kardinge", top_k=3, fusion="bm25").hits
    assert hits[0].doc_id == "docs/nota-0"

    with pg_writer(pg_url, emb.model_id, emb.dim) as w:
        with pytest.raises(ValueError):
            w.upsert(doc, [chunk, chunk], emb.embed_documents([chunk.text]))  # 2 chunks, 1 vector
        bad = Chunk(doc_id="docs/nota-0", text="x", position=0)
        with pytest.raises(Exception):  # noqa: B017  a NULL title breaks the insert mid-transaction
            w.upsert(
                Document(doc_id="docs/nota-0", title=None, source="x", content_hash="h3"),
                [bad],
                emb.embed_documents(["x"]),
            )  # type: ignore[arg-type]
    assert r.reader.snapshot().document("docs/nota-0")["content_hash"] == "h2"  # the failed upsert rolled back


def test_concurrent_writers_are_safe(tmp_path, pg_url):
    """Eight threads, each its own writer, upsert overlapping documents at once: every document
    ends with exactly the chunks of one version, and the manifest's counts are exact."""
    import psycopg

    from rag.store.postgres import pg_writer
    from rag.types import Chunk, Document, Section

    emb = HashEmbedder()
    errors: list[BaseException] = []

    def work(w_id: int) -> None:
        try:
            with pg_writer(pg_url, emb.model_id, emb.dim) as w:
                for round_ in range(6):
                    for d in range(5):
                        doc_id = f"docs/d{d}"
                        n = 1 + (w_id + round_ + d) % 4
                        texts = [f"document {d} writer {w_id} ronde {round_} stuk {i}" for i in range(n)]
                        doc = Document(
                            doc_id=doc_id,
                            title=f"D{d}",
                            source=doc_id,
                            content_hash=f"{w_id}-{round_}",
                            sections=[Section("x")],
                        )
                        w.upsert(
                            doc,
                            [Chunk(doc_id=doc_id, text=t, position=i) for i, t in enumerate(texts)],
                            emb.embed_documents(texts),
                        )
                    if round_ % 2:
                        w.remove(f"docs/d{w_id % 5}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with psycopg.connect(pg_url) as conn:
        for doc_id, content_hash in conn.execute("SELECT doc_id, content_hash FROM documents").fetchall():
            texts = [r[0] for r in conn.execute("SELECT text FROM chunks WHERE doc_id = %s", (doc_id,))]
            w_id, round_ = content_hash.split("-")
            assert texts and all(f"writer {w_id} ronde {round_} " in t for t in texts), (doc_id, content_hash, texts)
        m = conn.execute("SELECT n_documents, n_chunks, n_terms FROM manifest").fetchone()
        real = conn.execute(
            "SELECT (SELECT count(*) FROM documents), count(*), coalesce(sum(n_terms), 0) FROM chunks"
        ).fetchone()
        assert tuple(m) == tuple(real)
        assert term_stats_drift(conn) == []  # the document frequencies too, under concurrent writers


TERM_RECOUNT = "SELECT t AS term, count(*) AS df FROM chunks, unnest(terms) AS t GROUP BY t"


def term_stats_drift(conn) -> list:
    """Terms whose stored document frequency differs from a recount of the chunks."""
    return conn.execute(
        f"SELECT term, a.df, b.df FROM term_stats a FULL JOIN ({TERM_RECOUNT}) b USING (term) "
        "WHERE a.df IS DISTINCT FROM b.df"
    ).fetchall()


def test_term_stats_follow_every_change_and_are_rebuilt_for_an_older_index(corpus, tmp_path, pg_url):
    import psycopg

    from rag.store.postgres import PgReader

    settings = _pg_settings(tmp_path, pg_url)
    emb = HashEmbedder()
    ingest_paths([corpus], settings, emb)
    (corpus / "nota-2.md").write_text("# Nota 2\n\nNieuwe tekst over ijsbaan Kardinge en de gemeente.\n")
    ingest_paths([corpus], settings, emb)
    remove_documents(["docs/nota-1"], settings)
    with psycopg.connect(pg_url) as conn:
        assert term_stats_drift(conn) == []
        (gemeente,) = tokenize("gemeente")
        (kardinge,) = tokenize("Kardinge")
        # 3 documents left, each one chunk with "gemeente"; "Kardinge" only in the new nota 2
        assert conn.execute("SELECT df FROM term_stats WHERE term = %s", (gemeente,)).fetchone()[0] == 3
        assert conn.execute("SELECT df FROM term_stats WHERE term = %s", (kardinge,)).fetchone()[0] == 1
        conn.execute("DROP TABLE term_stats")  # an index written before the table existed
        conn.commit()
    PgReader(pg_url).close()  # the first reader counts them once
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM term_stats").fetchone()[0] > 0
        assert term_stats_drift(conn) == []


@pytest.mark.parametrize(
    "query",
    [
        "gemeente Groningen opvang Oekraïense vluchtelingen",
        "Waar staat GON voor en wat doet de gemeente?",
        "de gemeente en de raad over de begroting",
        "jeugdhulp kosten",
        "zzz-onbekend gemeente",
    ],
)
@pytest.mark.parametrize("n", [1, 5, 20])
def test_bm25_maxscore_stops_early_with_the_exact_top_n(both, query, n):
    """The pruned search (rarest terms first, stop when the common ones cannot catch up) gives
    the same top n as scoring every chunk that holds any query term."""
    from rag.store.postgres import _bm25_sql

    _, pg, _ = both
    snap = pg.reader.snapshot()
    with snap.pool.connection() as conn:
        m = conn.execute("SELECT n_chunks, n_terms FROM manifest").fetchone()
        every = [r[0] for r in conn.execute("SELECT chunk_id FROM chunks")]
        pruned = _bm25_sql(conn, query, "true", [], n, None, int(m[0]), int(m[1]))
        full = _bm25_sql(conn, query, "true", [], len(every), every, int(m[0]), int(m[1]))
    top = sorted(full.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    assert list(pruned) == [c for c, _ in top]
    assert list(pruned.values()) == pytest.approx([v for _, v in top])


class _CountingConnection:
    """A connection that counts the BM25 scoring queries run through it."""

    def __init__(self, conn) -> None:
        self.conn, self.scorings = conn, 0

    def execute(self, sql, params=None):
        self.scorings += "unnest(c.terms, c.tfs)" in sql
        return self.conn.execute(sql, params)


def test_bm25_maxscore_leaves_the_common_words_unscanned(both):
    """For a question with one rare and several common words, the top 1 is settled by the chunks
    that hold the rare word: the common words are never used to find candidates."""
    from rag.store.postgres import _bm25_sql, term_dfs

    _, pg, _ = both
    query = "Wat zegt de gemeente Groningen over de opvang van Oekraïense vluchtelingen?"
    with pg.reader.snapshot().pool.connection() as conn:
        m = conn.execute("SELECT n_chunks, n_terms FROM manifest").fetchone()
        counting = _CountingConnection(conn)
        found = _bm25_sql(counting, query, "true", [], 1, None, int(m[0]), int(m[1]))
        n_terms = len(term_dfs(conn, tokenize(query)))
    assert found and n_terms >= 4
    assert counting.scorings < n_terms


def test_embedder_mismatch_is_refused(corpus, tmp_path, pg_url):
    settings = _pg_settings(tmp_path, pg_url)
    with pytest.raises(IndexNotFoundError, match="vraagbaak ingest"):
        Retriever(settings, HashEmbedder())
    ingest_paths([corpus], settings, HashEmbedder())
    other = HashEmbedder(dim=128, model_id="another-model")
    with pytest.raises(EmbedderMismatchError, match="another-model"):
        Retriever(settings, other)
    with pytest.raises(EmbedderMismatchError):
        ingest_paths([corpus], settings, other)
    same_id_other_dim = HashEmbedder(dim=64)
    with pytest.raises(EmbedderMismatchError):
        ingest_paths([corpus], settings, same_id_other_dim)


def test_embedded_default_is_unchanged_without_a_database_url(tmp_path):
    from rag.index import IndexReader
    from rag.store import database_url, open_reader

    s = Settings(index_dir=tmp_path / "i", models_dir=tmp_path / "m")
    assert database_url(s) == ""
    with pytest.raises(IndexNotFoundError):
        open_reader(s)
    assert IndexReader.__name__ == "IndexReader" and np is not None


# --------------------------------------------------------------------------- the service on postgres


@pytest.fixture(scope="module")
def pg_service_root(tmp_path_factory, pg_server):
    """service/testing.py's corpus (public + RESTRICTED documents per group) in PostgreSQL."""
    from service.testing import build_index

    root = tmp_path_factory.mktemp("svc-pg")
    url = pg_server.database()
    settings = _pg_settings(root, url, refusal_min_score=0.0)
    build_index(root / "corpus", settings, HashEmbedder())
    return root, url


@pytest.fixture
def pg_env(pg_service_root, tmp_path):
    from service.app import create_app
    from service.config import ServiceSettings
    from service.testing import FakeLLM
    from tests import test_service as ts

    root, url = pg_service_root
    env = ts.Env.__new__(ts.Env)  # the same Env as tests/test_service.py, on the postgres backend
    env.settings = _pg_settings(root, url, refusal_min_score=0.0)
    env.llm = FakeLLM()
    from rag.pipeline import Pipeline

    retriever = Retriever(env.settings, HashEmbedder())
    retriever.reader.check_interval = 0.0
    assert type(retriever.reader).__name__ == "PgReader"
    env.pipeline = Pipeline(env.settings, retriever, env.llm)
    env.cfg = ServiceSettings(data_dir=tmp_path / "data", rate_limit_per_minute=0)
    env.app = create_app(env.settings, env.pipeline, service_settings=env.cfg)
    keys = env.app.state.vb.keys
    for old in keys.list(include_revoked=False):  # the state is in the module's database too (service/pgstate.py)
        keys.revoke(old.name)
    env.keys = {
        "admin": keys.add("admin", "admin"),
        "fin": keys.add("fin", "reader", "financien"),
        "soc": keys.add("soc", "reader", "sociaal"),
        "pub": keys.add("pub", "reader"),
    }
    return env


def _leak_cases():
    from tests.test_service import LEAK_CASES

    return LEAK_CASES


@pytest.mark.parametrize("who,word,doc_id", _leak_cases())
def test_restricted_passages_never_leak_on_postgres(pg_env, who, word, doc_id):
    """tests/test_service.py's leak test, unchanged, with the service on the postgres backend."""
    from fastapi.testclient import TestClient

    from tests.test_service import test_restricted_passages_never_leak

    with TestClient(pg_env.app) as client:
        assert client.get("/readyz").json()["index_generation"].startswith("pg-")
        test_restricted_passages_never_leak(client, pg_env, who, word, doc_id)
        # the group's own caller does find its document
        own = "fin" if doc_id.startswith("financien") else "soc"
        r = client.post("/v1/ask", json={"question": f"Wat staat er over {word}?"}, headers=pg_env.h(own))
        assert doc_id in r.text


def test_bm25_budget_bounds_the_chunks_scored(both, monkeypatch):
    """Past ``SCORED_CHUNKS_MAX`` matches the search keeps to the rarer terms' chunks, and a
    question whose rarest word is already over the budget gets no lexical hits (no full scan)."""
    from rag.store import postgres
    from rag.store.postgres import _bm25_sql, term_dfs

    _, pg, _ = both
    query = "Wat zegt de gemeente Groningen over de opvang van Oekraïense vluchtelingen?"
    with pg.reader.snapshot().pool.connection() as conn:
        m = conn.execute("SELECT n_chunks, n_terms FROM manifest").fetchone()
        df = term_dfs(conn, tokenize(query))
        rarest = min(df, key=lambda t: (df[t], t))
        monkeypatch.setattr(postgres, "SCORED_CHUNKS_MAX", df[rarest])
        found = _bm25_sql(conn, query, "true", [], 50, None, int(m[0]), int(m[1]))
        holders = {r[0] for r in conn.execute("SELECT chunk_id FROM chunks WHERE %s = ANY(terms)", (rarest,))}
        assert found and set(found) <= holders
        monkeypatch.setattr(postgres, "SCORED_CHUNKS_MAX", df[rarest] - 1)
        assert _bm25_sql(conn, query, "true", [], 50, None, int(m[0]), int(m[1])) == {}


# --------------------------------------------------------------------------- crashes

_PAUSED_WRITER = """
import pathlib, sys, time
from rag.store import postgres as P
from rag.types import Chunk, Document, Section
from tests.conftest import HashEmbedder

url, marker, pause = sys.argv[1], pathlib.Path(sys.argv[2]), float(sys.argv[3])
count = P.PgWriter._count_terms

def paused(self, delta):  # after the new chunks are inserted, before the commit
    count(self, delta)
    if any(v > 0 for v in delta.values()):
        marker.write_text("in the transaction")
        time.sleep(pause)

P.PgWriter._count_terms = paused
emb = HashEmbedder()
texts = ["Versie twee van nota nul over de ijsbaan Kardinge.", "Tweede stuk van versie twee."]
doc = Document(doc_id="docs/nota-0", title="Nota 0", source="docs/nota-0.md", content_hash="v2",
               sections=[Section(t) for t in texts])
with P.pg_writer(url, emb.model_id, emb.dim) as w:
    w.upsert(doc, [Chunk(doc_id=doc.doc_id, text=t, position=i) for i, t in enumerate(texts)],
             emb.embed_documents(texts))
"""


def _state_of(url: str) -> tuple:
    import psycopg

    with psycopg.connect(url) as conn:
        return (
            conn.execute("SELECT doc_id, content_hash FROM documents ORDER BY doc_id").fetchall(),
            conn.execute("SELECT doc_id, position, text FROM chunks ORDER BY doc_id, position").fetchall(),
            conn.execute("SELECT n_documents, n_chunks, n_terms FROM manifest").fetchone(),
        )


def _paused_writer(url: str, tmp_path: Path, pause: float = 120.0):
    import os
    import subprocess
    import sys
    import time

    marker = tmp_path / "in-transaction"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_WRITER, url, str(marker), str(pause)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the writer did not reach its transaction"
        time.sleep(0.05)
    return proc


def _consistent(url: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        m = conn.execute("SELECT n_documents, n_chunks, n_terms FROM manifest").fetchone()
        real = conn.execute(
            "SELECT (SELECT count(*) FROM documents), count(*), coalesce(sum(n_terms), 0) FROM chunks"
        ).fetchone()
        assert tuple(m) == tuple(real)
        assert term_stats_drift(conn) == []


def test_a_writer_killed_mid_transaction_changes_nothing_and_holds_no_lock(corpus, tmp_path, pg_url):
    """SIGKILL of an ingest inside its document's transaction (its chunks inserted, its
    advisory lock held): the database keeps the old version, consistent, and the next writer
    of that document does not wait for the dead one."""
    import signal
    import time

    settings = _pg_settings(tmp_path, pg_url)
    emb = HashEmbedder()
    ingest_paths([corpus], settings, emb)
    before = _state_of(pg_url)
    proc = _paused_writer(pg_url, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert _state_of(pg_url) == before
    _consistent(pg_url)
    (corpus / "nota-0.md").write_text("# Nota 0\n\nEen nieuwe versie over de schaatsbaan.\n", encoding="utf-8")
    t0 = time.monotonic()
    assert ingest_paths([corpus], settings, emb).updated == ["docs/nota-0"]
    assert time.monotonic() - t0 < 30
    _consistent(pg_url)


def test_the_database_crashing_mid_ingest_loses_only_the_open_transaction(corpus, tmp_path):
    """PostgreSQL stopped the hard way (``pg_ctl -m immediate``: no checkpoint, WAL recovery at
    the next start) while a writer is inside a document's transaction: after the restart every
    committed document is there, the open one is not, the counts and term statistics agree, and
    ingest carries on."""
    from pgserver._commands import pg_ctl

    from tests.pg import PgServer

    server = PgServer()  # a server of its own: this test crashes it
    srv = server.server
    try:
        url = server.database()
        settings = _pg_settings(tmp_path, url)
        emb = HashEmbedder()
        ingest_paths([corpus], settings, emb)
        before = _state_of(url)
        proc = _paused_writer(url, tmp_path, pause=3)
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=srv.pgdata, user=srv.system_user)
        assert proc.wait(30) != 0  # its commit finds the connection gone: an error, not a hang
        srv.ensure_postgres_running()
        assert _state_of(url) == before
        _consistent(url)
        (corpus / "nota-0.md").write_text("# Nota 0\n\nNa de crash: de schaatsbaan.\n", encoding="utf-8")
        assert ingest_paths([corpus], settings, emb).updated == ["docs/nota-0"]
        r = Retriever(settings, emb)
        assert r.search("schaatsbaan crash", top_k=1, fusion="bm25").hits[0].doc_id == "docs/nota-0"
        _consistent(url)
    finally:
        server.stop()
