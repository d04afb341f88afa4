"""Make the Office versions of the demo corpus: ``data/voorbeeld-docx`` and ``data/voorbeeld-pdf``.

For every ``data/voorbeeld/*.txt`` this script

1. parses the text file with :func:`rag.ingest.parse_file` (title, date, sections with
   heading paths),
2. writes a draft DOCX with python-docx: the title (``Title``), the headings (``Heading
   1/2/3`` by heading-path depth, only where the path changes), the paragraphs (lines
   starting ``- `` as ``List Bullet``), A4 pages with the header ``Gemeente Groningen ·
   <title>`` and the footer ``Pagina N van M`` (PAGE / NUMPAGES fields),
3. lets LibreOffice (``soffice --headless``) turn the draft into the final
   ``data/voorbeeld-docx/<stem>.docx`` and ``data/voorbeeld-pdf/<stem>.pdf``,
4. writes ``<file>.meta.json`` next to an output file when the txt version has a title,
   date or document type that parsing the office file does not give back.

The jaarstukken 2024 get one table, "Opvangplekken per locatie", right after the
paragraph that states the asylum / shelter capacity figures; it only repeats what the two
paragraphs above it say (its caption says so).

Run it from the repository root: ``.venv/bin/python scripts/make_office_demo.py``. It
overwrites its outputs (idempotent); the text content is reproducible, the bytes are not
(LibreOffice stamps dates and ids into the files).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docx
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt
from docx.text.paragraph import Paragraph

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.ingest import parse_file  # noqa: E402
from rag.types import Document  # noqa: E402

DATA = REPO / "data"
SOURCE_DIR = DATA / "voorbeeld"
DOCX_DIR = DATA / "voorbeeld-docx"
PDF_DIR = DATA / "voorbeeld-pdf"
HEADER_PREFIX = "Gemeente Groningen · "
FIXED_DATE = "2025-01-01T00:00:00"

# The table for the jaarstukken 2024: only what the text says (paragraphs on the
# shelter for Ukrainian displaced people and on the asylum seekers' locations).
TABLE_DOC = "jaarstukken-2024-welzijn-gezondheid-zorg-diversiteit"
TABLE_AFTER = "De nieuwe locatie aan de Eemsgolaan"
TABLE_CAPTION = (
    "Tabel 1. Opvangplekken per locatie: samenvatting van de aantallen uit de twee alinea's hierboven "
    "(opgesteld voor deze demoversie)."
)
TABLE_ROWS = [
    ["Locatie", "Plekken", "Wanneer", "Doelgroep", "Vervangt"],
    ["Sint Petersburgweg", "van 110 naar 600", "uitbreiding sinds 2023", "asielzoekers", "—"],
    ["Eemsgolaan", "150 + 150", "december 2024 + januari 2025", "asielzoekers", "—"],
    ["Canadalaan", "60", "opent in 2025", "AMV's", "Hanzeplaza"],
    ["Nescio (uitbreiding)", "60", "gerealiseerd in 2025", "Oekraïense ontheemden", "—"],
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--soffice", default=shutil.which("soffice") or "soffice", help="LibreOffice binary")
    args = ap.parse_args(argv)
    sources = sorted(SOURCE_DIR.glob("*.txt"))
    if not sources:
        print(f"no .txt files in {SOURCE_DIR}", file=sys.stderr)
        return 1
    DOCX_DIR.mkdir(exist_ok=True)
    PDF_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vraagbaak-office-") as tmp_name:
        tmp = Path(tmp_name)
        drafts, final = tmp / "draft", tmp / "final"
        drafts.mkdir()
        final.mkdir()
        profile = (tmp / "lo-profile").as_uri()
        for src in sources:
            doc = parse_file(src, root=DATA)
            draft = drafts / f"{src.stem}.docx"
            write_draft(doc, draft, with_table=src.stem == TABLE_DOC)
            _soffice(args.soffice, profile, "docx:MS Word 2007 XML", draft, final)
            lo_docx = final / draft.name
            _soffice(args.soffice, profile, "pdf:writer_pdf_Export", lo_docx, final)
            for produced, out_dir in ((lo_docx, DOCX_DIR), (final / f"{src.stem}.pdf", PDF_DIR)):
                target = out_dir / produced.name
                shutil.copyfile(produced, target)
                sidecar = write_sidecar(doc, target)
                print(f"{target.relative_to(REPO)}" + (f" (+ {sidecar.name})" if sidecar else ""))
    return 0


def _soffice(binary: str, profile: str, target: str, src: Path, out_dir: Path) -> None:
    cmd = [binary, f"-env:UserInstallation={profile}", "--headless", "--convert-to", target, "--outdir", str(out_dir)]
    done = subprocess.run([*cmd, str(src)], capture_output=True, text=True, timeout=300, check=False)
    expected = out_dir / f"{src.stem}.{target.split(':')[0]}"
    if done.returncode != 0 or not expected.is_file():
        raise SystemExit(f"soffice failed for {src.name}: {done.stdout}{done.stderr}")


# --- the draft DOCX --------------------------------------------------------------------


def write_draft(doc: Document, out: Path, *, with_table: bool = False) -> None:
    document = docx.Document()
    _page_setup(document, doc.title)
    props = document.core_properties
    props.title = doc.title
    props.author = "Gemeente Groningen"
    props.subject = doc.doc_type or ""
    props.comments = f"Demoversie van {doc.source}, gemaakt door scripts/make_office_demo.py"
    props.revision = 1
    from datetime import datetime

    props.created = props.modified = datetime.fromisoformat(FIXED_DATE)
    props.last_modified_by = "make_office_demo.py"

    document.add_paragraph(doc.title, style="Title")
    path: list[str] = []
    table_done = False
    for section in doc.sections:
        new_path = section.heading_path[:3]
        same = 0
        while same < min(len(path), len(new_path)) and path[same] == new_path[same]:
            same += 1
        for depth in range(same, len(new_path)):
            document.add_paragraph(new_path[depth], style=f"Heading {depth + 1}")
        path = new_path
        for block in section.text.split("\n\n"):
            for line in (ln.strip() for ln in block.split("\n")):
                if not line:
                    continue
                if line.startswith("- "):
                    document.add_paragraph(line[2:].strip(), style="List Bullet")
                else:
                    document.add_paragraph(line.replace(" | ", "\t"))
                if with_table and not table_done and TABLE_AFTER in line:
                    _add_table(document)
                    table_done = True
    if with_table and not table_done:
        raise SystemExit(f"table anchor {TABLE_AFTER!r} not found in {doc.source}")
    document.save(str(out))


def _page_setup(document, title: str) -> None:
    normal = document.styles["Normal"]
    normal.font.name = "Liberation Sans"
    normal.font.size = Pt(11)
    normal.paragraph_format.space_after = Pt(6)
    for name in ("Title", "Heading 1", "Heading 2", "Heading 3"):
        document.styles[name].font.name = "Liberation Sans"
    section = document.sections[0]
    section.page_width, section.page_height = Cm(21.0), Cm(29.7)
    section.left_margin = section.right_margin = Cm(2.5)
    section.top_margin = section.bottom_margin = Cm(2.5)
    section.header_distance = section.footer_distance = Cm(1.25)
    section.header.paragraphs[0].text = HEADER_PREFIX + title
    footer = section.footer.paragraphs[0]
    footer.add_run("Pagina ")
    _add_field(footer, "PAGE")
    footer.add_run(" van ")
    _add_field(footer, "NUMPAGES")


def _add_field(paragraph: Paragraph, instruction: str) -> None:
    """A complex field (fldChar begin / instrText / separate / result / end) in its own runs."""

    def run_with(element) -> None:
        run = paragraph.add_run()
        run._r.append(element)

    begin = OxmlElement("w:fldChar")
    begin.set(qn("w:fldCharType"), "begin")
    run_with(begin)
    instr = OxmlElement("w:instrText")
    instr.set(qn("xml:space"), "preserve")
    instr.text = f" {instruction} "
    run_with(instr)
    separate = OxmlElement("w:fldChar")
    separate.set(qn("w:fldCharType"), "separate")
    run_with(separate)
    paragraph.add_run("1")
    end = OxmlElement("w:fldChar")
    end.set(qn("w:fldCharType"), "end")
    run_with(end)


def _add_table(document) -> None:
    document.add_paragraph(TABLE_CAPTION, style="Caption")
    table = document.add_table(rows=len(TABLE_ROWS), cols=len(TABLE_ROWS[0]))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for r, values in enumerate(TABLE_ROWS):
        for c, value in enumerate(values):
            cell = table.cell(r, c)
            cell.text = value
            if r == 0:
                for run in cell.paragraphs[0].runs:
                    run.bold = True
    document.add_paragraph("")


# --- metadata sidecars -----------------------------------------------------------------


def write_sidecar(doc: Document, target: Path) -> Path | None:
    """``<target>.meta.json`` with what the office file does not give back by itself."""
    sidecar = target.with_name(target.name + ".meta.json")
    sidecar.unlink(missing_ok=True)
    office = parse_file(target, root=DATA)
    wanted = {"title": doc.title, "date": doc.date, "doc_type": doc.doc_type}
    got = {"title": office.title, "date": office.date, "doc_type": office.doc_type}
    meta = {k: v for k, v in wanted.items() if v and v != got[k]}
    if not meta:
        return None
    sidecar.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return sidecar


if __name__ == "__main__":
    raise SystemExit(main())
