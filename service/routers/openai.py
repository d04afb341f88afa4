"""OpenAI compatibility: ``POST /v1/chat/completions`` (``stream`` true or false) and
``GET /v1/models``."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette import ServerSentEvent

from rag.schema import DoneEvent, SourcesEvent, TokenEvent, Turn

from ..deps import Answers, Reader, State
from ..errors import error_responses, invalid, request_id
from ..schemas import (
    AskFilters,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatResponseMessage,
    ChatUsage,
    ModelCard,
    ModelList,
    RequestLimits,
)
from ..state import ServiceState
from .streaming import run_events, sse_response

router = APIRouter(tags=["openai"])


def chat_inputs(req: ChatCompletionRequest, limits: RequestLimits) -> tuple[str, list[Turn]]:
    """The question (the last message, which must be the user's) and the history."""
    last = req.messages[-1]
    question = last.text().strip()
    at = ("body", "messages", len(req.messages) - 1)
    if last.role != "user":
        invalid((*at, "role"), "the last message must have role 'user'")
    elif not question:
        invalid((*at, "content"), "the question is empty")
    elif len(question) > limits.max_question_chars:
        invalid((*at, "content"), f"the question is longer than {limits.max_question_chars} characters")
    history = [
        Turn(role=m.role, content=m.text()[: limits.max_turn_chars])
        for m in req.messages[:-1]
        if m.role in ("user", "assistant") and m.text().strip()
    ]
    if limits.max_history_turns:
        history = history[-limits.max_history_turns :]
    else:
        history = []
    return question, history


def _model_name(state: ServiceState) -> str:
    p = state.pipeline
    return p.llm.model_id if p is not None else state.settings.llm


@router.get("/v1/models", response_model=ModelList, responses=error_responses(401, 429))
async def models(caller: Reader, state: State) -> ModelList:
    return ModelList(data=[ModelCard(id=_model_name(state))])


@router.post(
    "/v1/chat/completions",
    summary="OpenAI-compatible chat completions",
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
        **error_responses(400, 401, 413, 422, 429, 503),
    },
)
async def chat_completions(
    req: ChatCompletionRequest, request: Request, caller: Reader, state: State, answers: Answers
) -> Any:
    question, history = chat_inputs(req, answers.limits)
    filters = (req.filters or AskFilters()).to_filters(caller)
    created = int(time.time())
    rid = request_id(request)
    if not req.stream:
        answer = await answers.answer(question, history, filters, req.top_k, disconnected=request.is_disconnected)
        answers.record(question, answer, "chat", caller=caller.name, request_id=rid or "")
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

    run = await answers.start(question, history, filters, req.top_k, disconnected=request.is_disconnected)
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    model = _model_name(state)

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

    def render(event):
        if isinstance(event, SourcesEvent):
            sources = [s.model_dump() for s in event.sources]
            yield chunk({"role": "assistant", "content": ""}, extra={"sources": sources})
        elif isinstance(event, TokenEvent):
            yield chunk({"content": event.text})
        elif isinstance(event, DoneEvent):
            answers.record(question, event.answer, "chat_stream", caller=caller.name, request_id=rid or "")
            yield chunk({}, finish="stop", extra={"answer": event.answer.model_dump(mode="json")})

    def error(code: str, message: str, retry_after: float | None):
        err: dict[str, Any] = {"message": message, "type": "server_error", "code": code}
        if retry_after is not None:
            err["retry_after"] = retry_after
        yield ServerSentEvent(data=json.dumps({"error": err}))
        yield ServerSentEvent(data="[DONE]")

    events = run_events(
        answers, run, render, error, what="a chat completion", request_id=rid, end=[ServerSentEvent(data="[DONE]")]
    )
    return sse_response(events, run)
