"""The document viewer and its signed links (service/viewer, service/links.py,
``GET /v1/documents/{doc_id}/view`` and ``/file``): access like every other read (404, never
403), links that are tampered with or expired get 404, the cited passage and sentence
marked, document text inert, PDFs with page markers and the original at its page."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from rag.indexing import ingest_paths
from rag.settings import Settings
from rag.types import Chunk, Section
from service import viewer
from service.links import LinkSigner, load_secret
from service.testing import build_index
from tests.conftest import HashEmbedder
from tests.pdf_fixture import make_pdf
from tests.test_service import Env

pytestmark = pytest.mark.timeout(120)

HOSTILE = (
    "# Nota <script>alert('titel')</script>\n\n## Risico's\n\n"
    "Het bestand bevat <img src=x onerror=alert(1)> en <script>alert(2)</script> als tekst. "
    'Een link <a href="javascript:alert(3)">klik</a> blijft tekst.\n'
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viewer")
    settings = _settings(root)
    emb = HashEmbedder()
    build_index(root / "corpus", settings, emb)
    extra = root / "extra"
    extra.mkdir()
    (extra / "nota-2024-hostile.md").write_text(HOSTILE, encoding="utf-8")
    (extra / "jaarverslag-2024-opvang.pdf").write_bytes(
        make_pdf(
            [
                ["Jaarverslag opvang 2024", "", "De opvang in de stad groeit ieder jaar."],
                ["De locatie aan de Eemsgolaan opende in december 2024 voor 150 asielzoekers."],
            ]
        )
    )
    assert ingest_paths([extra], settings, emb).ok
    return root


def _settings(root: Path) -> Settings:
    return Settings(index_dir=root / "index", models_dir=root / "models", refusal_min_score=0.0)


@pytest.fixture
def env(root, tmp_path) -> Env:
    return Env(root, tmp_path / "data")


@pytest.fixture
def client(env):
    with TestClient(env.app) as c:
        yield c


def _ask(client, env, who: str, question: str) -> dict:
    r = client.post("/v1/ask", json={"question": question}, headers=env.h(who))
    assert r.status_code == 200, r.text
    return r.json()


def _cited(client, env, who: str, question: str, doc_id: str) -> dict:
    answer = _ask(client, env, who, question)
    cites = [c for c in answer["citations"] if c["doc_id"] == doc_id]
    assert cites, answer
    return cites[0]


def test_citation_url_opens_the_viewer_without_a_key_at_the_marked_passage(client, env):
    c = _cited(
        client,
        env,
        "fin",
        "Wat levert de grondexploitatie zwavelkoepel op?",
        "financien/vertrouwelijk-grondexploitatie",
    )
    url = c["url"]
    assert url.startswith("/v1/documents/financien/vertrouwelijk-grondexploitatie/view?")
    assert url.endswith(("#quote", "#passage"))
    r = client.get(url.split("#")[0])  # no key: the signature grants it
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<span id="passage" class="vb-anchor"></span>' in html
    marked = " ".join(re.findall(r'<mark class="vb-(?:passage|quote)">(.*?)</mark>', html, re.S))
    assert "zwavelkoepel" in marked
    if c["quote"]:
        assert '<span id="quote" class="vb-anchor"></span>' in html
        assert re.search(r'<mark class="vb-quote">[^<]*</mark>', html)
    csp = r.headers["content-security-policy"]
    assert "script-src 'none'" in csp and "default-src 'none'" in csp
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in html.lower()


def test_a_key_of_another_group_gets_404_for_the_same_link(client, env):
    c = _cited(
        client,
        env,
        "fin",
        "Wat levert de grondexploitatie zwavelkoepel op?",
        "financien/vertrouwelijk-grondexploitatie",
    )
    path = c["url"].split("#")[0]
    assert client.get(path, headers=env.h("soc")).status_code == 404
    assert client.get(path, headers=env.h("pub")).status_code == 404
    assert client.get(path, headers=env.h("fin")).status_code == 200
    assert client.get(path, headers=env.h("admin")).status_code == 200


def _with(path: str, **changes: str) -> str:
    parts = urlsplit(path)
    q = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    q.update(changes)
    return parts.path + "?" + "&".join(f"{k}={v}" for k, v in q.items())


def test_tampered_expired_and_foreign_links_get_404(client, env):
    c = _cited(
        client,
        env,
        "fin",
        "Wat levert de grondexploitatie zwavelkoepel op?",
        "financien/vertrouwelijk-grondexploitatie",
    )
    path = c["url"].split("#")[0]
    q = parse_qs(urlsplit(path).query)
    assert client.get(_with(path, sig="0" * 64)).status_code == 404
    assert client.get(_with(path, g="financien,sociaal")).status_code == 404
    assert client.get(_with(path, exp=str(int(q["exp"][0]) + 3600))).status_code == 404
    # the same signature for another document
    other = path.replace("financien/vertrouwelijk-grondexploitatie", "sociaal/vertrouwelijk-casusoverleg")
    assert client.get(other).status_code == 404
    # an expired link, correctly signed
    signer: LinkSigner = env.app.state.vb.links
    old = signer.view_url("financien/vertrouwelijk-grondexploitatie", ["financien"], now=time.time() - signer.ttl_s - 5)
    assert client.get(old.split("#")[0]).status_code == 404
    # a valid link for a group that does not have the document
    foreign = signer.view_url("financien/vertrouwelijk-grondexploitatie", ["sociaal"])
    assert client.get(foreign).status_code == 404
    # no key and no link: authentication is required
    assert client.get("/v1/documents/financien/vertrouwelijk-grondexploitatie/view").status_code == 401
    # an unknown document, with a key
    assert client.get("/v1/documents/nergens/view", headers=env.h("admin")).status_code == 404


def test_links_are_signed_with_the_asking_callers_groups(client, env):
    c = _cited(client, env, "pub", "Hoeveel geld is er voor jeugdhulp begroot?", "openbaar/begroting-2023-zorg")
    q = parse_qs(urlsplit(c["url"]).query, keep_blank_values=True)
    assert q["g"] == [""]  # a key without groups: the public documents only
    assert client.get(c["url"].split("#")[0]).status_code == 200
    admin = _cited(client, env, "admin", "Hoeveel geld is er voor jeugdhulp begroot?", "openbaar/begroting-2023-zorg")
    assert parse_qs(urlsplit(admin["url"]).query)["g"] == ["*"]
    assert c["label"] == "Begroting 2023"


def test_stream_sources_and_openai_extension_carry_urls(client, env):
    r = client.post("/v1/ask/stream", json={"question": "Wat doet het casusoverleg kwartelhof?"}, headers=env.h("soc"))
    assert r.status_code == 200
    assert r.text.count('"url":"/v1/documents/') >= 2  # the sources event and the final answer
    r = client.post(
        "/v1/chat/completions",
        json={"model": "vraagbaak", "messages": [{"role": "user", "content": "Wat doet het casusoverleg kwartelhof?"}]},
        headers=env.h("soc"),
    )
    assert r.status_code == 200, r.text
    cites = r.json()["vraagbaak"]["citations"]
    assert cites and all(c["url"].startswith("/v1/documents/") for c in cites)


def test_document_text_and_titles_render_inert(client, env):
    path = "/v1/documents/extra/nota-2024-hostile/view"
    r = client.get(path, headers=env.h("pub"))
    assert r.status_code == 200, r.text
    html = r.text
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "javascript:" not in html.split("<main", 1)[1].split("&lt;a href=")[0]
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'href="javascript' not in html


def test_pdf_document_has_page_markers_and_the_original_at_the_cited_page(client, env):
    c = _cited(client, env, "pub", "Wanneer opende de locatie aan de Eemsgolaan?", "extra/jaarverslag-2024-opvang")
    assert c["page"] == 2
    r = client.get(c["url"].split("#")[0])
    assert r.status_code == 200
    html = r.text
    assert '<p class="vb-page" id="page-1">Pagina 1</p>' in html and 'id="page-2"' in html
    assert html.index('id="page-2"') < html.index('id="passage"')
    m = re.search(r'class="vb-original" href="([^"]+)"', html)
    assert m, "a link to the original PDF"
    file_url = m.group(1).replace("&amp;", "&")
    assert file_url.endswith("#page=2")
    f = client.get(file_url.split("#")[0])
    assert f.status_code == 200
    assert f.headers["content-type"] == "application/pdf"
    assert f.content.startswith(b"%PDF-")
    assert f.headers["content-disposition"].startswith("inline")
    # a tampered file link: 404
    assert client.get(_with(file_url.split("#")[0], g="*")).status_code == 404


def test_public_base_url_makes_links_absolute(root, tmp_path):
    env = Env(root, tmp_path / "d2", public_base_url="https://vraagbaak.gemeente.nl/")
    with TestClient(env.app) as client:
        c = _cited(client, env, "pub", "Hoeveel geld is er voor jeugdhulp begroot?", "openbaar/begroting-2023-zorg")
    assert c["url"].startswith("https://vraagbaak.gemeente.nl/v1/documents/openbaar/begroting-2023-zorg/view?")


def test_openapi_documents_the_viewer_and_citation_urls(client):
    spec = client.get("/openapi.json").json()
    assert "/v1/documents/{doc_id}/view" in spec["paths"]
    props = spec["components"]["schemas"]["Citation"]["properties"]
    assert "url" in props and "signed" in props["url"]["description"]


def test_link_secret_is_created_once_and_shared(tmp_path):
    a = load_secret(None, tmp_path / "s")
    b = load_secret(None, tmp_path / "s")
    assert a == b and len(a) == 64
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o600
    assert load_secret("configured", tmp_path / "s") == b"configured"
    signer = LinkSigner(a)
    p = signer.params("d", ["b", "a"], now=1000.0)
    assert p["g"] == "a,b"
    assert signer.verify("d", p["g"], p["exp"], p["sig"], now=1000.0) == ["a", "b"]
    assert signer.verify("d", p["g"], p["exp"], p["sig"], now=1e12) is False
    assert signer.verify("d", "a", p["exp"], p["sig"], now=1000.0) is False
    assert LinkSigner(b"other").verify("d", p["g"], p["exp"], p["sig"], now=1000.0) is False


# --------------------------------------------------------------------------- rendering units


def test_render_marks_passage_and_quote_across_blocks_and_tables():
    sections = [
        Section(text="Inleiding over opvang.", heading_path=["Opvang"], page=1),
        Section(
            text="Locatie | Plekken\nEemsgolaan | 300\nCanadalaan | 60\n\nDe tabel telt alles op.",
            heading_path=["Opvang", "Tabel"],
            page=2,
        ),
    ]
    text = "\n\n".join(s.text for s in sections)
    start = text.index("Eemsgolaan")
    end = text.index("De tabel telt alles op.") + len("De tabel telt alles op.")
    chunk = Chunk(doc_id="d", text=text[start:end], page=2, char_start=start, char_end=end, chunk_id=7)
    quote = chunk.text.index("Canadalaan")
    page = viewer.document_page(
        {"doc_id": "d", "title": "Opvang", "source": "x.pdf", "doc_type": "jaarstukken", "year": 2024, "date": None},
        sections,
        [],
        chunk,
        (quote, quote + len("Canadalaan")),
    )
    html = viewer.render(page)
    assert '<th scope="col">Locatie</th>' in html
    assert '<td><span id="passage" class="vb-anchor"></span><mark class="vb-passage">Eemsgolaan</mark></td>' in html
    assert '<span id="quote" class="vb-anchor"></span><mark class="vb-quote">Canadalaan</mark>' in html
    assert '<mark class="vb-passage">De tabel telt alles op.</mark>' in html
    assert "Inleiding over opvang." in html and '<mark class="vb-passage">Inleiding' not in html
    assert '<h2 id="h-opvang">Opvang</h2>' in html and '<h3 id="h-tabel">Tabel</h3>' in html
    assert "Jaarstukken 2024" in html
    assert html.count('id="passage"') == 1 and html.count('id="quote"') == 1


def test_render_without_sections_shows_the_stored_passages():
    chunks = [
        Chunk(doc_id="d", text="Eerste passage.", chunk_id=1),
        Chunk(doc_id="d", text="Tweede passage.", chunk_id=2),
    ]
    page = viewer.document_page({"doc_id": "d", "title": "Oud", "source": "a.txt"}, [], chunks, chunks[1], None)
    html = viewer.render(page)
    assert '<mark class="vb-passage">Tweede passage.</mark>' in html
    assert "Eerste passage." in html and "opmaak bewaarde" in html


def test_csp_allows_exactly_the_stylesheet():
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(viewer.stylesheet().encode()).digest()).decode()
    assert f"'sha256-{digest}'" in viewer.content_security_policy()


def test_bad_highlight_and_a_foreign_chunk(client, env):
    """A malformed ``hl`` is a 422 naming the field; a chunk of another document marks
    nothing (the document still renders); a highlight outside the chunk is ignored."""
    path = "/v1/documents/openbaar/begroting-2023-zorg/view"
    r = client.get(path, params={"hl": "a-b"}, headers=env.h("pub"))
    assert r.status_code == 422 and "hl" in r.text
    snap = env.app.state.vb.pipeline.retriever.reader.snapshot()
    foreign = snap.chunks_of("openbaar/raadsbrief-2022-preventie")[0].chunk_id
    r = client.get(path, params={"chunk": foreign}, headers=env.h("pub"))
    assert r.status_code == 200 and "<mark" not in r.text.split("<main", 1)[1]
    own = snap.chunks_of("openbaar/begroting-2023-zorg")[0]
    r = client.get(path, params={"chunk": own.chunk_id, "hl": "0-99999"}, headers=env.h("pub"))
    assert r.status_code == 200 and 'id="passage"' in r.text and 'id="quote"' not in r.text
