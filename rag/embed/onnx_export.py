"""Build time: export the model to ONNX once (fp32 or int8), verify it against torch, stamp it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import QUANTIZATIONS, EmbedderExportError, _normalise
from .runners import _OnnxRunner, _read_json

log = logging.getLogger(__name__)


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
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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


def _export_lock(folder: Path):
    """One exporter per model folder at a time (others wait, then find the export done)."""
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / ".export.lock")


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
        except Exception as exc:
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
