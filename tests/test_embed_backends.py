"""Embedding backends (torch / ONNX fp32 / ONNX int8), Matryoshka truncation and multi-process
ingest options (rag/embed.py). The fast tests need no model; the one ``slow`` test exports (once,
cached beside the model) and loads the int8 ONNX model and compares it with torch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from rag import embed as E
from rag.embed import base as EB
from rag.embed import onnx_export as EX
from rag.index import EmbedderMismatchError, Manifest, check_embedder
from rag.settings import Settings
from tests.conftest import DEMO_CORPUS, HashEmbedder

# --------------------------------------------------------------------------- settings


def test_defaults_are_unchanged():
    s = Settings()
    got = (s.embedder_backend, s.embedder_quantize, s.embedding_dim, s.embedder_processes)
    assert got == ("torch", "none", None, 1)


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("VRAAGBAAK_EMBEDDER_BACKEND", "onnx")
    monkeypatch.setenv("VRAAGBAAK_EMBEDDER_QUANTIZE", "int8")
    monkeypatch.setenv("VRAAGBAAK_EMBEDDING_DIM", "256")
    monkeypatch.setenv("VRAAGBAAK_EMBEDDER_PROCESSES", "2")
    s = Settings()
    assert (s.embedder_backend, s.embedder_quantize, s.embedding_dim, s.embedder_processes) == ("onnx", "int8", 256, 2)


@pytest.mark.parametrize(
    "field,value",
    [
        ("embedder_backend", "tensorflow"),
        ("embedder_quantize", "int4"),
        ("embedding_dim", 0),
        ("embedder_processes", 0),
    ],
)
def test_settings_reject_bad_values(field, value):
    with pytest.raises(ValidationError):
        Settings(**{field: value})


# --------------------------------------------------------------------------- option checks


@pytest.mark.parametrize(
    "backend,quantize,dim,processes",
    [("torch", "none", None, 1), ("onnx", "none", 512, 1), ("onnx", "int8", 128, 1), ("torch", "none", 256, 4)],
)
def test_valid_option_combinations(backend, quantize, dim, processes):
    E.check_embedder_options(backend, quantize, dim, processes, model_name="embeddinggemma-300m", full_dim=768)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"backend": "openvino"}, "embedder_backend must be one of"),
        ({"backend": "torch", "quantize": "int8"}, "needs embedder_backend='onnx'"),
        ({"backend": "onnx", "processes": 2}, "needs embedder_backend='torch'"),
        ({"backend": "torch", "processes": 0}, "at least 1"),
        ({"backend": "torch", "embedding_dim": 300, "model_name": "embeddinggemma-300m"}, "not a Matryoshka size"),
        ({"backend": "torch", "embedding_dim": 1024, "full_dim": 768}, "larger than the model's 768"),
        ({"backend": "torch", "embedding_dim": -1}, "must be positive"),
    ],
)
def test_invalid_option_combinations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        E.check_embedder_options(**kwargs)


def test_other_models_accept_any_size_up_to_their_own():
    E.check_embedder_options("torch", embedding_dim=300, model_name="/srv/models/my-embedder", full_dim=384)


def test_load_embedder_refuses_before_loading_anything(settings):
    # the model is not installed under settings.models_dir: the option check must come first
    s = settings.model_copy(update={"embedder_backend": "onnx", "embedder_processes": 2})
    with pytest.raises(ValueError, match="needs embedder_backend='torch'"):
        E.load_embedder(s)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a CPU-only torch")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="has no CUDA"):
        E.SentenceTransformerEmbedder("/nonexistent/model", device="cuda")


@pytest.mark.parametrize(
    "device,processes,gpus,expected",
    [
        ("cpu", 1, 0, None),
        ("cpu", 3, 0, ["cpu", "cpu", "cpu"]),
        ("cuda", 4, 2, ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]),
        ("cuda", 2, 4, ["cuda:0", "cuda:1"]),
        ("cuda:1", 2, 4, ["cuda:1", "cuda:1"]),
        ("mps", 2, 0, ["mps", "mps"]),
    ],
)
def test_pool_devices(device, processes, gpus, expected):
    assert E.pool_devices(device, processes, gpus) == expected


def test_pool_devices_without_gpu():
    with pytest.raises(ValueError, match="no CUDA device"):
        E.pool_devices("cuda", 2, 0)


def test_backend_label():
    labels = [E.backend_label(*a) for a in [("torch",), ("onnx",), ("onnx", "int8")]]
    assert labels == ["torch", "onnx-fp32", "onnx-int8"]


# --------------------------------------------------------------------------- truncation


def test_truncate_vectors_renormalises_the_prefix():
    rng = np.random.default_rng(0)
    x = EB._normalise(rng.normal(size=(5, 768)))
    t = E.truncate_vectors(x, 256)
    assert t.shape == (5, 256) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-6)
    # same direction as the prefix (what sentence-transformers' truncate_dim + normalise gives)
    prefix = x[:, :256] / np.linalg.norm(x[:, :256], axis=1, keepdims=True)
    np.testing.assert_allclose(t, prefix, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(E.truncate_vectors(x, None), x, rtol=1e-6)
    np.testing.assert_allclose(E.truncate_vectors(x, 768), x, rtol=1e-6)


def _dense(text: str, dim: int = 768) -> np.ndarray:
    """A deterministic dense unit vector per text."""
    seed = int.from_bytes(text.encode("utf-8")[:8].ljust(8, b"\0"), "little")
    return EB._normalise(np.random.default_rng(seed).normal(size=dim))[0]


class FakeRunner:
    """Stands in for the torch / ONNX runner: one dense vector per text, calls recorded."""

    def __init__(self, dim: int = 768) -> None:
        self.full_dim = dim
        self.prompts = {"query": "vraag: ", "document": "tekst: "}
        self.calls: list[tuple[list[str], str | None]] = []

    def encode(self, texts, prompt_name, batch_size, progress):
        self.calls.append((list(texts), prompt_name))
        return np.vstack([_dense(t, self.full_dim) for t in texts])


def test_embedder_truncates_prompts_and_keeps_order():
    runner = FakeRunner()
    emb = E.SentenceTransformerEmbedder.with_runner(runner, "fake", truncate_dim=128)
    texts = ["kort", "een veel langere tekst over de begroting", "middellange tekst"]
    vecs = emb.embed_documents(texts)
    assert emb.dim == 128 and vecs.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    for t, v in zip(texts, vecs):  # order restored after the sort by length
        np.testing.assert_allclose(v, E.truncate_vectors(_dense(t), 128)[0], rtol=1e-5, atol=1e-6)
    assert runner.calls[0][1] == "document"
    q = emb.embed_query("Wat kost de zorg?")
    assert q.shape == (128,) and runner.calls[-1] == (["Wat kost de zorg?"], "query")
    assert emb.embed_documents([]).shape == (0, 128)


# --------------------------------------------------------------------------- index manifest


class TruncatingEmbedder:
    def __init__(self, dim: int | None, model_id: str = "embeddinggemma-300m") -> None:
        self.inner = HashEmbedder(dim=768, model_id=model_id)
        self.model_id = model_id
        self.dim = dim or 768
        self._dim = dim

    def embed_documents(self, texts, progress=False):
        return E.truncate_vectors(self.inner.embed_documents(texts), self._dim)

    def embed_query(self, text):
        return E.truncate_vectors(self.inner.embed_query(text), self._dim)[0]


def test_manifest_records_the_truncated_dim_and_refuses_another(settings):
    from rag.index import open_snapshot
    from rag.indexing import ingest_paths

    report = ingest_paths([DEMO_CORPUS], settings, TruncatingEmbedder(256))
    assert report.ok, report.failed
    snap = open_snapshot(settings.index_dir)
    try:
        assert (snap.manifest.embedder, snap.manifest.dim) == ("embeddinggemma-300m", 256)
        assert snap.vectors.d == 256
    finally:
        snap.close()
    with pytest.raises(EmbedderMismatchError, match=r"dim 256\).*dim 768\)"):
        ingest_paths([DEMO_CORPUS], settings, TruncatingEmbedder(None))


def test_backends_share_the_embedder_id():
    # onnx fp32 / int8 vectors are checked to be the torch vectors (cosine >= 0.99 / 0.95):
    # an index built with one backend is searched with another; only the size must match
    m = Manifest(embedder="embeddinggemma-300m", dim=768)
    check_embedder(m, "embeddinggemma-300m", 768)
    with pytest.raises(EmbedderMismatchError):
        check_embedder(m, "embeddinggemma-300m", 512)


# --------------------------------------------------------------------------- ONNX stamp


def _fake_model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "modules.json").write_text("[]")
    (root / "model.safetensors").write_bytes(b"weights")
    return root


def _fake_export(root: Path, name: str = "model.onnx", content: bytes = b"onnx") -> Path:
    folder = E.onnx_dir(root)
    folder.mkdir(exist_ok=True)
    f = folder / name
    f.write_bytes(content)
    stamp = {
        "version": EX._STAMP_VERSION,
        "quantize": "none",
        "files": {name: EX._file_entry(f)},
        "source": {"fingerprint": E.source_fingerprint(root)},
    }
    EX._stamp_file(f).write_text(json.dumps(stamp))
    return f


def test_stamp_vouches_for_an_unchanged_export(tmp_path):
    root = _fake_model(tmp_path)
    assert E.onnx_stamp_problem(root, "none") == "not exported yet"
    f = _fake_export(root)
    assert E.onnx_stamp_problem(root, "none") is None
    assert E.onnx_stamp_problem(root, "none", full=True) is None
    assert E.onnx_stamp_problem(root, "int8") == "not exported yet"
    # the exports themselves are not part of the source fingerprint
    assert "onnx/model.onnx" not in E.source_fingerprint(root)
    # touched but identical: the sha256 still matches
    os.utime(f, ns=(1, 1))
    assert E.onnx_stamp_problem(root, "none") is None


def test_stamp_rejects_a_changed_export(tmp_path):
    root = _fake_model(tmp_path)
    f = _fake_export(root)
    f.write_bytes(b"ONNX")  # same size, other bytes
    assert "sha256 mismatch" in E.onnx_stamp_problem(root, "none")
    f.unlink()
    assert "missing" in E.onnx_stamp_problem(root, "none")


def test_stamp_rejects_a_changed_source_model(tmp_path):
    root = _fake_model(tmp_path)
    _fake_export(root)
    (root / "model.safetensors").write_bytes(b"other weights")
    assert E.onnx_stamp_problem(root, "none") == "the source model changed since the export"


def test_ensure_onnx_model_uses_a_valid_export_without_torch(tmp_path, monkeypatch):
    root = _fake_model(tmp_path)
    f = _fake_export(root)
    monkeypatch.setattr(EX, "_load_torch_model", lambda *a: pytest.fail("must not export again"))
    assert E.ensure_onnx_model(root, "none") == f


def test_ensure_onnx_model_needs_a_local_sentence_transformers_folder(tmp_path):
    with pytest.raises(E.EmbedderExportError, match="local sentence-transformers folder"):
        E.ensure_onnx_model("google/embeddinggemma-300m")
    with pytest.raises(ValueError, match="embedder_quantize"):
        E.ensure_onnx_model(_fake_model(tmp_path), "int4")


def _no_torch(monkeypatch):
    monkeypatch.setattr(EX, "_load_torch_model", lambda root, threads: object())
    monkeypatch.setattr(EX, "_torch_reference", lambda st: np.eye(len(E.CHECK_TEXTS), 8, dtype=np.float32))


def test_failed_export_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    root = _fake_model(tmp_path)
    _no_torch(monkeypatch)

    def boom(st, out):
        out.write_bytes(b"half")
        raise RuntimeError("Gemma3 is not supported")

    monkeypatch.setattr(EX, "_torch_export", boom)
    with pytest.raises(E.EmbedderExportError, match=r"exporting model to ONNX \(none\) failed: RuntimeError: Gemma3"):
        E.ensure_onnx_model(root, "none")
    assert sorted(p.name for p in E.onnx_dir(root).iterdir()) == [".export.lock"]


def test_export_below_the_cosine_threshold_is_refused(tmp_path, monkeypatch):
    root = _fake_model(tmp_path)
    _no_torch(monkeypatch)
    monkeypatch.setattr(EX, "_torch_export", lambda st, out: out.write_bytes(b"onnx"))
    monkeypatch.setattr(EX, "check_against_torch", lambda out, root, refs: 0.93)
    with pytest.raises(E.EmbedderExportError, match=r"cosine 0\.9300 < 0\.99"):
        E.ensure_onnx_model(root, "none")
    assert E.onnx_stamp_problem(root, "none") == "not exported yet"
    assert not (E.onnx_dir(root) / "model.onnx").exists()


# --------------------------------------------------------------------------- CLI


def test_ingest_device_and_processes_reach_the_embedder(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rag.cli import app

    seen = {}

    def fake_load(settings):
        seen.update(device=settings.embedder_device, processes=settings.embedder_processes)
        return HashEmbedder()

    monkeypatch.setattr(E, "load_embedder", fake_load)
    args = ["ingest", str(DEMO_CORPUS), "--index-dir", str(tmp_path / "idx"), "--device", "cuda", "--processes", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == {"device": "cuda", "processes": 2}


def test_ingest_reports_impossible_options(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rag.cli import app

    monkeypatch.setenv("VRAAGBAAK_EMBEDDER_BACKEND", "onnx")
    args = ["ingest", str(DEMO_CORPUS), "--index-dir", str(tmp_path / "i"), "--processes", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "needs embedder_backend='torch'" in result.output


# --------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_int8_onnx_matches_torch(real_embedder):
    """Exports (once; cached in <model>/onnx/) and loads the int8 model; its vectors must be the
    torch vectors up to quantisation noise, with the same tokens and prompts."""
    from rag.models import resolve_embedder

    path = resolve_embedder(Settings())
    onnx_emb = E.SentenceTransformerEmbedder(path, model_id="embeddinggemma-300m", backend="onnx", quantize="int8")
    assert (onnx_emb.dim, onnx_emb.backend, onnx_emb.model_id) == (768, "onnx-int8", real_embedder.model_id)
    stamp = E.read_onnx_stamp(E.onnx_dir(path) / E.ONNX_FILES["int8"])
    assert stamp["check"]["min_cosine"] >= 0.95 and E.onnx_stamp_problem(path, "int8", full=True) is None

    texts = [
        "De gemeente verstrekt een bijdrage voor de huishoudelijke hulp aan inwoners met een indicatie.",
        "In 2023 stijgen de lasten van de jeugdzorg met 2,4 miljoen euro ten opzichte van de begroting.",
        "Kort.",
    ]
    cos_docs = (onnx_emb.embed_documents(texts) * real_embedder.embed_documents(texts)).sum(axis=1)
    question = "Wat kost de jeugdzorg?"
    cos_query = float(onnx_emb.embed_query(question) @ real_embedder.embed_query(question))
    assert cos_docs.min() >= 0.95 and cos_query >= 0.95, (cos_docs, cos_query)

    # the same token ids as sentence-transformers (prompt prepended, truncated at the cap)
    long_text = "Het college informeert de raad. " * 400
    st = real_embedder.runner.model
    prompt = st.prompts["document"]
    ids_st = st.preprocess([prompt + long_text])["input_ids"][0].tolist()
    enc = onnx_emb.runner.tokenizer(
        [prompt + long_text], truncation="longest_first", max_length=onnx_emb.runner.max_seq_length
    )
    assert enc["input_ids"][0] == ids_st and len(ids_st) == 512

    # Matryoshka on top of the ONNX vectors: the truncated prefix, re-normalised
    small = E.SentenceTransformerEmbedder.with_runner(onnx_emb.runner, "embeddinggemma-300m", truncate_dim=256)
    np.testing.assert_allclose(
        small.embed_query("Wat kost de jeugdzorg?"),
        E.truncate_vectors(onnx_emb.embed_query("Wat kost de jeugdzorg?"), 256)[0],
        rtol=1e-4,
        atol=1e-5,
    )
