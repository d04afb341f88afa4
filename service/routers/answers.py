"""``POST /v1/ask`` and ``POST /v1/ask/stream``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from rag.schema import Answer, DoneEvent, ErrorEvent

from ..deps import Answers, Reader
from ..errors import error_responses, request_id
from ..schemas import AskFilters, AskRequest
from .streaming import run_events, sse_response

router = APIRouter(tags=["answers"])


@router.post(
    "/v1/ask", response_model=Answer, summary="Ask a question", responses=error_responses(400, 401, 413, 422, 429, 503)
)
async def ask(req: AskRequest, request: Request, caller: Reader, answers: Answers) -> Answer:
    filters = (req.filters or AskFilters()).to_filters(caller)
    answer = await answers.answer(req.question, req.history, filters, req.top_k, disconnected=request.is_disconnected)
    answers.record(req.question, answer, "ask", caller=caller.name, request_id=request_id(request) or "")
    return answer


@router.post(
    "/v1/ask/stream",
    summary="Ask a question, streamed as Server-Sent Events",
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
        **error_responses(400, 401, 413, 422, 429, 503),
    },
)
async def ask_stream(req: AskRequest, request: Request, caller: Reader, answers: Answers):
    filters = (req.filters or AskFilters()).to_filters(caller)
    run = await answers.start(req.question, req.history, filters, req.top_k, disconnected=request.is_disconnected)
    rid = request_id(request)

    def render(event):
        if isinstance(event, DoneEvent):
            answers.record(req.question, event.answer, "ask_stream", caller=caller.name, request_id=rid or "")
        yield ServerSentEvent(event=event.type, data=event.model_dump_json())

    def error(code: str, message: str, retry_after: float | None):
        err = ErrorEvent(code=code, message=message, retry_after=retry_after)
        yield ServerSentEvent(event="error", data=err.model_dump_json())

    return sse_response(run_events(answers, run, render, error, what="an answer", request_id=rid), run)
