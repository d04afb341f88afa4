"""HTML files and the HTML fragments inside FAQ JSON: main content, headings, tables, lists."""

from __future__ import annotations

import codecs
import re

from rag.ingest.common import MAX_TITLE_CHARS, Parsed, clean_line, first_line, parse_dutch_date
from rag.ingest.errors import IngestError
from rag.types import Section

_DROP_TAGS = ["script", "style", "noscript", "template", "svg", "iframe", "nav", "head"]
_PAGE_CHROME = ["header", "footer"]  # dropped unless inside <article>/<main>
# text a reader never sees: a `hidden` attribute, aria-hidden, or an inline style that hides
# it. It is not indexed: a hidden instruction ("negeer alle eerdere instructies …") or hidden
# keywords must not reach the model or the ranking. (Screen-reader-only text such as
# class="sr-only" is read aloud, and kept.)
_HIDING_STYLE = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)|font-size\s*:\s*0(?:\.0+)?(?:px|pt|em|rem|%)?"
    r"|opacity\s*:\s*0(?:\.0+)?)\s*(?:!important\s*)?(?:;|$)",
    re.IGNORECASE,
)
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hgroup",
        "hr",
        "html",
        "li",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
        "caption",
    ]
)
_DATE_META_NAMES = (
    "dcterms.modified", "dcterms.issued", "dcterms.date", "dcterms.created", "dc.date",
    "date", "article:published_time", "article:modified_time",
)  # fmt: skip


def _soup(markup: str | bytes):  # -> bs4.BeautifulSoup
    from bs4 import BeautifulSoup

    return BeautifulSoup(markup, "lxml")


def parse_html(data: bytes) -> Parsed:
    if b"\x00" in data and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise IngestError("binary content (contains NUL bytes), not an HTML file")
    soup = _soup(data)
    title_tag = soup.find("title")
    title = clean_line(title_tag.get_text(" ")) if title_tag else ""
    found_date = _html_meta_date(soup)
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    _drop_hidden(soup)
    for tag in soup.find_all(_PAGE_CHROME):
        if not tag.find_parent(["article", "main"]):
            tag.decompose()
    root = soup.body or soup
    sections = _HtmlSections().collect(root)
    if not title:
        h1 = root.find("h1")
        title = _text_of(h1) if h1 else ""
    title = title or first_line("\n\n".join(s.text for s in sections)) or ""
    return Parsed(sections=sections, title=title[:MAX_TITLE_CHARS] or None, date=found_date)


def _html_meta_date(soup) -> str | None:
    for meta in soup.find_all("meta"):
        name = (meta.get("name") or meta.get("property") or "").lower()
        if name in _DATE_META_NAMES and (value := parse_dutch_date(meta.get("content") or "")):
            return value
    return None


def html_fragment_sections(fragment: str, base_path: list[str] | None = None) -> list[Section]:
    """Sections of an HTML fragment; its headings nest under ``base_path``."""
    if not fragment or not fragment.strip():
        return []
    soup = _soup(fragment)
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    _drop_hidden(soup)
    return _HtmlSections(base_path).collect(soup.body or soup)


def is_hidden(tag) -> bool:
    """A ``hidden`` attribute, ``aria-hidden="true"`` or an inline style that hides the element."""
    attrs = getattr(tag, "attrs", None) or {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).strip().lower() == "true":
        return True
    style = attrs.get("style")
    return bool(style) and bool(_HIDING_STYLE.search(str(style)))


def _drop_hidden(soup) -> None:
    for tag in soup.find_all(is_hidden):
        if not tag.decomposed:
            tag.decompose()


def _is_plain_string(node) -> bool:
    from bs4 import NavigableString

    return type(node) is NavigableString


def _text_of(tag, skip: tuple[str, ...] = ()) -> str:
    """Text of an element on one line: block children and <br> separate words.

    Elements named in ``skip`` (e.g. nested lists) are left out.
    """
    parts: list[str] = []
    _collect_text(tag, parts, skip)
    return clean_line(" ".join("".join(parts).split()))


def _collect_text(node, parts: list[str], skip: tuple[str, ...]) -> None:
    for child in node.children:
        if child.name is None:
            if _is_plain_string(child):
                parts.append(str(child))
        elif child.name in skip:
            continue
        elif child.name == "br" or child.name in _BLOCK_TAGS:
            parts.append(" ")
            _collect_text(child, parts, skip)
            parts.append(" ")
        else:
            _collect_text(child, parts, skip)


class _HtmlSections:
    """Walks an element tree in document order, collecting text blocks per heading path."""

    def __init__(self, base_path: list[str] | None = None) -> None:
        self.base = list(base_path or [])
        self.stack: list[tuple[int, str]] = []
        self.sections: list[Section] = []
        self.blocks: list[str] = []
        self.inline: list[str] = []

    def collect(self, root) -> list[Section]:
        self._visit(root)
        self._flush_section()
        return self.sections

    def _path(self) -> list[str]:
        return self.base + [h for _, h in self.stack]

    def _flush_inline(self) -> None:
        lines = [clean_line(part) for part in "".join(self.inline).split("\n")]
        self.inline.clear()
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append(text)

    def _flush_section(self) -> None:
        self._flush_inline()
        if self.blocks:
            self.sections.append(Section(text="\n\n".join(self.blocks), heading_path=self._path()))
        self.blocks = []

    def _visit(self, node) -> None:
        for child in node.children:
            if child.name is None:  # a string
                if _is_plain_string(child):
                    self.inline.append(re.sub(r"\s+", " ", str(child)))
                continue
            name = child.name
            if name in _HEADING_TAGS:
                text = _text_of(child)
                if text:
                    self._flush_section()
                    level = _HEADING_TAGS[name]
                    self.stack = [(lv, h) for lv, h in self.stack if lv < level] + [(level, text)]
            elif name == "br":
                self.inline.append("\n")
            elif name == "table":
                self._add_block("\n".join(_table_rows(child)))
            elif name in ("ul", "ol"):
                self._add_block("\n".join(_list_lines(child)))
            elif name in _BLOCK_TAGS:
                self._flush_inline()
                self._visit(child)
                self._flush_inline()
            else:  # inline element
                self._visit(child)

    def _add_block(self, text: str) -> None:
        self._flush_inline()
        if text.strip():
            self.blocks.append(text)


def _table_rows(table) -> list[str]:
    rows: list[str] = []
    caption = table.find("caption")
    if caption and caption.find_parent("table") is table and (text := _text_of(caption)):
        rows.append(text)
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue
        cells = [_text_of(c) for c in tr.find_all(["td", "th"], recursive=False)]
        if any(cells):
            rows.append(" | ".join(c for c in cells if c))
    return rows


def _list_lines(lst) -> list[str]:
    """One line per list item ("- text" or "1. text"); nested lists follow their item."""
    lines: list[str] = []
    ordered = lst.name == "ol"
    for n, li in enumerate(lst.find_all("li", recursive=False), start=1):
        text = _text_of(li, skip=("ul", "ol"))
        if text:
            lines.append(f"{n}. {text}" if ordered else f"- {text}")
        for sub in li.find_all(["ul", "ol"]):
            if sub.find_parent("li") is li:
                lines.extend(_list_lines(sub))
    return lines
