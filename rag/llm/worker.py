"""Run an LLM backend in a child process, so that a crash of native code becomes an error.

llama.cpp is C++ running in the caller's address space: a fault in one of its kernels
(seen: a general protection fault in llama.cpp's AMX path on a virtual machine) kills the
whole process — with the in-process backend, the API itself.  ``ProcessLLM`` is an
``LLMBackend`` whose model lives in a worker process (``multiprocessing`` "spawn"); the
caller talks to it over a pipe:

* ``stream_chat`` streams the worker's deltas; closing the stream early sends a cancel and
  waits until the worker has stopped decoding (the same contract as the in-process backend);
* ``count_tokens`` is answered by the worker while a generation runs (a second thread);
* when the worker dies — a signal, an abort, the OOM killer — every call in flight raises
  ``LLMUnavailableError`` (the API answers 503 with ``Retry-After``; a stream gets an
  ``error`` event), the death is logged with its signal, and the next call starts a new
  worker.  A worker that keeps dying right after start is restarted with a growing pause
  (``Retry-After`` says how long), so a broken build does not turn into a restart loop.

The cost is one pickled message per token over a local pipe (tens of microseconds against
~60 ms per decoded token on 2 cores) and a second Python interpreter (~100 MB); the model's
memory moves to the worker rather than doubling.  ``settings.llm_worker`` chooses it:
``auto`` runs the native in-process backends (``llama_cpp``) in a worker and the others
(``openai``: only HTTP) inline; ``process`` / ``inline`` force one way.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import queue
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from .base import (
    BackendLoadError,
    ChatMixin,
    ContextLengthError,
    GenerationParams,
    LLMError,
    LLMUnavailableError,
    Message,
    acquire_model,
)

log = logging.getLogger(__name__)

__all__ = ["ProcessLLM", "describe_exit"]

# errors that cross the pipe keep their type
_ERRORS: dict[str, type[LLMError]] = {
    "ContextLengthError": ContextLengthError,
    "LLMUnavailableError": LLMUnavailableError,
    "LLMError": LLMError,
}


def describe_exit(exitcode: int | None) -> str:
    """'signal SIGSEGV', 'exit status 1', … for a child's ``exitcode``."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


# --------------------------------------------------------------------------- the worker


def _worker_main(conn, target: str, settings_data: dict[str, Any]) -> None:  # pragma: no cover - child
    """The child: build the backend, then serve requests until the pipe closes."""
    from rag.settings import Settings

    from .base import _import_string

    # Ctrl-C in a terminal reaches the whole process group: the parent decides; this
    # process ends when the parent closes the pipe (or exits)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()

    def send(*msg: Any) -> None:
        with send_lock:
            conn.send(msg)

    try:
        settings = Settings(**settings_data)
        factory = _import_string(target)
        build = getattr(factory, "from_settings", None) or factory
        backend = build(settings)
    except BaseException as exc:  # reported to the parent, which raises it
        send("load_error", type(exc).__name__, str(exc))
        return
    send("ready", backend.model_id, int(backend.context_window), bool(getattr(backend, "keeps_prefix", False)))

    jobs: queue.Queue = queue.Queue()
    cancelled: set[int] = set()

    def generate() -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            rid, messages, params = job
            gen = None
            try:
                gen = backend.stream_chat(messages, GenerationParams(**params))
                for delta in gen:
                    if rid in cancelled:
                        break
                    send("delta", rid, delta)
                send("end", rid)
            except LLMError as exc:
                # the nearest type the parent knows: a timeout stays "unavailable" (503)
                name = next(n for n, t in _ERRORS.items() if isinstance(exc, t))
                send("error", rid, name, str(exc), getattr(exc, "retry_after", None))
            except Exception as exc:
                send("error", rid, "LLMError", f"{type(exc).__name__}: {exc}", None)
            finally:
                if gen is not None:
                    gen.close()
                cancelled.discard(rid)

    threading.Thread(target=generate, name="llm-generate", daemon=True).start()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        op = msg[0]
        if op == "chat":
            jobs.put(msg[1:])
        elif op == "cancel":
            cancelled.add(msg[1])
        elif op == "count":
            try:
                send("count", msg[1], backend.count_tokens(msg[2]))
            except Exception as exc:
                send("error", msg[1], "LLMError", f"count_tokens: {exc}", None)
        elif op == "stop":
            break
    jobs.put(None)


# --------------------------------------------------------------------------- the parent side


class _Worker:
    """One live child process and the thread that routes its replies."""

    def __init__(self, target: str, settings_data: dict[str, Any], start_timeout: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child_conn, target, settings_data), name="vraagbaak-llm", daemon=True
        )
        self.started = time.monotonic()
        self.process.start()
        child_conn.close()
        self._send_lock = threading.Lock()
        self._pending: dict[int, queue.Queue] = {}
        self._pending_lock = threading.Lock()
        self.dead = threading.Event()
        self.exit_reason = ""
        self.recorded = False  # its death was counted by ProcessLLM
        # wait for the model to load
        if not self.conn.poll(start_timeout):
            self.kill()
            raise LLMError(f"the LLM worker did not load the model within {start_timeout:.0f} s")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            self.dead.set()
            raise LLMError(
                f"the LLM worker died while loading the model ({describe_exit(self.process.exitcode)})"
            ) from None
        if msg[0] == "load_error":
            self.process.join(5)
            self.dead.set()
            if msg[1] in ("ImportError", "ModuleNotFoundError", "BackendLoadError"):
                raise BackendLoadError(msg[2])
            raise _ERRORS.get(msg[1], LLMError)(msg[2])
        _, self.model_id, self.context_window, self.keeps_prefix = msg
        self._reader = threading.Thread(target=self._read, name="llm-worker-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            with self._pending_lock:
                q = self._pending.get(msg[1])
            if q is not None:
                q.put(msg)
        self.process.join(10)
        self.exit_reason = describe_exit(self.process.exitcode)
        self.dead.set()
        with self._pending_lock:
            pending = list(self._pending.values())
        for q in pending:
            q.put(("dead",))

    def open(self, rid: int) -> queue.Queue:
        q: queue.Queue = queue.Queue()
        with self._pending_lock:
            self._pending[rid] = q
        if self.dead.is_set():
            q.put(("dead",))
        return q

    def close_request(self, rid: int) -> None:
        with self._pending_lock:
            self._pending.pop(rid, None)

    def send(self, *msg: Any) -> None:
        try:
            with self._send_lock:
                self.conn.send(msg)
        except (OSError, ValueError, BrokenPipeError):
            pass  # the reader sees the death and fails the request

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
        self.dead.set()

    def stop(self, timeout: float = 10.0) -> None:
        self.send("stop")
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill()
        self.conn.close()


class ProcessLLM(ChatMixin):
    """An ``LLMBackend`` whose model runs in a worker process (see the module docstring).

    ``target`` is the backend factory as ``"module:attribute"`` (importable in a fresh
    interpreter); ``settings`` are passed to it there."""

    def __init__(
        self,
        target: str,
        settings: Any,
        *,
        start_timeout: float = 600.0,
        lock_timeout: float | None = None,
        restart_backoff: float = 5.0,
        max_backoff: float = 300.0,
        request_timeout: float = 600.0,
    ) -> None:
        self.target = target
        self._settings_data = settings.model_dump(mode="python")
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self.restart_backoff = restart_backoff
        self.max_backoff = max_backoff
        self.request_timeout = request_timeout
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # one generation at a time, as in-process
        self._start_lock = threading.Lock()
        self._crashes = 0  # consecutive deaths soon after start
        self._not_before = 0.0  # no restart before this (monotonic)
        self.restarts = 0
        self.deaths: list[str] = []  # exit reasons, for /readyz and the tests
        self._worker: _Worker | None = _Worker(target, self._settings_data, start_timeout)
        self.model_id: str = self._worker.model_id
        self.context_window: int = self._worker.context_window
        self.keeps_prefix: bool = self._worker.keeps_prefix

    # ---------------------------------------------------------------- the worker's life

    @property
    def pid(self) -> int | None:
        w = self._worker
        return w.process.pid if w is not None and not w.dead.is_set() else None

    def _alive_worker(self) -> _Worker:
        """The live worker; a new one if the last one died (LLMUnavailableError while the
        restart pause runs or when the restart fails)."""
        with self._start_lock:
            w = self._worker
            if w is not None and not w.dead.is_set():
                return w
            if w is not None:
                self._record_death(w)
                self._worker = None
            wait = self._not_before - time.monotonic()
            if wait > 0:
                raise LLMUnavailableError(
                    f"the local LLM process stopped ({self.deaths[-1] if self.deaths else 'unknown'}); "
                    f"restarting in {wait:.0f} s",
                    retry_after=wait,
                )
            log.warning("starting a new LLM worker (%s)", self.target)
            try:
                w = _Worker(self.target, self._settings_data, self.start_timeout)
            except LLMError as exc:
                self._crashes += 1
                pause = self._backoff()
                self._not_before = time.monotonic() + pause
                log.error("the LLM worker could not be restarted: %s", exc)
                raise LLMUnavailableError(f"the local LLM could not be restarted: {exc}", retry_after=pause) from exc
            self.restarts += 1
            self._worker = w
            return w

    def _backoff(self) -> float:
        return min(self.max_backoff, self.restart_backoff * (2 ** max(0, self._crashes - 1)))

    def _record_death(self, w: _Worker) -> None:
        if w.recorded:
            return
        w.recorded = True
        reason = w.exit_reason or describe_exit(w.process.exitcode)
        self.deaths.append(reason)
        lived = time.monotonic() - w.started
        # a worker that dies within a minute of starting counts towards the pause
        self._crashes = self._crashes + 1 if lived < 60 else 1
        self._not_before = time.monotonic() + (self._backoff() if self._crashes > 1 else 0.0)
        log.error(
            "the LLM worker (pid %s, %s) died: %s; the request in flight got 503, the next one starts a new worker",
            w.process.pid,
            self.target,
            reason,
        )

    def _died(self, w: _Worker) -> LLMUnavailableError:
        with self._start_lock:
            if self._worker is w:
                self._record_death(w)
                self._worker = None
        return LLMUnavailableError(
            f"the local LLM process stopped ({w.exit_reason or 'died'}); it is being restarted",
            retry_after=max(self.restart_backoff, self._not_before - time.monotonic()),
        )

    def close(self) -> None:
        with self._start_lock:
            w, self._worker = self._worker, None
        if w is not None:
            w.stop()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass

    # ---------------------------------------------------------------- LLMBackend

    def stream_chat(self, messages: list[Message], params: GenerationParams | None = None) -> Iterator[str]:
        params = params or GenerationParams()
        acquire_model(self._lock, self.lock_timeout)
        try:
            w = self._alive_worker()
        except BaseException:
            self._lock.release()
            raise
        return self._stream(w, list(messages), params)

    def _stream(self, w: _Worker, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        rid = next(self._ids)
        q = w.open(rid)
        done = False
        try:
            w.send("chat", rid, messages, asdict(params))
            while True:
                msg = self._get(q, w)
                op = msg[0]
                if op == "delta":
                    yield msg[2]
                elif op == "end":
                    done = True
                    return
                elif op == "error":
                    done = True
                    err = _ERRORS.get(msg[2], LLMError)
                    if err is LLMUnavailableError:
                        raise LLMUnavailableError(msg[3], retry_after=msg[4])
                    raise err(msg[3])
                elif op == "dead":
                    done = True
                    raise self._died(w)
        finally:
            if not done:  # closed early: stop the worker's decoding before the next caller
                w.send("cancel", rid)
                deadline = time.monotonic() + self.request_timeout
                while time.monotonic() < deadline:
                    try:
                        msg = q.get(timeout=1.0)
                    except queue.Empty:
                        if w.dead.is_set():
                            break
                        continue
                    if msg[0] in ("end", "error", "dead"):
                        break
            w.close_request(rid)
            self._lock.release()

    def _get(self, q: queue.Queue, w: _Worker):
        try:
            return q.get(timeout=self.request_timeout)
        except queue.Empty:
            w.kill()  # hung: the next call starts a new worker
            raise LLMUnavailableError(
                f"the local LLM did not answer within {self.request_timeout:.0f} s; it is being restarted",
                retry_after=self.restart_backoff,
            ) from None

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        w = self._alive_worker()
        rid = next(self._ids)
        q = w.open(rid)
        try:
            w.send("count", rid, text)
            msg = self._get(q, w)
            if msg[0] == "count":
                return int(msg[2])
            if msg[0] == "dead":
                raise self._died(w)
            raise LLMError(msg[3])
        finally:
            w.close_request(rid)
