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

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .settings import Settings

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------- runners


class _TorchRunner:
    """sentence-transformers' own encode (optionally over a multi-process pool)."""

    def __init__(
        self,
        model_path: str,
        device: str,
        max_seq_length: int | None,
        truncate_dim: int | None,
        processes: int,
        threads: int | None,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"--device {device}: this torch ({torch.__version__}) has no CUDA; install a CUDA build of "
                "torch on the GPU machine, or use --device cpu"
            )
        if threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(model_path, device=device, local_files_only=True)
        if max_seq_length:
            self.model.max_seq_length = min(max_seq_length, self.model.max_seq_length or max_seq_length)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.full_dim = int(get_dim())
        self.model.truncate_dim = truncate_dim  # sentence-transformers' own Matryoshka truncation
        n_gpus = torch.cuda.device_count() if device == "cuda" else 0
        self.devices = pool_devices(device, processes, n_gpus)
        self.prompts = dict(getattr(self.model, "prompts", {}) or {})

    def encode(self, texts: list[str], prompt_name: str | None, batch_size: int, progress: bool) -> np.ndarray:
        kwargs: dict[str, Any] = {"device": self.devices} if self.devices and len(texts) > 1 else {}
        return self.model.encode(
            texts,
            prompt_name=prompt_name,
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
            **kwargs,
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class _OnnxRunner:
    """An exported sentence-transformers model (token ids → normalised sentence vector) in ONNX
    Runtime, with the model's own tokenizer and prompts; no torch model is loaded."""

    def __init__(
        self,
        onnx_file: Path,
        model_path: str,
        device: str,
        max_seq_length: int | None,
        threads: int | None,
    ) -> None:
        from transformers import AutoTokenizer

        self.session = _ort_session(onnx_file, device, threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        root = Path(model_path)
        self.prompts = dict(_read_json(root / "config_sentence_transformers.json").get("prompts") or {})
        model_max = int(_read_json(root / "sentence_bert_config.json").get("max_seq_length") or 512)
        self.max_seq_length = min(max_seq_length, model_max) if max_seq_length else model_max
        self.full_dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], prompt_name: str | None, batch_size: int, progress: bool) -> np.ndarray:
        prompt = self.prompts.get(prompt_name, "") if prompt_name else ""
        starts = range(0, len(texts), max(1, batch_size))
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches")
        out = [self._run([prompt + t for t in texts[i : i + batch_size]]) for i in starts]
        return np.vstack(out) if out else np.zeros((0, self.full_dim), dtype=np.float32)

    def _run(self, batch: list[str]) -> np.ndarray:
        enc = self.tokenizer(
            batch, padding=True, truncation="longest_first", max_length=self.max_seq_length, return_tensors="np"
        )
        feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        return self.session.run(None, feeds)[0]


def _ort_session(onnx_file: Path, device: str, threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = threads
    # no busy-waiting between batches: on a small shared machine spinning threads steal the
    # cores the LLM and FAISS need (the same finding as Settings.search_threads)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError("--device cuda with the onnx backend needs onnxruntime-gpu (CUDAExecutionProvider)")
        providers.insert(0, "CUDAExecutionProvider")
    elif device != "cpu":
        raise ValueError(f"the onnx backend runs on cpu or cuda, not {device!r}")
    return ort.InferenceSession(str(onnx_file), so, providers=providers)


# --------------------------------------------------------------------------- the embedder


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
    from .models import resolve_embedder

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


# --------------------------------------------------------------------------- ONNX export
#
# Why not sentence-transformers' backend="onnx": it exports and runs through Hugging Face
# Optimum (optimum-onnx), whose releases pin transformers < 4.58, while sentence-transformers
# 6 needs transformers >= 5; installing it would downgrade the stack. The export below is
# what Optimum does, without it: torch.onnx (the torch.export-based exporter) of the whole
# sentence-transformers pipeline (Gemma3 encoder, mean pooling, both Dense layers, Normalize)
# as one graph, token ids in, normalised vector out; int8 is ONNX Runtime's dynamic
# quantisation with the settings of sentence-transformers' export_dynamic_quantized_onnx_model
# ("avx2": uint8 symmetric per-channel weights, MatMul + Gather), except that the MLP
# down-projections stay fp32: quantising their inputs (gelu(gate)·up, with outliers) dropped
# the cosine to torch from 0.995 to 0.965 on EmbeddingGemma.

ONNX_DIR = "onnx"
ONNX_FILES = {"none": "model.onnx", "int8": "model_quint8_avx2.onnx"}
# an exported model must reproduce the torch vectors of CHECK_TEXTS at least this closely
MIN_COSINE = {"none": 0.99, "int8": 0.95}
_STAMP_VERSION = 1
_OPSET = 18
_CHECK_MAX_SEQ = 512
_INT8_EXCLUDE_MODULES = (".down_proj",)
_REFERENCE_TEXT = (
    "De gemeenteraad stelt de begroting 2024 vast; het tekort van 1,2 miljoen euro wordt gedekt uit de "
    "algemene reserve."
)
# (prompt name, text): a document, a query (also run alone: batch size 1), and a text longer
# than the sequence cap (truncation), together in one padded batch
CHECK_TEXTS: tuple[tuple[str, str], ...] = (
    ("document", _REFERENCE_TEXT),
    ("query", "Wanneer heb ik recht op bijzondere bijstand?"),
    (
        "document",
        " ".join(["Het college informeert de raad over de voortgang van de wijkaanpak en de jeugdzorg."] * 60),
    ),
)


def onnx_dir(model_path: str | Path) -> Path:
    """Where the exports of a local model folder are cached."""
    return Path(model_path) / ONNX_DIR


def _stamp_file(onnx_file: Path) -> Path:
    return onnx_file.with_name(onnx_file.name + ".verified.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_entry(path: Path, sha: str | None = None) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha or _sha256(path)}


def source_fingerprint(model_path: str | Path) -> dict[str, list[int]]:
    """Size and mtime of every file of the source model (the exports excluded): a changed or
    re-installed model invalidates its exports."""
    root = Path(model_path)
    out: dict[str, list[int]] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(ONNX_DIR + "/"):
            st = p.stat()
            out[rel] = [st.st_size, st.st_mtime_ns]
    return out


def _exported_files(onnx_file: Path) -> list[Path]:
    """The .onnx file and its external-data files (weights over protobuf's 2 GB limit)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load(str(onnx_file), load_external_data=False)
    locations = {
        e.value
        for t in _get_all_tensors(model)
        if uses_external_data(t)
        for e in t.external_data
        if e.key == "location"
    }
    return [onnx_file] + [onnx_file.parent / loc for loc in sorted(locations)]


def read_onnx_stamp(onnx_file: Path) -> dict[str, Any] | None:
    data = _read_json(_stamp_file(onnx_file))
    return data if data.get("version") == _STAMP_VERSION else None


def onnx_stamp_problem(model_path: str | Path, quantize: str, *, full: bool = False) -> str | None:
    """Why the cached export for ``quantize`` cannot be used (None: the stamp vouches for it).

    Checks the stamp written after the export's checks passed: same source model files
    (size, mtime), same exported files (size and mtime; sha256 when they differ or ``full``).
    """
    onnx_file = onnx_dir(model_path) / ONNX_FILES[quantize]
    stamp = read_onnx_stamp(onnx_file)
    if stamp is None:
        return "not exported yet"
    if stamp.get("quantize") != quantize:
        return "stamp belongs to another export"
    if stamp.get("source", {}).get("fingerprint") != source_fingerprint(model_path):
        return "the source model changed since the export"
    for rel, entry in (stamp.get("files") or {}).items():
        p = onnx_file.parent / rel
        try:
            st = p.stat()
        except OSError:
            return f"{rel} is missing"
        same = st.st_size == entry.get("size") and st.st_mtime_ns == entry.get("mtime_ns")
        if (full or not same) and _sha256(p) != entry.get("sha256"):
            return f"{rel} changed since the export (sha256 mismatch)"
    if not stamp.get("files"):
        return "stamp lists no files"
    return None


@contextlib.contextmanager
def _export_lock(folder: Path) -> Iterator[None]:
    """One exporter per model folder at a time (others wait, then find the export done)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".export.lock").open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_onnx_model(model_path: str | Path, quantize: str = "none", *, threads: int | None = None) -> Path:
    """The verified ONNX file of a local sentence-transformers folder, exported on first use.

    The export (fp32; int8 is quantised from the fp32 export) is written to a temporary folder,
    checked against torch (cosine of CHECK_TEXTS ≥ MIN_COSINE), moved into
    ``<model>/onnx/`` and only then stamped (sha256 of the files, source fingerprint, the
    check's result and a reference vector). Every load re-checks the stamp, and the runner
    re-embeds the reference text (``check_onnx_reference``). Raises EmbedderExportError.
    """
    if quantize not in ONNX_FILES:
        raise ValueError(f"embedder_quantize must be one of {', '.join(QUANTIZATIONS)}, not {quantize!r}")
    root = Path(model_path)
    if not (root / "modules.json").is_file():
        raise EmbedderExportError(
            f"the onnx backend needs a local sentence-transformers folder, not {str(model_path)!r} "
            "(install the model with `vraagbaak models install`, or set embedder_backend=torch)"
        )
    target = onnx_dir(root) / ONNX_FILES[quantize]
    if onnx_stamp_problem(root, quantize) is None:
        return target
    try:
        with _export_lock(onnx_dir(root)):
            problem = onnx_stamp_problem(root, quantize)  # another process may have exported meanwhile
            if problem is None:
                return target
            log.warning("exporting %s to ONNX (%s): %s; this takes minutes, once", root.name, quantize, problem)
            _export(root, quantize, threads)
    except EmbedderExportError:
        raise
    except OSError as exc:
        raise EmbedderExportError(
            f"cannot write the ONNX export beside the model in {onnx_dir(root)}: {exc}. Run the first "
            "load once as the owner of the models folder, or use embedder_backend=torch."
        ) from exc
    return target


def _export(root: Path, quantize: str, threads: int | None) -> None:
    """Export (and check) fp32 if needed, then int8 if asked; called under the export lock."""
    st = _load_torch_model(root, threads)
    refs = _torch_reference(st)
    if quantize == "int8" and onnx_stamp_problem(root, "none") is not None:
        _export_one(root, "none", st, refs)
    _export_one(root, quantize, st, refs)


def _load_torch_model(root: Path, threads: int | None):
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    st = SentenceTransformer(str(root), device="cpu", local_files_only=True)
    st.max_seq_length = _CHECK_MAX_SEQ
    return st.eval()


def _prompted(st_prompts: dict[str, str]) -> list[str]:
    return [st_prompts.get(name, "") + text for name, text in CHECK_TEXTS]


def _torch_reference(st) -> np.ndarray:
    texts = _prompted(dict(st.prompts or {}))
    return _normalise(st.encode(texts, batch_size=len(texts), convert_to_numpy=True, normalize_embeddings=True))


def _export_one(root: Path, quantize: str, st, refs: np.ndarray) -> None:
    folder = onnx_dir(root)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".tmp-{quantize}-"))
    try:
        t0 = time.perf_counter()
        out = tmp / ONNX_FILES[quantize]
        try:
            if quantize == "none":
                _torch_export(st, out)
                extra: dict[str, Any] = {"exporter": "torch.onnx.export(dynamo=True)", "opset": _OPSET}
            else:
                extra = {"quantization": _quantize_int8(folder / ONNX_FILES["none"], out)}
        except Exception as exc:  # noqa: BLE001 - every exporter failure becomes one clear error
            raise EmbedderExportError(
                f"exporting {root.name} to ONNX ({quantize}) failed: {type(exc).__name__}: {exc}. "
                "Use embedder_backend=torch meanwhile."
            ) from exc
        cosine = check_against_torch(out, root, refs)
        if cosine < MIN_COSINE[quantize]:
            raise EmbedderExportError(
                f"the ONNX export of {root.name} ({quantize}) does not reproduce the torch vectors: "
                f"cosine {cosine:.4f} < {MIN_COSINE[quantize]}; not used. Use embedder_backend=torch."
            )
        entries = {p.name: p for p in _exported_files(out)}
        with contextlib.suppress(FileNotFoundError):
            _stamp_file(folder / out.name).unlink()  # no stamp may vouch for half-replaced files
        for name, p in entries.items():
            os.replace(p, folder / name)
        stamp = {
            "version": _STAMP_VERSION,
            "quantize": quantize,
            "file": out.name,
            "files": {name: _file_entry(folder / name) for name in entries},
            "source": {
                "path": str(root),
                "fingerprint": source_fingerprint(root),
                "sha256": {p.relative_to(root).as_posix(): _sha256(p) for p in sorted(root.rglob("*.safetensors"))},
            },
            "check": {"min_cosine": round(cosine, 6), "threshold": MIN_COSINE[quantize], "texts": len(CHECK_TEXTS)},
            "reference": {"text": CHECK_TEXTS[0][1], "prompt": CHECK_TEXTS[0][0], "vector": refs[0].round(7).tolist()},
            "versions": _versions(),
            "seconds": round(time.perf_counter() - t0, 1),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        }
        tmp_stamp = folder / f".{out.name}.{os.getpid()}.tmp"
        tmp_stamp.write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp_stamp, _stamp_file(folder / out.name))
        log.warning("ONNX export %s ready (cosine to torch %.4f, %.0f s)", folder / out.name, cosine, stamp["seconds"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sentence_graph(st):
    """A module: token ids + attention mask → the sentence-transformers pipeline's sentence_embedding."""
    import torch

    class SentenceGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, input_ids, attention_mask):
            return self.st({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

    return SentenceGraph().eval()


def _torch_export(st, out: Path) -> None:
    import torch

    texts = _prompted(dict(st.prompts or {}))[:2]  # two lengths: a padded batch as the example
    enc = st.tokenizer(texts, padding=True, truncation="longest_first", max_length=_CHECK_MAX_SEQ, return_tensors="pt")
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("sequence", min=2, max=8192)
    with torch.no_grad(), _quiet_exporter():
        torch.onnx.export(
            _sentence_graph(st),
            (enc["input_ids"], enc["attention_mask"]),
            str(out),
            dynamo=True,
            external_data=True,
            opset_version=_OPSET,
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' warnings and root-logger nags (e.g. ORT's "consider pre-processing")."""
    import warnings

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def int8_excluded_nodes(onnx_file: Path, modules: Sequence[str] = _INT8_EXCLUDE_MODULES) -> list[str]:
    """Nodes of the exported graph that belong to the named submodules (by the exporter's
    ``namespace`` metadata, e.g. ``…layers.3.mlp.down_proj: torch.nn.modules.linear.Linear/…``)."""
    import onnx

    model = onnx.load(str(onnx_file), load_external_data=False)
    out = []
    for node in model.graph.node:
        ns = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        if node.op_type == "MatMul" and any(f"{m}:" in ns for m in modules):
            out.append(node.name)
    return out


def _quantize_int8(fp32_file: Path, out: Path) -> dict[str, Any]:
    """ONNX Runtime dynamic quantisation (sentence-transformers' "avx2" settings, see above)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = int8_excluded_nodes(fp32_file)
    config = {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "op_types": ["MatMul", "Gather"],
        "weight_type": "QUInt8",
        "per_channel": True,
        "reduce_range": False,
        "weight_symmetric": True,
        "matmul_const_b_only": True,
        "excluded_modules": list(_INT8_EXCLUDE_MODULES),
        "excluded_nodes": len(excluded),
    }
    with _quiet_exporter():
        quantize_dynamic(
            str(fp32_file),
            str(out),
            op_types_to_quantize=config["op_types"],
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QUInt8,
            nodes_to_exclude=excluded,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False, "MatMulConstBOnly": True},
        )
    return config


def check_against_torch(onnx_file: Path, root: Path, refs: np.ndarray) -> float:
    """Smallest cosine between the ONNX model's and torch's vectors of CHECK_TEXTS, run as one
    padded batch and, for the query, alone (batch size 1)."""
    runner = _OnnxRunner(onnx_file, str(root), "cpu", _CHECK_MAX_SEQ, None)
    texts = _prompted(runner.prompts)
    batch = _normalise(runner._run(texts))
    single = _normalise(runner._run([texts[1]]))
    cos = np.concatenate([(batch * refs).sum(axis=1), (single * refs[1:2]).sum(axis=1)])
    return float(cos.min())


def check_onnx_reference(runner: _OnnxRunner, onnx_file: Path, quantize: str) -> float:
    """At load: the reference text's vector from this runtime against the torch vector in the
    stamp; raises EmbedderExportError below MIN_COSINE (e.g. after an onnxruntime change)."""
    stamp = read_onnx_stamp(onnx_file) or {}
    ref = stamp.get("reference") or {}
    if not ref.get("vector"):
        raise EmbedderExportError(f"{_stamp_file(onnx_file)} has no reference vector; delete it to re-export")
    prompt = runner.prompts.get(ref.get("prompt") or "", "")
    got = _normalise(runner._run([prompt + ref["text"]]))[0]
    cosine = float(got @ _normalise(np.asarray(ref["vector"], dtype=np.float32))[0])
    if cosine < MIN_COSINE[quantize]:
        raise EmbedderExportError(
            f"{onnx_file} no longer reproduces the torch reference vector (cosine {cosine:.4f} < "
            f"{MIN_COSINE[quantize]}); delete {onnx_file.parent} to export again, or use embedder_backend=torch"
        )
    return cosine


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime", "onnxscript"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out
