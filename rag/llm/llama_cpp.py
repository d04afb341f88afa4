"""``llama_cpp`` backend: a GGUF model in-process with llama-cpp-python; the CPU default.

* The chat template comes from the GGUF (``create_chat_completion`` applies it).
* One ``Llama`` object is not thread-safe: a lock serialises generations; a second caller
  waits (or, with ``lock_timeout``, gets ``LLMUnavailableError``).  The lock is a plain
  ``threading.Lock``, so a stream may be advanced and closed from different threads (as
  a web server's thread pool does).
* Prompt-prefix KV reuse: llama-cpp-python keeps the KV cache of the previous prompt and
  re-evaluates only the tokens after the longest common prefix, so a long fixed system
  prompt is paid for once.  ``ram_cache_bytes > 0`` adds a ``LlamaRAMCache`` (saved
  states of earlier prompts): it turns a switch back to an earlier long prompt from a full
  prefill (~25 s for 900 tokens on 2 busy cores) into a state load (<1 s), but saves
  ~26 MiB of state after every answer (``enable_ram_cache``).  In RAG the
  retrieved context changes with every question, but a follow-up alternates two long
  prompts (the rewrite prompt, then the answer prompt), so the setting
  ``llm_ram_cache_mb`` turns it on by default (measured in rag/settings.py).
* Closing the stream early stops decoding: llama.cpp decodes only when the next token is
  pulled, and the ``finally`` closes the llama-cpp-python generators and frees the lock.
  (The prefill of the prompt runs as one C call and cannot be interrupted halfway.)
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from .base import (
    ChatMixin,
    ContextLengthError,
    GenerationParams,
    LLMError,
    Message,
    acquire_model,
)

log = logging.getLogger(__name__)

# saved states of fixed prompt prefixes (the answer prompt's, the rewrite prompt's), ~26 MiB each
_PREFIX_STATES = 4

__all__ = ["LlamaCppBackend", "default_threads"]


def default_threads() -> int:
    """The cores this process may use (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class LlamaCppBackend(ChatMixin):
    """A GGUF model run by llama.cpp on the CPU."""

    fixed_prefix = False  # every prompt evaluated from its fixed messages' state (_resume_fixed_prefix)
    keeps_prefix = True  # the fixed messages' computation is kept between calls (either way)

    def __init__(
        self,
        model_path: str,
        model_id: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        seed: int = 0,
        ram_cache_bytes: int = 0,
        fixed_prefix: bool = False,
        lock_timeout: float | None = None,
        cpu_variant: str = "auto",
        **llama_kwargs: Any,
    ) -> None:
        from .variants import use_llama_variant

        try:
            # the fastest installed build this CPU runs (rag/llm/variants.py), before the import
            self.build = use_llama_variant(cpu_variant)
        except ValueError as exc:
            raise LLMError(str(exc)) from exc
        try:
            import llama_cpp
        except ImportError as exc:
            raise ImportError("the llama_cpp backend needs llama-cpp-python (pip install 'vraagbaak[llm]')") from exc

        threads = n_threads or default_threads()
        self.model_path = str(model_path)
        self.model_id = model_id or os.path.splitext(os.path.basename(self.model_path))[0]
        self.n_threads = threads
        self.lock_timeout = lock_timeout
        self._lock = threading.Lock()
        try:
            self.llm = llama_cpp.Llama(
                model_path=self.model_path,
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=n_batch,
                n_ubatch=min(n_batch, llama_kwargs.pop("n_ubatch", n_batch)),
                seed=seed,
                verbose=llama_kwargs.pop("verbose", False),
                **llama_kwargs,
            )
        except ValueError as exc:  # llama-cpp-python: "Failed to load model from file: ..."
            raise LLMError(f"llama.cpp cannot load {self.model_path}: {exc}") from exc
        self.context_window = int(self.llm.n_ctx())
        self._prefix_states: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._formatter: Any = None
        self._kv_prefix: tuple[int, ...] | None = None  # the fixed prefix the KV cache starts with
        self._prompt_states: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._prompt_cache_bytes = ram_cache_bytes
        self._prompt_bytes = 0
        self.fixed_prefix = fixed_prefix and self._init_fixed_prefix()
        if ram_cache_bytes > 0 and not self.fixed_prefix:
            self.enable_ram_cache(ram_cache_bytes)

    def enable_ram_cache(self, capacity_bytes: int) -> None:
        """Keep saved prompt states (``LlamaRAMCache``) so a switch back to an earlier long
        prompt is a state load instead of a prefill.

        llama-cpp-python's ``save_state`` also copies its logits buffer (n_batch x vocabulary
        floats: ~300 MB for Qwen2.5) into every state, which the cache does not count against
        its capacity: 512 MB of states held ~6 GB, and each save took ~1 s. A restored state
        is always decoded again before sampling (``load_state`` sets ``_requires_eval``), so
        those logits are never read; the states here keep one row of them instead.
        """
        import llama_cpp

        self.llm.save_state = self._lean_state
        self.llm.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=int(capacity_bytes)))

    # ---------------------------------------------------------------- fixed prefix

    def _init_fixed_prefix(self) -> bool:
        """The GGUF's chat template, to know where the fixed messages end (False: another chat
        format, whose prompt this backend cannot render; prefix reuse then stays llama-cpp-python's)."""
        from llama_cpp import llama_chat_format

        llm = self.llm
        template = llm.metadata.get("tokenizer.chat_template")
        if not template or llm.chat_handler is not None or llm.chat_format != "chat_template.default":
            log.warning("llama_cpp: no GGUF chat template in use; answers may depend on the previous prompt")
            return False

        def text(token_id: int) -> str:
            return llm._model.token_get_text(token_id) if token_id != -1 else ""

        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos())
        )
        return True

    def _tokens(self, messages: list[Message], generation_prompt: bool) -> list[int]:
        self._formatter.add_generation_prompt = generation_prompt
        result = self._formatter(messages=messages)
        return list(self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True))

    def _resume_fixed_prefix(self, messages: list[Message]) -> tuple[int, ...] | None:
        """Evaluate every prompt the same way: its fixed messages (all but the last: the system
        prompt and worked examples, the same for every question) on their own, then the rest
        but its last token, then (in llama-cpp-python's ``generate``) the last token.

        llama-cpp-python reuses the KV cache up to the longest prefix shared with the previous
        prompt; where that ends depends on the previous question (two answer prompts whose first
        passage has the same heading share more), and so do the batches the rest is evaluated
        in. The floating-point results differ a little with them, enough to change a greedy
        answer: in an eval run the same question and passages got "In mei [1]." after one
        question and a refusal after another. Here the state after the fixed messages is kept
        (a few: the answer prompt's, the rewrite prompt's), and so is the state after each
        prompt but its last token (``ram_cache_bytes`` of them): a switch between prompt kinds
        and a repeated question are state loads, and the same prompt gets the same answer,
        whatever was asked before. Returns the tokens whose state is to be kept once the answer
        is written (``_keep_prompt_state``: the save is not in the time to the first token),
        or None."""
        llm = self.llm
        fixed = self._tokens(list(messages[:-1]), generation_prompt=False) if len(messages) > 1 else []
        full = self._tokens(list(messages), generation_prompt=True)
        if len(full) >= llm.n_ctx():
            return None  # too long: create_chat_completion says so (ContextLengthError), nothing evaluated
        body = tuple(full[:-1])
        k = 0
        for a, b in zip(fixed, body):
            if a != b:
                break
            k += 1
        key = body[:k]
        if body in self._prompt_states:  # asked before: resume where its last token comes next
            self._prompt_states.move_to_end(body)
            llm.load_state(self._prompt_states[body])
            llm.n_tokens = len(body)  # the state also holds the answer written after it
            self._kv_prefix = key if k else None
            return None
        if k == 0:
            llm.reset()  # nothing fixed: evaluated from the start
        elif self._kv_prefix == key and llm.n_tokens >= k:
            llm.n_tokens = k  # the fixed messages are in the KV cache: reuse them, no more
        elif key in self._prefix_states:
            self._prefix_states.move_to_end(key)
            llm.load_state(self._prefix_states[key])
        else:
            llm.reset()
            llm.eval(list(key))
            self._prefix_states[key] = self._lean_state()
            while len(self._prefix_states) > _PREFIX_STATES:
                self._prefix_states.popitem(last=False)
        self._kv_prefix = key if k else None
        if len(body) > k:
            llm.eval(list(body[k:]))
        return body if self._prompt_cache_bytes > 0 else None

    def _keep_prompt_state(self, body: tuple[int, ...]) -> None:
        """Keep the state after ``body`` once the answer is written. The KV cache then holds the
        answer's tokens after it; a repeat loads the state and resumes at ``len(body)`` (llama.cpp
        drops the cells after it before the next decode), with the same numbers as the first time."""
        llm = self.llm
        n = len(body)
        if llm.n_tokens < n or tuple(int(t) for t in llm.input_ids[:n]) != body:
            return  # not evaluated after all (an error before the first decode)
        self._prompt_states[body] = state = self._lean_state()
        self._prompt_bytes += state.llama_state_size
        while self._prompt_bytes > self._prompt_cache_bytes and self._prompt_states:
            _, old = self._prompt_states.popitem(last=False)
            self._prompt_bytes -= old.llama_state_size

    def _lean_state(self) -> Any:
        """``save_state`` without llama-cpp-python's logits buffer (see ``enable_ram_cache``)."""
        llm = self.llm
        scores = llm.scores
        llm.scores = scores[:1]
        try:
            return type(llm).save_state(llm)
        finally:
            llm.scores = scores

    @classmethod
    def from_settings(cls, settings: Any) -> LlamaCppBackend:
        from rag.models import resolve_llm

        return cls(
            resolve_llm(settings),
            model_id=settings.llm,
            n_ctx=settings.llm_context,
            n_threads=settings.llm_threads,
            n_batch=settings.llm_batch,
            ram_cache_bytes=int(settings.llm_ram_cache_mb) << 20,
            fixed_prefix=settings.llm_fixed_prefix,
            cpu_variant=settings.llm_cpu_variant,
        )

    # ---------------------------------------------------------------- generation

    def stream_chat(self, messages: list[Message], params: GenerationParams | None = None) -> Iterator[str]:
        params = params or GenerationParams()
        acquire_model(self._lock, self.lock_timeout)
        stream = None
        keep: tuple[int, ...] | None = None
        try:
            try:
                if self.fixed_prefix:
                    keep = self._resume_fixed_prefix(messages)
                stream = self.llm.create_chat_completion(
                    messages=messages,
                    stream=True,
                    max_tokens=max(1, params.max_tokens),
                    temperature=params.temperature,
                    top_p=params.top_p,
                    stop=list(params.stop or []),
                    seed=params.seed,
                )
                for chunk in stream:
                    delta = chunk["choices"][0].get("delta", {}).get("content")
                    if delta:
                        yield delta
            except ValueError as exc:
                if "context window" in str(exc):
                    raise ContextLengthError(str(exc)) from exc
                raise LLMError(f"llama.cpp: {exc}") from exc
            except RuntimeError as exc:  # e.g. llama_decode failures
                raise LLMError(f"llama.cpp: {exc}") from exc
        finally:
            # On an early close (GeneratorExit) this closes the chat-chunk generator, which
            # drops the completion generator and llama's token generator: no further
            # decode step runs.  Then the model is free for the next caller.
            try:
                if stream is not None:
                    close = getattr(stream, "close", None)
                    if close is not None:
                        close()
                if keep is not None:
                    try:
                        self._keep_prompt_state(keep)
                    except Exception:  # the answer is written; only a later repeat is slower
                        log.warning("llama_cpp: could not keep the prompt state", exc_info=True)
            finally:
                self._lock.release()

    # ---------------------------------------------------------------- tokens

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        # tokenizing does not touch the KV cache; no lock needed
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
