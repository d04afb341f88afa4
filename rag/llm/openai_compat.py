"""``openai`` backend: any OpenAI-compatible chat server (vLLM, TGI, Ollama, llama.cpp server).

This is the scale-out path: many Vraagbaak replicas in front of one inference cluster.
Uses the official ``openai`` client, with streaming.  Overload and outages are mapped to
``LLMUnavailableError`` (``retry_after`` from the server's ``Retry-After`` header, when
present) and timeouts to ``LLMTimeoutError``, so the service can answer 503.  The client
does not retry by itself (``max_retries=0``): under overload, failing fast and letting
the caller back off is kinder than queueing more retries on the server.

Settings: ``llm_base_url`` (e.g. ``http://vllm:8000/v1``), ``llm_api_key`` (empty: none),
``llm_model_name`` (empty: the first model the server lists), ``llm_timeout`` (seconds;
for a stream, the longest silence between two chunks), ``llm_context``.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from .base import (
    ChatMixin,
    ContextLengthError,
    GenerationParams,
    LLMError,
    LLMTimeoutError,
    LLMUnavailableError,
    Message,
)

log = logging.getLogger(__name__)

__all__ = ["OpenAIBackend", "parse_retry_after"]

# statuses that mean "try again later"
_UNAVAILABLE = {408, 425, 429, 500, 502, 503, 504, 529}
_TIMEOUT = {408, 504}
_CHARS_PER_TOKEN = 3.5


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            v = float(ms) / 1000.0
            return v if math.isfinite(v) and v >= 0 else None
        ra = headers.get("retry-after")
    except Exception:
        return None
    if ra is None:
        return None
    ra = str(ra).strip()
    try:
        v = float(ra)
        return v if math.isfinite(v) and v >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _map_error(exc: Exception, what: str) -> LLMError:
    """An ``openai`` exception as one of ours."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeoutError(f"{what}: the LLM server did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return LLMUnavailableError(f"{what}: cannot reach the LLM server ({cause})")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = parse_retry_after(getattr(exc.response, "headers", None))
        detail = f"{what}: the LLM server answered {status}: {exc.message}"
        if status in _TIMEOUT:
            return LLMTimeoutError(detail, retry_after=retry_after)
        if status in _UNAVAILABLE:
            return LLMUnavailableError(detail, retry_after=retry_after)
        if status == 400 and "context" in str(exc.message).lower():
            return ContextLengthError(detail)
        return LLMError(detail)
    if isinstance(exc, openai.APIError):  # e.g. an error event inside the stream
        return LLMError(f"{what}: {exc}")
    return LLMError(f"{what}: {exc!r}")


class OpenAIBackend(ChatMixin):
    """Chat completions from an OpenAI-compatible server, streamed."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        model_name: str = "",
        timeout: float = 120.0,
        context_window: int = 4096,
        connect_timeout: float = 10.0,
        max_retries: int = 0,
        use_server_tokenizer: bool = True,
    ) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("the openai backend needs the `openai` package (pip install openai)") from exc

        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or "none",
            timeout=openai.Timeout(self.timeout, connect=min(connect_timeout, self.timeout)),
            max_retries=max_retries,
        )
        self._model_name = model_name or None
        self.model_id = model_name or f"openai:{self.base_url}"
        self.context_window = int(context_window)
        self._lock = threading.Lock()
        # None = not probed yet; "" = the server has no tokenizer endpoint (estimate)
        self._tokenize_url: str | None = None if use_server_tokenizer else ""

    @classmethod
    def from_settings(cls, settings: Any) -> OpenAIBackend:
        return cls(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(),
            model_name=settings.llm_model_name,
            timeout=settings.llm_timeout,
            context_window=settings.llm_context,
        )

    # ---------------------------------------------------------------- model name

    @property
    def model_name(self) -> str:
        """The model sent to the server: the configured one, else the first listed (once)."""
        if self._model_name is None:
            with self._lock:
                if self._model_name is None:
                    try:
                        models = list(self._client.models.list())
                    except Exception as exc:
                        raise _map_error(exc, "listing the server's models") from exc
                    if not models:
                        raise LLMError(f"the LLM server at {self.base_url} serves no models")
                    self._model_name = models[0].id
                    self.model_id = self._model_name
                    log.info("openai backend: using model %r from %s", self._model_name, self.base_url)
        return self._model_name

    # ---------------------------------------------------------------- generation

    def stream_chat(self, messages: list[Message], params: GenerationParams | None = None) -> Iterator[str]:
        params = params or GenerationParams()
        kwargs: dict[str, Any] = {
            "model": self.model_name,
            "messages": messages,
            "stream": True,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        if params.stop:
            kwargs["stop"] = list(params.stop)
        try:
            stream = self._client.chat.completions.create(**kwargs)
        except Exception as exc:
            raise _map_error(exc, "starting the answer") from exc
        try:
            for chunk in stream:
                for choice in chunk.choices or ():
                    if choice.index not in (0, None):
                        continue
                    delta = choice.delta.content if choice.delta is not None else None
                    if delta:
                        yield delta
        except Exception as exc:  # (GeneratorExit is not an Exception: closing passes through)
            raise _map_error(exc, "streaming the answer") from exc
        finally:
            # closing the response closes the HTTP connection: the server sees the client
            # go away and (vLLM, llama.cpp server) stops generating
            stream.close()

    # ---------------------------------------------------------------- tokens

    def _root_url(self) -> str:
        url = self.base_url
        return url[: -len("/v1")] if url.endswith("/v1") else url

    def _probe_tokenizer(self, text: str) -> int | None:
        """Count with the server's tokenizer endpoint, if it has one (remembered)."""
        import openai

        root = self._root_url()
        candidates = [
            # llama-cpp-python server
            (f"{root}/extras/tokenize/count", lambda t: {"input": t, "model": self._model_name}),
            # llama.cpp server ("content", "add_special") and vLLM ("model", "prompt")
            (
                f"{root}/tokenize",
                lambda t: {
                    "content": t,
                    "add_special": False,
                    "prompt": t,
                    "add_special_tokens": False,
                    **({"model": self._model_name} if self._model_name else {}),
                },
            ),
        ]
        if self._tokenize_url:
            candidates = [c for c in candidates if c[0] == self._tokenize_url]
        for url, body in candidates:
            try:
                data = self._client.post(
                    url, cast_to=object, body=body(text), options={"timeout": min(10.0, self.timeout), "max_retries": 0}
                )
            except openai.APIStatusError:
                continue  # no such endpoint (404/405/422...)
            except openai.APIError:
                return None  # unreachable now: estimate, probe again next time
            n = _token_count(data)
            if n is not None:
                self._tokenize_url = url
                return n
        if self._tokenize_url is None:
            log.info("openai backend: %s offers no tokenizer endpoint; estimating tokens", self.base_url)
            self._tokenize_url = ""
        return None

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``: from the server's tokenizer endpoint where it has one
        (llama.cpp server, llama-cpp-python server, vLLM), else estimated (chars / 3.5)."""
        if not text:
            return 0
        if self._tokenize_url != "":
            n = self._probe_tokenizer(text)
            if n is not None:
                return n
        return max(1, math.ceil(len(text) / _CHARS_PER_TOKEN))


def _token_count(data: Any) -> int | None:
    if isinstance(data, dict):
        if isinstance(data.get("count"), int):
            return data["count"]
        if isinstance(data.get("tokens"), list):
            return len(data["tokens"])
    return None
