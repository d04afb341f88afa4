"""One pipeline run: ``pipeline.stream()`` in a worker thread behind the LLM gate.

The pipeline is synchronous and CPU-bound, so it runs in a thread of the service's
:class:`service.workers.WorkerPool`; its events cross to the event loop through a queue.
Started through :meth:`service.answering.AnswerService.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from rag.retrieve import Filters
from rag.schema import Citation, DoneEvent, SourcesEvent, Turn

from .errors import ClientClosed, LLMBusy
from .limits import GateFull, LLMGate
from .metrics import Metrics
from .workers import WorkerPool

# True once the asker has gone away (an HTTP client that disconnected)
Disconnected = Callable[[], Awaitable[bool]]

_END = object()


class PipelineRun:
    """One ``pipeline.stream()`` in a worker thread, holding one LLM gate slot until the
    thread has finished. ``stop()`` makes the thread close the generator after the next
    event, which stops the LLM (a client that went away)."""

    def __init__(
        self,
        pipeline: Any,
        question: str,
        history: list[Turn],
        filters: Filters,
        top_k: int | None,
        *,
        gate: LLMGate,
        workers: WorkerPool,
        metrics: Metrics,
        link: Callable[[list[Citation]], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.question = question
        self.history = history
        self.filters = filters
        self.top_k = top_k
        self.gate = gate
        self.workers = workers
        self.metrics = metrics
        self.link = link  # adds the viewer links to the citations (service/links.py)
        self._stop = threading.Event()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future | None = None
        self._ticket: int | None = None
        self.finished = False  # a DoneEvent was delivered

    async def start(self, disconnected: Disconnected | None = None) -> PipelineRun:
        """Take a gate slot (waiting in the bounded queue if needed) and start the thread.
        An asker that goes away while waiting gives its place up."""
        t0 = time.perf_counter()
        try:
            ticket = await self._acquire(disconnected)
        except GateFull as exc:
            self.metrics.rejected.labels(reason=exc.reason).inc()
            raise LLMBusy(exc) from None
        self.metrics.queue_wait.observe(time.perf_counter() - t0)
        self._loop = asyncio.get_running_loop()
        self._ticket = ticket
        try:
            fut = self.workers.submit(self._loop, self._work)
        except BaseException:
            self._release()
            raise
        fut.add_done_callback(self._release)
        self.future = fut
        return self

    def _release(self, _future: asyncio.Future | None = None) -> None:
        """Give the gate slot back, once (on the event loop)."""
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            self.gate.release(ticket)

    async def _acquire(self, disconnected: Disconnected | None) -> int:
        acquiring = asyncio.ensure_future(self.gate.acquire())
        try:
            while True:
                done, _ = await asyncio.wait({acquiring}, timeout=0.25)
                if done:
                    return acquiring.result()
                if disconnected is not None and await disconnected():
                    break
        except BaseException:
            self._abandon(acquiring)
            raise
        self._abandon(acquiring)
        with contextlib.suppress(asyncio.CancelledError, GateFull):
            await acquiring
        self.metrics.disconnects.inc()
        raise ClientClosed("the client closed the request while it waited")

    def _abandon(self, acquiring: asyncio.Future) -> None:
        if not acquiring.cancel() and not acquiring.cancelled() and acquiring.exception() is None:
            self.gate.release(acquiring.result())  # it got a slot just now: give it back

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _put(self, item) -> None:
        assert self._loop is not None  # set by start(), before the work runs
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed (shutdown)
            self._stop.set()

    def _work(self) -> None:
        gen = None
        try:
            if self._stop.is_set():
                return
            gen = self.pipeline.stream(
                self.question,
                history=self.history,
                filters=self.filters,
                top_k=self.top_k,
                should_stop=self._stop.is_set,
            )
            for event in gen:
                self._put(event)
                if self._stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - delivered to the consumer, which raises it
            self._put(exc)
        finally:
            if gen is not None:
                with contextlib.suppress(Exception):
                    gen.close()  # stops the LLM if it is still generating
            self._put(_END)

    async def events(self) -> AsyncIterator[Any]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if self.link is not None:
                if isinstance(item, SourcesEvent):
                    self.link(item.sources)
                elif isinstance(item, DoneEvent):
                    self.link(item.answer.citations)
            if isinstance(item, DoneEvent):
                self.finished = True
            yield item

    async def wait(self) -> None:
        """Wait until the worker thread has finished (the LLM has stopped); its gate slot is
        free when this returns."""
        if self.future is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.future)
            self._release()  # the future's own callback may not have run yet

    async def stop_on_disconnect(self, disconnected: Disconnected, interval: float = 0.25) -> None:
        """For answers that are not streamed: stop generating when the asker goes away."""
        try:
            while not self.stopped:
                if await disconnected():
                    self.stop()
                    self.metrics.disconnects.inc()
                    return
                await asyncio.sleep(interval)
        except asyncio.CancelledError:
            pass
