"""The worker threads for CPU-heavy work: model loading, answers and ingest.

They run at a lower CPU priority (``ServiceSettings.worker_nice``), and so do the threads
llama.cpp and torch start from them, so the event loop — health checks, metrics,
refusals — always gets the CPU first.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def lower_thread_priority(nice: int) -> None:
    """Raise this thread's nice value (Linux: per thread; needs no privileges)."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    except (OSError, AttributeError):  # pragma: no cover
        pass


class WorkerPool:
    """``size`` threads at nice value ``nice``, started on first use. The service sizes it
    to the LLM gate's capacity + 1: every admitted answer has a thread, and one ingest or
    removal (serialised by a lock) can run beside them."""

    def __init__(self, size: int, nice: int = 0) -> None:
        self.size = max(1, size)
        self.nice = nice
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.size,
                    thread_name_prefix="vraagbaak-worker",
                    initializer=lower_thread_priority,
                    initargs=(self.nice,),
                )
            return self._executor

    def submit(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in a worker; an asyncio future of ``loop``."""
        return loop.run_in_executor(self.executor(), fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker and wait for its result."""
        return await self.submit(asyncio.get_running_loop(), fn, *args)

    def shutdown(self) -> None:
        """Stop the threads (queued work is cancelled, running work is not waited for); a
        later use starts new ones."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
