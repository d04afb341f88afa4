"""The answering service: how every front-end gets an answer.

``POST /v1/ask``, ``/v1/ask/stream``, ``/v1/chat/completions`` and the Slack and Teams bots
all answer through one :class:`AnswerService`: the pipeline runs in the lower-priority
worker pool behind the LLM gate (bounded concurrency and queue, 503 + Retry-After beyond),
a run stops when its asker goes away, and every answer is counted in the metrics and, when
enabled, written to the audit log. In the Vraagbaak service it is ``app.state.vb.answers``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rag.llm import LLMUnavailableError
from rag.retrieve import Filters
from rag.schema import Answer, DoneEvent, Turn
from rag.settings import Settings

from .config import ServiceSettings
from .errors import ClientClosed, LLMUnavailable, NotReady
from .limits import LLMGate
from .links import LinkSigner
from .logging import AuditLogBase
from .metrics import Metrics
from .run import Disconnected, PipelineRun
from .schemas import RequestLimits
from .workers import WorkerPool

log = logging.getLogger("vraagbaak.service")


def _no_error() -> str | None:
    return None


@dataclass(frozen=True)
class AnswerService:
    """Answers questions with the pipeline that ``pipeline()`` returns (None while the
    models load; ``load_error()`` says whether loading failed)."""

    pipeline: Callable[[], Any]
    gate: LLMGate
    workers: WorkerPool
    metrics: Metrics
    limits: RequestLimits = field(default_factory=RequestLimits)
    audit: AuditLogBase | None = None
    load_error: Callable[[], str | None] = _no_error
    links: LinkSigner | None = None  # signs the citations' viewer links

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        cfg: ServiceSettings,
        pipeline: Callable[[], Any],
        *,
        load_error: Callable[[], str | None] = _no_error,
        audit: AuditLogBase | None = None,
        links: LinkSigner | None = None,
    ) -> AnswerService:
        """A service with its own LLM gate, worker pool and metrics as ``cfg`` says."""
        gate = LLMGate(cfg.llm_concurrency, cfg.llm_queue, cfg.llm_queue_timeout)
        return cls(
            pipeline=pipeline,
            gate=gate,
            # every admitted answer has a thread, and one ingest/removal can run beside them
            workers=WorkerPool(gate.capacity + 1, cfg.worker_nice),
            metrics=Metrics(queue_depth=lambda: gate.waiting, in_flight=lambda: gate.in_flight),
            limits=RequestLimits.from_settings(settings, cfg),
            audit=audit,
            load_error=load_error,
            links=links if links is not None else LinkSigner.from_config(cfg),
        )

    def with_pipeline(self, pipeline: Callable[[], Any]) -> AnswerService:
        """The same gate, workers, metrics and audit log over another pipeline."""
        return replace(self, pipeline=pipeline)

    def require_pipeline(self) -> Any:
        pipeline = self.pipeline()
        if pipeline is None:
            raise NotReady(failed=bool(self.load_error()))
        return pipeline

    async def start(
        self,
        question: str,
        history: list[Turn],
        filters: Filters,
        top_k: int | None = None,
        *,
        disconnected: Disconnected | None = None,
    ) -> PipelineRun:
        """Start a run (for streaming its events). Raises NotReady, LLMBusy, ClientClosed."""
        pipeline = self.require_pipeline()
        links = self.links
        run = PipelineRun(
            pipeline,
            question,
            history,
            filters,
            top_k,
            gate=self.gate,
            workers=self.workers,
            metrics=self.metrics,
            link=(lambda citations: links.link(citations, filters.groups)) if links is not None else None,
        )
        return await run.start(disconnected)

    async def answer(
        self,
        question: str,
        history: list[Turn],
        filters: Filters,
        top_k: int | None = None,
        *,
        disconnected: Disconnected | None = None,
    ) -> Answer:
        """The final answer. Raises NotReady, LLMBusy, LLMUnavailable and ClientClosed (the
        asker went away: ``disconnected()`` said so)."""
        run = await self.start(question, history, filters, top_k, disconnected=disconnected)
        watcher = asyncio.create_task(run.stop_on_disconnect(disconnected)) if disconnected is not None else None
        answer = None
        try:
            async for event in run.events():
                if isinstance(event, DoneEvent):
                    answer = event.answer
        except LLMUnavailableError as exc:
            raise LLMUnavailable(self.unavailable(exc)) from None
        finally:
            if watcher is not None:
                watcher.cancel()
            run.stop()
            await run.wait()
        if answer is None:  # the asker went away (nobody reads this)
            raise ClientClosed()
        return answer

    def unavailable(self, exc: LLMUnavailableError) -> float:
        """Count a refusal of the LLM backend; the seconds the asker should wait."""
        self.metrics.rejected.labels(reason="llm_unavailable").inc()
        return exc.retry_after if exc.retry_after is not None else self.gate.retry_after()

    def record(self, question: str, answer: Answer, endpoint: str, *, caller: str, request_id: str) -> None:
        """Count an answer given (metrics) and write it to the audit log, if enabled."""
        self.metrics.observe_answer(answer, endpoint)
        if self.audit is not None:
            try:
                self.audit.record(
                    request_id=request_id, caller=caller, endpoint=endpoint, question=question, answer=answer
                )
            except Exception:  # the audit log must never break an answer
                log.exception("audit log write failed")
