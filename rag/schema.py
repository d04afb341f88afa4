"""The one answer schema shared by the CLI, the API, the widget and the bots, and the typed
events of a streamed answer.

    {"answer": "… [1] … [2]", "refused": false,
     "citations": [{"marker": 1, "doc_id": "…", "title": "…", "source": "path or URL",
                    "section": "heading path", "page": null, "snippet": "…", "score": 0.0,
                    "label": "Begroting 2023", "quote": "…", "url": "/v1/documents/…/view?…"}],
     "timings": {"retrieval_ms": 0, "first_token_ms": 0, "total_ms": 0},
     "model": {"llm": "…", "embedder": "…"}}
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field


class Citation(BaseModel):
    marker: int = Field(description="The number used in the answer text: [1], [2], …")
    doc_id: str
    title: str
    source: str = Field(description="File path or URL of the document")
    section: str = Field("", description="Heading path of the passage, ' › '-separated")
    page: int | None = None
    snippet: str = Field(description="The cited passage (or its relevant part)")
    score: float = Field(0.0, description="Retrieval score of the passage")
    chunk_id: int | None = None
    doc_type: str | None = Field(None, description="Document type: begroting, jaarstukken, raadsbrief, …")
    date: str | None = Field(None, description="Document date (ISO), where known")
    year: int | None = Field(None, description="The year the document is about (a budget's year), where known")
    label: str | None = Field(
        None, description='Document type and date or year, for display: "Begroting 2023", "Raadsbrief 26-1-2022"'
    )
    page_end: int | None = Field(None, description="Last page of the passage (PDFs), where it spans pages")
    quote: str | None = Field(
        None, description="The sentence of the passage the answer rests on (highlighted in the document viewer)"
    )
    quote_start: int | None = Field(None, description="Offset of ``quote`` in ``snippet``")
    quote_end: int | None = Field(None, description="End offset (exclusive) of ``quote`` in ``snippet``")
    url: str | None = Field(
        None,
        description="The document viewer at this passage (highlighted): a signed, expiring link that needs no "
        "API key, relative to the service's public base URL unless one is configured",
    )
    public_url: str | None = Field(
        None, description="For web pages (FAQ, council website): the page itself, scrolled to the passage (#:~:text=)"
    )


class Timings(BaseModel):
    retrieval_ms: float = 0.0
    first_token_ms: float | None = None
    total_ms: float = 0.0
    generation_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_s: float | None = None


class ModelInfo(BaseModel):
    llm: str
    embedder: str


class Answer(BaseModel):
    answer: str
    refused: bool = False
    citations: list[Citation] = Field(default_factory=list)
    timings: Timings = Field(default_factory=Timings)
    model: ModelInfo
    id: str = Field(default_factory=lambda: uuid.uuid4().hex, description="answer id, for feedback")
    question: str = ""
    standalone_question: str | None = Field(None, description="The follow-up rewritten for retrieval")
    refusal_reason: str | None = Field(
        None,
        description="no_relevant_passages | model_declined | unsupported | not_dutch | injection | "
        "missing_number | missing_amount | missing_date (the answer lacked what the question asks for) | "
        "restates_question (the answer added nothing to the question's own words) | "
        "letter_furniture (the answer rested on a letter's head or signature block only)",
    )
    language: str | None = None
    quoted: bool = Field(
        False,
        description="The answer is a literal sentence of the cited passage: the model's own answer was not usable",
    )
    quote_reason: str | None = Field(
        None,
        description="Why the model's answer was replaced by a quote: model_declined | unsupported | not_dutch | "
        "missing_number | missing_amount | missing_date | restates_question | letter_furniture",
    )
    index_generation: str | None = Field(
        None, description="The index generation that answered (e.g. gen-000007); replicas may differ briefly"
    )


# --------------------------------------------------------------------------- stream events


class SourcesEvent(BaseModel):
    """The passages given to the model (before generation starts)."""

    type: Literal["sources"] = "sources"
    sources: list[Citation]


class TokenEvent(BaseModel):
    type: Literal["token"] = "token"
    text: str


class DoneEvent(BaseModel):
    """The final answer with validated citations (the text may differ from the raw tokens)."""

    type: Literal["done"] = "done"
    answer: Answer


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    code: str  # "llm_unavailable" | "internal"
    message: str
    retry_after: float | None = None


Event = SourcesEvent | TokenEvent | DoneEvent | ErrorEvent


class Turn(BaseModel):
    """One earlier message of a conversation."""

    role: Literal["user", "assistant"]
    content: str = Field(max_length=8000)
