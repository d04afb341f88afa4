"""The one error shape of the API, and the exception handlers that produce it.

Every error response is::

    {"error": {"code": "rate_limited", "message": "…", "request_id": "…"}}

(validation errors add ``details``: ``[{"loc": [...], "msg": "…", "type": "…"}]``). The
message is English (API audience). A 500 says only "internal server error" and the
request id; the traceback goes to the log under the same id.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def error_response(
    request: Request, status: int, code: str, message: str, headers=None, details=None
) -> JSONResponse:
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

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.error(
            "unhandled error",
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"request_id": request_id(request), "path": request.url.path},
        )
        return error_response(request, 500, "internal", "internal server error")
