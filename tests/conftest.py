"""Shared fixtures. Unit tests use ``HashEmbedder``: a deterministic bag-of-stems embedder
(real vectors, no model) so index and retrieval logic is tested fast; tests marked ``slow``
use the real default models."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rag.lexical import tokenize
from rag.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEMO_CORPUS = REPO / "data" / "voorbeeld"


class HashEmbedder:
    """Hashes stemmed tokens into a fixed-size vector (feature hashing), L2-normalised."""

    def __init__(self, dim: int = 256, model_id: str = "test-hash-embedder") -> None:
        self.dim = dim
        self.model_id = model_id
        self.calls = 0

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for tok in tokenize(text):
            h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def embed_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        self.calls += 1
        return np.vstack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vec(text)


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(index_dir=tmp_path / "index", models_dir=tmp_path / "models")


class ScriptedLLM:
    """An LLM backend double: answers with ``reply(messages)`` streamed word by word and
    records every call, so pipeline logic is tested without a model."""

    model_id = "scripted-llm"
    context_window = 4096

    def __init__(self, reply) -> None:
        self.reply = reply if callable(reply) else (lambda messages: reply)
        self.calls: list[list[dict]] = []
        self.closed = 0

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def stream_chat(self, messages, params):
        self.calls.append(messages)
        text = self.reply(messages)
        try:
            for i, word in enumerate(text.split(" ")):
                if i >= params.max_tokens:
                    break
                yield word if i == 0 else " " + word
        finally:
            self.closed += 1

    def chat(self, messages, params):
        return "".join(self.stream_chat(messages, params))
