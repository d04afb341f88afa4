"""Choose the fastest installed llama.cpp build that this CPU runs, at run time.

``scripts/setup.sh`` installs the portable build (x86-64-v3: AVX2, FMA, F16C; no AVX-512,
no AMX) as the ordinary ``llama_cpp`` package, and on x86-64 a second build beside it,
``<venv>/llama-variants/avx512/`` (AVX-512 F/CD/VL/DQ/BW + VNNI, still no AMX): on CPUs
that have those, prefill runs ~1.4x faster (README, "Models").  The build machine need not
be the serving machine, so the choice is made where the model runs, from
``/proc/cpuinfo``, before ``llama_cpp`` is imported — the way llama.cpp's own
``GGML_CPU_ALL_VARIANTS`` release builds pick a CPU backend, with two variants and the AMX
one left out (it faulted on virtual machines that list AMX).

``settings.llm_cpu_variant``: ``auto`` (the best one this CPU runs), ``portable`` (never a
variant), or a variant's name (used if installed and runnable here, else an error).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .cpu import cpu_flags

log = logging.getLogger(__name__)

__all__ = ["VARIANTS", "choose_variant", "use_llama_variant", "variants_dir"]

# name -> the /proc/cpuinfo flags it needs (besides the portable build's), best first
VARIANTS: dict[str, frozenset[str]] = {
    "avx512": frozenset({"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512_vnni"}),
}
PORTABLE_NEEDS = frozenset({"avx", "avx2", "fma", "f16c", "bmi2"})


def variants_dir() -> Path:
    return Path(os.environ.get("VRAAGBAAK_LLAMA_VARIANTS_DIR") or Path(sys.prefix) / "llama-variants")


def choose_variant(wanted: str = "auto", flags: set[str] | None = None, root: Path | None = None) -> str | None:
    """The variant to use (None: the portable build).  ValueError when ``wanted`` names a
    variant that is not installed or that this CPU cannot run."""
    if wanted == "portable":
        return None
    root = variants_dir() if root is None else root
    flags = cpu_flags() if flags is None else flags
    installed = {n for n in VARIANTS if (root / n / "llama_cpp" / "__init__.py").is_file()}
    if wanted != "auto":
        if wanted not in VARIANTS:
            raise ValueError(f"unknown llama.cpp build {wanted!r}; known: auto, portable, {', '.join(VARIANTS)}")
        if wanted not in installed:
            raise ValueError(
                f"the llama.cpp build {wanted!r} is not installed in {root} (scripts/setup.sh installs it)"
            )
        lacking = (VARIANTS[wanted] | PORTABLE_NEEDS) - flags
        if lacking:
            raise ValueError(
                f"this CPU cannot run the llama.cpp build {wanted!r}: it lacks {', '.join(sorted(lacking))}"
            )
        return wanted
    for name, needs in VARIANTS.items():
        if name in installed and not ((needs | PORTABLE_NEEDS) - flags):
            return name
    return None


def use_llama_variant(wanted: str = "auto") -> str:
    """Put the chosen build first on ``sys.path`` (before ``llama_cpp`` is imported) and
    return its name ('portable' for the ordinary package).  Once ``llama_cpp`` is imported
    in this process, the build in use stays: its name is returned."""
    loaded = sys.modules.get("llama_cpp")
    if loaded is not None:
        path = Path(getattr(loaded, "__file__", "") or "").resolve()
        root = variants_dir().resolve()
        return path.parent.parent.name if root in path.parents else "portable"
    name = choose_variant(wanted)
    if name is None:
        return "portable"
    folder = str(variants_dir() / name)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    log.info("llama.cpp build: %s (%s)", name, folder)
    return name
