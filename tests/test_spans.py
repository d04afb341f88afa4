"""Chunk spans and pages kept at ingest (rag/spans.py), stored and read back (rag/index.py),
and what citations tell beyond the passage (rag/cite.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from rag.chunking import chunk_document
from rag.cite import annotate, best_sentence, document_label, public_url, text_fragment
from rag.index import open_snapshot, read_current
from rag.indexing import ingest_paths
from rag.ingest import parse_file
from rag.retrieve import Retriever
from rag.schema import Citation
from rag.spans import find_span, locate_chunks, page_of, section_spans
from rag.types import Document, Section
from tests.conftest import REPO

DEMO = REPO / "data" / "voorbeeld"


def _doc(*sections: Section) -> Document:
    return Document(doc_id="d", title="T", source="d.txt", sections=list(sections), content_hash="x")


def test_every_demo_chunk_is_located_at_its_own_text():
    for path in sorted(DEMO.glob("*.txt")):
        doc = parse_file(path, root=DEMO.parent)
        chunks = chunk_document(doc)
        locate_chunks(doc, chunks)
        text = doc.text
        for c in chunks:
            assert c.char_start is not None and c.char_end is not None, (path.name, c.position)
            assert " ".join(text[c.char_start : c.char_end].split()) == " ".join(c.text.split())
        starts = [c.char_start for c in chunks]
        assert starts == sorted(starts), path.name  # document order


def test_overlapping_and_repeated_chunks_are_found_in_order():
    sentence = "De gemeente bouwt een nieuw zwembad in Haren."
    sec = Section(text=" ".join([sentence] * 30))
    doc = _doc(sec)
    chunks = chunk_document(doc, chunk_size=200, overlap=60)
    locate_chunks(doc, chunks)
    spans = [(c.char_start, c.char_end) for c in chunks]
    assert all(s is not None for s, _ in spans)
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)
    assert len({s for s, _ in spans}) == len(spans)  # the same text is not pinned to one place


def test_pages_come_from_the_sections_and_page_of_agrees():
    doc = _doc(
        Section(text="Eerste pagina met tekst over zorg.", page=1),
        Section(text="Tweede pagina met tekst over jeugd.", page=2),
    )
    chunks = chunk_document(doc)
    locate_chunks(doc, chunks)
    assert [(c.page, c.page_end) for c in chunks] == [(1, 1), (2, 2)]
    spans = section_spans(doc)
    assert doc.text[spans[1].start : spans[1].end] == "Tweede pagina met tekst over jeugd."
    assert page_of(doc, spans[1].start) == 2 and page_of(doc, spans[1].start - 1) == 1


def test_a_chunk_that_cannot_be_found_keeps_no_span():
    doc = _doc(Section(text="Alleen deze tekst."))
    from rag.types import Chunk

    stray = Chunk(doc_id="d", text="Iets heel anders.")
    locate_chunks(doc, [stray])
    assert stray.char_start is None and stray.char_end is None


def test_find_span_matches_words_across_other_whitespace():
    assert find_span("a  b\nc d", "b c") == (3, 6)
    assert find_span("abc", "x") is None
    assert find_span("abc", "  ") is None


def test_table_chunk_with_a_repeated_heading_row_is_located_by_its_rows():
    table = "Locatie | Plekken\n" + "\n".join(f"Locatie {i} | {i * 10}" for i in range(1, 6))
    doc = _doc(Section(text=table))
    from rag.types import Chunk

    second = Chunk(doc_id="d", text="Locatie | Plekken\nLocatie 4 | 40\nLocatie 5 | 50", position=1)
    locate_chunks(doc, [second])
    assert second.char_start is not None
    assert doc.text[second.char_start : second.char_end] == "Locatie 4 | 40\nLocatie 5 | 50"


# --------------------------------------------------------------------------- index storage


def test_spans_and_sections_are_stored_and_read_back(tmp_path, settings, hash_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "nota-2021-sport.md").write_text(
        "# Sport\n\n## Zwembaden\n\nHet nieuwe zwembad in Haren opent in het voorjaar.\n\n"
        "## Velden\n\nDe velden in Zuid krijgen kunstgras.\n",
        encoding="utf-8",
    )
    report = ingest_paths([docs], settings, hash_embedder)
    assert report.ok
    snap = open_snapshot(settings.index_dir)
    (doc,) = snap.documents()
    sections = snap.sections_of(doc["doc_id"])
    text = "\n\n".join(s.text for s in sections)
    for chunk in snap.chunks_of(doc["doc_id"]):
        assert text[chunk.char_start : chunk.char_end] == chunk.text
    hits = Retriever(settings, hash_embedder).search("kunstgras velden", top_k=1).hits
    assert text[hits[0].char_start : hits[0].char_end] == hits[0].text
    assert snap.chunk(hits[0].chunk_id).text == hits[0].text


def test_an_index_from_before_spans_is_read_and_upgraded_on_the_next_ingest(tmp_path, settings, hash_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nTekst over de bibliotheek in Beijum.\n", encoding="utf-8")
    assert ingest_paths([docs], settings, hash_embedder).ok
    # make the live generation look like one written before spans and sections existed
    folder = Path(settings.index_dir) / read_current(settings.index_dir)
    db = sqlite3.connect(folder / "chunks.sqlite")
    db.executescript(
        "DROP TABLE sections;"
        "CREATE TABLE c2 (chunk_id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, position INTEGER NOT NULL,"
        " text TEXT NOT NULL, heading_path TEXT NOT NULL DEFAULT '[]', page INTEGER);"
        "INSERT INTO c2 SELECT chunk_id, doc_id, position, text, heading_path, page FROM chunks;"
        "DROP TABLE chunks; ALTER TABLE c2 RENAME TO chunks;"
    )
    db.commit()
    db.close()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("checksums")  # nor were checksums kept then
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = open_snapshot(settings.index_dir)
    assert not old.has_spans and old.sections_of("docs/a") == []
    hit = Retriever(settings, hash_embedder).search("bibliotheek", top_k=1).hits[0]
    assert hit.char_start is None and hit.text
    # the unchanged file is indexed again, now with its spans
    report = ingest_paths([docs], settings, hash_embedder)
    assert report.updated == ["docs/a"], report.to_dict()
    new = open_snapshot(settings.index_dir)
    assert new.has_spans and new.sections_of("docs/a")
    assert all(c.char_start is not None for c in new.chunks_of("docs/a"))
    assert ingest_paths([docs], settings, hash_embedder).unchanged == ["docs/a"]


# --------------------------------------------------------------------------- citations


@pytest.mark.parametrize(
    ("doc_type", "year", "date", "label"),
    [
        ("begroting", 2023, None, "Begroting 2023"),
        ("raadsbrief", 2022, "2022-01-26", "Raadsbrief 26-1-2022"),
        ("jaarstukken", 2024, "2025-04-01", "Jaarstukken 2024"),
        ("faq", None, "2024-03-05", "Faq 5-3-2024"),
        (None, 2023, None, None),
        ("beleidsnota", None, None, "Beleidsnota"),
    ],
)
def test_document_label(doc_type, year, date, label):
    assert document_label(doc_type, year, date) == label


def _citation(marker: int, snippet: str, **kw) -> Citation:
    return Citation(marker=marker, doc_id="d", title="T", source=kw.pop("source", "d.txt"), snippet=snippet, **kw)


def test_annotate_picks_the_sentence_the_answer_rests_on():
    snippet = "De gemeente heeft een nieuw plan. Het zwembad in Haren opent in maart 2025. Daarna volgt Zuid."
    c1 = _citation(1, snippet, doc_type="begroting", year=2023)
    c2 = _citation(2, "Voor jeugdhulp is 40 miljoen euro begroot.")
    annotate("Het zwembad in Haren gaat in maart 2025 open [1]. Jeugdhulp krijgt 40 miljoen euro [2].", [c1, c2])
    assert c1.quote == "Het zwembad in Haren opent in maart 2025."
    assert snippet[c1.quote_start : c1.quote_end] == c1.quote
    assert c1.label == "Begroting 2023"
    assert c2.quote == "Voor jeugdhulp is 40 miljoen euro begroot."
    assert c1.public_url is None  # a file, not a web page


def test_annotate_quotes_nothing_for_a_refusal_or_an_uncited_passage():
    c = _citation(1, "Een zin over iets.")
    annotate("Dat staat niet in de documenten.", [c], refused=True)
    assert c.quote is None and c.quote_start is None
    annotate("Een antwoord zonder markers.", [c])
    assert c.quote is None


def test_best_sentence_needs_a_shared_word():
    assert best_sentence("Appels zijn rood. Peren zijn groen.", ["Peren hebben een kleur: groen."]) == (
        "Peren zijn groen."
    )
    assert best_sentence("Appels zijn rood.", ["Fietsen rijden."]) is None


def test_public_url_carries_a_text_fragment_for_web_pages_only():
    url = public_url("https://www.rijksoverheid.nl/onderwerpen/x/vraag-en-antwoord/y", "Je krijgt 5% korting.")
    assert url == "https://www.rijksoverheid.nl/onderwerpen/x/vraag-en-antwoord/y#:~:text=Je%20krijgt%205%25%20korting."
    long = " ".join(f"w{i}" for i in range(30))
    assert text_fragment(long) == "w0%20w1%20w2%20w3%20w4%20w5,w24%20w25%20w26%20w27%20w28%20w29"
    assert public_url("voorbeeld/a.txt", "x") is None
    assert public_url("https://a.nl/p#oud", "tekst") == "https://a.nl/p#:~:text=tekst"


def test_citation_fields_are_in_the_json_schema():
    props = Citation.model_json_schema()["properties"]
    for name in ("url", "public_url", "label", "quote", "page_end"):
        assert name in props
    assert json.loads(_citation(1, "x").model_dump_json())["url"] is None
