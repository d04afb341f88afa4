"""LLM backends for the worker-process tests (rag/llm/worker.py). They are imported by name
("tests.llm_doubles:WordsLLM") in a fresh interpreter, so they live in a module of their own.

``WordsLLM`` streams the words of the last message back, ``delay`` seconds per word. Words
ask for behaviour (the delay comes from the environment variable WORDS_LLM_DELAY): ``CRASH`` reads address 0 (a real SIGSEGV, as a
fault in native code gives) after the words before it, ``ABORT`` with SIGABRT, ``FAIL`` raises an LLMError, ``BUSY`` an
LLMTimeoutError (an LLMUnavailableError)."""

from __future__ import annotations

import ctypes
import os
import time

from rag.llm.base import ChatMixin, LLMError, LLMTimeoutError


class WordsLLM(ChatMixin):
    model_id = "words-llm"
    context_window = 2048

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.pid = os.getpid()

    @classmethod
    def from_settings(cls, settings) -> WordsLLM:
        if "BROKEN" in str(settings.llm):
            raise LLMError(f"cannot load {settings.llm}: not a model")
        return cls(delay=float(os.environ.get("WORDS_LLM_DELAY", "0")))  # inherited by the worker

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_chat(self, messages, params):
        words = messages[-1]["content"].split()
        for i, word in enumerate(words[: params.max_tokens]):
            bare = word.strip("?.,!:;")
            if bare == "CRASH":  # a real fault: read address 0, as a bad native kernel would
                ctypes.string_at(0)
            if bare == "ABORT":
                os.abort()
            if bare == "FAIL":
                raise LLMError("scripted failure")
            if bare == "BUSY":
                raise LLMTimeoutError("scripted timeout", retry_after=9.0)
            if word == "PID":
                word = str(os.getpid())
            if self.delay:
                time.sleep(self.delay)
            yield word if i == 0 else " " + word


class PrefixWordsLLM(WordsLLM):
    """WordsLLM that says it keeps its fixed prompt parts between calls, as llama_cpp does."""

    keeps_prefix = True
