"""Chunking: sentence splitting, packing, overlap, limits, and the real demo corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.chunking import chunk_document, chunk_text
from rag.ingest import parse_file
from rag.text.sentences import split_sentences
from rag.types import Document, Section

TESTS = Path(__file__).resolve().parent
DEMO = TESTS.parent / "data" / "voorbeeld"
FAQ_DIR = TESTS / "fixtures" / "faq"


def make_doc(*sections: Section, title: str = "Titel") -> Document:
    return Document(doc_id="d", title=title, source="d.txt", sections=list(sections), content_hash="0")


def sentences(n: int, start: int = 0) -> str:
    return " ".join(f"Zin nummer {i} gaat over het beleid van de gemeente." for i in range(start, start + n))


# --- sentence splitting ------------------------------------------------------------------


def test_split_sentences_keeps_abbreviations_and_numbers_together() -> None:
    text = (
        "De gemeente werkt o.a. met WIJ Groningen, bijv. in de wijken. "
        "Dat staat in art. 5 van de wet, d.w.z. de Wmo. Zie nr. 12 en mr. Jansen. "
        "Deelprogramma 3.3 kost 1.000 euro. Wie betaalt? Het Rijk! "
        "‘Zo thuis mogelijk opgroeien.’ Dat is het doel van J. de Vries."
    )
    assert split_sentences(text) == [
        "De gemeente werkt o.a. met WIJ Groningen, bijv. in de wijken.",
        "Dat staat in art. 5 van de wet, d.w.z. de Wmo.",
        "Zie nr. 12 en mr. Jansen.",
        "Deelprogramma 3.3 kost 1.000 euro.",
        "Wie betaalt?",
        "Het Rijk!",
        "‘Zo thuis mogelijk opgroeien.’",
        "Dat is het doel van J. de Vries.",
    ]


def test_split_sentences_edge_cases() -> None:
    assert split_sentences("") == []
    assert split_sentences("   geen punt aan het eind  ") == ["geen punt aan het eind"]
    assert split_sentences("3. Ontwikkelen van alternatieven. Daarna meer.") == [
        "3. Ontwikkelen van alternatieven.",
        "Daarna meer.",
    ]
    assert split_sentences("Kleine letter. daarna geen nieuwe zin.") == ["Kleine letter. daarna geen nieuwe zin."]


def test_a_numbered_list_item_is_a_sentence_with_its_number() -> None:
    """'Deze thema's zijn: 1. …; 2. …': each item a sentence that starts with its number (so the
    list's unit can be found, rag/units.py), whether the lines are kept or joined."""
    lines = (
        "Deze thema's zijn:\n\n1. Investeren in een stevige sociale basis; \n2. Versterken van een basisteam;\n3) Meer."
    )
    want = [
        "Deze thema's zijn:",
        "1. Investeren in een stevige sociale basis;",
        "2. Versterken van een basisteam;",
        "3) Meer.",
    ]
    assert split_sentences(lines) == want
    assert split_sentences(" ".join(lines.split())) == want
    assert split_sentences("1. Eerst dit. 2. Dan dat.") == ["1. Eerst dit.", "2. Dan dat."]
    # an ordinary number after a colon or at a sentence's end is no list item
    assert split_sentences("Het aantal: 12 plekken. Het budget is 12. Daarna volgt 13. Klaar.") == [
        "Het aantal: 12 plekken.",
        "Het budget is 12.",
        "Daarna volgt 13.",
        "Klaar.",
    ]
    # a list a colon opens starts at one: "tot: 3." ends a sentence with a number
    assert split_sentences("Het aantal steeg tot: 3. Daarna volgde een pauze.") == [
        "Het aantal steeg tot: 3.",
        "Daarna volgde een pauze.",
    ]


# --- packing, limits, overlap --------------------------------------------------------------


def test_small_sections_give_one_chunk_each_with_path_page_and_position() -> None:
    doc = make_doc(
        Section("Eerste alinea over de begroting.\n\nTweede alinea over de lasten.", ["Financiën"], page=2),
        Section("Een alinea onder een andere kop.", ["Financiën", "Dekking"], page=3),
    )
    chunks = chunk_document(doc)
    assert [(c.text, c.heading_path, c.page, c.position, c.doc_id) for c in chunks] == [
        ("Eerste alinea over de begroting.\n\nTweede alinea over de lasten.", ["Financiën"], 2, 0, "d"),
        ("Een alinea onder een andere kop.", ["Financiën", "Dekking"], 3, 1, "d"),
    ]
    assert all("Financiën" not in c.text and "Titel" not in c.text for c in chunks)
    assert chunks[1].embed_text("Titel") == "Titel › Financiën › Dekking\nEen alinea onder een andere kop."


@pytest.mark.parametrize(("size", "overlap", "min_chars"), [(600, 100, 40), (200, 50, 20), (120, 30, 10)])
def test_chunks_never_exceed_size_plus_min_chars(size: int, overlap: int, min_chars: int) -> None:
    text = "\n\n".join(sentences(n, 10 * n) for n in (1, 3, 12, 2, 25, 1))
    doc = make_doc(Section(text, ["A"]), Section(sentences(30), ["B"]))
    chunks = chunk_document(doc, chunk_size=size, overlap=overlap, min_chars=min_chars)
    assert len(chunks) > 4
    for c in chunks:
        assert c.text.strip() == c.text and c.text
        # the only slack allowed: a tiny trailing piece (< min_chars) merged into its chunk
        assert len(c.text) < size + min_chars
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_every_sentence_is_kept() -> None:
    text = "\n\n".join(sentences(n, 100 * n) for n in (2, 17, 5))
    chunks = chunk_text(text, chunk_size=300, overlap=80, min_chars=40)
    joined = "\n".join(chunks)
    for s in split_sentences(text):
        assert s in joined


def carried_sentences(prev: str, nxt: str) -> int:
    """How many whole trailing sentences of ``prev`` start ``nxt``."""
    prev_sents = split_sentences(prev)
    return max((k for k in range(1, len(prev_sents)) if nxt.startswith(" ".join(prev_sents[-k:]))), default=0)


def test_overlap_carries_whole_tail_sentences_within_a_section_only() -> None:
    # sentences of ~52 chars: an overlap of 120 chars holds two of them
    doc = make_doc(Section(sentences(20), ["A"]), Section(sentences(20, 100), ["B"]))
    chunks = chunk_document(doc, chunk_size=300, overlap=120, min_chars=20)
    sections = [c.heading_path for c in chunks]
    assert sections.count(["A"]) > 2 and sections.count(["B"]) > 2
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        expected = 2 if prev.heading_path == nxt.heading_path else 0
        assert carried_sentences(prev.text, nxt.text) == expected
    assert chunks[sections.index(["B"])].text.startswith("Zin nummer 100 ")


def test_no_overlap_when_disabled() -> None:
    chunks = chunk_text(sentences(20), chunk_size=300, overlap=0, min_chars=20)
    assert len(chunks) > 1
    assert " ".join(chunks) == sentences(20)


def test_paragraphs_are_packed_and_lists_split_by_line() -> None:
    paragraphs = [f"Korte alinea {i}." for i in range(6)]
    assert chunk_text("\n\n".join(paragraphs), chunk_size=600) == ["\n\n".join(paragraphs)]

    items = "\n".join(f"- Punt {i}: een maatregel uit de lijst van het college;" for i in range(20))
    chunks = chunk_text("Het college neemt deze maatregelen:\n" + items, chunk_size=250, overlap=0, min_chars=10)
    assert len(chunks) > 1
    for c in chunks:
        for line in c.split("\n"):
            assert line.startswith("- Punt") or line == "Het college neemt deze maatregelen:"


def test_long_sentence_and_long_word_are_split() -> None:
    long_sentence = " ".join(["woord"] * 300) + "."
    url = "https://example.org/" + "x" * 700
    chunks = chunk_text(long_sentence + "\n\n" + url, chunk_size=200, overlap=50, min_chars=20)
    assert all(len(c) < 220 for c in chunks)
    assert "".join(c for c in chunks if "woord" not in c) == url


def test_heading_only_and_blank_sections_give_no_chunks() -> None:
    doc = make_doc(
        Section("", ["Voortgang"]),
        Section("  \n\n \t", ["Voortgang", "Leeg"]),
        Section("Echte inhoud van de sectie.", ["Voortgang", "Wmo"]),
    )
    chunks = chunk_document(doc)
    assert [(c.heading_path, c.text) for c in chunks] == [(["Voortgang", "Wmo"], "Echte inhoud van de sectie.")]


def test_tiny_trailing_piece_is_merged() -> None:
    text = sentences(5) + "\n\nKort."
    size = len(sentences(5))
    chunks = chunk_text(text, chunk_size=size, overlap=0, min_chars=40)
    assert chunks == [sentences(5) + "\n\nKort."]
    # not merged across sections: a tiny section stays its own chunk
    doc = make_doc(Section(sentences(5), ["A"]), Section("Kort.", ["B"]))
    assert [c.text for c in chunk_document(doc, chunk_size=size, overlap=0)] == [sentences(5), "Kort."]


def test_duplicate_chunks_within_a_heading_path_are_dropped() -> None:
    doc = make_doc(
        Section("Dezelfde tekst.", ["Kop"]),
        Section("Andere tekst.", ["Kop", "Sub"]),
        Section("Dezelfde tekst.", ["Kop"]),
        Section("Dezelfde tekst.", ["Andere kop"]),
    )
    chunks = chunk_document(doc)
    assert [(c.heading_path, c.text, c.position) for c in chunks] == [
        (["Kop"], "Dezelfde tekst.", 0),
        (["Kop", "Sub"], "Andere tekst.", 1),
        (["Andere kop"], "Dezelfde tekst.", 2),
    ]


def test_deterministic_and_argument_checks() -> None:
    doc = make_doc(Section(sentences(40), ["A"]))
    assert chunk_document(doc, 200, 60) == chunk_document(doc, 200, 60)
    with pytest.raises(ValueError):
        chunk_document(doc, chunk_size=0)
    # an overlap as large as the chunk is capped, so chunking still makes progress
    assert len(chunk_document(doc, chunk_size=200, overlap=500)) < 40


# --- real documents ---------------------------------------------------------------------------------

DEMO_FILES = sorted(DEMO.glob("*.txt"))
CHUNK_SIZE, OVERLAP, MIN_CHARS = 600, 100, 40


@pytest.mark.parametrize("path", DEMO_FILES, ids=lambda p: p.stem)
def test_demo_corpus_chunks(path: Path) -> None:
    doc = parse_file(path, root=DEMO.parent)
    chunks = chunk_document(doc, CHUNK_SIZE, OVERLAP, MIN_CHARS)
    assert len(chunks) >= 5
    assert [c.position for c in chunks] == list(range(len(chunks)))
    keys = [(tuple(c.heading_path), c.text) for c in chunks]
    assert len(keys) == len(set(keys))
    for c in chunks:
        assert c.text.strip() == c.text != ""
        assert len(c.text) < CHUNK_SIZE + MIN_CHARS
        assert c.doc_id == doc.doc_id
        assert not any(c.text.startswith(h) for h in c.heading_path)
    # nothing is lost: every sentence of every section is in a chunk of that section
    for section in doc.sections:
        texts = "\n".join(c.text for c in chunks if c.heading_path == section.heading_path)
        for line in section.text.split("\n"):
            for s in split_sentences(line):
                assert s in texts


def test_demo_repeated_heading_gives_no_empty_or_duplicate_chunk() -> None:
    doc = parse_file(DEMO / "begroting-2023-welzijn-gezondheid-zorg.txt")
    chunks = chunk_document(doc)
    voortgang = "Voortgang lopende jaar en relevante ontwikkelingen"
    assert all(c.heading_path[0] == voortgang and len(c.heading_path) == 2 for c in chunks)
    assert all(voortgang not in c.text for c in chunks)
    assert chunks[0].heading_path == [voortgang, "Samenlevingsopbouw"]
    assert chunks[0].text.startswith("Het afgelopen jaar zijn we samen met inwoners")


@pytest.mark.parametrize("fixture", sorted(FAQ_DIR.glob("*.json")), ids=lambda p: p.stem[:8])
def test_faq_chunks_leave_out_question_and_title(fixture: Path) -> None:
    question = json.loads(fixture.read_text(encoding="utf-8"))["question"]
    doc = parse_file(fixture, include_question=False)
    chunks = chunk_document(doc)
    assert chunks
    assert all(question not in c.text and question not in c.embed_text("") for c in chunks)
    with_question = chunk_document(parse_file(fixture))
    assert with_question[0].text.startswith(question)


# --- tables ------------------------------------------------------------------------------


def table_text(rows: int) -> str:
    head = "Locatie | Plekken | Doelgroep"
    body = [
        f"Locatie nummer {i} aan de Laan {i} | {10 * i} plekken | asielzoekers en statushouders" for i in range(rows)
    ]
    return "\n".join([head, *body])


def test_a_cut_table_repeats_its_heading_row_in_every_next_chunk() -> None:
    text = "Het overzicht van de opvang staat hieronder.\n\n" + table_text(30) + "\n\nDat was de tabel."
    chunk_size, min_chars = 300, 40
    chunks = chunk_text(text, chunk_size=chunk_size, overlap=100, min_chars=min_chars)
    table_chunks = [c for c in chunks if "Locatie nummer" in c]
    assert len(table_chunks) >= 4
    for chunk in table_chunks:
        lines = chunk.split("\n")
        rows = [ln for ln in lines if ln.startswith("Locatie nummer")]
        assert "Locatie | Plekken | Doelgroep" in lines
        assert lines.index("Locatie | Plekken | Doelgroep") < lines.index(rows[0])
        assert len(chunk) < chunk_size + min_chars
    # every row once in order, none lost, the heading row only repeated (never a row)
    all_rows = [ln for c in chunks for ln in c.split("\n") if ln.startswith("Locatie nummer")]
    assert all_rows == table_text(30).split("\n")[1:]
    for chunk in table_chunks[1:]:
        assert chunk.startswith("Locatie | Plekken | Doelgroep\nLocatie nummer")


def test_table_heading_row_not_repeated_when_it_does_not_fit_with_the_row() -> None:
    head = "Kop " + "x" * 150 + " | Kolom"
    rows = [f"Rij {i} " + "y" * 120 + f" | waarde {i}" for i in range(4)]
    chunks = chunk_text("\n".join([head, *rows]), chunk_size=200, overlap=0, min_chars=10)
    assert all(len(c) < 200 + 10 for c in chunks)
    assert sum(c.count(head) for c in chunks) == 1


def test_prose_lines_after_a_table_get_no_heading_row() -> None:
    text = table_text(3) + "\n" + "\n".join(sentences(2, start=i) for i in range(8))
    chunks = chunk_text(text, chunk_size=250, overlap=0, min_chars=10)
    assert len(chunks) > 3
    for chunk in chunks:  # the heading row only comes along with rows of its table
        assert ("Locatie | Plekken | Doelgroep" in chunk) == ("Locatie nummer" in chunk)
