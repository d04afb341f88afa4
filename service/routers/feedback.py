"""``POST /v1/feedback`` and ``GET /v1/feedback/export`` (admin, JSON lines)."""

from __future__ import annotations

import io

import anyio
from fastapi import APIRouter
from fastapi.responses import Response

from ..deps import Admin, Reader, State
from ..errors import error_responses
from ..schemas import FeedbackRequest, FeedbackStored

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/feedback",
    response_model=FeedbackStored,
    status_code=201,
    summary="Rate an answer",
    responses=error_responses(400, 401, 413, 422, 429),
)
async def feedback(req: FeedbackRequest, caller: Reader, state: State) -> FeedbackStored:
    fid = await anyio.to_thread.run_sync(
        lambda: state.feedback.add(req.answer_id, req.rating, (req.comment or "").strip() or None, caller.name)
    )
    return FeedbackStored(id=fid)


@router.get(
    "/v1/feedback/export",
    summary="All feedback as JSON lines (admin)",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}}}, **error_responses(401, 403, 429)},
)
async def feedback_export(caller: Admin, state: State) -> Response:
    def dump() -> str:
        buf = io.StringIO()
        state.feedback.export_jsonl(buf, audit=state.audit)
        return buf.getvalue()

    return Response(await anyio.to_thread.run_sync(dump), media_type="application/x-ndjson")
