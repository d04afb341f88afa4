"""Parse files in a worker process, so that a hostile file costs one file, not the service.

:class:`IsolatedParser` is called like :func:`rag.ingest.parsers.parse_file` and returns the
same :class:`Document`; the parse runs in a child process, a fresh interpreter (no copy of
the caller's threads or models) that talks to the caller over a socket pair with
``multiprocessing.connection`` (pickles), and that

* has an address-space limit (``RLIMIT_AS``, ``parse_memory_mb``): an allocation past it is
  a ``MemoryError`` in the child, never a swapping or OOM-killed service;
* is killed when one parse takes longer than ``parse_timeout_s``;
* is replaced after any death (a signal such as SIGSEGV, the OOM killer, an abort).

Each of these becomes an :class:`IngestError` ("parser timed out after 60 s (parse_timeout_s)",
"parser ran out of memory (parse_memory_mb=2048)", "parser crashed (killed by SIGSEGV)"), and
the next file gets a fresh worker. The worker is started on the first parse and kept for the
following ones (a pipe round trip per file, the Document pickled back); :meth:`close` (or
``with``) ends it. One parse at a time per parser (a lock), safe to share between threads.

The worker is started as ``python -c`` with the caller's ``sys.path`` rather than by
``multiprocessing``'s "spawn", which runs the caller's main script again in the child: a script
that calls ``ingest_paths`` without an ``if __name__ == "__main__"`` guard would ingest again
in every worker. ``parse`` (default :func:`parse_file`) must be picklable: a module-level function.

:func:`make_parser` picks it or the in-process parse from ``settings.parse_isolation``.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rag.ingest.errors import IngestError
from rag.ingest.limits import ParseLimits
from rag.ingest.parsers import OUT_OF_MEMORY, parse_file
from rag.types import Document

log = logging.getLogger(__name__)

__all__ = ["IsolatedParser", "make_parser"]

ParseFn = Callable[..., Document]


def _limit_memory(memory_mb: int) -> None:
    import resource

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind


def _peak_rss_kb(pid: int | str = "self") -> int:
    """A process's peak resident memory (kB): VmHWM, which starts afresh at exec (ru_maxrss
    would carry the parent's peak over from the fork that spawned the worker)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    if pid != "self":
        return 0
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _serve(fd: int) -> None:
    """The worker's main: the parse function and memory limit come first, then each request
    is answered ("ok", Document, peak kB) or ("error", reason, peak kB)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which ends us
    conn = Connection(fd)
    try:
        parse, memory_mb = conn.recv()
    except (EOFError, OSError):
        return
    _limit_memory(memory_mb)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        args, kwargs = request
        try:
            reply: tuple[str, Any] = ("ok", parse(*args, **kwargs))
        except IngestError as exc:
            reason = exc.reason
            if reason == OUT_OF_MEMORY:
                reason = f"{OUT_OF_MEMORY} (parse_memory_mb={memory_mb})"
            reply = ("error", reason)
        except MemoryError:
            reply = ("error", f"{OUT_OF_MEMORY} (parse_memory_mb={memory_mb})")
        except BaseException as exc:  # a parse function that breaks the IngestError contract
            reply = ("error", f"parser failed: {type(exc).__name__}: {exc}")
        try:
            conn.send((*reply, _peak_rss_kb()))
        except MemoryError:
            conn.send(("error", f"{OUT_OF_MEMORY} (parse_memory_mb={memory_mb})", _peak_rss_kb()))
        if reply[0] == "error" and OUT_OF_MEMORY in reply[1]:
            return  # the heap may be in a bad state: the next file gets a fresh worker


def describe_death(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory: the kernel's OOM killer?)" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with status {exitcode}"


class IsolatedParser:
    """``parse_file`` in a worker process with a memory limit and a timeout (see the module)."""

    def __init__(
        self,
        limits: ParseLimits | None = None,
        *,
        timeout_s: float = 60.0,
        memory_mb: int = 2048,
        parse: ParseFn = parse_file,
    ) -> None:
        self.limits = limits or ParseLimits()
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.parse = parse
        self._proc: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()
        self.starts = 0  # workers started (1 + one per death)
        self.last_worker_peak_kb = 0  # the worker's peak resident memory after the last parse

    # -- the worker ---------------------------------------------------------------
    def _start(self) -> None:
        parent, child = socket.socketpair()
        code = f"import sys; sys.path[:0] = {sys.path!r}; from rag.ingest.isolation import _serve; _serve({child.fileno()})"
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            child.close()
        conn = Connection(parent.detach())
        conn.send((self.parse, self.memory_mb))
        self._proc, self._conn = proc, conn
        self.starts += 1

    def _stop(self, kill: bool) -> int | None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is None:
            return None
        if not kill:
            try:
                conn.send(None)
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        conn.close()
        return int(proc.returncode)

    def close(self) -> None:
        with self._lock:
            self._stop(kill=False)

    def __enter__(self) -> IsolatedParser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()

    # -- parsing ------------------------------------------------------------------
    def __call__(self, path: Path | str, root: Path | str | None = None, groups: list[str] | None = None, **kw: Any):
        kw.setdefault("limits", self.limits)
        with self._lock:
            self.last_worker_peak_kb = 0
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    self._stop(kill=True)
                self._start()
            try:
                self._conn.send(((Path(path),), {"root": root, "groups": groups, **kw}))
                ready = self._conn.poll(self.timeout_s)
                reply = self._conn.recv() if ready else None
            except (EOFError, OSError, BrokenPipeError):
                code = self._stop(kill=True)
                reason = self._died_reason(code)
                log.warning("parse worker died on %s: %s", path, reason)
                raise IngestError(reason, path) from None
            if reply is None:
                self.last_worker_peak_kb = _peak_rss_kb(self._proc.pid)
                self._stop(kill=True)
                log.warning("parse worker timed out on %s after %s s; killed", path, self.timeout_s)
                raise IngestError(f"parser timed out after {self.timeout_s:g} s (parse_timeout_s); stopped", path)
            status, value, peak_kb = reply
            self.last_worker_peak_kb = peak_kb
            if status == "ok":
                doc: Document = value
                return doc
            if OUT_OF_MEMORY in value:  # the worker ends itself after a MemoryError
                self._stop(kill=False)
            raise IngestError(value, path)

    def _died_reason(self, code: int | None) -> str:
        how = describe_death(code)
        if code == -signal.SIGKILL:
            return f"parser ran out of memory or was killed ({how}; parse_memory_mb={self.memory_mb})"
        return f"parser crashed ({how})"


def make_parser(settings: Any, parse: ParseFn = parse_file) -> ParseFn | IsolatedParser:
    """The parse function ``settings`` asks for: an :class:`IsolatedParser` (close it when
    done) for ``parse_isolation="process"``, else ``parse`` with the settings' limits."""
    limits = ParseLimits.from_settings(settings)
    if settings.parse_isolation == "inline":
        return partial(_inline, parse, limits)
    return IsolatedParser(limits, timeout_s=settings.parse_timeout_s, memory_mb=settings.parse_memory_mb, parse=parse)


def _inline(parse: ParseFn, limits: ParseLimits, *args: Any, **kw: Any) -> Document:
    kw.setdefault("limits", limits)
    return parse(*args, **kw)


def close_parser(parse: object) -> None:
    """Close ``parse`` if it is an :class:`IsolatedParser` (for callers of :func:`make_parser`)."""
    if isinstance(parse, IsolatedParser):
        parse.close()
