"""The two ways to run the model: sentence-transformers (torch) and an exported ONNX graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .base import pool_devices

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
        self.full_dim = int(get_dim() or 0)
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
