"""Embedders: the small interface the index and retriever use, and its implementations.

An embedder turns passages and questions into L2-normalised float32 vectors, so that the
inner product is the cosine similarity. Asymmetric models (EmbeddingGemma) get their own
query and document prompts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from .settings import Settings


@runtime_checkable
class Embedder(Protocol):
    """What the index needs from an embedding model."""

    model_id: str  # recorded in the index manifest
    dim: int

    def embed_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder (or a hub id where allowed)."""

    def __init__(
        self,
        model_path: str,
        model_id: str | None = None,
        device: str = "cpu",
        max_seq_length: int | None = 512,
        batch_size: int = 8,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model_path, device=device, local_files_only=True)
        if max_seq_length:
            self.model.max_seq_length = min(max_seq_length, self.model.max_seq_length or max_seq_length)
        self.model_id = model_id or model_path
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.batch_size = batch_size
        self._prompts = dict(getattr(self.model, "prompts", {}) or {})
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads

    def _encode(self, texts: Sequence[str], prompt_name: str | None, progress: bool) -> np.ndarray:
        with self._lock:
            out = self.model.encode(
                list(texts),
                prompt_name=prompt_name if prompt_name in self._prompts else None,
                batch_size=self.batch_size,
                show_progress_bar=progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return _normalise(out)

    def embed_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        name = "document" if "document" in self._prompts else None
        # sort by length so batches pad little; restore order afterwards
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        vecs = self._encode([texts[i] for i in order], name, progress)
        out = np.empty_like(vecs)
        out[order] = vecs
        return out

    def embed_query(self, text: str) -> np.ndarray:
        name = "query" if "query" in self._prompts else None
        return self._encode([text], name, False)[0]


def load_embedder(settings: Settings) -> Embedder:
    """The embedder named in the settings (a registry name, a local folder or a hub id)."""
    from .models import resolve_embedder

    path = resolve_embedder(settings)
    return SentenceTransformerEmbedder(
        path,
        model_id=settings.embedder,
        device=settings.embedder_device,
        max_seq_length=settings.embedder_max_seq_length,
        batch_size=settings.embedder_batch_size,
    )
