"""Load limits: a per-key token-bucket rate limit, and the LLM gate.

The LLM is the scarce resource. :class:`LLMGate` lets at most ``capacity`` generations run
at once and at most ``max_waiting`` requests wait for a slot (each at most ``timeout``
seconds); a request beyond that is refused at once with :class:`GateFull` (the service
answers 503 + Retry-After). Nothing piles up without bound, and refusing costs nothing, so
health checks and metrics stay responsive while the LLM is busy.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

# --------------------------------------------------------------------------- rate limit


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per key: ``burst`` requests at once, refilled at ``per_minute``/60 per second.

    ``per_minute == 0`` disables it."""

    def __init__(self, per_minute: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1, int(burst))
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def hit(self, key: str, cost: float = 1.0, now: float | None = None) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 if allowed, else the seconds to wait."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_keys:
                    self._prune(now)
                b = self._buckets[key] = _Bucket(float(self.burst), now)
            b.tokens = min(float(self.burst), b.tokens + (now - b.updated) * self.rate)
            b.updated = now
            if b.tokens >= cost:
                b.tokens -= cost
                return 0.0
            return (cost - b.tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:  # still full: drop the oldest
            for k in sorted(self._buckets, key=lambda k: self._buckets[k].updated)[: len(self._buckets) // 2]:
                del self._buckets[k]


def retry_after_header(seconds: float) -> str:
    """Retry-After is whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


# --------------------------------------------------------------------------- LLM gate


class GateFull(Exception):
    """No slot and no room to wait (or the wait timed out)."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason  # "queue_full" | "queue_timeout"
        self.retry_after = retry_after


class LLMGate:
    """Bounded concurrency + bounded waiting queue, for one event loop.

    Use ``await gate.acquire()`` … ``gate.release()`` (release may be called from any
    thread: it is scheduled on the gate's loop). ``in_flight`` and ``waiting`` are
    exported as metrics.
    """

    def __init__(self, capacity: int, max_waiting: int, timeout: float) -> None:
        self.capacity = max(1, capacity)
        self.max_waiting = max(0, max_waiting)
        self.timeout = timeout
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._durations: deque[float] = deque(maxlen=20)  # seconds per generation
        self._started: dict[int, float] = {}
        self._tickets = itertools.count(1)

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def typical_duration(self) -> float:
        if not self._durations:
            return 10.0
        return sorted(self._durations)[len(self._durations) // 2]

    def retry_after(self) -> float:
        """A fair guess of when a slot frees up for a newcomer: the queue ahead drains."""
        ahead = self.waiting + 1
        return min(120.0, max(1.0, self.typical_duration() * ahead / self.capacity))

    async def acquire(self) -> int:
        """Wait for a slot (bounded); returns a ticket for :meth:`release`. Raises GateFull."""
        self._loop = asyncio.get_running_loop()
        if self.in_flight < self.capacity and not self._waiters:
            return self._take()
        if self.waiting >= self.max_waiting:
            raise GateFull("queue_full", self.retry_after())
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except TimeoutError:
            if fut.done() and not fut.cancelled():  # the slot arrived at the last moment: pass it on
                self._release_slot()
            else:
                fut.cancel()
            raise GateFull("queue_timeout", self.retry_after()) from None
        except BaseException:  # cancelled while waiting (client went away)
            if fut.done() and not fut.cancelled():
                self._release_slot()
            else:
                fut.cancel()
            raise
        finally:
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass
        return self._ticket()

    def _take(self) -> int:
        self.in_flight += 1
        return self._ticket()

    def _ticket(self) -> int:
        t = next(self._tickets)
        self._started[t] = time.monotonic()
        return t

    def release(self, ticket: int | None = None) -> None:
        """Give the slot back (thread-safe)."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            loop.call_soon_threadsafe(self._release, ticket)
        else:
            self._release(ticket)

    def _release(self, ticket: int | None) -> None:
        started = self._started.pop(ticket, None) if ticket is not None else None
        if started is not None:
            self._durations.append(time.monotonic() - started)
        self._release_slot()

    def _release_slot(self) -> None:
        # hand the slot directly to the first live waiter (in_flight stays the same)
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return
        self.in_flight = max(0, self.in_flight - 1)
