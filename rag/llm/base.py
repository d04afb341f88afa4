"""The small LLM interface the rest of Vraagbaak uses, its errors, and the backend registry.

The design follows Simon Willison's ``llm`` tool: a small core and the model backends as
plugins.  A backend is any object with

* ``model_id: str`` and ``context_window: int`` (tokens: prompt + answer),
* ``stream_chat(messages, params) -> Iterator[str]``: the answer as text deltas.  The
  returned generator holds the backend while it runs; **closing it early**
  (``gen.close()``, or leaving a ``with contextlib.closing(gen)`` block) stops the
  generation promptly and releases the backend.  This is how a disconnected HTTP client
  stops the LLM, so callers must close streams they do not read to the end,
* ``chat(messages, params) -> str`` (the joined stream; ``complete()`` below does it for
  any backend), and
* ``count_tokens(text) -> int``, and optionally
* ``keeps_prefix: bool``: the backend keeps the computation of a prompt's fixed messages
  between calls (llama_cpp), so evaluating them once at start (``Pipeline.warm_up``) spares
  the first question; absent = False.

Backends are built from the settings by ``load_llm(settings)``, which looks up
``settings.llm_backend`` in the registry: the built-ins (imported lazily, so a backend
whose dependencies are missing only fails when it is chosen), backends added with
``register_backend(name, factory)``, and third-party packages that declare an entry point
in the group ``vraagbaak.llm_backends``, e.g. in their ``pyproject.toml``::

    [project.entry-points."vraagbaak.llm_backends"]
    mybackend = "my_package.backend:MyBackend"

A factory is a class (or object) with ``from_settings(settings)``, a plain callable
``factory(settings) -> backend``, or a ``"module:attribute"`` string naming either.
Precedence when names clash: ``register_backend`` > built-ins > entry points.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = [
    "BUILTIN_BACKENDS",
    "ENTRY_POINT_GROUP",
    "NATIVE_BACKENDS",
    "BackendLoadError",
    "ContextLengthError",
    "GenerationParams",
    "LLMBackend",
    "LLMError",
    "LLMTimeoutError",
    "LLMUnavailableError",
    "Message",
    "StopMatcher",
    "UnknownBackendError",
    "acquire_model",
    "available_backends",
    "backend_target",
    "complete",
    "get_backend_factory",
    "register_backend",
    "unregister_backend",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- types

Message = dict[str, str]
"""An OpenAI-style chat message: ``{"role": "system"|"user"|"assistant", "content": ...}``."""


@dataclass
class GenerationParams:
    """Sampling settings for one answer.  ``temperature == 0`` means greedy decoding."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int = 0


@runtime_checkable
class LLMBackend(Protocol):
    """What the answer pipeline needs from a language model."""

    model_id: str
    context_window: int  # tokens, prompt and answer together

    def stream_chat(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        """Yield the answer as text deltas; closing the generator early stops generation."""
        ...

    def chat(self, messages: list[Message], params: GenerationParams) -> str: ...

    def count_tokens(self, text: str) -> int: ...


def complete(backend: LLMBackend, messages: list[Message], params: GenerationParams | None = None) -> str:
    """The whole answer of ``backend`` as one string (the joined stream)."""
    gen = backend.stream_chat(messages, params or GenerationParams())
    try:
        return "".join(gen)
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()


def acquire_model(lock: threading.Lock, timeout: float | None) -> None:
    """Take the one-generation-at-a-time ``lock`` of an in-process model: wait for it, or
    with ``timeout`` raise LLMUnavailableError (busy) when it is not free in time."""
    if timeout is None:
        lock.acquire()
    elif not lock.acquire(timeout=timeout):
        raise LLMUnavailableError("the local LLM is busy with another answer", retry_after=timeout)


class ChatMixin:
    """``chat()`` for backends that implement ``stream_chat()``."""

    def chat(self, messages: list[Message], params: GenerationParams | None = None) -> str:
        return complete(self, messages, params)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- errors


class LLMError(Exception):
    """Any failure of the language model backend."""


class LLMUnavailableError(LLMError):
    """The model cannot answer now (server unreachable, overloaded, 503/429...).

    The service answers 503 with ``Retry-After: retry_after`` (when known)."""

    def __init__(self, message: str = "the language model is unavailable", retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class LLMTimeoutError(LLMUnavailableError):
    """The model (server) did not answer in time."""


class ContextLengthError(LLMError, ValueError):
    """The prompt (plus the requested answer length) does not fit the context window."""


class UnknownBackendError(LLMError, LookupError):
    """``settings.llm_backend`` names no known backend."""


class BackendLoadError(LLMError, ImportError):
    """A backend exists but cannot be imported or built (e.g. a missing dependency)."""


# --------------------------------------------------------------------------- stop strings


class StopMatcher:
    """Applies stop strings to a stream of text deltas (for backends without native support).

    ``feed(delta)`` returns the text that is safe to emit now: text that might be the start
    of a stop string is held back until it is decided.  Once a stop string is seen,
    ``stopped`` is true and the text before it has been returned.  ``flush()`` returns
    what is held back at the end of the stream.
    """

    def __init__(self, stop: Iterable[str] | None):
        self.stop = [s for s in (stop or []) if s]
        self._hold = max((len(s) for s in self.stop), default=1) - 1
        self._buf = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        if not self.stop:
            return delta
        self._buf += delta
        cut = min((i for i in (self._buf.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self._buf = self._buf[:cut], ""
            return out
        # keep back the longest tail that is a prefix of some stop string
        keep = 0
        for n in range(min(self._hold, len(self._buf)), 0, -1):
            tail = self._buf[-n:]
            if any(s.startswith(tail) for s in self.stop):
                keep = n
                break
        out = self._buf[: len(self._buf) - keep]
        self._buf = self._buf[len(self._buf) - keep :]
        return out

    def flush(self) -> str:
        out, self._buf = ("" if self.stopped else self._buf), ""
        return out


# --------------------------------------------------------------------------- registry

ENTRY_POINT_GROUP = "vraagbaak.llm_backends"

BUILTIN_BACKENDS: dict[str, str] = {
    "llama_cpp": "rag.llm.llama_cpp:LlamaCppBackend",
    "openai": "rag.llm.openai_compat:OpenAIBackend",
    "transformers": "rag.llm.transformers_backend:TransformersBackend",
}

# a few spellings people will type
_ALIASES = {
    "llama.cpp": "llama_cpp",
    "llamacpp": "llama_cpp",
    "llama-cpp": "llama_cpp",
    "openai_compat": "openai",
    "openai-compat": "openai",
    "vllm": "openai",
    "hf": "transformers",
    "huggingface": "transformers",
}

Factory = Any  # a class/object with from_settings, a callable(settings), or "module:attr"

_registered: dict[str, Factory] = {}
_registry_lock = threading.Lock()


def register_backend(name: str, factory: Factory, *, replace: bool = True) -> None:
    """Make ``factory`` available as ``settings.llm_backend = name``.

    Registered backends take precedence over the built-ins and over entry points."""
    key = _normalise(name)
    with _registry_lock:
        if not replace and key in _registered:
            raise ValueError(f"LLM backend {name!r} is already registered")
        _registered[key] = factory


def unregister_backend(name: str) -> None:
    with _registry_lock:
        _registered.pop(_normalise(name), None)


def _normalise(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def _entry_points() -> dict[str, Any]:
    """Third-party backends: ``{name: EntryPoint}`` of the group ``vraagbaak.llm_backends``."""
    try:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # broken metadata must not take the built-ins down
        log.warning("could not read entry points %s: %s", ENTRY_POINT_GROUP, exc)
        return {}
    return {_normalise(ep.name): ep for ep in eps}


def available_backends() -> list[str]:
    """Names accepted by ``settings.llm_backend``: built-ins first, then the others sorted."""
    with _registry_lock:
        names = set(_registered)
    names |= set(_entry_points())
    return list(BUILTIN_BACKENDS) + sorted(names - set(BUILTIN_BACKENDS))


def _import_string(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def get_backend_factory(name: str) -> Factory:
    """The factory for backend ``name`` (imported now).

    UnknownBackendError for an unknown name (listing the available ones);
    BackendLoadError when the backend's module cannot be imported."""
    key = _normalise(name)
    with _registry_lock:
        factory = _registered.get(key)
    source = "registered"
    if factory is None and key in BUILTIN_BACKENDS:
        factory, source = BUILTIN_BACKENDS[key], "built-in"
    if factory is None:
        ep = _entry_points().get(key)
        if ep is not None:
            try:
                factory = ep.load()
            except Exception as exc:
                raise BackendLoadError(
                    f"LLM backend {name!r} (entry point {ep.value!r} in group {ENTRY_POINT_GROUP}) "
                    f"failed to load: {exc}"
                ) from exc
            source = "entry point"
    if factory is None:
        raise UnknownBackendError(
            f"unknown LLM backend {name!r}; available: {', '.join(available_backends())} "
            f"(set VRAAGBAAK_LLM_BACKEND, or install a plugin for entry-point group {ENTRY_POINT_GROUP})"
        )
    if isinstance(factory, str):
        try:
            factory = _import_string(factory)
        except ImportError as exc:
            raise BackendLoadError(
                f"LLM backend {name!r} ({source}, {factory}) cannot be imported: {exc}; "
                "install its dependencies or choose another VRAAGBAAK_LLM_BACKEND"
            ) from exc
    return factory


# Backends that run native code in the caller's process: ``llm_worker="auto"`` runs them in
# a worker process (rag/llm/worker.py), where a crash becomes an error instead of a dead API.
NATIVE_BACKENDS = frozenset({"llama_cpp"})


def backend_target(name: str) -> str | None:
    """The factory of backend ``name`` as an import string (``"module:attr"``), which a
    fresh interpreter can load; None for a factory registered as an object."""
    key = _normalise(name)
    with _registry_lock:
        factory = _registered.get(key)
    if factory is not None:
        return factory if isinstance(factory, str) else None
    if key in BUILTIN_BACKENDS:
        return BUILTIN_BACKENDS[key]
    ep = _entry_points().get(key)
    return ep.value if ep is not None else None
