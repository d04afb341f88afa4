"""``transformers`` backend: a Hugging Face causal LM folder; the GPU path.

``settings.llm`` is a local model folder (or a folder name under ``models_dir``), or a
hub id where the site has Hugging Face hub access.  The chat template is the
tokenizer's (``apply_chat_template(..., add_generation_prompt=True)``).  Generation runs
in a thread that feeds a ``TextIteratorStreamer``; a ``StoppingCriteria`` ends it as
soon as the consumer closes the stream (checked after every token).  The model lock is
released by the generation thread itself, when ``generate`` has really returned.

Device: ``settings.llm_device`` (``auto`` = cuda if available, else cpu).  On the CPU
this is slow; use the ``llama_cpp`` backend there.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import (
    ChatMixin,
    ContextLengthError,
    GenerationParams,
    LLMError,
    LLMTimeoutError,
    LLMUnavailableError,
    Message,
    StopMatcher,
)

log = logging.getLogger(__name__)

__all__ = ["TransformersBackend", "resolve_device"]

_JOIN_TIMEOUT = 10.0  # seconds to wait for the generation thread after a close


def resolve_device(device: str) -> str:
    device = (device or "auto").strip().lower()
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _resolve_model(settings: Any) -> tuple[str, bool]:
    """(path or hub id, is_local) for ``settings.llm``."""
    value = str(settings.llm)
    p = Path(value).expanduser()
    if p.is_dir():
        return str(p), True
    in_models = Path(settings.resolve_models_dir()) / value
    if in_models.is_dir():
        return str(in_models), True
    if p.suffix == ".gguf" or p.is_file():
        raise LLMError(
            f"the transformers backend needs a Hugging Face model folder, not the file {value!r}; "
            "use VRAAGBAAK_LLM_BACKEND=llama_cpp for GGUF files"
        )
    try:
        from rag.models import REGISTRY

        if value in REGISTRY:
            raise LLMError(
                f"{value!r} is a GGUF model of the registry; the transformers backend needs a Hugging Face "
                "model folder (VRAAGBAAK_LLM=/path/to/folder) or use VRAAGBAAK_LLM_BACKEND=llama_cpp"
            )
    except ImportError:  # pragma: no cover
        pass
    return value, False  # a hub id: works only with hub access


class _Cancelled:
    """StoppingCriteria: true once the consumer has gone away."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class TransformersBackend(ChatMixin):
    """A causal LM with transformers, streamed from a generation thread."""

    def __init__(
        self,
        model_path: str,
        model_id: str | None = None,
        device: str = "auto",
        context_window: int | None = None,
        local_files_only: bool = True,
        dtype: Any = None,
        stream_timeout: float | None = None,
    ) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("the transformers backend needs `torch` and `transformers`") from exc

        self.device = resolve_device(device)
        if dtype is None:
            if self.device == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                dtype = torch.float32
        self.model_path = str(model_path)
        self.model_id = model_id or self.model_path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=local_files_only)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.model_path, dtype=dtype, local_files_only=local_files_only
            )
        except OSError as exc:
            raise LLMError(f"transformers cannot load {self.model_path!r}: {exc}") from exc
        self.model.to(self.device)
        self.model.eval()
        if not getattr(self.tokenizer, "chat_template", None):
            raise LLMError(f"the tokenizer of {self.model_path!r} has no chat template")
        max_pos = getattr(self.model.config, "max_position_embeddings", None)
        limits = [n for n in (context_window, max_pos) if n]
        self.context_window = int(min(limits)) if limits else 4096
        self.stream_timeout = stream_timeout
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None  # the last generation thread (tests, debugging)

    @classmethod
    def from_settings(cls, settings: Any) -> TransformersBackend:
        path, local = _resolve_model(settings)
        return cls(
            path,
            model_id=settings.llm,
            device=settings.llm_device,
            context_window=settings.llm_context,
            local_files_only=local,
            stream_timeout=settings.llm_timeout,
        )

    # ---------------------------------------------------------------- generation

    def _generation_kwargs(self, params: GenerationParams, max_new_tokens: int) -> dict[str, Any]:
        from transformers import GenerationConfig

        sample = params.temperature > 0
        cfg = GenerationConfig.from_dict(self.model.generation_config.to_dict())
        cfg.max_new_tokens = max_new_tokens
        cfg.max_length = None
        cfg.do_sample = sample
        # unset sampling knobs when decoding greedily (avoids transformers' warnings)
        cfg.temperature = params.temperature if sample else None
        cfg.top_p = params.top_p if sample else None
        cfg.top_k = None
        if cfg.pad_token_id is None:
            cfg.pad_token_id = self.tokenizer.pad_token_id
            if cfg.pad_token_id is None:
                eos = cfg.eos_token_id if cfg.eos_token_id is not None else self.tokenizer.eos_token_id
                cfg.pad_token_id = eos[0] if isinstance(eos, list) else eos
        return {"generation_config": cfg}

    def stream_chat(self, messages: list[Message], params: GenerationParams | None = None) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        params = params or GenerationParams()
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        n_prompt = int(inputs["input_ids"].shape[-1])
        room = self.context_window - n_prompt
        if room < 1:
            raise ContextLengthError(f"the prompt has {n_prompt} tokens; the context window is {self.context_window}")
        max_new = max(1, min(params.max_tokens, room))
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, timeout=self.stream_timeout, skip_special_tokens=True
        )
        cancel = threading.Event()
        errors: list[BaseException] = []
        kwargs = self._generation_kwargs(params, max_new)

        self._lock.acquire()

        def run() -> None:
            try:
                if params.temperature > 0:
                    torch.manual_seed(params.seed)
                with torch.inference_mode():
                    self.model.generate(
                        **inputs,
                        **kwargs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
                    )
            except BaseException as exc:  # reported to the consumer
                errors.append(exc)
                streamer.end()
            finally:
                self._lock.release()

        thread = threading.Thread(target=run, name="vraagbaak-llm-generate", daemon=True)
        self._thread = thread
        try:
            thread.start()
        except BaseException:
            self._lock.release()
            raise

        matcher = StopMatcher(params.stop)
        try:
            try:
                for text in streamer:
                    out = matcher.feed(text)
                    if out:
                        yield out
                    if matcher.stopped:
                        break
                else:
                    tail = matcher.flush()
                    if tail:
                        yield tail
            except queue.Empty as exc:
                raise LLMTimeoutError(f"no token from the model in {self.stream_timeout} s") from exc
            if errors:
                err = errors[0]
                oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
                if oom is not None and isinstance(err, oom):
                    raise LLMUnavailableError(f"the GPU is out of memory: {err}", retry_after=5.0) from err
                raise LLMError(f"transformers generation failed: {err!r}") from err
        finally:
            cancel.set()  # stops generate() after the current token
            thread.join(_JOIN_TIMEOUT)
            if thread.is_alive():  # pragma: no cover - a very slow step
                log.warning("the generation thread did not stop within %.0f s", _JOIN_TIMEOUT)

    # ---------------------------------------------------------------- tokens

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        return len(self.tokenizer.encode(text, add_special_tokens=False))
