"""``load_llm``: build the configured backend, inline or behind a worker process (rag/llm/worker.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import (
    BUILTIN_BACKENDS,
    NATIVE_BACKENDS,
    BackendLoadError,
    LLMBackend,
    LLMError,
    _normalise,
    backend_target,
    get_backend_factory,
)
from .worker import ProcessLLM

if TYPE_CHECKING:
    from rag.settings import Settings


def _worker_target(settings: Settings) -> str | None:
    """The import string to run in a worker process, or None to build the backend inline."""
    mode = getattr(settings, "llm_worker", "inline")
    if mode == "inline":
        return None
    target = backend_target(settings.llm_backend)
    if mode == "process":
        if target is None:
            raise BackendLoadError(
                f"LLM backend {settings.llm_backend!r} was registered as an object and cannot run in a worker "
                "process (llm_worker=process): register it as a 'module:attribute' string"
            )
        return target
    key = _normalise(settings.llm_backend)
    if key in NATIVE_BACKENDS and target == BUILTIN_BACKENDS.get(key):
        return target
    return None


def load_llm(settings: Settings | None = None) -> LLMBackend:
    """Build the backend named by ``settings.llm_backend`` from the settings (in a worker
    process when ``settings.llm_worker`` says so: see rag/llm/worker.py)."""
    if settings is None:
        from rag.settings import get_settings

        settings = get_settings()
    factory = get_backend_factory(settings.llm_backend)
    target = _worker_target(settings)
    if target is not None:
        return ProcessLLM(target, settings.model_copy(update={"llm_worker": "inline"}))
    build: Callable[[Any], Any] = getattr(factory, "from_settings", None) or factory
    if not callable(build):
        raise BackendLoadError(f"LLM backend {settings.llm_backend!r}: {factory!r} is not a factory")
    try:
        backend = build(settings)
    except LLMError:
        raise
    except ImportError as exc:
        raise BackendLoadError(f"LLM backend {settings.llm_backend!r} cannot be built: {exc}") from exc
    return backend
