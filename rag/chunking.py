"""Heading-aware chunking: ``Document`` -> ``Chunk`` list.

Rules (sizes in characters):

* Sections are chunked one by one; a chunk never spans two sections.
* Text is cut at paragraph boundaries (blank lines) first. A paragraph longer than
  ``chunk_size`` is cut into its lines (lists, tables), a line still too long into
  sentences (:func:`split_sentences`), a sentence still too long into words, and a word
  longer than ``chunk_size`` (a URL, say) into fixed-size pieces.
* Pieces are packed greedily up to ``chunk_size``. When a section needs more than one
  chunk, each next chunk starts with the whole trailing sentences of the previous one,
  at most ``overlap`` characters (capped at ``chunk_size // 2``; never the previous
  chunk in full).
* Tables: a run of lines containing `` | `` (one table row per line, the heading row
  first, as the parsers write tables) that has to be cut over several chunks repeats its
  first line (the heading row) at the start of every next chunk, in place of the
  sentence overlap, so that each row keeps its column headings; only where heading row
  and the next row fit in ``chunk_size`` together.
* A last chunk whose own text is shorter than ``min_chars`` is merged into the previous
  chunk of the same section. Hence ``len(chunk.text) < chunk_size + min_chars`` always.
* Chunk text never contains the heading path or title (``Chunk.embed_text`` adds them);
  empty sections give no chunks; an identical (heading path, text) pair is emitted once;
  ``position`` numbers the chunks 0..n-1 in document order. The output is deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.text.sentences import split_sentences
from rag.types import Chunk, Document

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
_TABLE_CELL = " | "


@dataclass
class _Piece:
    """A unit of text and the separator that joins it to the piece before it."""

    text: str
    joiner: str = "\n\n"
    table_head: str | None = None  # a table row: the table's heading row


@dataclass
class _Draft:
    """A chunk being built: an optional overlap prefix and its own pieces."""

    overlap: str = ""
    pieces: list[_Piece] = field(default_factory=list)

    def own_text(self) -> str:
        return _join(self.pieces)

    def text(self) -> str:
        own = self.own_text()
        if not self.overlap:
            return own
        return f"{self.overlap}{self.pieces[0].joiner}{own}" if self.pieces else self.overlap

    def length_with(self, piece: _Piece) -> int:
        if not self.pieces and not self.overlap:
            return len(piece.text)
        return len(self.text()) + len(piece.joiner) + len(piece.text)


def _join(pieces: list[_Piece]) -> str:
    if not pieces:
        return ""
    return pieces[0].text + "".join(p.joiner + p.text for p in pieces[1:])


def chunk_document(doc: Document, chunk_size: int = 600, overlap: int = 100, min_chars: int = 40) -> list[Chunk]:
    """Cut ``doc`` into chunks section by section (see the module docstring)."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    overlap = max(0, min(overlap, chunk_size // 2))
    chunks: list[Chunk] = []
    seen: set[tuple[tuple[str, ...], str]] = set()
    for section in doc.sections:
        for text in chunk_text(section.text, chunk_size, overlap, min_chars):
            key = (tuple(section.heading_path), text)
            if key in seen:
                continue
            seen.add(key)
            chunks.append(
                Chunk(
                    doc_id=doc.doc_id,
                    text=text,
                    heading_path=list(section.heading_path),
                    page=section.page,
                    position=len(chunks),
                )
            )
    return chunks


def chunk_text(text: str, chunk_size: int = 600, overlap: int = 100, min_chars: int = 40) -> list[str]:
    """Chunk the text of one section; returns the chunk texts in order."""
    drafts: list[_Draft] = []
    current = _Draft()
    for piece in _pieces(text, chunk_size):
        if current.pieces and current.length_with(piece) > chunk_size:
            drafts.append(current)
            current = _Draft(overlap=_carry_over(current, piece, chunk_size, overlap))
        current.pieces.append(piece)
    if current.pieces:
        drafts.append(current)

    if len(drafts) > 1:
        last = drafts[-1]
        if len(last.pieces[0].joiner) + len(last.own_text()) < min_chars:
            drafts.pop()
            drafts[-1].pieces.extend(last.pieces)
    return [t for t in (d.text().strip() for d in drafts) if t]


def _carry_over(previous: _Draft, next_piece: _Piece, chunk_size: int, overlap: int) -> str:
    """What a next chunk starts with: a table's heading row before a row, else the overlap."""
    head = next_piece.table_head
    if head is not None and len(head) + len(next_piece.joiner) + len(next_piece.text) <= chunk_size:
        return head
    return _overlap_for(previous, next_piece, chunk_size, overlap)


def _overlap_for(previous: _Draft, next_piece: _Piece, chunk_size: int, overlap: int) -> str:
    """Whole trailing sentences of ``previous`` (<= overlap chars) that fit before ``next_piece``."""
    if overlap <= 0:
        return ""
    prev_text = previous.text()
    budget = min(overlap, chunk_size - len(next_piece.text) - len(next_piece.joiner))
    last_block = prev_text.rsplit("\n", 1)[-1]
    taken: list[str] = []
    size = 0
    for sentence in reversed(split_sentences(last_block)):
        extra = len(sentence) + (1 if taken else 0)
        if size + extra > budget:
            break
        taken.insert(0, sentence)
        size += extra
    tail = " ".join(taken)
    return "" if tail == prev_text.strip() else tail


def _pieces(text: str, chunk_size: int) -> list[_Piece]:
    """Paragraphs, or for long paragraphs lines / sentences / words, each <= chunk_size."""
    pieces: list[_Piece] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.strip()):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= chunk_size:
            pieces.append(_Piece(paragraph, "\n\n"))
            continue
        joiner = "\n\n"
        table_head: str | None = None  # heading row of the table the previous line belongs to
        for line in (ln.strip() for ln in paragraph.split("\n")):
            if not line:
                continue
            row_of = None
            if _TABLE_CELL in line:
                row_of = table_head
                table_head = table_head or line
            else:
                table_head = None
            if len(line) <= chunk_size:
                pieces.append(_Piece(line, joiner, row_of))
            else:
                parts = _split_long_line(line, chunk_size)
                pieces.append(_Piece(parts[0], joiner, row_of))
                pieces.extend(_Piece(p, " ") for p in parts[1:])
            joiner = "\n"
    return pieces


def _split_long_line(line: str, chunk_size: int) -> list[str]:
    parts: list[str] = []
    for sentence in split_sentences(line):
        if len(sentence) <= chunk_size:
            parts.append(sentence)
        else:
            parts.extend(_split_words(sentence, chunk_size))
    return parts


def _split_words(sentence: str, chunk_size: int) -> list[str]:
    """Pack words into pieces of at most chunk_size; cut words that are longer."""
    parts: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > chunk_size:
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:chunk_size])
            word = word[chunk_size:]
        if not word:
            continue
        if current and len(current) + 1 + len(word) > chunk_size:
            parts.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        parts.append(current)
    return parts
