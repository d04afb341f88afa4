"""The Office versions of the demo corpus (data/voorbeeld-pdf, data/voorbeeld-docx) and the date override."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag.chunking import chunk_document
from rag.ingest import IngestError, parse_file
from rag.types import Document

DATA = Path(__file__).resolve().parent.parent / "data"
PDF_DIR = DATA / "voorbeeld-pdf"
DOCX_DIR = DATA / "voorbeeld-docx"
TXT_DIR = DATA / "voorbeeld"
JAARSTUKKEN = "jaarstukken-2024-welzijn-gezondheid-zorg-diversiteit"
BEGROTING_2023 = "begroting-2023-welzijn-gezondheid-zorg"
STEMS = sorted(p.stem for p in TXT_DIR.glob("*.txt"))
TABLE_HEAD = "Locatie | Plekken | Wanneer | Doelgroep | Vervangt"


def parse(path: Path) -> Document:
    return parse_file(path, root=DATA)


@pytest.fixture(scope="module")
def pdf_docs() -> dict[str, Document]:
    return {stem: parse(PDF_DIR / f"{stem}.pdf") for stem in STEMS}


@pytest.fixture(scope="module")
def docx_docs() -> dict[str, Document]:
    return {stem: parse(DOCX_DIR / f"{stem}.docx") for stem in STEMS}


def test_every_txt_has_an_office_version_of_several_pages(pdf_docs: dict[str, Document]) -> None:
    assert STEMS and all((DOCX_DIR / f"{stem}.docx").is_file() for stem in STEMS)
    for stem, doc in pdf_docs.items():
        assert doc.metadata["pages"] >= 2, stem


def test_pdf_sections_all_have_a_page(pdf_docs: dict[str, Document]) -> None:
    for doc in pdf_docs.values():
        pages = [s.page for s in doc.sections]
        assert all(isinstance(p, int) and 1 <= p <= doc.metadata["pages"] for p in pages), doc.doc_id
        assert pages == sorted(pages)
        assert max(pages) == doc.metadata["pages"]  # the text goes on to the last page


@pytest.mark.parametrize("fmt", ["pdf", "docx"])
def test_no_chunk_has_the_running_header_or_footer(
    fmt: str, pdf_docs: dict[str, Document], docx_docs: dict[str, Document]
) -> None:
    docs = pdf_docs if fmt == "pdf" else docx_docs
    for doc in docs.values():
        for chunk in chunk_document(doc):
            assert "Gemeente Groningen ·" not in chunk.text, doc.doc_id
            assert not re.search(r"Pagina \d+ van \d+", chunk.text), doc.doc_id


def test_pdf_table_rows_come_out_as_cell_lines_with_the_heading_row(pdf_docs: dict[str, Document]) -> None:
    doc = pdf_docs[JAARSTUKKEN]
    text = "\n".join(s.text for s in doc.sections)
    assert (
        "\n".join(
            [
                TABLE_HEAD,
                "Sint Petersburgweg | van 110 naar 600 | uitbreiding sinds 2023 | asielzoekers | —",
                "Eemsgolaan | 150 + 150 | december 2024 + januari 2025 | asielzoekers | —",
                "Canadalaan | 60 | opent in 2025 | AMV's | Hanzeplaza",
                "Nescio (uitbreiding) | 60 | gerealiseerd in 2025 | Oekraïense ontheemden | —",
            ]
        )
        in text
    )
    chunks = chunk_document(doc)
    together = [c for c in chunks if "Eemsgolaan | 150 + 150" in c.text]
    assert together and all(TABLE_HEAD in c.text for c in together)
    assert together[0].heading_path[-1] == "Nieuwkomers"


@pytest.mark.parametrize("fmt", ["pdf", "docx"])
def test_table_in_both_formats(fmt: str, pdf_docs: dict[str, Document], docx_docs: dict[str, Document]) -> None:
    doc = (pdf_docs if fmt == "pdf" else docx_docs)[JAARSTUKKEN]
    chunks = chunk_document(doc)
    rows = [line for c in chunks for line in c.text.split("\n") if " | " in line]
    assert TABLE_HEAD in rows and any(r.startswith("Eemsgolaan | ") for r in rows)
    assert any("Opvangplekken per locatie" in c.text and "hierboven" in c.text for c in chunks)


@pytest.mark.parametrize("fmt", ["pdf", "docx"])
def test_headings_like_the_txt_version(fmt: str, pdf_docs: dict[str, Document], docx_docs: dict[str, Document]) -> None:
    docs = pdf_docs if fmt == "pdf" else docx_docs
    for stem in STEMS:
        txt_paths = {tuple(s.heading_path) for s in parse(TXT_DIR / f"{stem}.txt").sections}
        office_paths = {tuple(s.heading_path) for s in docs[stem].sections}
        assert txt_paths - {()} <= office_paths, stem
    paths = [s.heading_path for s in docs[BEGROTING_2023].sections]
    assert ["Voortgang lopende jaar en relevante ontwikkelingen", "Zorg en veiligheid"] in paths
    assert ["Voortgang lopende jaar en relevante ontwikkelingen", "Jeugdhulp"] in paths


def test_pdf_heading_path_carries_over_to_the_next_page(pdf_docs: dict[str, Document]) -> None:
    doc = pdf_docs[BEGROTING_2023]
    by_page: dict[int | None, list[list[str]]] = {}
    for s in doc.sections:
        by_page.setdefault(s.page, []).append(s.heading_path)
    # page 2 opens with the rest of "Publieke gezondheid" from page 1
    assert (
        by_page[2][0] == by_page[1][-1] == ["Voortgang lopende jaar en relevante ontwikkelingen", "Publieke gezondheid"]
    )


@pytest.mark.parametrize("fmt", ["pdf", "docx"])
def test_office_metadata_matches_the_txt_version(
    fmt: str, pdf_docs: dict[str, Document], docx_docs: dict[str, Document]
) -> None:
    docs = pdf_docs if fmt == "pdf" else docx_docs
    for stem in STEMS:
        txt = parse(TXT_DIR / f"{stem}.txt")
        office = docs[stem]
        assert (office.title, office.date, office.doc_type, office.year) == (
            txt.title,
            txt.date,
            txt.doc_type,
            txt.year,
        ), f"{stem}.{fmt}"


def test_pdf_letter_head_gives_the_date_without_a_sidecar(pdf_docs: dict[str, Document]) -> None:
    stem = "raadsbrief-2022-motie-van-zorg-naar-preventie"
    assert not (PDF_DIR / f"{stem}.pdf.meta.json").exists()
    doc = pdf_docs[stem]
    assert doc.date == "2022-01-26" and doc.metadata["reference"] == "24622-2022"
    assert doc.sections[0].heading_path == [] and "Onderwerp" in doc.sections[0].text


# --- the date override in <file>.meta.json ---------------------------------------------------


def test_sidecar_date_sets_date_and_year(tmp_path: Path) -> None:
    doc_path = tmp_path / "notitie.txt"
    doc_path.write_text("Notitie\n\nDe tekst van de notitie.\n", encoding="utf-8")
    assert parse_file(doc_path, root=tmp_path).date is None
    (tmp_path / "notitie.txt.meta.json").write_text(json.dumps({"date": "2021-03-04"}), encoding="utf-8")
    doc = parse_file(doc_path, root=tmp_path)
    assert (doc.date, doc.year) == ("2021-03-04", 2021)


@pytest.mark.parametrize("bad", ["4 maart 2021", "2021-13-01", 20210304, "2021-3-4"])
def test_sidecar_date_must_be_iso(tmp_path: Path, bad: object) -> None:
    doc_path = tmp_path / "notitie.txt"
    doc_path.write_text("Notitie\n\nDe tekst.\n", encoding="utf-8")
    (tmp_path / "notitie.txt.meta.json").write_text(json.dumps({"date": bad}), encoding="utf-8")
    with pytest.raises(IngestError, match="'date' must be a date"):
        parse_file(doc_path, root=tmp_path)
