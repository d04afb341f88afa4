"""The Vraagbaak HTTP API (FastAPI): the app factory.

    from service.app import create_app
    app = create_app()                      # loads the models in the background
    app = create_app(settings, pipeline)    # tests: an injected pipeline (fake LLM)

Endpoints (OpenAPI docs at ``/docs``), one router per resource in ``service/routers/``:

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
(service/answering.py, the same for the API and the Slack and Teams bots); the event loop
stays free for health checks and metrics.

Modules: ``state.py`` (what the app keeps, ``app.state.vb``), ``deps.py`` (typed
dependencies), ``schemas.py`` (request and response bodies), ``answering.py`` and
``run.py`` (answers), ``workers.py`` (the lower-priority threads), ``middleware.py``,
``errors.py``, ``uploads.py`` (ingest and removal behind the document endpoints).
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from rag.settings import Settings

from .auth import KeyStoreBase
from .config import ServiceSettings
from .errors import install_error_handlers
from .middleware import ServiceMiddleware
from .routers import ROUTERS
from .schemas import request_limits
from .state import ServiceState
from .stores import ServiceStores

log = logging.getLogger("vraagbaak.service")
API_VERSION = "1"
INDEX_POLL_SECONDS = 5.0


def create_app(
    settings: Settings | None = None,
    pipeline: Any = None,
    *,
    service_settings: ServiceSettings | None = None,
    keystore: KeyStoreBase | None = None,
) -> FastAPI:
    """Build the API. Without ``pipeline`` the models are loaded at start-up
    (``Pipeline.from_settings``; in the background unless ``load_in_background`` is off)."""
    settings = settings or (pipeline.settings if pipeline is not None else Settings())
    cfg = service_settings or ServiceSettings()
    data_dir = cfg.resolve_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    stores = ServiceStores(settings, cfg)  # SQLite in data_dir, or PostgreSQL (database_url)
    state = ServiceState(
        settings=settings,
        cfg=cfg,
        keys=keystore or stores.keys(),
        limiter=stores.limiter(),
        feedback=stores.feedback(),
        audit=stores.audit(),
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
                "state": stores.backend,
            },
        )
        if cfg.dev_mode:
            log.warning("dev mode: requests without an API key from loopback addresses are accepted")
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            state.workers.shutdown()
            stores.close()

    app = _fastapi_class()(
        title="Vraagbaak API",
        version=API_VERSION,
        description=(
            "Questions in Dutch about council documents, answered in Dutch with citations.\n\n"
            "Authenticate with `Authorization: Bearer KEY` or `X-API-Key: KEY` (keys: `vraagbaak keys add`). "
            'Errors have the shape `{"error": {"code", "message", "request_id"}}`; 429 and 503 carry '
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
    for router in ROUTERS:
        app.include_router(router)
    _describe_limits(app, state)

    # thin front-ends on the same app: the chat widget (+ /demo) and the Slack/Teams bots
    from service.bots import mount_bots
    from service.widget import mount_widget

    mount_widget(app)
    mount_bots(app)
    return app


def _describe_limits(app: FastAPI, state: ServiceState) -> None:
    """The OpenAPI document states this app's request limits (maximum question length, ...:
    service/schemas.py), wherever it is generated."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        with request_limits(state.answers.limits):
            return generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to override it


def _fastapi_class():
    """FastAPI with /docs served from local files (no CDN: the site may be offline), when
    fastapi-offline is installed; else plain FastAPI (docs load Swagger UI from a CDN)."""
    try:
        from fastapi_offline import FastAPIOffline

        return FastAPIOffline
    except ImportError:  # pragma: no cover
        return FastAPI


async def _warm_up(state: ServiceState, pipeline: Any) -> None:
    """The fixed prompt parts evaluated before /readyz says ready (``Pipeline.warm_up``); a
    failure is logged and the service starts all the same (the first question then pays)."""
    try:
        seconds = await state.in_worker(pipeline.warm_up)
        if seconds is not None:
            log.info("fixed prompts evaluated", extra={"seconds": round(seconds, 1)})
    except Exception:
        log.warning("warming up the model failed; the first question will be slower", exc_info=True)


async def _load(state: ServiceState) -> None:
    """Load the pipeline. Without an index yet (``vraagbaak ingest`` not run), wait for one
    and load then; any other failure is reported by /readyz and the log."""
    from rag.index import IndexNotFoundError
    from rag.pipeline import Pipeline
    from rag.store import index_present

    state.loading = True
    try:
        while True:
            t0 = time.perf_counter()
            try:
                pipeline = await state.in_worker(Pipeline.from_settings, state.settings)
                log.info("models loaded", extra={"seconds": round(time.perf_counter() - t0, 1)})
                if state.settings.llm_warm_up:
                    await _warm_up(state, pipeline)
                state.pipeline = pipeline
                state.load_error = None
                return
            except IndexNotFoundError as exc:
                state.load_error = f"{type(exc).__name__}: {exc}"
                log.error("no index yet; waiting for one (vraagbaak ingest ...)", extra={"error": str(exc)})
                while not index_present(state.settings):  # embedded: CURRENT; postgres: the manifest row
                    await asyncio.sleep(INDEX_POLL_SECONDS)
            except Exception as exc:
                state.load_error = f"{type(exc).__name__}: {exc}"
                log.exception("loading the models failed")
                return
    finally:
        state.loading = False
