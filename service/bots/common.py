"""What the Slack and Teams bots share: answering a question through the service's
answering service (with the bot's access groups), a bounded TTL cache for de-duplication,
and where feedback goes."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cachetools

from rag.retrieve import Filters
from rag.schema import Answer
from service.answering import AnswerService
from service.errors import LLMBusy, LLMUnavailable, NotReady

from . import cards

log = logging.getLogger("vraagbaak.bots")


class TTLCache:
    """A set of recently seen keys (event ids, message ids): at most ``max_items``, each
    kept ``ttl`` seconds (``cachetools.TTLCache`` under a lock). Thread-safe."""

    def __init__(self, ttl: float = 3600.0, max_items: int = 10_000) -> None:
        self._items: cachetools.TTLCache[str, bool] = cachetools.TTLCache(maxsize=max_items, ttl=ttl)
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def add(self, key: str) -> bool:
        """Remember ``key``; False when it was already there (a duplicate)."""
        with self._lock:
            if key in self._items:
                return False
            self._items[key] = True
            return True

    def __len__(self) -> int:
        with self._lock:
            self._items.expire()
            return len(self._items)


@dataclass
class BotReply:
    """The outcome of a question: an answer, or a notice (busy, not ready, failed)."""

    answer: Answer | None = None
    notice: str | None = None


class BotAnswerer:
    """A bot's questions, answered by the service's :class:`service.answering.AnswerService`
    (the same LLM gate, lower-priority worker pool, metrics and audit log as the HTTP API),
    always with a group filter, so a bot sees public documents plus its configured groups
    and never more. What goes wrong becomes a notice for the user (service/bots/cards.py).

    Cancelling :meth:`ask` stops the generation (the asker is gone)."""

    def __init__(self, answers: AnswerService) -> None:
        self.answers = answers

    async def ask(self, question: str, groups: list[str], *, caller: str, endpoint: str) -> BotReply:
        question = question.strip()
        if not question:
            return BotReply(notice=cards.EMPTY_QUESTION)
        max_chars = self.answers.limits.max_question_chars
        if len(question) > max_chars:
            return BotReply(notice=cards.TOO_LONG.format(max=max_chars))
        filters = Filters(groups=list(groups))  # never None: None would mean "no access filtering"
        try:
            answer = await self.answers.answer(question, [], filters)
        except NotReady:
            return BotReply(notice=cards.NOT_READY)
        except LLMBusy:
            return BotReply(notice=cards.BUSY)
        except LLMUnavailable:
            log.warning("bot: LLM unavailable", extra={"caller": caller})
            return BotReply(notice=cards.BUSY)
        except Exception:
            log.exception("bot: answering failed", extra={"caller": caller})
            return BotReply(notice=cards.FAILED)
        self.answers.record(question, answer, endpoint, caller=caller, request_id=uuid.uuid4().hex[:16])
        log.info(
            "bot answer",
            extra={
                "caller": caller,
                "endpoint": endpoint,
                "refused": answer.refused,
                "answer_id": answer.id,
                "groups": list(groups),
                "total_ms": answer.timings.total_ms,
            },
        )
        return BotReply(answer=answer)


def service_state(app: Any) -> Any:
    """The Vraagbaak service's state (service/state.py) when the bots are mounted in it."""
    return getattr(app.state, "vb", None)


def answer_service(
    app: Any, answers: AnswerService | None = None, pipeline_provider: Callable[[], Any] | None = None
) -> AnswerService:
    """The answering service of a bot: the given one, else the Vraagbaak service's
    (``app.state.vb.answers``), else a new one as the settings say; with
    ``pipeline_provider`` (returns the pipeline, None while loading) over that pipeline."""
    if answers is None:
        state = service_state(app)
        if state is not None:
            answers = state.answers
        else:
            from rag.settings import Settings
            from service.config import ServiceSettings

            answers = AnswerService.from_settings(Settings(), ServiceSettings(), pipeline_provider or _no_pipeline)
    return answers.with_pipeline(pipeline_provider) if pipeline_provider is not None else answers


def _no_pipeline() -> None:
    return None


def feedback_store(app: Any, feedback: Any = None) -> Any:
    """The store behind ``/v1/feedback``: the given one, the service's, or a new
    store where the service keeps it (service/stores.py: the data folder, or PostgreSQL)."""
    if feedback is not None:
        return feedback
    state = service_state(app)
    if state is not None:
        return state.feedback
    from rag.settings import Settings
    from service.config import ServiceSettings
    from service.stores import ServiceStores

    return ServiceStores(Settings(), ServiceSettings()).feedback()
