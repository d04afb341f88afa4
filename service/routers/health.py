"""``GET /healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ..deps import State
from ..metrics import CONTENT_TYPE_LATEST
from ..schemas import Health, Ready

log = logging.getLogger("vraagbaak.service")
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Models loaded and index open",
    responses={503: {"model": Ready, "description": "Not ready (loading or failed)"}},
)
async def readyz(state: State) -> Any:
    if state.draining_since is not None:  # SIGTERM: take this replica out of the balancer
        return JSONResponse(Ready(status="draining").model_dump(), status_code=503, headers={"Retry-After": "5"})
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
        status="ready",
        index_generation=snap.name,
        index_damaged=getattr(snap, "fallback_from", None),
        llm=p.llm.model_id,
        embedder=p.retriever.embedder.model_id,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics_endpoint(state: State) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
