"""``SentenceTransformerEmbedder``, the one embedder of every backend, and ``load_embedder``."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from ..settings import Settings
from .base import Embedder, backend_label, check_embedder_options, truncate_vectors
from .onnx_export import check_onnx_reference, ensure_onnx_model
from .runners import _OnnxRunner, _TorchRunner


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder (or a hub id where allowed).

    ``backend="onnx"`` runs the cached, verified ONNX export of the local folder instead of
    torch (``quantize="int8"``: its 8-bit version); ``truncate_dim`` keeps the first
    components of each vector (Matryoshka) and re-normalises; ``processes > 1`` encodes
    documents over a sentence-transformers multi-process pool (torch only).
    """

    def __init__(
        self,
        model_path: str,
        model_id: str | None = None,
        device: str = "cpu",
        max_seq_length: int | None = 512,
        batch_size: int = 8,
        *,
        backend: str = "torch",
        quantize: str = "none",
        truncate_dim: int | None = None,
        processes: int = 1,
        threads: int | None = None,
    ) -> None:
        check_embedder_options(backend, quantize, truncate_dim, processes)
        runner: _TorchRunner | _OnnxRunner
        if backend == "torch":
            runner = _TorchRunner(model_path, device, max_seq_length, truncate_dim, processes, threads)
        else:
            onnx_file = ensure_onnx_model(model_path, quantize, threads=threads)
            runner = _OnnxRunner(onnx_file, model_path, device, max_seq_length, threads)
            check_onnx_reference(runner, onnx_file, quantize)
        check_embedder_options(backend, quantize, truncate_dim, processes, full_dim=runner.full_dim)
        self._setup(runner, model_id or model_path, backend_label(backend, quantize), batch_size, truncate_dim)

    def _setup(self, runner, model_id: str, backend: str, batch_size: int, truncate_dim: int | None) -> None:
        self.runner = runner
        self.model_id = model_id
        self.backend = backend  # "torch", "onnx-fp32", "onnx-int8": how the vectors are computed
        self.batch_size = batch_size
        self.dim = int(truncate_dim or runner.full_dim)
        self._prompts = dict(runner.prompts)
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads

    @classmethod
    def with_runner(
        cls, runner, model_id: str, *, backend: str = "torch", batch_size: int = 8, truncate_dim: int | None = None
    ) -> SentenceTransformerEmbedder:
        """An embedder over a ready runner (``encode(texts, prompt_name, batch_size, progress)``,
        ``prompts``, ``full_dim``): for tests, and to share one loaded model between dimensions."""
        self = cls.__new__(cls)
        self._setup(runner, model_id, backend, batch_size, truncate_dim)
        return self

    def _encode(self, texts: Sequence[str], prompt_name: str | None, progress: bool) -> np.ndarray:
        name = prompt_name if prompt_name in self._prompts else None
        with self._lock:
            out = self.runner.encode(list(texts), name, self.batch_size, progress)
        return truncate_vectors(out, self.dim)

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
    from ..models import resolve_embedder

    check_embedder_options(
        settings.embedder_backend,
        settings.embedder_quantize,
        settings.embedding_dim,
        settings.embedder_processes,
        model_name=settings.embedder,
    )
    path = resolve_embedder(settings)
    return SentenceTransformerEmbedder(
        path,
        model_id=settings.embedder,
        device=settings.embedder_device,
        max_seq_length=settings.embedder_max_seq_length,
        batch_size=settings.embedder_batch_size,
        backend=settings.embedder_backend,
        quantize=settings.embedder_quantize,
        truncate_dim=settings.embedding_dim,
        processes=settings.embedder_processes,
        threads=settings.embedder_threads,
    )
