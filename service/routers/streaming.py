"""What the two streaming endpoints (``/v1/ask/stream``, ``/v1/chat/completions`` with
``stream: true``) share: the Server-Sent Events response and the handling of its end."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from rag.llm import LLMUnavailableError

from ..answering import AnswerService
from ..run import PipelineRun

log = logging.getLogger("vraagbaak.service")

# (code, message, retry_after or None) -> the events that tell the client
ErrorEvents = Callable[[str, str, float | None], Iterable[ServerSentEvent]]


async def run_events(
    answers: AnswerService,
    run: PipelineRun,
    render: Callable[[Any], Iterable[ServerSentEvent]],
    error: ErrorEvents,
    *,
    what: str,
    request_id: str | None,
    end: Iterable[ServerSentEvent] = (),
) -> AsyncIterator[ServerSentEvent]:
    """The run's events as ``render`` turns them into SSE events, then ``end``; a failure
    becomes ``error(...)`` (the stream has started: its status is 200 already). A client
    that goes away mid-stream is counted, and the run stops either way."""
    ended = False  # the stream ran to its end (answer or error event)
    try:
        async for event in run.events():
            for sse in render(event):
                yield sse
        ended = True
        for sse in end:
            yield sse
    except LLMUnavailableError as exc:
        ended = True
        for sse in error(
            "llm_unavailable", "the language model is unavailable; try again later", answers.unavailable(exc)
        ):
            yield sse
    except Exception:
        ended = True
        log.exception("error while streaming %s", what, extra={"request_id": request_id})
        for sse in error("internal", f"internal server error (request id {request_id})", None):
            yield sse
    finally:
        # the client went away mid-stream (one that closes right after the final answer did not)
        if not ended and not run.finished:
            answers.metrics.disconnects.inc()
        run.stop()


def sse_response(events: AsyncIterator[ServerSentEvent], run: PipelineRun) -> EventSourceResponse:
    return EventSourceResponse(
        events,
        ping=15,
        send_timeout=60,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(run.stop),  # if the stream never started
    )
