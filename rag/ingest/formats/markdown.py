"""Markdown: front matter, headings (markdown-it-py), inline links and images as text."""

from __future__ import annotations

import re

from rag.ingest.common import Parsed, decode_text, first_line, parse_dutch_date, strip_build_footer
from rag.types import Section

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def parse_md(data: bytes) -> Parsed:
    text, found_date = strip_build_footer(decode_text(data))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    front: dict[str, str] = {}
    if m := _FRONT_MATTER.match(text):
        front = _simple_yaml(m[1])
        text = text[m.end() :]
    lines = text.split("\n")
    headings = _md_headings(text)

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    start = 0
    for first, end, level, heading in [*headings, (len(lines), len(lines), 0, "")]:
        body = _md_inline("\n".join(lines[start:first]))
        sections.append(Section(text=body, heading_path=[h for _, h in stack]))
        if level:
            stack = [(lv, h) for lv, h in stack if lv < level] + [(level, heading)]
        start = end

    h1 = next((h for _, _, lv, h in headings if lv == 1), None)
    title = front.get("title") or h1 or (headings[0][3] if headings else None) or first_line(text)
    found_date = (parse_dutch_date(front["date"]) if "date" in front else None) or found_date
    return Parsed(sections=sections, title=title, date=found_date)


def _simple_yaml(block: str) -> dict[str, str]:
    """``key: value`` lines of a front-matter block (no nesting)."""
    out: dict[str, str] = {}
    for line in block.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.startswith((" ", "\t")):
            out[key.strip().lower()] = value.strip().strip("\"'")
    return out


def _md_headings(text: str) -> list[tuple[int, int, int, str]]:
    """(first line, end line, level, text) of top-level headings."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(text)
    out: list[tuple[int, int, int, str]] = []
    for tok, inline in zip(tokens, tokens[1:], strict=False):
        if tok.type == "heading_open" and tok.level == 0 and tok.map:
            out.append((tok.map[0], tok.map[1], int(tok.tag[1]), _md_inline(inline.content)))
    return out


def _md_inline(text: str) -> str:
    return _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", text)).strip()
