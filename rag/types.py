"""Typed data passed between the pipeline steps.

ingest: ``Document`` (parsed file, list of ``Section``) -> chunking -> ``Chunk``
index/retrieve: ``Chunk`` -> ``Hit`` (a chunk with its scores)
context/evidence/attribution: ``Hit`` -> ``Passage`` (as shown to the model, under its marker)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Section:
    """A run of text under one heading path (and, for PDFs, one page)."""

    text: str
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None


@dataclass
class Document:
    """A parsed source document, before chunking."""

    doc_id: str
    title: str
    source: str  # file path (relative where possible) or URL
    sections: list[Section]
    content_hash: str  # sha256 of the raw bytes: unchanged file -> same hash
    date: str | None = None  # ISO date (YYYY-MM-DD) if the document says so
    doc_type: str | None = None  # begroting, jaarstukken, raadsbrief, faq, ...
    year: int | None = None
    groups: list[str] = field(default_factory=list)  # empty = everyone
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


@dataclass
class Chunk:
    """A passage as it is indexed. ``chunk_id`` is assigned by the index."""

    doc_id: str
    text: str
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None
    position: int = 0  # order within the document
    chunk_id: int | None = None
    # where it stands in the document's normalised text (``Document.text``; rag/spans.py)
    char_start: int | None = None
    char_end: int | None = None
    page_end: int | None = None  # the page of its last character (PDFs)

    @property
    def section(self) -> str:
        return " › ".join(self.heading_path)

    def embed_text(self, title: str = "") -> str:
        """Text given to the embedder and BM25: title and heading path first."""
        head = " › ".join([p for p in [title, *self.heading_path] if p])
        return f"{head}\n{self.text}" if head else self.text


@dataclass
class Hit:
    """One retrieved chunk with its document metadata and scores."""

    chunk_id: int
    doc_id: str
    title: str
    source: str
    text: str
    heading_path: list[str]
    page: int | None
    score: float
    doc_type: str | None = None
    date: str | None = None
    year: int | None = None
    dense_score: float | None = None
    bm25_score: float | None = None
    rank: int = 0
    position: int | None = None  # the chunk's order within its document (whole-unit expansion)
    char_start: int | None = None  # span in the document's normalised text (rag/spans.py)
    char_end: int | None = None
    page_end: int | None = None

    @property
    def section(self) -> str:
        return " › ".join(self.heading_path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "title": self.title,
            "source": self.source,
            "section": self.section,
            "heading_path": self.heading_path,
            "page": self.page,
            "page_end": self.page_end,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "doc_type": self.doc_type,
            "date": self.date,
            "score": round(float(self.score), 6),
            "dense_score": None if self.dense_score is None else round(float(self.dense_score), 6),
            "bm25_score": None if self.bm25_score is None else round(float(self.bm25_score), 6),
            "text": self.text,
        }


@dataclass
class Passage:
    """A passage as it was shown to the model, under its marker."""

    marker: int
    text: str
    title: str = ""
    section: str = ""

    @property
    def full_text(self) -> str:
        return f"{self.title}\n{self.section}\n{self.text}"


@dataclass(frozen=True)
class Question:
    """What the pipeline answers, after the guard and the condense step.

    ``text`` is the question itself: the user's words (less any clause that addressed the
    assistant) or the condensed rewrite of a follow-up. ``earlier`` is the previous question a
    follow-up leans on when it could not be rewritten into one that stands alone ("Was dat
    unaniem?"): search and the model see both (``with_earlier``); the answer checks, the answer
    kind and the quote gate look at ``text`` alone. ``also`` is one more query, searched beside
    ``text`` but not shown to the model: the follow-up as asked with its earlier question, when
    ``text`` is the model's rewrite (which may have dropped or added words)."""

    text: str
    earlier: str = ""
    also: str = ""

    @classmethod
    def of(cls, question: Question | str) -> Question:
        """A plain string is a question that stands alone."""
        return cls(question) if isinstance(question, str) else question

    @property
    def with_earlier(self) -> str:
        """The question as searched and shown to the model: "Was dat unaniem? (Eerdere vraag: …)"."""
        return f"{self.text} (Eerdere vraag: {self.earlier})" if self.earlier else self.text
