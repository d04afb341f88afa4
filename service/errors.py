"""The one error shape of the API, and the exception handlers that produce it.

Every error response is::

    {"error": {"code": "rate_limited", "message": "…", "request_id": "…"}}

(validation errors add ``details``: ``[{"loc": [...], "msg": "…", "type": "…"}]``). The
message is English (API audience). A 500 says only "internal server error" and the
request id; the traceback goes to the log under the same id.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .limits import GateFull, retry_after_header
from .stores import StateUnavailable

log = logging.getLogger("vraagbaak.service")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


STATE_RETRY_AFTER = "5"  # seconds: a restarting database is usually back by then


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str | None = None
    details: list[dict] | None = None


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


class ApiError(StarletteHTTPException):
    """An HTTP error with a machine-readable ``code``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


class NotReady(ApiError):
    """No pipeline: the models are still loading (503 + Retry-After), or failed to load."""

    def __init__(self, failed: bool = False) -> None:
        if failed:
            super().__init__(503, "not_ready", "the service failed to load its models; see the server log")
        else:
            super().__init__(503, "not_ready", "the models are still loading", headers={"Retry-After": "10"})


class LLMBusy(ApiError):
    """The LLM gate refused: its queue is full, or the wait for a slot timed out."""

    def __init__(self, exc: GateFull) -> None:
        why = " (queue full)" if exc.reason == "queue_full" else " (waited too long)"
        super().__init__(
            503,
            "llm_busy",
            "the language model is busy; try again later" + why,
            headers={"Retry-After": retry_after_header(exc.retry_after)},
        )


class LLMUnavailable(ApiError):
    """The LLM backend said it is overloaded or unreachable (rag.llm.LLMUnavailableError)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            503,
            "llm_unavailable",
            "the language model is unavailable; try again later",
            headers={"Retry-After": retry_after_header(retry_after)},
        )


class ClientClosed(ApiError):
    """The client went away before its answer was ready (nobody reads this response)."""

    def __init__(self, message: str = "the client closed the request") -> None:
        super().__init__(499, "client_closed", message)


_DESCRIPTIONS = {
    400: "Malformed body (e.g. not UTF-8)",
    401: "Missing, invalid or revoked API key",
    403: "Needs an admin key",
    404: "Not found (or not visible to this key)",
    409: "Another ingest is running",
    413: "Body too large",
    422: "Invalid request",
    429: "Rate limit exceeded (see Retry-After)",
    503: "The LLM is busy or unavailable, the models are loading, or the database is unreachable (see Retry-After)",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route for these error statuses."""
    return {c: {"model": ErrorResponse, "description": _DESCRIPTIONS[c]} for c in codes}


def invalid(loc: tuple, msg: str, type_: str = "value_error") -> NoReturn:
    """Raise a 422 in the same shape as FastAPI's own validation errors."""
    raise RequestValidationError([{"loc": loc, "msg": msg, "type": type_}])


def request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def error_response(request: Request, status: int, code: str, message: str, headers=None, details=None) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": request_id(request)}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _loc(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = getattr(exc, "code", None) or _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "not found"
        return error_response(request, exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        details = []
        for e in exc.errors():
            msg = e.get("msg", "invalid")
            if e.get("type") == "json_invalid":
                err = (e.get("ctx") or {}).get("error")
                msg = f"invalid JSON: {err}" if err else "invalid JSON"
            details.append({"loc": [str(p) for p in e.get("loc", ())], "msg": msg, "type": e.get("type", "")})
        message = "; ".join(f"{_loc(d['loc'])}: {d['msg']}" for d in details[:5]) or "invalid request"
        # never echo the input back (it may be a long question or personal data)
        return error_response(request, 422, "validation_error", message, details=details)

    @app.exception_handler(StateUnavailable)
    async def _state_unavailable(request: Request, exc: StateUnavailable):
        # the database of keys, feedback, audit log and rate limits (PostgreSQL) cannot be reached:
        # a clear 503 the client may retry, and one log line (no traceback)
        log.error("state database unavailable", extra={"request_id": request_id(request), "error": str(exc)})
        return error_response(
            request,
            503,
            "state_unavailable",
            "the service's database is unavailable; try again later",
            headers={"Retry-After": STATE_RETRY_AFTER},
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.error(
            "unhandled error",
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"request_id": request_id(request), "path": request.url.path},
        )
        return error_response(request, 500, "internal", "internal server error")
