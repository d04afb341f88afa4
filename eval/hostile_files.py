"""Hostile files drill: each one refused or parsed within a time and memory bound.

Builds the files (the DOCX zip bomb at 2 GB and 20 GB inflated, XML entity expansion inside a
DOCX, a PDF with 3,000 empty pages, a PDF whose page tree is a loop, an encrypted PDF, HTML
nested 100,000 deep, a binary ``.txt``, a file name with control characters, a 200 MB text
file, and one just under a 4 MB ``max_file_bytes``), runs each through the isolated parse
(:class:`rag.ingest.isolation.IsolatedParser`, a fresh worker per file so its peak memory is
its own) and prints a markdown table: outcome, reason, seconds, the worker's and this
process's peak resident memory.

    python -m eval.hostile_files --out /tmp/hostile              # the table (README "Reliability")
    python -m eval.hostile_files --out /tmp/hostile --fuzz-seconds 600
    python -m eval.hostile_files --out /tmp/hostile --overhead   # isolation cost on the demo files

``--fuzz-seconds N`` then fuzzes every parser for N seconds in all (split evenly):
mutated bytes of small valid seeds (:func:`mutated`), hypothesis-driven, the property being
that ``parse_file`` returns a Document or raises IngestError and nothing else (a parse that
takes over 20 s counts as a finding too). The builders are shared with
tests/test_hostile_files.py and tests/test_fuzz_parsers.py.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import sys
import time
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rag.ingest.errors import IngestError
from rag.ingest.limits import ParseLimits

GOOD_TEXT = (
    "Sportnota 2021\n\nDe gemeente wil dat iedereen kan sporten en bewegen.\n\n"
    "Subsidie voor sportverenigingen\n\nVerenigingen kunnen subsidie aanvragen voor jeugdleden. "
    "De regeling loopt tot en met 2025.\n"
)

# --------------------------------------------------------------------------- builders

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="word/document.xml"/></Relationships>'
)
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def docx_bomb(path: Path, inflated_bytes: int, chunk: int = 16 << 20) -> Path:
    """A DOCX whose word/document.xml is one run of ``inflated_bytes`` "a"s (deflate level 9:
    ~1,000:1, so 2 GB is a ~2 MB file; building takes ~3 s per GB)."""
    head = f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{_W}"><w:body><w:p><w:r><w:t>'.encode()
    tail = b"</w:t></w:r></w:p></w:body></w:document>"
    block = b"a" * chunk
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
        zf.writestr("_rels/.rels", _RELS)
        with zf.open("word/document.xml", "w", force_zip64=True) as out:
            out.write(head)
            left = inflated_bytes
            while left > 0:
                n = min(left, chunk)
                out.write(block if n == chunk else block[:n])
                left -= n
            out.write(tail)
    return path


def docx_billion_laughs(path: Path, levels: int = 10) -> Path:
    """A DOCX whose document.xml declares the "billion laughs" entities (10^levels "lol"s)."""
    ents = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE w:document [\n'
        + "\n".join(ents)
        + f'\n]>\n<w:document xmlns:w="{_W}"><w:body><w:p><w:r><w:t>&lol{levels - 1};</w:t></w:r></w:p>'
        "</w:body></w:document>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
        zf.writestr("_rels/.rels", _RELS)
        zf.writestr("word/document.xml", xml)
    return path


def _pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF of ``objects`` (object n is objects[n-1]) with an exact xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref)
    return bytes(out)


def pdf_empty_pages(path: Path, pages: int = 3000) -> Path:
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for _ in range(pages):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>")
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), pages)
    path.write_bytes(_pdf(objects))
    return path


def pdf_page_tree_loop(path: Path) -> Path:
    """A page tree whose /Kids point back at their parents (2 -> 3 -> 2, and 2 -> 2)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 1000000 >>",
        b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R 3 0 R] /Count 1000000 >>",
    ]
    path.write_bytes(_pdf(objects))
    return path


def pdf_encrypted(path: Path) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.encrypt("geheim", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    path.write_bytes(buf.getvalue())
    return path


def html_deep(path: Path, depth: int = 100_000) -> Path:
    path.write_text("<html><body>" + "<div>" * depth + "Diep" + "</div>" * depth + "</body></html>", "utf-8")
    return path


def binary_txt(path: Path, size: int = 256 * 1024) -> Path:
    path.write_bytes(bytes(range(256)) * (size // 256))
    return path


def control_char_name(folder: Path) -> Path:
    path = folder / "raads\x1b[31mbrief\n2022.txt"
    path.write_text(GOOD_TEXT, "utf-8")
    return path


def big_text(path: Path, size: int) -> Path:
    """A ``size``-byte file (sparse: instant, no disk used); refused from its size alone."""
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


def text_of_size(path: Path, size: int) -> Path:
    """A real text file of exactly ``size`` bytes (paragraphs of Dutch prose)."""
    para = (GOOD_TEXT.split("\n\n", 2)[2].strip() + "\n\n").encode()
    data = (para * (size // len(para) + 1))[:size]
    path.write_bytes(data)
    return path


def hostile_files(folder: Path, *, bomb_sizes: tuple[int, ...] = (1 << 30,)) -> dict[str, Path]:
    """Build every hostile file in ``folder``: name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for size in bomb_sizes:
        files[f"DOCX zip bomb ({size >> 30} GB inflated)"] = docx_bomb(folder / f"bom-{size >> 30}gb.docx", size)
    files["DOCX with XML entity expansion (billion laughs)"] = docx_billion_laughs(folder / "lol.docx")
    files["PDF, 3,000 empty pages"] = pdf_empty_pages(folder / "leeg-3000.pdf")
    files["PDF, page tree loop (/Kids cycle)"] = pdf_page_tree_loop(folder / "lus.pdf")
    files["PDF, encrypted (user password)"] = pdf_encrypted(folder / "versleuteld.pdf")
    files["HTML nested 100,000 deep"] = html_deep(folder / "diep.html")
    files[".txt that is binary"] = binary_txt(folder / "binair.txt")
    files["file name with control characters"] = control_char_name(folder)
    files["200 MB text file (max_file_bytes)"] = big_text(folder / "groot.txt", 200 * 1024 * 1024)
    return files


# --------------------------------------------------------------------------- the drill

JUST_UNDER_LIMIT = 4 * 1024 * 1024  # the lower max_file_bytes of the "just under" row


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    import re

    flags = sorted(set(re.findall(r"\b(avx512[a-z_0-9]*|amx[a-z_0-9]*)\b", text)))
    return " ".join(flags) or "none"


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1024 / 1024:,.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:,.1f} KB"


def run_one(path: Path, limits: ParseLimits, timeout_s: float, memory_mb: int) -> dict[str, Any]:
    from rag.ingest.isolation import IsolatedParser

    parser = IsolatedParser(limits, timeout_s=timeout_s, memory_mb=memory_mb)
    t0 = time.perf_counter()
    try:
        doc = parser(path, root=path.parent)
        outcome, reason = "parsed", f"{len(doc.sections)} sections, {sum(len(s.text) for s in doc.sections):,} chars"
    except IngestError as exc:
        outcome, reason = "refused", exc.reason
    seconds = time.perf_counter() - t0
    worker_kb = parser.last_worker_peak_kb
    parser.close()
    # (a worker that died has no VmHWM left to read: 0, shown as "n/a". RUSAGE_CHILDREN is no
    # help: a spawned child's ru_maxrss starts from its parent's peak at the fork)
    return {
        "outcome": outcome,
        "reason": reason,
        "seconds": round(seconds, 3),
        "worker_peak_mb": round(worker_kb / 1024, 1),
        "parent_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def drill(out: Path, bomb_sizes: tuple[int, ...], timeout_s: float, memory_mb: int) -> list[dict[str, Any]]:
    limits = ParseLimits()
    folder = out / "files"
    t = time.perf_counter()
    files = hostile_files(folder, bomb_sizes=bomb_sizes)
    print(f"built {len(files)} files in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    rows = []
    cases: list[tuple[str, Path, ParseLimits]] = [(name, p, limits) for name, p in files.items()]
    under = text_of_size(folder / "net-onder-limiet.txt", JUST_UNDER_LIMIT - 1)
    cases.append(
        (
            f"text file just under a lower limit (max_file_bytes={JUST_UNDER_LIMIT:,})",
            under,
            ParseLimits(max_file_bytes=JUST_UNDER_LIMIT),
        )
    )
    for name, path, lim in cases:
        row = {"file": name, "size": _size(path), **run_one(path, lim, timeout_s, memory_mb)}
        print(json.dumps(row, ensure_ascii=False), file=sys.stderr)
        rows.append(row)
    return rows


def _mb_or_na(mb: float) -> str:
    return f"{mb:,.0f} MB" if mb else "n/a (died)"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| file | size on disk | outcome | reason | seconds | worker peak RSS | parent peak RSS |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        reason = r["reason"].replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {r['file']} | {r['size']} | {r['outcome']} | {reason} | {r['seconds']:.2f} | "
            f"{_mb_or_na(r['worker_peak_mb'])} | {r['parent_peak_mb']:,.0f} MB |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- isolation overhead


def overhead(rounds: int = 3) -> dict[str, Any]:
    """Per-file cost of the worker on the demo files: inline vs isolated, best of ``rounds``."""
    from rag.ingest import discover, parse_file
    from rag.ingest.isolation import IsolatedParser

    repo = Path(__file__).resolve().parent.parent
    out: dict[str, Any] = {}
    for label, folder in (("txt", repo / "data" / "voorbeeld"), ("pdf", repo / "data" / "voorbeeld-pdf")):
        files = discover([folder])
        root = folder.parent
        inline = min(_timed(partial(_parse_all, parse_file, files, root)) for _ in range(rounds))
        t = time.perf_counter()
        parser = IsolatedParser()
        parser(files[0], root=root)
        first = time.perf_counter() - t
        warm = min(_timed(partial(_parse_all, parser, files, root)) for _ in range(rounds))
        parser.close()
        out[label] = {
            "files": len(files),
            "inline_ms_per_file": round(inline / len(files) * 1000, 1),
            "isolated_ms_per_file": round(warm / len(files) * 1000, 1),
            "overhead_ms_per_file": round((warm - inline) / len(files) * 1000, 1),
            "worker_start_and_first_file_ms": round(first * 1000, 1),
        }
    return out


def _parse_all(parse: Callable[..., Any], files: list[Path], root: Path) -> None:
    for f in files:
        parse(f, root=root)


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --------------------------------------------------------------------------- fuzzing

FUZZ_FORMATS = (".txt", ".md", ".html", ".pdf", ".docx", ".json")


def seeds() -> dict[str, list[bytes]]:
    """Small valid files per format, the fuzzer's starting points."""
    import docx

    from tests.pdf_fixture import make_pdf  # the test suite's small valid PDFs

    doc = docx.Document()
    doc.core_properties.title = "Sportnota"
    doc.add_heading("Sportnota 2021", level=1)
    doc.add_paragraph("De gemeente wil dat iedereen kan sporten.")
    doc.add_paragraph("Jeugdleden", style="List Bullet")
    table = doc.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Jaar", "Bedrag"
    table.cell(1, 0).text, table.cell(1, 1).text = "2021", "€ 10.000"
    buf = io.BytesIO()
    doc.save(buf)
    faq = {
        "id": "abc-123",
        "question": "Hoe vraag ik subsidie aan?",
        "canonical": "https://www.rijksoverheid.nl/onderwerpen/sport/vraag-en-antwoord/subsidie",
        "introduction": "<p>Via het <b>loket</b>.</p>",
        "content": [{"paragraphtitle": "Voorwaarden", "paragraph": "<ul><li>Lid zijn</li></ul>"}],
        "lastmodified": "2024-04-04T08:49:13.941Z",
    }
    return {
        ".txt": [GOOD_TEXT.encode(), b"Geachte heer,\n\nOnderwerp: motie\nDatum: 3 maart 2022\n\nTekst.\n"],
        ".md": [b"---\ntitle: Nota\ndate: 2021-03-01\n---\n# Nota\n\nTekst met [link](http://x).\n\n## Kop\n\n- a\n"],
        ".html": [
            b"<html><head><title>Nota</title><meta name='dcterms.modified' content='2021-03-01'></head>"
            b"<body><main><h1>Nota</h1><p>Tekst</p><table><tr><td>a</td><td>1</td></tr></table>"
            b"<ul><li>x<ul><li>y</li></ul></li></ul></main></body></html>"
        ],
        ".pdf": [make_pdf([["Sportnota 2021", "", "De gemeente wil sporten."], ["Pagina 2", "Meer tekst."]], "Nota")],
        ".docx": [buf.getvalue()],
        ".json": [json.dumps(faq).encode()],
    }


def mutated(seed_list: list[bytes]):  # -> hypothesis strategy of bytes
    """Bytes of a seed with 1-8 mutations: byte flips, inserted random or "interesting" bytes,
    deleted or duplicated ranges, truncation, splices of another seed."""
    from hypothesis import strategies as st

    interesting = [b"\x00", b"\xff", b"<", b">", b"&", b"(", b")", b"/", b"obj", b"R", b"%PDF-", b"\n", b"{", b'"']

    @st.composite
    def strategy(draw: Any) -> bytes:
        data = bytearray(draw(st.sampled_from(seed_list)))
        for _ in range(draw(st.integers(1, 8))):
            if not data:
                data += draw(st.binary(min_size=1, max_size=16))
                continue
            i = draw(st.integers(0, len(data) - 1))
            op = draw(st.integers(0, 6))
            if op == 0:
                data[i] ^= 1 << draw(st.integers(0, 7))
            elif op == 1:
                data[i:i] = draw(st.binary(min_size=1, max_size=32))
            elif op == 2:
                data[i:i] = draw(st.sampled_from(interesting))
            elif op == 3:
                del data[i : i + draw(st.integers(1, 64))]
            elif op == 4:
                j = draw(st.integers(i, min(len(data), i + 256)))
                data[i:i] = data[i:j] * draw(st.integers(1, 4))
            elif op == 5:
                del data[i:]
            else:
                other = draw(st.sampled_from(seed_list))
                data[i:] = other[draw(st.integers(0, max(len(other) - 1, 0))) :]
        return bytes(data)

    return strategy()


class FuzzHang(BaseException):
    """One parse ran past the fuzzer's time limit (BaseException: parse_file must not wrap it)."""


def check_parse(data: bytes, suffix: str, folder: Path, hang_s: float = 20.0) -> str:
    """The fuzz property: ``parse_file`` returns a Document or raises IngestError. Returns
    "ok" or "refused"; anything else propagates (a FuzzHang after ``hang_s``)."""
    import signal

    from rag.ingest import parse_file

    path = folder / f"fuzz{suffix}"
    path.write_bytes(data)

    def alarm(*_: object) -> None:
        raise FuzzHang(f"parse of {len(data)} bytes {suffix} took over {hang_s} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, hang_s)
    try:
        parse_file(path, root=folder)
        return "ok"
    except IngestError:
        return "refused"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _fuzz_target(seed_list: list[bytes], suffix: str, folder: Path, counts: dict[str, int]) -> Callable[[], None]:
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    @hsettings(
        deadline=None,
        max_examples=200,
        database=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(data=mutated(seed_list))
    def run(data: bytes) -> None:
        counts["examples"] += 1
        counts[check_parse(data, suffix, folder)] += 1

    return run


def fuzz(seconds: float, folder: Path) -> list[dict[str, Any]]:
    """Fuzz every format for ``seconds`` in all; one row per format."""
    import logging

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about the broken files
    all_seeds = seeds()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    per_format = seconds / len(FUZZ_FORMATS)
    for suffix in FUZZ_FORMATS:
        counts = {"examples": 0, "ok": 0, "refused": 0}
        findings: list[str] = []
        run = _fuzz_target(all_seeds[suffix], suffix, folder, counts)
        deadline = time.monotonic() + per_format
        while time.monotonic() < deadline:
            try:
                run()
            except Exception as exc:  # a finding: hypothesis re-raises the shrunk failure
                findings.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                if len(findings) >= 5:
                    break
        rows.append({"format": suffix, **counts, "exceptions": len(findings), "findings": findings})
        print(json.dumps(rows[-1], ensure_ascii=False), file=sys.stderr)
    return rows


def fuzz_table(rows: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        f"Fuzzing ({seconds:g} s in all, mutated seeds, property: a Document or an IngestError):",
        "",
        "| parser | examples | parsed | refused (IngestError) | other exceptions |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['format']} | {r['examples']:,} | {r['ok']:,} | {r['refused']:,} | {r['exceptions']} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the files and the report")
    ap.add_argument("--bomb-gb", default="2,20", help="inflated sizes of the DOCX zip bombs (GB, comma separated)")
    ap.add_argument("--timeout", type=float, default=60.0, help="parse_timeout_s")
    ap.add_argument("--memory-mb", type=int, default=2048, help="parse_memory_mb")
    ap.add_argument("--fuzz-seconds", type=float, default=0.0)
    ap.add_argument("--overhead", action="store_true", help="also measure the isolation's per-file cost")
    ap.add_argument("--skip-drill", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report: list[str] = [f"CPU flags: {_cpu_flags()}; {os.cpu_count()} cores; Python {platform.python_version()}", ""]
    result: dict[str, Any] = {}
    if not args.skip_drill:
        sizes = tuple(int(float(g) * (1 << 30)) for g in args.bomb_gb.split(",") if g)
        rows = drill(args.out, sizes, args.timeout, args.memory_mb)
        result["drill"] = rows
        report += ["Hostile files", "", table(rows), ""]
    if args.overhead:
        result["overhead"] = overhead()
        report += ["Isolation overhead: " + json.dumps(result["overhead"]), ""]
    if args.fuzz_seconds > 0:
        rows = fuzz(args.fuzz_seconds, args.out / "fuzz")
        result["fuzz"] = rows
        report += [fuzz_table(rows, args.fuzz_seconds), ""]
    text = "\n".join(report)
    (args.out / "hostile-files.md").write_text(text, encoding="utf-8")
    (args.out / "hostile-files.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
