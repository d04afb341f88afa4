"""The CPU's feature flags, read where the model runs (for choosing the llama.cpp build and for messages)."""

from __future__ import annotations

import re
from pathlib import Path


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (the ``flags`` line of /proc/cpuinfo; empty where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def vector_flags(flags: set[str] | None = None) -> list[str]:
    """The flags that matter for llama.cpp's kernels, for messages and timing notes."""
    flags = cpu_flags() if flags is None else flags
    keep = re.compile(r"^(sse4_2|avx|avx2|fma|f16c|bmi2|avx_vnni|avx512.*|amx.*)$")
    return sorted(f for f in flags if keep.match(f))
