"""Hostile files: each refused (or parsed) within a time and memory bound, with its reason,
and the rest of an ingest run unaffected. The files are built by eval/hostile_files.py."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from eval import hostile_files as hf
from rag.indexing import ingest_paths
from rag.ingest import IngestError, discover, parse_file
from rag.ingest.isolation import IsolatedParser, make_parser
from rag.ingest.limits import ParseLimits
from rag.settings import Settings
from tests.conftest import REPO

GIB = 1 << 30


def _reason(fn, *args, **kw) -> str:
    with pytest.raises(IngestError) as info:
        fn(*args, **kw)
    return info.value.reason


# --------------------------------------------------------------------------- the limits, inline


def test_zip_bomb_refused_from_the_central_directory_without_inflating(tmp_path):
    bomb = hf.docx_bomb(tmp_path / "bom.docx", GIB)
    assert bomb.stat().st_size < 2 * 1024 * 1024  # ~1,000:1
    t = time.perf_counter()
    reason = _reason(parse_file, bomb)
    assert time.perf_counter() - t < 0.5
    assert "max_inflated_bytes" in reason and "without inflating" in reason and "word/document.xml" in reason


def test_zip_bomb_under_the_size_limit_is_caught_by_its_ratio(tmp_path):
    bomb = hf.docx_bomb(tmp_path / "bom.docx", 50 * 1024 * 1024)
    reason = _reason(parse_file, bomb)
    assert "max_compression_ratio" in reason and "zip bomb" in reason


def test_total_inflated_size_counts_every_member(tmp_path):
    bomb = hf.docx_bomb(tmp_path / "bom.docx", 3 * 1024 * 1024)
    limits = ParseLimits(max_inflated_bytes=2 * 1024 * 1024, max_compression_ratio=1e9)
    assert "max_inflated_bytes" in _reason(parse_file, bomb, limits=limits)


def test_file_over_max_file_bytes_refused_without_reading(tmp_path, monkeypatch):
    big = hf.big_text(tmp_path / "groot.txt", 200 * 1024 * 1024)
    monkeypatch.setattr(Path, "open", lambda *a, **k: pytest.fail("the file was opened"))
    reason = _reason(parse_file, big)
    assert reason.startswith("file too large") and "max_file_bytes" in reason


def test_file_just_under_a_lower_limit_is_parsed(tmp_path):
    limit = 256 * 1024
    under = hf.text_of_size(tmp_path / "net-onder.txt", limit - 1)
    over = hf.text_of_size(tmp_path / "net-over.txt", limit + 1)
    with IsolatedParser(ParseLimits(max_file_bytes=limit), timeout_s=30, memory_mb=1024) as parse:
        doc = parse(under, root=tmp_path)
        assert "jeugdleden" in doc.sections[0].text
        assert parse.last_worker_peak_kb < 512 * 1024
        assert "max_file_bytes" in _reason(parse, over, root=tmp_path)


def test_pdf_page_limit(tmp_path):
    pdf = hf.pdf_empty_pages(tmp_path / "leeg.pdf", 30)
    assert "max_pages" in _reason(parse_file, pdf, limits=ParseLimits(max_pages=20))
    assert "max_pages" not in _reason(parse_file, pdf, limits=ParseLimits(max_pages=30))  # no text


@pytest.mark.parametrize("name", ["a\nb.txt", "a\x1bb.txt", "a\x7fb.txt", "invoice\u202etxt.exe.txt"])
def test_control_characters_in_file_name(tmp_path, name):
    path = tmp_path / name
    path.write_text(hf.GOOD_TEXT, "utf-8")
    assert "control characters" in _reason(parse_file, path)


# --------------------------------------------------------------------------- the worker


def test_isolated_parse_equals_inline_on_the_demo_files():
    files = discover([REPO / "data" / "voorbeeld", REPO / "data" / "voorbeeld-pdf"])
    assert len(files) == 10
    with IsolatedParser() as parse:
        for f in files:
            assert parse(f, root=REPO / "data") == parse_file(f, root=REPO / "data"), f
        assert parse.starts == 1  # one worker for the whole run


def _segfault(path, **kw):
    os.kill(os.getpid(), signal.SIGSEGV)


def _hang(path, **kw):
    time.sleep(60)


def _eat_memory(path, **kw):
    blocks = []
    while True:
        blocks.append(bytearray(64 * 1024 * 1024))


def _raise_type_error(path, **kw):
    raise TypeError("not an IngestError")


def test_worker_crash_becomes_an_ingest_error_and_the_next_file_gets_a_new_worker(tmp_path):
    good = tmp_path / "goed.txt"
    good.write_text(hf.GOOD_TEXT, "utf-8")
    with IsolatedParser(parse=_segfault) as parse:
        reason = _reason(parse, good)
        assert reason.startswith("parser crashed") and "SIGSEGV" in reason
        assert "SIGSEGV" in _reason(parse, good)
        assert parse.starts == 2


def test_worker_timeout(tmp_path):
    good = tmp_path / "goed.txt"
    good.write_text(hf.GOOD_TEXT, "utf-8")
    with IsolatedParser(parse=_hang, timeout_s=1) as parse:
        t = time.perf_counter()
        reason = _reason(parse, good)
        assert time.perf_counter() - t < 5
        assert reason.startswith("parser timed out after 1 s") and "parse_timeout_s" in reason


def test_worker_memory_limit(tmp_path):
    good = tmp_path / "goed.txt"
    good.write_text(hf.GOOD_TEXT, "utf-8")
    with IsolatedParser(parse=_eat_memory, memory_mb=512) as parse:
        reason = _reason(parse, good)
        assert "ran out of memory" in reason and "parse_memory_mb=512" in reason


def test_worker_wraps_other_exceptions(tmp_path):
    with IsolatedParser(parse=_raise_type_error) as parse:
        assert _reason(parse, tmp_path / "x.txt") == "parser failed: TypeError: not an IngestError"


def test_make_parser_follows_the_setting(tmp_path):
    inline = make_parser(Settings(index_dir=tmp_path, parse_isolation="inline", max_pages=7))
    assert not isinstance(inline, IsolatedParser)
    isolated = make_parser(Settings(index_dir=tmp_path, max_pages=7, parse_timeout_s=5))
    assert isinstance(isolated, IsolatedParser) and isolated.limits.max_pages == 7 and isolated.timeout_s == 5


# --------------------------------------------------------------------------- all together


def test_hostile_files_ingested_with_good_ones(tmp_path, hash_embedder):
    corpus = tmp_path / "docs"
    hostile = hf.hostile_files(corpus, bomb_sizes=(GIB,))
    assert len(hostile) == 9
    for name in ("sportnota-2021.txt", "raadsbrief-2022-parkeren.txt"):
        (corpus / name).write_text(hf.GOOD_TEXT.replace("Sportnota", name.split("-")[0].title()), "utf-8")
    settings = Settings(index_dir=tmp_path / "index", models_dir=tmp_path / "models", parse_timeout_s=30)

    t = time.perf_counter()
    report = ingest_paths([corpus], settings, hash_embedder)
    seconds = time.perf_counter() - t

    failed = {Path(p).name: reason for p, reason in report.failed}
    expected = {
        "bom-1gb.docx": "max_inflated_bytes",
        "lol.docx": "amplification",
        "leeg-3000.pdf": "max_pages",
        "lus.pdf": "cyclic",
        "versleuteld.pdf": "encrypted PDF",
        "diep.html": "nested too deeply",
        "binair.txt": "binary content",
        "raads\x1b[31mbrief\n2022.txt": "control characters",
        "groot.txt": "max_file_bytes",
    }
    assert set(failed) == set(expected), failed
    for name, words in expected.items():
        assert words in failed[name], (name, failed[name])
    assert sorted(report.added) == ["docs/raadsbrief-2022-parkeren", "docs/sportnota-2021"]
    assert seconds < 30


def test_tidy_sections_is_linear_in_the_number_of_paragraphs():
    """Regression (found by the "just under max_file_bytes" drill): merging a section's
    paragraphs with ``+=`` on an attribute copied the text each time, so a 4 MB text file of
    one section took 7 s to parse and a 100 MB one would have hit the parse timeout."""
    from rag.ingest.common import tidy_sections
    from rag.types import Section

    paragraph = "De gemeente wil dat iedereen kan sporten en bewegen, ook in de wijken. " * 3
    sections = [Section(text=paragraph) for _ in range(20_000)]  # 4 MB in one heading path
    t = time.perf_counter()
    out = tidy_sections(sections, [])
    assert time.perf_counter() - t < 2.0  # quadratic: ~40 GB copied, tens of seconds
    assert len(out) == 1 and out[0].text == "\n\n".join([paragraph.strip()] * 20_000)
