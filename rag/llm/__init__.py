"""Language-model backends: a small interface (``base``) and plugins.

Built-in backends (chosen with ``settings.llm_backend`` / ``VRAAGBAAK_LLM_BACKEND``):

* ``llama_cpp`` — a GGUF file in-process with llama-cpp-python; the CPU default.
* ``openai`` — any OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp server); the
  scale-out path.
* ``transformers`` — a Hugging Face model folder; the GPU path.

Usage::

    from rag.llm import GenerationParams, load_llm

    llm = load_llm(settings)
    gen = llm.stream_chat([{"role": "user", "content": "Wat is een motie?"}], GenerationParams())
    try:
        for delta in gen:
            ...
    finally:
        gen.close()  # stops generation if the consumer went away

The backend modules are imported only when chosen, so a missing optional dependency
(llama-cpp-python, openai, transformers) only matters for the backend that needs it.
"""

from .base import (
    BUILTIN_BACKENDS,
    ENTRY_POINT_GROUP,
    BackendLoadError,
    ContextLengthError,
    GenerationParams,
    LLMBackend,
    LLMError,
    LLMTimeoutError,
    LLMUnavailableError,
    Message,
    StopMatcher,
    UnknownBackendError,
    available_backends,
    complete,
    get_backend_factory,
    register_backend,
    unregister_backend,
)
from .loader import load_llm

__all__ = [
    "BUILTIN_BACKENDS",
    "ENTRY_POINT_GROUP",
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
    "available_backends",
    "complete",
    "get_backend_factory",
    "load_llm",
    "register_backend",
    "unregister_backend",
]
