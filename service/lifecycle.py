"""Running the service under uvicorn with a drain on SIGTERM.

uvicorn's own shutdown closes the listening socket at once: a request that arrives during a
rolling restart gets "connection refused", and the answers in flight get the graceful
timeout. :class:`DrainingServer` puts a drain in front of that. On the first SIGTERM or
SIGINT the service

1. keeps listening, but answers every new request except ``/healthz`` and ``/metrics`` with
   503 ``shutting_down`` + ``Retry-After`` + ``Connection: close`` (``/readyz`` says
   ``draining``, so a load balancer takes the replica out);
2. lets the requests in flight finish — an answer being generated, a stream being sent —
   for at most ``shutdown_grace_s`` seconds;
3. then shuts down as uvicorn does (whatever is still running after the bound is cancelled).

A second signal skips the wait. SIGKILL cannot be caught: nothing is lost by it either (the
index is written as atomic generations, keys and feedback are SQLite in WAL mode), and a
restarted service serves at once (tests/test_faults.py).
"""

from __future__ import annotations

import logging
import time
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("vraagbaak.service")


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains before it shuts down (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, state: Any, grace_s: float) -> None:
        super().__init__(config)
        self.state = state  # service.state.ServiceState: .draining_since, .active_requests
        self.grace_s = grace_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.state.draining_since is not None:  # a second signal: stop waiting
            log.warning("second signal during the drain: shutting down now")
            super().handle_exit(sig, frame)
            return
        self.state.draining_since = time.monotonic()
        log.info(
            "draining: new requests get 503; waiting for %d in flight (at most %.0f s)",
            self.state.active_requests,
            self.grace_s,
        )

    async def on_tick(self, counter: int) -> bool:
        since = self.state.draining_since
        if since is not None and not self.should_exit:
            waited = time.monotonic() - since
            if self.state.active_requests <= 0 or waited >= self.grace_s:
                if self.state.active_requests > 0:
                    log.warning("drain bound reached with %d request(s) in flight", self.state.active_requests)
                else:
                    log.info("drained in %.1f s", waited)
                self.should_exit = True
        return await super().on_tick(counter)


def run_server(app: Any, host: str, port: int, grace_s: float, **config: Any) -> None:
    """Serve ``app`` (a Vraagbaak app: ``app.state.vb``) until SIGTERM/SIGINT, then drain."""
    cfg = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,  # after the drain: what is left gets 5 s more
        proxy_headers=False,
        **config,
    )
    DrainingServer(cfg, app.state.vb, grace_s).run()
