"""Run time: map ``settings.embedder`` / ``settings.llm`` to a local path (no install, no fetch)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..settings import Settings, get_settings
from .install import _models_dir, _verify_installed
from .registry import INSTALL_HINT, REGISTRY, Kind, ModelError, ModelNotInstalledError, ModelSpec


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith(("/", "./", "../", "~", ".\\"))
        or "\\" in value
        or value.count("/") > 1
        or value.endswith((".gguf", ".bin", ".safetensors"))
    )


def _resolve_registry(value: str, kind: Kind, settings: Settings, reg: Mapping[str, ModelSpec]) -> str:
    spec = reg[value]
    if spec.kind != kind:
        raise ModelError(f"{value!r} is a {spec.kind} model, not a {kind} model")
    return str(_verify_installed(_models_dir(settings), spec, full=False, progress=False))


def resolve_embedder(settings: Settings | None = None, *, registry: Mapping[str, ModelSpec] | None = None) -> str:
    """What to pass to ``SentenceTransformer(...)`` for ``settings.embedder``.

    * a registry name -> the verified local folder (ModelNotInstalledError with the hint
      "run `vraagbaak models install`" when missing; ModelVerificationError on a bad hash);
    * an existing local path -> that path;
    * anything else (a hub id like ``"org/name"``) -> unchanged.  Loading that needs
      Hugging Face hub access, which production sites do not have.
    A value that looks like a path but does not exist raises ModelNotInstalledError.
    """
    settings = settings or get_settings()
    reg = REGISTRY if registry is None else registry
    value = settings.embedder
    if value in reg:
        return _resolve_registry(value, "embedder", settings, reg)
    p = Path(value).expanduser()
    if p.exists():
        return str(p)
    if _looks_like_path(value):
        raise ModelNotInstalledError(f"embedder path {value!r} does not exist")
    return value


def resolve_llm(settings: Settings | None = None, *, registry: Mapping[str, ModelSpec] | None = None) -> str:
    """Path of the GGUF file for ``settings.llm``: a registry name (verified install) or a
    path to a ``.gguf`` file (or a folder holding exactly one).  Otherwise
    ModelNotInstalledError."""
    settings = settings or get_settings()
    reg = REGISTRY if registry is None else registry
    value = settings.llm
    if value in reg:
        return _resolve_registry(value, "llm", settings, reg)
    p = Path(value).expanduser()
    if p.is_file():
        return str(p)
    if p.is_dir():
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(ggufs[0])
        raise ModelNotInstalledError(f"llm folder {p} holds {len(ggufs)} .gguf files; name one")
    known = ", ".join(n for n, s in reg.items() if s.kind == "llm")
    raise ModelNotInstalledError(
        f"llm {value!r} is neither a registry model ({known}) nor an existing .gguf file; "
        f"{INSTALL_HINT} or set VRAAGBAAK_LLM to a GGUF path"
    )
