"""The Vraagbaak HTTP API (FastAPI).

    from service.app import create_app
    app = create_app()                      # loads the models in the background
    app = create_app(settings, pipeline)    # tests: an injected pipeline (fake LLM)

Endpoints (OpenAPI docs at ``/docs``):

* ``POST /v1/ask`` — question → the answer schema (:class:`rag.schema.Answer`).
* ``POST /v1/ask/stream`` — Server-Sent Events ``sources``, ``token``…, ``done``, ``error``.
* ``POST /v1/chat/completions`` — OpenAI-compatible (``stream`` true or false); the full
  answer with citations in the extra top-level field ``vraagbaak``. ``GET /v1/models``.
* ``GET/POST /v1/documents``, ``GET/DELETE /v1/documents/{doc_id}``.
* ``POST /v1/feedback``, ``GET /v1/feedback/export`` (admin, JSONL).
* ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

Access: every ``/v1`` endpoint needs an API key (service/auth.py). The caller's groups
become ``Filters.groups`` for every retrieval and every document listing, lookup and count,
so a document outside them is invisible (404, never 403). Admins see everything.

The pipeline is synchronous and CPU-bound: it runs in a worker thread behind the LLM gate
(service/limits.py); the event loop stays free for health checks and metrics.
"""


import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from rag.llm import LLMUnavailableError
from rag.retrieve import Filters
from rag.schema import Answer, DoneEvent, ErrorEvent, SourcesEvent, TokenEvent, Turn
from rag.settings import Settings

from .auth import Caller, KeyStore, parse_groups, require_admin, require_reader
from .auth import KeyError_ as _KeyError
from .config import ServiceSettings
from .errors import ApiError, ErrorResponse, install_error_handlers
from .feedback import FeedbackStore
from .limits import GateFull, LLMGate, RateLimiter, retry_after_header
from .logging import AuditLog
from .metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger("vraagbaak.service")
API_VERSION = "1"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


# --------------------------------------------------------------------------- state


@dataclass
class ServiceState:
    settings: Settings
    cfg: ServiceSettings
    keys: KeyStore
    limiter: RateLimiter
    gate: LLMGate
    metrics: Metrics
    feedback: FeedbackStore
    audit: AuditLog | None
    pipeline: Any = None
    load_error: str | None = None
    loading: bool = False
    executor: ThreadPoolExecutor | None = None
    doc_lock: asyncio.Lock | None = None
    _exec_lock: threading.Lock = field(default_factory=threading.Lock)

    def get_executor(self) -> ThreadPoolExecutor:
        """The threads for CPU-heavy work: model loading, answers (at most gate.capacity at
        once) and one ingest/removal at a time (doc_lock). They run at a lower CPU priority
        (``cfg.worker_nice``), and so do the threads llama.cpp and torch start from them, so
        the event loop — health checks, metrics, refusals — always gets the CPU first."""
        with self._exec_lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(
                    max_workers=self.gate.capacity + 1,
                    thread_name_prefix="vraagbaak-worker",
                    initializer=_lower_thread_priority,
                    initargs=(self.cfg.worker_nice,),
                )
            return self.executor

    async def in_worker(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.get_executor(), fn, *args)

    def require_pipeline(self):
        if self.pipeline is None:
            if self.load_error:
                raise ApiError(503, "not_ready", "the service failed to load its models; see the server log")
            raise ApiError(503, "not_ready", "the models are still loading", headers={"Retry-After": "10"})
        return self.pipeline


def _lower_thread_priority(nice: int) -> None:
    """Raise this thread's nice value (Linux: per thread; needs no privileges)."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    except (OSError, AttributeError):  # pragma: no cover
        pass


def _state(request: Request) -> ServiceState:
    return request.app.state.vb


# --------------------------------------------------------------------------- a pipeline run

_END = object()


class PipelineRun:
    """One ``pipeline.stream()`` in a worker thread, holding one LLM gate slot until the
    thread has finished. ``stop()`` makes the thread close the generator after the next
    event, which stops the LLM (a client that went away)."""

    def __init__(self, state: ServiceState, question: str, history: list[Turn], filters: Filters, top_k: int | None):
        self.state = state
        self.question = question
        self.history = history
        self.filters = filters
        self.top_k = top_k
        self._stop = threading.Event()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.future: Future | None = None
        self.finished = False  # a DoneEvent was delivered

    async def start(self, request: Request | None = None) -> "PipelineRun":
        """Take a gate slot (waiting in the bounded queue if needed) and start the thread.
        A client that goes away while waiting gives its place up."""
        pipeline = self.state.require_pipeline()
        t0 = time.perf_counter()
        try:
            ticket = await self._acquire(request)
        except GateFull as exc:
            self.state.metrics.rejected.labels(reason=exc.reason).inc()
            raise ApiError(
                503,
                "llm_busy",
                "the language model is busy; try again later"
                + (" (queue full)" if exc.reason == "queue_full" else " (waited too long)"),
                headers={"Retry-After": retry_after_header(exc.retry_after)},
            ) from None
        self.state.metrics.queue_wait.observe(time.perf_counter() - t0)
        self._loop = asyncio.get_running_loop()
        try:
            fut = self._loop.run_in_executor(self.state.get_executor(), self._work, pipeline)
        except BaseException:
            self.state.gate.release(ticket)
            raise
        fut.add_done_callback(lambda _f: self.state.gate.release(ticket))
        self.future = fut
        return self

    async def _acquire(self, request: Request | None) -> int:
        gate = self.state.gate
        acquiring = asyncio.ensure_future(gate.acquire())
        try:
            while True:
                done, _ = await asyncio.wait({acquiring}, timeout=0.25)
                if done:
                    return acquiring.result()
                if request is not None and await request.is_disconnected():
                    break
        except BaseException:
            self._abandon(acquiring)
            raise
        self._abandon(acquiring)
        with contextlib.suppress(asyncio.CancelledError, GateFull):
            await acquiring
        self.state.metrics.disconnects.inc()
        raise ApiError(499, "client_closed", "the client closed the request while it waited")

    def _abandon(self, acquiring: asyncio.Future) -> None:
        if not acquiring.cancel() and not acquiring.cancelled() and acquiring.exception() is None:
            self.state.gate.release(acquiring.result())  # it got a slot just now: give it back

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _put(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed (shutdown)
            self._stop.set()

    def _work(self, pipeline) -> None:
        gen = None
        try:
            if self._stop.is_set():
                return
            gen = pipeline.stream(
                self.question,
                history=self.history,
                filters=self.filters,
                top_k=self.top_k,
                should_stop=self._stop.is_set,
            )
            for event in gen:
                self._put(event)
                if self._stop.is_set():
                    break
        except BaseException as exc:  # delivered to the consumer
            self._put(exc)
        finally:
            if gen is not None:
                with contextlib.suppress(Exception):
                    gen.close()  # stops the LLM if it is still generating
            self._put(_END)

    async def events(self) -> AsyncIterator[Any]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, DoneEvent):
                self.finished = True
            yield item

    async def wait(self) -> None:
        """Wait until the worker thread has finished (the LLM has stopped)."""
        if self.future is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.future)


async def _watch_disconnect(request: Request, run: PipelineRun, interval: float = 0.25) -> None:
    """For non-streaming endpoints: stop generating when the client goes away."""
    try:
        while not run.stopped:
            if await request.is_disconnected():
                run.stop()
                _state(request).metrics.disconnects.inc()
                return
            await asyncio.sleep(interval)
    except asyncio.CancelledError:
        pass


# --------------------------------------------------------------------------- models


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


def _make_models(settings: Settings, cfg: ServiceSettings):
    max_q = int(getattr(settings, "max_question_chars", 2000))

    class AskRequest(BaseModel):
        """A question, with optional earlier turns of the conversation (oldest first)."""

        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={"examples": [{"question": "Hoeveel geld gaat er naar mantelzorgondersteuning?"}]},
        )

        question: str = Field(min_length=1, max_length=max_q, description=f"The question (at most {max_q} characters)")
        history: list[Turn] = Field(
            default_factory=list,
            max_length=cfg.max_history_turns,
            description=f"Earlier turns, oldest first (at most {cfg.max_history_turns})",
        )
        filters: AskFilters | None = None
        top_k: int | None = Field(None, ge=1, le=cfg.max_top_k, description="Passages given to the model")

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
        top_k: int | None = Field(None, ge=1, le=cfg.max_top_k)
        filters: AskFilters | None = None

    class FeedbackRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        answer_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$", description="Answer.id of the rated answer")
        rating: Literal["up", "down"]
        comment: str | None = Field(None, max_length=cfg.max_comment_chars)

    return AskRequest, ChatMessage, ChatCompletionRequest, FeedbackRequest


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
    llm: str | None = None
    embedder: str | None = None


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    desc = {
        400: "Malformed body (e.g. not UTF-8)",
        401: "Missing, invalid or revoked API key",
        403: "Needs an admin key",
        404: "Not found (or not visible to this key)",
        409: "Another ingest is running",
        413: "Body too large",
        422: "Invalid request",
        429: "Rate limit exceeded (see Retry-After)",
        503: "The LLM is busy or unavailable, or the models are loading (see Retry-After)",
    }
    return {c: {"model": ErrorResponse, "description": desc[c]} for c in codes}


# --------------------------------------------------------------------------- middleware


class ServiceMiddleware:
    """Request id, JSON body size limit (by Content-Length), metrics and one log line per
    request. Never logs bodies or query strings."""

    def __init__(self, app, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        status_holder = {"status": 500, "started": False}

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                hdrs = list(message.get("headers") or [])
                hdrs.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": hdrs}
            await send(message)

        try:
            limit = self._limit(scope)
            cl = headers.get(b"content-length")
            if cl is not None and cl.isdigit() and int(cl) > limit:
                await self._too_large(scope, receive, send_wrapped, limit)
            else:
                await self.app(scope, receive, send_wrapped)
        except Exception as exc:
            log.error(
                "unhandled error",
                exc_info=(type(exc), exc, exc.__traceback__),
                extra={"request_id": rid, "path": scope.get("path")},
            )
            if status_holder["started"]:
                raise  # mid-stream: let the server drop the connection
            body = {"error": {"code": "internal", "message": "internal server error", "request_id": rid}}
            await JSONResponse(body, status_code=500)(scope, receive, send_wrapped)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            seconds = time.perf_counter() - t0
            status = status_holder["status"]
            self.state.metrics.observe_request(scope["method"], endpoint, status, seconds)
            if endpoint not in ("/healthz", "/metrics", "/readyz") or status >= 400:
                log.info(
                    "request",
                    extra={
                        "request_id": rid,
                        "method": scope["method"],
                        "path": scope.get("path"),
                        "endpoint": endpoint,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 1),
                        "caller": scope.get("state", {}).get("caller"),
                    },
                )

    def _limit(self, scope) -> int:
        if scope["method"] == "POST" and scope.get("path") == "/v1/documents":
            return self.state.cfg.max_upload_bytes + 64 * 1024  # multipart overhead
        return self.state.cfg.max_body_bytes

    async def _too_large(self, scope, receive, send, limit: int) -> None:
        body = {
            "error": {
                "code": "too_large",
                "message": f"request body too large (at most {limit} bytes)",
                "request_id": scope["state"]["request_id"],
            }
        }
        await JSONResponse(body, status_code=413, headers={"Connection": "close"})(scope, receive, send)


# --------------------------------------------------------------------------- the app


def create_app(
    settings: Settings | None = None,
    pipeline: Any = None,
    *,
    service_settings: ServiceSettings | None = None,
    keystore: KeyStore | None = None,
) -> FastAPI:
    """Build the API. Without ``pipeline`` the models are loaded at start-up
    (``Pipeline.from_settings``; in the background unless ``load_in_background`` is off)."""
    settings = settings or (pipeline.settings if pipeline is not None else Settings())
    cfg = service_settings or ServiceSettings()
    data_dir = cfg.resolve_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    gate = LLMGate(cfg.llm_concurrency, cfg.llm_queue, cfg.llm_queue_timeout)
    metrics = Metrics(queue_depth=lambda: gate.waiting, in_flight=lambda: gate.in_flight)
    state = ServiceState(
        settings=settings,
        cfg=cfg,
        keys=keystore or KeyStore(cfg.keys_db),
        limiter=RateLimiter(cfg.rate_limit_per_minute, cfg.rate_limit_burst),
        gate=gate,
        metrics=metrics,
        feedback=FeedbackStore(cfg.feedback_db),
        audit=AuditLog(cfg.audit_db, cfg.audit_retention_days) if cfg.audit_log else None,
        pipeline=pipeline,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = None
        if state.pipeline is None and not state.loading:
            if cfg.load_in_background:
                task = asyncio.create_task(_load(state))
            else:
                await _load(state)
        log.info(
            "service started",
            extra={
                "dev_mode": cfg.dev_mode,
                "llm_concurrency": cfg.llm_concurrency,
                "llm_queue": cfg.llm_queue,
                "audit_log": cfg.audit_log,
                "cors_origins": cfg.cors_origins,
                "data_dir": str(data_dir),
            },
        )
        if cfg.dev_mode:
            log.warning("dev mode: requests without an API key from loopback addresses are accepted")
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            if state.executor is not None:
                state.executor.shutdown(wait=False, cancel_futures=True)
                state.executor = None

    app = _fastapi_class()(
        title="Vraagbaak API",
        version=API_VERSION,
        description=(
            "Questions in Dutch about council documents, answered in Dutch with citations.\n\n"
            "Authenticate with `Authorization: Bearer KEY` or `X-API-Key: KEY` (keys: `vraagbaak keys add`). "
            "Errors have the shape `{\"error\": {\"code\", \"message\", \"request_id\"}}`; 429 and 503 carry "
            "`Retry-After`."
        ),
        lifespan=lifespan,
        # backstop for bodies without Content-Length (chunked); the middleware checks the header
        max_body_size=max(cfg.max_body_bytes, cfg.max_upload_bytes + 64 * 1024),
    )
    app.state.vb = state
    install_error_handlers(app)
    app.add_middleware(ServiceMiddleware, state=state)
    if cfg.cors_origins:  # outermost, so that every response (413, 500 too) carries the CORS headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_credentials=cfg.cors_allow_credentials,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID", "Last-Event-ID"],
            expose_headers=["Retry-After", "X-Request-ID"],
            max_age=cfg.cors_max_age,
        )

    AskRequest, ChatMessage, ChatCompletionRequest, FeedbackRequest = _make_models(settings, cfg)
    Reader = Annotated[Caller, Depends(require_reader)]
    Admin = Annotated[Caller, Depends(require_admin)]

    # -- health ---------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["health"], summary="Alive")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz", response_model=Ready, tags=["health"], summary="Models loaded and index open",
        responses={503: {"model": Ready, "description": "Not ready (loading or failed)"}},
    )
    async def readyz() -> Any:
        p = state.pipeline
        if p is None:
            status = "error" if state.load_error else "loading"
            return JSONResponse(Ready(status=status).model_dump(), status_code=503, headers={"Retry-After": "10"})
        try:
            snap = p.retriever.reader.snapshot()
        except Exception:
            log.exception("readiness: index not readable")
            return JSONResponse(Ready(status="index_unavailable").model_dump(), status_code=503)
        return Ready(
            status="ready", index_generation=snap.name, llm=p.llm.model_id, embedder=p.retriever.embedder.model_id
        )

    @app.get(
        "/metrics", tags=["health"], summary="Prometheus metrics",
        response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics_endpoint() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # -- answers --------------------------------------------------------------------
    def _record(question: str, answer: Answer, endpoint: str, request: Request, caller: Caller) -> None:
        state.metrics.observe_answer(answer, endpoint)
        if state.audit is not None:
            try:
                state.audit.record(
                    request_id=request.scope["state"].get("request_id", ""),
                    caller=caller.name,
                    endpoint=endpoint,
                    question=question,
                    answer=answer,
                )
            except Exception:
                log.exception("audit log write failed")

    async def _answer(question: str, history: list[Turn], filters: Filters, top_k, request: Request) -> Answer:
        run = await PipelineRun(state, question, history, filters, top_k).start(request)
        watcher = asyncio.create_task(_watch_disconnect(request, run))
        answer = None
        try:
            async for event in run.events():
                if isinstance(event, DoneEvent):
                    answer = event.answer
        except LLMUnavailableError as exc:
            state.metrics.rejected.labels(reason="llm_unavailable").inc()
            retry = exc.retry_after if exc.retry_after is not None else state.gate.retry_after()
            raise ApiError(
                503, "llm_unavailable", "the language model is unavailable; try again later",
                headers={"Retry-After": retry_after_header(retry)},
            ) from None
        finally:
            watcher.cancel()
            run.stop()
            await run.wait()
        if answer is None:  # the client went away (nobody reads this)
            raise ApiError(499, "client_closed", "the client closed the request")
        return answer

    @app.post(
        "/v1/ask", response_model=Answer, tags=["answers"], summary="Ask a question",
        responses=_errors(400, 401, 413, 422, 429, 503),
    )
    async def ask(req: AskRequest, request: Request, caller: Reader) -> Answer:
        filters = (req.filters or AskFilters()).to_filters(caller)
        answer = await _answer(req.question, req.history, filters, req.top_k, request)
        _record(req.question, answer, "ask", request, caller)
        return answer

    @app.post(
        "/v1/ask/stream", tags=["answers"], summary="Ask a question, streamed as Server-Sent Events",
        response_class=EventSourceResponse,
        responses={
            200: {
                "description": (
                    "`text/event-stream`: one `sources` event (SourcesEvent), `token` events (TokenEvent), "
                    "then `done` (DoneEvent: the final answer with validated citations — its text may differ "
                    "from the joined tokens) or `error` (ErrorEvent). Each `data:` is the event as JSON."
                ),
                "content": {"text/event-stream": {}},
            },
            **_errors(400, 401, 413, 422, 429, 503),
        },
    )
    async def ask_stream(req: AskRequest, request: Request, caller: Reader):
        filters = (req.filters or AskFilters()).to_filters(caller)
        run = await PipelineRun(state, req.question, req.history, filters, req.top_k).start(request)
        rid = request.scope["state"].get("request_id")

        async def events():
            ended = False  # the stream ran to its end (answer or error event)
            try:
                async for event in run.events():
                    if isinstance(event, DoneEvent):
                        _record(req.question, event.answer, "ask_stream", request, caller)
                    yield ServerSentEvent(event=event.type, data=event.model_dump_json())
                ended = True
            except LLMUnavailableError as exc:
                ended = True
                state.metrics.rejected.labels(reason="llm_unavailable").inc()
                err = ErrorEvent(
                    code="llm_unavailable", message="the language model is unavailable; try again later",
                    retry_after=exc.retry_after if exc.retry_after is not None else state.gate.retry_after(),
                )
                yield ServerSentEvent(event="error", data=err.model_dump_json())
            except Exception:
                ended = True
                log.exception("error while streaming an answer", extra={"request_id": rid})
                err = ErrorEvent(code="internal", message=f"internal server error (request id {rid})")
                yield ServerSentEvent(event="error", data=err.model_dump_json())
            finally:
                if not ended:  # the client went away mid-stream
                    state.metrics.disconnects.inc()
                run.stop()

        return _sse(events(), run)

    # -- OpenAI compatible ----------------------------------------------------------
    def _chat_inputs(req) -> tuple[str, list[Turn]]:
        last = req.messages[-1]
        question = last.text().strip()
        max_q = int(getattr(settings, "max_question_chars", 2000))
        at = ("body", "messages", len(req.messages) - 1)
        if last.role != "user":
            _invalid((*at, "role"), "the last message must have role 'user'")
        elif not question:
            _invalid((*at, "content"), "the question is empty")
        elif len(question) > max_q:
            _invalid((*at, "content"), f"the question is longer than {max_q} characters")
        history = [
            Turn(role=m.role, content=m.text()[: cfg.max_turn_chars])
            for m in req.messages[:-1]
            if m.role in ("user", "assistant") and m.text().strip()
        ]
        if cfg.max_history_turns:
            history = history[-cfg.max_history_turns :]
        else:
            history = []
        return question, history

    def _model_name() -> str:
        p = state.pipeline
        return p.llm.model_id if p is not None else settings.llm

    @app.get("/v1/models", response_model=ModelList, tags=["openai"], responses=_errors(401, 429))
    async def models(caller: Reader) -> ModelList:
        return ModelList(data=[ModelCard(id=_model_name())])

    @app.post(
        "/v1/chat/completions", tags=["openai"], summary="OpenAI-compatible chat completions",
        response_model=ChatCompletion,
        responses={
            200: {
                "description": (
                    "`stream: false`: a `chat.completion` with the extra field `vraagbaak` (the Answer). "
                    "`stream: true`: `text/event-stream` of `chat.completion.chunk` objects as `data:` lines, "
                    "ending with `data: [DONE]`; the first chunk has `vraagbaak.sources` (the passages), the last "
                    "`vraagbaak.answer` (the final answer with validated citations)."
                ),
                "content": {"text/event-stream": {}},
            },
            **_errors(400, 401, 413, 422, 429, 503),
        },
    )
    async def chat_completions(req: ChatCompletionRequest, request: Request, caller: Reader) -> Any:
        question, history = _chat_inputs(req)
        filters = (req.filters or AskFilters()).to_filters(caller)
        created = int(time.time())
        if not req.stream:
            answer = await _answer(question, history, filters, req.top_k, request)
            _record(question, answer, "chat", request, caller)
            t = answer.timings
            usage = ChatUsage(
                prompt_tokens=t.prompt_tokens or 0,
                completion_tokens=t.completion_tokens or 0,
                total_tokens=(t.prompt_tokens or 0) + (t.completion_tokens or 0),
            )
            return ChatCompletion(
                id=f"chatcmpl-{answer.id}",
                created=created,
                model=answer.model.llm,
                choices=[ChatChoice(message=ChatResponseMessage(content=answer.answer))],
                usage=usage,
                vraagbaak=answer,
            )

        run = await PipelineRun(state, question, history, filters, req.top_k).start(request)
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        model = _model_name()
        rid = request.scope["state"].get("request_id")

        def chunk(delta: dict, finish: str | None = None, extra: dict | None = None) -> ServerSentEvent:
            obj: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if extra is not None:
                obj["vraagbaak"] = extra
            return ServerSentEvent(data=json.dumps(obj, ensure_ascii=False))

        async def events():
            ended = False
            try:
                async for event in run.events():
                    if isinstance(event, SourcesEvent):
                        sources = [s.model_dump() for s in event.sources]
                        yield chunk({"role": "assistant", "content": ""}, extra={"sources": sources})
                    elif isinstance(event, TokenEvent):
                        yield chunk({"content": event.text})
                    elif isinstance(event, DoneEvent):
                        _record(question, event.answer, "chat_stream", request, caller)
                        yield chunk({}, finish="stop", extra={"answer": event.answer.model_dump(mode="json")})
                ended = True
                yield ServerSentEvent(data="[DONE]")
            except LLMUnavailableError as exc:
                ended = True
                state.metrics.rejected.labels(reason="llm_unavailable").inc()
                retry = exc.retry_after if exc.retry_after is not None else state.gate.retry_after()
                err = {"error": {"message": "the language model is unavailable; try again later",
                                 "type": "server_error", "code": "llm_unavailable", "retry_after": retry}}
                yield ServerSentEvent(data=json.dumps(err))
                yield ServerSentEvent(data="[DONE]")
            except Exception:
                ended = True
                log.exception("error while streaming a chat completion", extra={"request_id": rid})
                err = {"error": {"message": f"internal server error (request id {rid})", "type": "server_error",
                                 "code": "internal"}}
                yield ServerSentEvent(data=json.dumps(err))
                yield ServerSentEvent(data="[DONE]")
            finally:
                if not ended:
                    state.metrics.disconnects.inc()
                run.stop()

        return _sse(events(), run)

    # -- documents ------------------------------------------------------------------
    def _snapshot():
        return state.require_pipeline().retriever.reader.snapshot()

    def _doc_info(d: dict, caller: Caller) -> DocumentInfo:
        meta = dict(d.get("metadata") or {})
        if not caller.is_admin:
            meta.pop("path", None)  # server file system layout
        return DocumentInfo(
            doc_id=d["doc_id"],
            title=d["title"],
            source=d["source"],
            date=d.get("date"),
            doc_type=d.get("doc_type"),
            year=d.get("year"),
            n_chunks=int(d.get("n_chunks") or 0),
            ingested_at=float(d.get("ingested_at") or 0.0),
            groups=d.get("groups") if caller.is_admin else None,
            metadata=meta,
        )

    def _visible_docs(snap, caller: Caller, doc_id: str | None = None) -> list[dict]:
        """Documents the caller may see — the same SQL rule as retrieval (Filters.sql)."""
        f = Filters(groups=caller.access_groups(), doc_ids=[doc_id] if doc_id is not None else None)
        where, params = f.sql()
        rows = snap.db.execute(
            "SELECT d.*, (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.doc_id) AS n_chunks "
            f"FROM documents d WHERE {where} ORDER BY d.doc_id",
            params,
        ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["groups"] = json.loads(d.get("groups") or "[]")
            d["metadata"] = json.loads(d.get("metadata") or "{}")
            out.append(d)
        return out

    def _not_found(doc_id: str) -> ApiError:
        return ApiError(404, "not_found", "document not found")

    @app.get("/v1/documents", response_model=DocumentList, tags=["documents"], responses=_errors(401, 422, 429, 503))
    async def list_documents(
        caller: Reader,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> DocumentList:
        snap = _snapshot()
        docs = await anyio.to_thread.run_sync(_visible_docs, snap, caller)
        return DocumentList(count=len(docs), documents=[_doc_info(d, caller) for d in docs[offset : offset + limit]])

    DocId = Annotated[str, PathParam(description="e.g. voorbeeld/begroting-2023-welzijn-gezondheid-zorg")]

    @app.get(
        "/v1/documents/{doc_id:path}", response_model=DocumentDetail, tags=["documents"],
        summary="A document's metadata and chunks", responses=_errors(401, 404, 429, 503),
    )
    async def get_document(doc_id: DocId, caller: Reader) -> DocumentDetail:
        snap = _snapshot()

        def load():
            docs = _visible_docs(snap, caller, doc_id)
            return (docs[0], snap.chunks_of(doc_id)) if docs else (None, [])

        doc, chunks = await anyio.to_thread.run_sync(load)
        if doc is None:
            raise _not_found(doc_id)
        info = _doc_info(doc, caller)
        return DocumentDetail(
            **info.model_dump(),
            chunks=[
                ChunkInfo(
                    chunk_id=c.chunk_id, position=c.position, section=c.section, heading_path=c.heading_path,
                    page=c.page, text=c.text,
                )
                for c in chunks
            ],
        )

    @app.post(
        "/v1/documents", response_model=IngestResult, status_code=201, tags=["documents"],
        summary="Upload a document and index it (admin)", responses=_errors(401, 403, 409, 413, 422, 429, 503),
    )
    async def upload_document(
        caller: Admin,
        file: Annotated[UploadFile, File(description="A .txt, .md, .html, .pdf, .docx or FAQ .json file")],
        groups: Annotated[
            str | None, Form(description="Comma-separated access groups; empty = everyone", max_length=2000)
        ] = None,
    ) -> IngestResult:
        pipeline = state.require_pipeline()
        try:
            group_list = parse_groups(groups)
        except _KeyError as exc:
            _invalid(("body", "groups"), str(exc))
        name = _safe_filename(file.filename or "")
        if state.doc_lock is None:
            state.doc_lock = asyncio.Lock()
        async with state.doc_lock:
            result = await state.in_worker(_ingest_upload, state, pipeline, file.file, name, group_list)
        return result

    @app.delete(
        "/v1/documents/{doc_id:path}", response_model=Removed, tags=["documents"],
        summary="Remove a document from the index (admin)", responses=_errors(401, 403, 404, 409, 429, 503),
    )
    async def delete_document(doc_id: DocId, caller: Admin) -> Removed:
        pipeline = state.require_pipeline()
        if state.doc_lock is None:
            state.doc_lock = asyncio.Lock()
        async with state.doc_lock:
            removed = await state.in_worker(_remove_document, state, pipeline, doc_id)
        if not removed:
            raise _not_found(doc_id)
        return Removed(removed=doc_id)

    # -- feedback -------------------------------------------------------------------
    @app.post(
        "/v1/feedback", response_model=FeedbackStored, status_code=201, tags=["feedback"],
        summary="Rate an answer", responses=_errors(400, 401, 413, 422, 429),
    )
    async def feedback(req: FeedbackRequest, caller: Reader) -> FeedbackStored:
        fid = await anyio.to_thread.run_sync(
            lambda: state.feedback.add(req.answer_id, req.rating, (req.comment or "").strip() or None, caller.name)
        )
        return FeedbackStored(id=fid)

    @app.get(
        "/v1/feedback/export", tags=["feedback"], summary="All feedback as JSON lines (admin)",
        response_class=Response, responses={200: {"content": {"application/x-ndjson": {}}}, **_errors(401, 403, 429)},
    )
    async def feedback_export(caller: Admin) -> Response:
        def dump() -> str:
            import io

            buf = io.StringIO()
            state.feedback.export_jsonl(buf, audit=state.audit)
            return buf.getvalue()

        return Response(await anyio.to_thread.run_sync(dump), media_type="application/x-ndjson")

    # thin front-ends on the same app: the chat widget (+ /demo) and the Slack/Teams bots
    from service.bots import mount_bots
    from service.widget import mount_widget

    mount_widget(app)
    mount_bots(app)
    return app


# --------------------------------------------------------------------------- helpers


def _fastapi_class():
    """FastAPI with /docs served from local files (no CDN: the site may be offline), when
    fastapi-offline is installed; else plain FastAPI (docs load Swagger UI from a CDN)."""
    try:
        from fastapi_offline import FastAPIOffline

        return FastAPIOffline
    except ImportError:  # pragma: no cover
        return FastAPI


def _sse(events, run: PipelineRun) -> EventSourceResponse:
    return EventSourceResponse(
        events,
        ping=15,
        send_timeout=60,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(run.stop),  # if the stream never started
    )


INDEX_POLL_SECONDS = 5.0


async def _load(state: ServiceState) -> None:
    """Load the pipeline. Without an index yet (``vraagbaak ingest`` not run), wait for one
    and load then; any other failure is reported by /readyz and the log."""
    from rag.index import IndexNotFoundError, read_current
    from rag.pipeline import Pipeline

    state.loading = True
    try:
        while True:
            t0 = time.perf_counter()
            try:
                state.pipeline = await state.in_worker(Pipeline.from_settings, state.settings)
                state.load_error = None
                log.info("models loaded", extra={"seconds": round(time.perf_counter() - t0, 1)})
                return
            except IndexNotFoundError as exc:
                state.load_error = f"{type(exc).__name__}: {exc}"
                log.error("no index yet; waiting for one (vraagbaak ingest ...)", extra={"error": str(exc)})
                while read_current(state.settings.index_dir) is None:
                    await asyncio.sleep(INDEX_POLL_SECONDS)
            except Exception as exc:
                state.load_error = f"{type(exc).__name__}: {exc}"
                log.error("loading the models failed", exc_info=True)
                return
    finally:
        state.loading = False


def _invalid(loc: tuple, msg: str, type_: str = "value_error"):
    """Raise a 422 in the same shape as FastAPI's own validation errors."""
    raise RequestValidationError([{"loc": loc, "msg": msg, "type": type_}])


_UNSAFE = re.compile(r"[^\w.()+ -]", re.UNICODE)


def _safe_filename(name: str) -> str:
    from rag.ingest import SUPPORTED_EXTENSIONS

    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = _UNSAFE.sub("_", base).strip(" .")
    if not base or base.startswith("."):
        _invalid(("body", "file"), "missing or invalid file name")
    if base.lower().endswith(".meta.json"):
        _invalid(("body", "file"), "metadata sidecar files cannot be uploaded")
    suffix = Path(base).suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        _invalid(("body", "file"), f"unsupported file type {suffix or '(none)'}; supported: {supported}")
    return base[:200]


def _ingest_upload(state: ServiceState, pipeline, fh, name: str, groups: list[str]) -> IngestResult:
    """Runs in a worker thread. The file is parsed in a private folder first; only a file
    that parses is moved into uploads/ and indexed, so a bad file changes nothing."""
    from rag.index import IndexError_, IndexLockedError
    from rag.indexing import ingest_paths
    from rag.ingest import IngestError, parse_file

    settings = pipeline.settings
    uploads = state.cfg.uploads_dir
    incoming = uploads.parent / ".incoming" / secrets.token_hex(8)
    incoming.mkdir(parents=True, exist_ok=True)
    tmp = incoming / name
    try:
        size = 0
        with open(tmp, "wb") as out:
            while chunk := fh.read(1 << 20):
                size += len(chunk)
                if size > state.cfg.max_upload_bytes:
                    raise ApiError(413, "too_large", f"file too large (at most {state.cfg.max_upload_bytes} bytes)")
                out.write(chunk)
        try:
            parse_file(tmp, root=incoming, groups=groups)
        except IngestError as exc:
            raise RequestValidationError(
                [{"loc": ("body", "file"), "msg": f"cannot ingest {name}: {exc.reason}", "type": "ingest_error"}]
            ) from None

        uploads.mkdir(parents=True, exist_ok=True)
        final = uploads / name
        backup = None
        if final.exists():
            backup = incoming / (name + ".previous")
            os.replace(final, backup)
        os.replace(tmp, final)

        def parse_upload(path, root=None, groups=None, **kw):  # doc ids "uploads/<name>"
            return parse_file(path, root=uploads.parent, groups=groups, **kw)

        try:
            report = ingest_paths([final], settings, pipeline.retriever.embedder, groups=groups, parse=parse_upload)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, final)
                else:
                    final.unlink()
            if isinstance(exc, IndexLockedError):
                raise ApiError(409, "conflict", "another ingest is running; try again later",
                               headers={"Retry-After": "10"}) from None
            if isinstance(exc, IndexError_):
                raise ApiError(503, "index_unavailable", str(exc)) from None
            raise
        if report.failed:
            reasons = "; ".join(r for _p, r in report.failed)
            raise RequestValidationError(
                [{"loc": ("body", "file"), "msg": f"cannot ingest {name}: {reasons}", "type": "ingest_error"}]
            )
        d = report.to_dict()
        return IngestResult(
            doc_ids=report.added + report.updated + report.unchanged,
            added=report.added,
            updated=report.updated,
            unchanged=report.unchanged,
            failed=[IngestFailure(**f) for f in d["failed"]],
            chunks_embedded=report.chunks_embedded,
            seconds=d["seconds"],
            generation=report.generation,
        )
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


def _remove_document(state: ServiceState, pipeline, doc_id: str) -> bool:
    from rag.index import IndexLockedError
    from rag.indexing import remove_documents

    snap = pipeline.retriever.reader.snapshot()
    doc = snap.document(doc_id)
    if doc is None:
        return False
    try:
        removed = remove_documents([doc_id], pipeline.settings)
    except IndexLockedError:
        raise ApiError(409, "conflict", "another ingest is running; try again later",
                       headers={"Retry-After": "10"}) from None
    path = (doc.get("metadata") or {}).get("path")
    if removed and path:
        p = Path(path)
        with contextlib.suppress(OSError, ValueError):
            if p.resolve().is_relative_to(state.cfg.uploads_dir.resolve()):
                p.unlink()  # a deleted upload leaves no copy behind
    return bool(removed)
