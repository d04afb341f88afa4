"""Shared fixtures. Unit tests use ``HashEmbedder``: a deterministic bag-of-stems embedder
(real vectors, no model) so index and retrieval logic is tested fast; tests marked ``slow``
use the real default models."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rag.settings import Settings
from rag.text.tokens import tokenize

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


def ingest_docs(folder: Path, docs: dict[str, str], settings: Settings, embedder) -> None:
    """Write ``docs`` (file name -> text) into ``folder`` and ingest that folder."""
    from rag.indexing import ingest_paths

    folder.mkdir()
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    ingest_paths([folder], settings, embedder)


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
    keeps_prefix = True  # as llama_cpp: Pipeline.warm_up asks it

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


# --------------------------------------------------------------------------- real models
# Built once per test session and shared by every slow test: embedding the demo corpus
# takes ~2 minutes on 2 cores.


def _require_installed(name: str) -> None:
    from rag.models import list_models

    status = {m.name: m for m in list_models(Settings())}
    if not status.get(name) or not status[name].installed:
        pytest.skip(f"model '{name}' is not installed: run `vraagbaak models install` (scripts/setup.sh does)")


@pytest.fixture(scope="session")
def real_embedder():
    from rag.embed import load_embedder

    s = Settings()
    _require_installed(s.embedder)
    return load_embedder(s)


@pytest.fixture(scope="session")
def demo_settings(tmp_path_factory, real_embedder) -> Settings:
    """Settings whose index holds the demo corpus, embedded with the real default model."""
    from rag.indexing import ingest_paths

    s = Settings(index_dir=tmp_path_factory.mktemp("demo-index"))
    report = ingest_paths([DEMO_CORPUS], s, real_embedder)
    assert report.ok, report.failed
    return s


@pytest.fixture(scope="session")
def real_llm():
    from rag.llm import load_llm

    s = Settings()
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/setup.sh installs it)")
    _require_installed(s.llm)
    return load_llm(s)


@pytest.fixture(scope="session")
def demo_pipeline(demo_settings, real_embedder, real_llm):
    from rag.pipeline import Pipeline
    from rag.retrieve import Retriever

    return Pipeline(demo_settings, Retriever(demo_settings, real_embedder), real_llm)


# --------------------------------------------------------------------------- PostgreSQL
# tests/pg.py: a real PostgreSQL + pgvector server (pgserver) for the tests marked ``postgres``
from tests.pg import pg_server, pg_url  # noqa: E402,F401
