"""Embedders: the small interface the index and retriever use, and its implementations.

An embedder turns passages and questions into L2-normalised float32 vectors, so that the
inner product is the cosine similarity. Asymmetric models (EmbeddingGemma) get their own
query and document prompts.

Backends (``Settings.embedder_backend``) of the one ``SentenceTransformerEmbedder``:

* ``torch`` (default): the sentence-transformers model as published;
* ``onnx``: the same model exported once to ONNX and run with ONNX Runtime, in fp32 or, with
  ``embedder_quantize="int8"``, dynamically quantised to 8 bits (AVX2-friendly). The export is
  cached beside the model (``<model folder>/onnx/``) and verified before use, see
  ``ensure_onnx_model``.

``embedding_dim`` truncates the vectors Matryoshka-style (EmbeddingGemma: 768 → 512/256/128)
and re-normalises them; the index manifest records the dimension, so an index built with
another one is refused.

The embedder id in the index manifest (``model_id``) is the model's name for every backend: the
backends compute the same vectors (checked at export and at every load: cosine to torch ≥ 0.99
for fp32, ≥ 0.95 for int8; measured ≈ 1.000 and ≈ 0.995), so an index built with one backend may
be searched with another — e.g. built with torch on a GPU machine (``vraagbaak ingest --device
cuda --processes N``), served with ONNX int8 on CPU. eval/embed_benchmark.py measures exactly
that ("mixed" rows). A different ``embedding_dim`` is a different vector space: refused.

Bulk ingestion on a GPU machine: ``vraagbaak ingest DIR --device cuda`` (one GPU), or
``--processes N`` for a sentence-transformers multi-process pool (``cuda`` → one process per
GPU, round-robin; ``cuda:1`` → N processes on that GPU; ``cpu`` → N CPU processes), torch
backend only; it needs a CUDA build of torch (the default install is the CPU wheel).
"""

from __future__ import annotations

from .base import (
    BACKENDS,
    MATRYOSHKA_DIMS,
    QUANTIZATIONS,
    Embedder,
    EmbedderExportError,
    backend_label,
    check_embedder_options,
    pool_devices,
    truncate_vectors,
)
from .encoder import SentenceTransformerEmbedder, load_embedder
from .onnx_export import (
    CHECK_TEXTS,
    MIN_COSINE,
    ONNX_DIR,
    ONNX_FILES,
    check_against_torch,
    check_onnx_reference,
    ensure_onnx_model,
    int8_excluded_nodes,
    onnx_dir,
    onnx_stamp_problem,
    read_onnx_stamp,
    source_fingerprint,
)

__all__ = [
    "BACKENDS",
    "CHECK_TEXTS",
    "MATRYOSHKA_DIMS",
    "MIN_COSINE",
    "ONNX_DIR",
    "ONNX_FILES",
    "QUANTIZATIONS",
    "Embedder",
    "EmbedderExportError",
    "SentenceTransformerEmbedder",
    "backend_label",
    "check_against_torch",
    "check_embedder_options",
    "check_onnx_reference",
    "ensure_onnx_model",
    "int8_excluded_nodes",
    "load_embedder",
    "onnx_dir",
    "onnx_stamp_problem",
    "pool_devices",
    "read_onnx_stamp",
    "source_fingerprint",
    "truncate_vectors",
]
