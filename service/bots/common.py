"""What the Slack and Teams bots share: answering a question with the pipeline (behind the
service's LLM gate, with the bot's access groups), a bounded TTL cache for de-duplication,
and where feedback goes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rag.retrieve import Filters
from rag.schema import Answer

from . import cards

log = logging.getLogger("vraagbaak.bots")


class TTLCache:
    """A set of recently seen keys (event ids, message ids): at most ``max_items``, each
    kept ``ttl`` seconds. Thread-safe."""

    def __init__(self, ttl: float = 3600.0, max_items: int = 10_000) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._items: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._items:
            _key, t = next(iter(self._items.items()))
            if now - t < self.ttl and len(self._items) <= self.max_items:
                break
            self._items.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            return key in self._items

    def add(self, key: str) -> bool:
        """Remember ``key``; False when it was already there (a duplicate)."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if key in self._items:
                return False
            self._items[key] = now
            self._expire(now)
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@dataclass
class BotReply:
    """The outcome of a question: an answer, or a notice (busy, not ready, failed)."""

    answer: Answer | None = None
    notice: str | None = None


class BotAnswerer:
    """Runs ``pipeline.ask`` for a bot: in a worker thread, behind the service's LLM gate
    (when one is given), always with a group filter, so a bot sees public documents plus
    its configured groups and never more.

    ``pipeline_provider()`` returns the pipeline, or None while the models still load."""

    def __init__(
        self,
        pipeline_provider: Callable[[], Any],
        *,
        gate: Any = None,
        audit: Any = None,
        max_question_chars: int = 2000,
    ) -> None:
        self.pipeline_provider = pipeline_provider
        self.gate = gate
        self.audit = audit
        self.max_question_chars = max_question_chars

    async def ask(self, question: str, groups: list[str], *, caller: str, endpoint: str) -> BotReply:
        question = question.strip()
        if not question:
            return BotReply(notice=cards.EMPTY_QUESTION)
        if len(question) > self.max_question_chars:
            return BotReply(notice=cards.TOO_LONG.format(max=self.max_question_chars))
        pipeline = self.pipeline_provider()
        if pipeline is None:
            return BotReply(notice=cards.NOT_READY)
        filters = Filters(groups=list(groups))  # never None: None would mean "no access filtering"
        ticket = None
        if self.gate is not None:
            from service.limits import GateFull

            try:
                ticket = await self.gate.acquire()
            except GateFull:
                return BotReply(notice=cards.BUSY)
        try:
            answer = await asyncio.to_thread(pipeline.ask, question, filters=filters)
        except Exception as exc:
            from rag.llm import LLMUnavailableError

            if isinstance(exc, LLMUnavailableError):
                log.warning("bot: LLM unavailable", extra={"caller": caller})
                return BotReply(notice=cards.BUSY)
            log.exception("bot: answering failed", extra={"caller": caller})
            return BotReply(notice=cards.FAILED)
        finally:
            if ticket is not None:
                self.gate.release(ticket)
        if self.audit is not None:
            try:
                self.audit.record(
                    request_id=uuid.uuid4().hex[:16], caller=caller, endpoint=endpoint, question=question, answer=answer
                )
            except Exception:  # the audit log must never break an answer
                log.exception("bot: audit log failed")
        log.info(
            "bot answer",
            extra={"caller": caller, "endpoint": endpoint, "refused": answer.refused, "answer_id": answer.id,
                   "groups": list(groups), "total_ms": answer.timings.total_ms},
        )
        return BotReply(answer=answer)


def service_state(app: Any) -> Any:
    """The Vraagbaak service's state (service/app.py) when the bots are mounted in it."""
    return getattr(getattr(app, "state", None), "vb", None)


def default_pipeline_provider(app: Any) -> Callable[[], Any]:
    def provider():
        state = service_state(app)
        return getattr(state, "pipeline", None) if state is not None else None

    return provider


def feedback_store(app: Any, feedback: Any = None) -> Any:
    """The store behind ``/v1/feedback``: the given one, the service's, or a new
    :class:`service.feedback.FeedbackStore` in the service's data folder."""
    if feedback is not None:
        return feedback
    state = service_state(app)
    if state is not None and getattr(state, "feedback", None) is not None:
        return state.feedback
    from service.config import ServiceSettings
    from service.feedback import FeedbackStore

    return FeedbackStore(ServiceSettings().feedback_db)
