"""The bots as their own process (``vraagbaak bots serve`` / ``python -m service.bots``):
a small FastAPI app with ``/healthz``, ``/readyz``, ``/slack/events`` and
``/api/teams/messages``, its own pipeline (loaded in the background) and answering service
(:class:`service.answering.AnswerService`: LLM gate, lower-priority worker pool, metrics) and
the service's feedback store (``data_dir/feedback.sqlite``, shared with ``/v1/feedback`` when
both run on one machine).

With ``--socket-mode`` Slack is reached over Socket Mode (``SLACK_APP_TOKEN``, an
``xapp-`` token with ``connections:write``) instead of the public ``/slack/events`` URL;
for sites without a public endpoint. Teams always needs a public HTTPS endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from .config import BotSettings

log = logging.getLogger("vraagbaak.bots")


class _PipelineHolder:
    def __init__(self, pipeline: Any = None) -> None:
        self.pipeline = pipeline
        self.error: str | None = None

    def __call__(self) -> Any:
        return self.pipeline

    def load(self, settings) -> None:
        from rag.pipeline import Pipeline

        try:
            self.pipeline = Pipeline.from_settings(settings)
            log.info("bots: models loaded")
        except Exception as exc:
            self.error = type(exc).__name__
            log.exception("bots: loading the models failed")


def create_bots_app(
    settings=None,
    pipeline: Any = None,
    bot_settings: BotSettings | None = None,
    service_settings=None,
    *,
    socket_mode: bool = False,
) -> FastAPI:
    from rag.settings import Settings
    from service.answering import AnswerService
    from service.config import ServiceSettings
    from service.stores import ServiceStores

    from .slack import build_slack_app, mount_slack
    from .teams import mount_teams

    settings = settings or (pipeline.settings if pipeline is not None else Settings())
    cfg = service_settings or ServiceSettings()
    bot_settings = bot_settings or BotSettings()
    holder = _PipelineHolder(pipeline)
    answers = AnswerService.from_settings(settings, cfg, holder, load_error=lambda: holder.error)
    feedback = ServiceStores(settings, cfg).feedback()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if holder.pipeline is None:
            threading.Thread(target=holder.load, args=(settings,), name="vraagbaak-bots-load", daemon=True).start()
        socket_task = handler = None
        if socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            from .common import BotAnswerer

            if not (bot_settings.slack_bot_token and bot_settings.slack_app_token):
                raise RuntimeError("Socket Mode needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN")
            answerer = BotAnswerer(answers)
            bolt = build_slack_app(bot_settings, answerer, feedback)
            handler = AsyncSocketModeHandler(bolt, bot_settings.secret("slack_app_token"))
            socket_task = asyncio.create_task(handler.start_async())
            log.info("slack bot connected over Socket Mode")
        try:
            yield
        finally:
            if socket_task is not None and handler is not None:
                socket_task.cancel()
                with contextlib.suppress(Exception):
                    await handler.close_async()
            answers.workers.shutdown()

    app = FastAPI(title="Vraagbaak bots", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if holder.pipeline is not None:
            return {"status": "ready"}
        status = "error" if holder.error else "loading"
        return JSONResponse({"status": status}, status_code=503)

    if not socket_mode:
        mount_slack(app, None, bot_settings, feedback=feedback, answers=answers)
    mount_teams(app, None, bot_settings, feedback=feedback, answers=answers)
    return app


def serve(host: str | None = None, port: int | None = None, socket_mode: bool = False) -> None:
    import uvicorn

    from service.config import ServiceSettings
    from service.logging import configure_logging

    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    cfg = ServiceSettings(**overrides)
    configure_logging(cfg.log_level, cfg.log_json)
    bot_settings = BotSettings()
    socket_mode = socket_mode or bot_settings.slack_socket_mode
    app = create_bots_app(bot_settings=bot_settings, service_settings=cfg, socket_mode=socket_mode)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_config=None, access_log=False, proxy_headers=False)
