"""The embedder interface, its options and the checks of them (no model is loaded here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

BACKENDS = ("torch", "onnx")
QUANTIZATIONS = ("none", "int8")
# Matryoshka sizes a model was trained for; other models accept any size up to their own.
MATRYOSHKA_DIMS: dict[str, tuple[int, ...]] = {"embeddinggemma-300m": (768, 512, 256, 128)}


@runtime_checkable
class Embedder(Protocol):
    """What the index needs from an embedding model."""

    model_id: str  # recorded in the index manifest
    dim: int

    def embed_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class EmbedderExportError(RuntimeError):
    """The ONNX export of an embedder failed, or an exported model failed its check."""


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def truncate_vectors(x: np.ndarray, dim: int | None) -> np.ndarray:
    """Matryoshka truncation: the first ``dim`` components, re-normalised (None: unchanged)."""
    x = _normalise(x)
    if dim is None or dim >= x.shape[1]:
        return x
    return _normalise(x[:, :dim])


# --------------------------------------------------------------------------- options


def check_embedder_options(
    backend: str,
    quantize: str = "none",
    embedding_dim: int | None = None,
    processes: int = 1,
    *,
    model_name: str | None = None,
    full_dim: int | None = None,
) -> None:
    """Raise ValueError for a combination of embedder settings that cannot work.

    ``model_name`` (a registry name) restricts ``embedding_dim`` to the Matryoshka sizes the
    model was trained for; ``full_dim`` (known once the model is loaded) caps it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"embedder_backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"embedder_quantize must be one of {', '.join(QUANTIZATIONS)}, not {quantize!r}")
    if quantize != "none" and backend == "torch":
        raise ValueError(f"embedder_quantize={quantize!r} needs embedder_backend='onnx'")
    if processes < 1:
        raise ValueError(f"embedder_processes must be at least 1, not {processes}")
    if processes > 1 and backend != "torch":
        raise ValueError("multi-process encoding (--processes > 1) needs embedder_backend='torch'")
    if embedding_dim is None:
        return
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be positive, not {embedding_dim}")
    allowed = MATRYOSHKA_DIMS.get(model_name or "")
    if allowed is not None and embedding_dim not in allowed:
        raise ValueError(
            f"embedding_dim {embedding_dim} is not a Matryoshka size of {model_name} "
            f"(allowed: {', '.join(map(str, allowed))}, or unset for the full size)"
        )
    if full_dim is not None and embedding_dim > full_dim:
        raise ValueError(f"embedding_dim {embedding_dim} is larger than the model's {full_dim}")


def pool_devices(device: str, processes: int, n_gpus: int = 0) -> list[str] | None:
    """Target devices of a sentence-transformers multi-process pool, or None for one process.

    ``cpu`` → that many CPU workers; a bare ``cuda`` → the GPUs round-robin (``cuda:0``,
    ``cuda:1``, …); a named device (``cuda:1``, ``mps``) → that device for every worker.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    if processes == 1:
        return None
    if device == "cuda":
        if n_gpus < 1:
            raise ValueError("--device cuda: no CUDA device is visible")
        return [f"cuda:{i % n_gpus}" for i in range(processes)]
    return [device] * processes


def backend_label(backend: str, quantize: str = "none") -> str:
    """``torch``, ``onnx-fp32`` or ``onnx-int8``: how the vectors were computed."""
    if backend == "torch":
        return "torch"
    return f"{backend}-{'fp32' if quantize == 'none' else quantize}"
