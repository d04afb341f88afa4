"""The request and response bodies of the HTTP API.

    from service.schemas import AskRequest
    AskRequest(question="Wat is een motie?")

Some bounds come from the settings (:class:`RequestLimits`: the question's length from
``rag.settings.Settings.max_question_chars``, the history, ``top_k`` and feedback comments
from :class:`service.config.ServiceSettings`). The models are defined once, here; such a
field carries a marker (:class:`MaxChars`, :class:`MaxItems`, :class:`AtMost`) that checks
the bound when a request is validated and writes it into the JSON schema, reading it from
:func:`current_limits`. The service sets those for each request to its own limits
(``service.middleware.ServiceMiddleware``) and for its OpenAPI document; anywhere else
(a script, a test) the defaults of the settings apply. The errors are pydantic's own
(``string_too_long``, ``too_long``, ``less_than_equal``), so a 422 reads as it would with a
fixed bound.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, field_validator
from pydantic_core import PydanticKnownError, core_schema

from rag.retrieve import Filters
from rag.schema import Answer, Turn
from rag.settings import Settings

from .auth import Caller
from .config import ServiceSettings

# --------------------------------------------------------------------------- limits from the settings


def _default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].default


@dataclass(frozen=True)
class RequestLimits:
    """The bounds of a request that come from the settings (defaults: the settings' defaults)."""

    max_question_chars: int = _default(Settings, "max_question_chars")
    max_history_turns: int = _default(ServiceSettings, "max_history_turns")
    max_turn_chars: int = _default(ServiceSettings, "max_turn_chars")
    max_top_k: int = _default(ServiceSettings, "max_top_k")
    max_comment_chars: int = _default(ServiceSettings, "max_comment_chars")

    @classmethod
    def from_settings(cls, settings: Settings, cfg: ServiceSettings) -> RequestLimits:
        return cls(
            max_question_chars=settings.max_question_chars,
            max_history_turns=cfg.max_history_turns,
            max_turn_chars=cfg.max_turn_chars,
            max_top_k=cfg.max_top_k,
            max_comment_chars=cfg.max_comment_chars,
        )


_LIMITS: ContextVar[RequestLimits] = ContextVar(
    "vraagbaak_request_limits",
    default=RequestLimits(),  # noqa: B039 - frozen, never mutated
)


def current_limits() -> RequestLimits:
    """The limits requests are validated against here (see the module docstring)."""
    return _LIMITS.get()


@contextlib.contextmanager
def request_limits(limits: RequestLimits) -> Iterator[None]:
    """Validate (and describe) requests against ``limits`` inside this block."""
    token = _LIMITS.set(limits)
    try:
        yield
    finally:
        _LIMITS.reset(token)


@dataclass(frozen=True)
class _Bound:
    """An upper bound read from :func:`current_limits` (the field ``limit``) at validation
    and schema time. ``description``: the field's description, ``{}`` the bound."""

    limit: str
    description: str | None = None
    json_key = ""

    def value(self) -> int:
        return getattr(current_limits(), self.limit)

    def check(self, v: Any, bound: int) -> None:
        """Raise pydantic's own error when the validated value ``v`` is beyond ``bound``."""
        raise NotImplementedError

    def check_input(self, v: Any, bound: int) -> None:
        """The same for the raw input, before the type's own validation (pydantic checks a
        list's length first)."""

    def _validate(self, v: Any, handler: core_schema.ValidatorFunctionWrapHandler) -> Any:
        bound = self.value()
        self.check_input(v, bound)
        value = handler(v)
        self.check(value, bound)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_wrap_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        js = handler(schema)
        bound = self.value()
        js[self.json_key] = bound
        if self.description:
            js["description"] = self.description.format(bound)
        return js


@dataclass(frozen=True)
class MaxChars(_Bound):
    """A string of at most this many characters."""

    json_key = "maxLength"

    def check(self, v: str, bound: int) -> None:
        if len(v) > bound:
            raise PydanticKnownError("string_too_long", {"max_length": bound})


@dataclass(frozen=True)
class MaxItems(_Bound):
    """A list of at most this many items."""

    json_key = "maxItems"

    def check(self, v: Sized, bound: int) -> None:
        if len(v) > bound:
            raise PydanticKnownError("too_long", {"field_type": "List", "max_length": bound, "actual_length": len(v)})

    def check_input(self, v: Any, bound: int) -> None:
        if isinstance(v, list | tuple | set | frozenset):
            self.check(v, bound)


@dataclass(frozen=True)
class AtMost(_Bound):
    """A number at most this large."""

    json_key = "maximum"

    def check(self, v: int, bound: int) -> None:
        if v > bound:
            raise PydanticKnownError("less_than_equal", {"le": bound})


TopK = Annotated[int, Field(ge=1), AtMost("max_top_k")]


# --------------------------------------------------------------------------- requests


class AskFilters(BaseModel):
    """Metadata filters (all must hold). Access groups come from the API key, never from here."""

    model_config = ConfigDict(extra="forbid")

    doc_types: list[Annotated[str, Field(max_length=100)]] | None = Field(
        None, max_length=50, description="e.g. begroting, jaarstukken, raadsbrief, faq"
    )
    years: list[Annotated[int, Field(ge=1800, le=2200)]] | None = Field(None, max_length=50)
    source_prefix: str | None = Field(None, max_length=500, description="source path or URL prefix")
    doc_ids: list[Annotated[str, Field(max_length=300)]] | None = Field(None, max_length=100)

    def to_filters(self, caller: Caller) -> Filters:
        return Filters(
            doc_types=self.doc_types,
            years=self.years,
            source_prefix=self.source_prefix,
            doc_ids=self.doc_ids,
            groups=caller.access_groups(),
        )


class AskRequest(BaseModel):
    """A question, with optional earlier turns of the conversation (oldest first)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "Hoeveel geld gaat er naar mantelzorgondersteuning?"}]},
    )

    question: Annotated[
        str, Field(min_length=1), MaxChars("max_question_chars", "The question (at most {} characters)")
    ]
    history: Annotated[list[Turn], MaxItems("max_history_turns", "Earlier turns, oldest first (at most {})")] = Field(
        default_factory=list
    )
    filters: AskFilters | None = None
    top_k: TopK | None = Field(None, description="Passages given to the model")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the question is empty")
        return v


class ChatContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ChatContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type in ("text", "input_text"))


class ChatCompletionRequest(BaseModel):
    """OpenAI chat completions. The last message (role user) is the question, earlier
    user/assistant messages are the history; system messages are ignored (Vraagbaak
    uses its own instructions). ``top_k`` and ``filters`` are Vraagbaak extensions.
    Other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    stream: bool = False
    top_k: TopK | None = None
    filters: AskFilters | None = None


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$", description="Answer.id of the rated answer")
    rating: Literal["up", "down"]
    comment: Annotated[str, MaxChars("max_comment_chars")] | None = None


# --------------------------------------------------------------------------- responses


class FeedbackStored(BaseModel):
    id: int
    status: Literal["stored"] = "stored"


class ChunkInfo(BaseModel):
    chunk_id: int | None
    position: int
    section: str
    heading_path: list[str]
    page: int | None
    text: str


class DocumentInfo(BaseModel):
    doc_id: str
    title: str
    source: str
    date: str | None = None
    doc_type: str | None = None
    year: int | None = None
    n_chunks: int
    ingested_at: float
    groups: list[str] | None = Field(None, description="Access groups (shown to admins only; [] = everyone)")
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentList(BaseModel):
    count: int = Field(description="Documents visible to the caller")
    documents: list[DocumentInfo]


class DocumentDetail(DocumentInfo):
    chunks: list[ChunkInfo]


class IngestFailure(BaseModel):
    path: str
    reason: str


class IngestResult(BaseModel):
    doc_ids: list[str]
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    failed: list[IngestFailure]
    chunks_embedded: int
    seconds: float
    generation: int | None


class Removed(BaseModel):
    removed: str


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatResponseMessage
    finish_reason: Literal["stop", "length"] = "stop"


class ChatUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(BaseModel):
    """OpenAI ``chat.completion`` plus ``vraagbaak``: the full answer with its citations."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    vraagbaak: Answer


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "vraagbaak"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    index_generation: str | None = None
    index_damaged: str | None = Field(
        None, description="The live generation that was found damaged; index_generation is the older one served"
    )
    llm: str | None = None
    embedder: str | None = None
