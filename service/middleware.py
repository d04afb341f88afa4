"""The service's ASGI middleware: request id, body size limit, request limits, metrics and
one log line per request."""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi.responses import JSONResponse

from .schemas import request_limits
from .state import ServiceState

log = logging.getLogger("vraagbaak.service")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_NOT_COUNTED = frozenset({"/healthz", "/readyz", "/metrics"})  # answered during a drain, not waited for


class ServiceMiddleware:
    """Request id, JSON body size limit (by Content-Length), the request limits the bodies
    are validated against (service/schemas.py), metrics and one log line per request.
    Never logs bodies or query strings."""

    def __init__(self, app, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        status_holder = {"status": 500, "started": False}

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                hdrs = list(message.get("headers") or [])
                hdrs.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": hdrs}
            await send(message)

        path = scope.get("path")
        counted = path not in _NOT_COUNTED
        if counted and self.state.draining_since is not None:
            await self._shutting_down(scope, receive, send_wrapped)
            return
        if counted:
            self.state.active_requests += 1
        try:
            limit = self._limit(scope)
            cl = headers.get(b"content-length")
            if cl is not None and cl.isdigit() and int(cl) > limit:
                await self._too_large(scope, receive, send_wrapped, limit)
            else:
                with request_limits(self.state.answers.limits):
                    await self.app(scope, receive, send_wrapped)
        except Exception as exc:
            log.error(
                "unhandled error",
                exc_info=(type(exc), exc, exc.__traceback__),
                extra={"request_id": rid, "path": scope.get("path")},
            )
            if status_holder["started"]:
                raise  # mid-stream: let the server drop the connection
            body = {"error": {"code": "internal", "message": "internal server error", "request_id": rid}}
            await JSONResponse(body, status_code=500)(scope, receive, send_wrapped)
        finally:
            if counted:
                self.state.active_requests -= 1
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            seconds = time.perf_counter() - t0
            status = status_holder["status"]
            self.state.metrics.observe_request(scope["method"], endpoint, status, seconds)
            if endpoint not in ("/healthz", "/metrics", "/readyz") or status >= 400:
                log.info(
                    "request",
                    extra={
                        "request_id": rid,
                        "method": scope["method"],
                        "path": scope.get("path"),
                        "endpoint": endpoint,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 1),
                        "caller": scope.get("state", {}).get("caller"),
                    },
                )

    async def _shutting_down(self, scope, receive, send) -> None:
        """503 during the drain (service/lifecycle.py): another replica, or this one after
        its restart, answers the retry."""
        body = {
            "error": {
                "code": "shutting_down",
                "message": "the service is shutting down; retry in a few seconds",
                "request_id": scope["state"]["request_id"],
            }
        }
        headers = {"Retry-After": "5", "Connection": "close"}
        await JSONResponse(body, status_code=503, headers=headers)(scope, receive, send)

    def _limit(self, scope) -> int:
        if scope["method"] == "POST" and scope.get("path") == "/v1/documents":
            return self.state.cfg.max_upload_bytes + 64 * 1024  # multipart overhead
        return self.state.cfg.max_body_bytes

    async def _too_large(self, scope, receive, send, limit: int) -> None:
        body = {
            "error": {
                "code": "too_large",
                "message": f"request body too large (at most {limit} bytes)",
                "request_id": scope["state"]["request_id"],
            }
        }
        await JSONResponse(body, status_code=413, headers={"Connection": "close"})(scope, receive, send)
