"""Prove that the installed llama.cpp runs on this CPU before anyone asks a question.

Two checks, both used by ``scripts/setup.sh`` (``vraagbaak models smoke``), ``vraagbaak
models verify`` and the tests:

* ``smoke_test(model_path)`` loads the GGUF in a **child process** and generates a few
  tokens.  A crash there (SIGSEGV, SIGILL: an instruction this CPU lacks or cannot run)
  kills only the child; ``SmokeResult.message()`` says what failed, which CPU flags this
  machine has, which llama.cpp build is installed and how to rebuild it.  It also reports
  prefill and decode tokens/s (``eval/llama_build_benchmark.py`` uses it to compare builds).
* ``scan_library(path)`` disassembles a llama.cpp library (``objdump -d``) and lists the
  instruction-set extensions its code uses that this CPU lacks, and any AMX instructions
  (llama.cpp's AMX path faulted on virtual machines with AMX in /proc/cpuinfo, so the
  build excludes it whatever the CPU says).

Run as a child: ``python -m rag.llm.smoke MODEL.gguf [--prefill N] [--decode N]`` prints
one JSON line.  Only the standard library and llama_cpp are imported there.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cpu import cpu_flags, vector_flags

__all__ = [
    "AMX_MNEMONICS",
    "LibraryScan",
    "SmokeResult",
    "build_info",
    "cpu_flags",
    "llama_libraries",
    "scan_library",
    "smoke_test",
]

# --------------------------------------------------------------------------- CPU and build


def llama_package_dir() -> Path | None:
    """The installed llama_cpp package folder, found without importing it (an import loads
    the native libraries, which is what may crash)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def llama_libraries() -> list[Path]:
    """The native libraries of the installed llama-cpp-python (libggml-cpu*.so first)."""
    pkg = llama_package_dir()
    if pkg is None:
        return []
    import hashlib

    seen: dict[str, Path] = {}  # a wheel holds libx.so, libx.so.0, libx.so.0.25 as copies
    for p in sorted((pkg / "lib").glob("*.so*"), key=lambda p: len(p.name)):
        if p.is_file():
            with p.open("rb") as fh:
                seen.setdefault(hashlib.file_digest(fh, "sha256").hexdigest(), p.resolve())
    return sorted(seen.values(), key=lambda p: (not p.name.startswith("libggml-cpu"), p.name))


BUILD_INFO = "vraagbaak-build.txt"  # written next to the libraries by scripts/setup.sh


def build_info(variant: str | None = None) -> str:
    """How the installed llama.cpp (or its build ``variant``, rag/llm/variants.py) was built:
    the flags recorded by scripts/setup.sh, or ''."""
    if variant and variant != "portable":
        from .variants import variants_dir

        pkg: Path | None = variants_dir() / variant / "llama_cpp"
    else:
        pkg = llama_package_dir()
    if pkg is None:
        return ""
    p = pkg / "lib" / BUILD_INFO
    try:
        return p.read_text().strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------- library scan

AMX_MNEMONICS = frozenset(
    {
        "ldtilecfg",
        "sttilecfg",
        "tilerelease",
        "tilezero",
        "tileloadd",
        "tileloaddt1",
        "tilestored",
        "tdpbssd",
        "tdpbsud",
        "tdpbusd",
        "tdpbuud",
        "tdpbf16ps",
        "tdpfp16ps",
    }
)

# extension -> (the /proc/cpuinfo flag(s) any of which allows it, a test on one disassembled
# instruction line).  Enough to tell the levels llama.cpp builds apart: x86-64-v2 (SSE4.2),
# v3 (AVX, AVX2, FMA, F16C, BMI2), AVX-512 (zmm registers, mask registers), AVX-VNNI, AMX.
_EXTENSIONS: list[tuple[str, tuple[str, ...], re.Pattern]] = [
    ("amx", ("amx_tile",), re.compile(r"\t(?:" + "|".join(sorted(AMX_MNEMONICS)) + r")\b")),
    ("avx512f", ("avx512f",), re.compile(r"%zmm\d|%k[1-7]\b")),
    ("avx_vnni", ("avx_vnni", "avx512_vnni"), re.compile(r"\t\{vex\} vpdpbu?s[sd]")),
    ("fma", ("fma",), re.compile(r"\tvf(?:n?m(?:add|sub)|maddsub|msubadd)\d{3}")),
    ("f16c", ("f16c",), re.compile(r"\tvcvt(?:ph2ps|ps2ph)\s+[^\n]*%[xy]mm")),
    (
        "avx2",
        ("avx2",),
        re.compile(
            r"\tv(?:inserti128|extracti128|perm2i128|permq|permd|pbroadcast[bwdq]|psllv[dq]|psrlv[dq]|psrav[dq]|pgather\w+|gather\w+)\b"
        ),
    ),
    ("avx", ("avx",), re.compile(r"%ymm\d")),
    ("bmi2", ("bmi2",), re.compile(r"\t(?:shlx|shrx|sarx|pdep|pext|bzhi|mulx|rorx)\b")),
]


@dataclass
class LibraryScan:
    path: Path
    uses: dict[str, str] = field(default_factory=dict)  # extension -> first instruction seen
    missing: list[str] = field(default_factory=list)  # extensions this CPU lacks
    amx: bool = False

    @property
    def ok(self) -> bool:
        return not self.missing and not self.amx

    def describe(self) -> str:
        if self.ok:
            return f"{self.path.name}: uses {', '.join(sorted(self.uses)) or 'baseline x86-64 only'}"
        parts = []
        if self.amx:
            parts.append(f"AMX instructions ({self.uses.get('amx', '')})")
        if self.missing:
            parts.append("instructions this CPU lacks: " + ", ".join(f"{m} ({self.uses[m]})" for m in self.missing))
        return f"{self.path.name}: " + "; ".join(parts)


def scan_library(path: Path | str, flags: set[str] | None = None, objdump: str | None = None) -> LibraryScan:
    """Disassemble ``path`` and report the instruction-set extensions its code uses.

    ``flags``: the CPU's flags (default: this machine's).  Raises RuntimeError when objdump
    is missing or fails."""
    path = Path(path)
    flags = cpu_flags() if flags is None else flags
    tool = objdump or shutil.which("objdump")
    if tool is None:
        raise RuntimeError("objdump is not installed (Debian: apt-get install binutils)")
    proc = subprocess.Popen(
        [tool, "-d", "--no-show-raw-insn", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    scan = LibraryScan(path)
    todo = list(_EXTENSIONS)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "\t" not in line:
            continue
        for item in list(todo):
            name, _, pattern = item
            if pattern.search(line):
                scan.uses[name] = line.split("\t", 1)[1].strip()[:80]
                todo.remove(item)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"objdump failed on {path}: {err.strip()[:300]}")
    scan.amx = "amx" in scan.uses
    scan.missing = [n for n, allowed, _ in _EXTENSIONS if n in scan.uses and not (set(allowed) & flags)]
    return scan


# --------------------------------------------------------------------------- smoke test

PROMPT = "Vraag: Wat is de hoofdstad van Nederland?\nAntwoord:"
REBUILD_HINT = (
    "Rebuild llama-cpp-python portably and run setup again:\n"
    "    rm -rf ~/.cache/vraagbaak/wheels/llama-* && bash scripts/setup.sh\n"
    "(the default build is portable: -DGGML_NATIVE=OFF, no AVX-512, no AMX; on a CPU without AVX2, set\n"
    'VRAAGBAAK_LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF '
    '-DGGML_BMI2=OFF -DLLAVA_BUILD=OFF"). The kernel log (dmesg) names the faulting instruction.'
)


@dataclass
class SmokeResult:
    ok: bool
    model_path: str
    returncode: int | None = None
    seconds: float = 0.0
    detail: dict = field(default_factory=dict)  # the child's JSON: tokens/s, text
    output: str = ""  # the child's stderr/stdout tail on failure
    timed_out: bool = False
    build: str = "portable"  # the llama.cpp build the child ran (rag/llm/variants.py)

    @property
    def signal_name(self) -> str | None:
        if self.returncode is not None and self.returncode < 0:
            try:
                return signal.Signals(-self.returncode).name
            except ValueError:
                return str(-self.returncode)
        return None

    def message(self) -> str:
        """One paragraph for a person: what ran, what happened, what to do."""
        if self.ok:
            d = self.detail
            return (
                f"llama.cpp ({self.build} build) runs on this CPU: {d.get('decode_tokens', 0)} tokens generated "
                f"(prefill {d.get('prefill_tokens_per_s', 0):.0f} tokens/s, "
                f"decode {d.get('decode_tokens_per_s', 0):.1f} tokens/s, {self.seconds:.1f} s in all)"
            )
        if self.timed_out:
            what = f"did not finish within {self.seconds:.0f} s"
        elif self.signal_name:
            what = f"was killed by {self.signal_name}"
            if self.signal_name in ("SIGILL", "SIGSEGV", "SIGBUS"):
                what += " (a fault in native code: often an instruction set this machine cannot run)"
        else:
            what = f"failed with exit status {self.returncode}"
        lines = [
            f"The LLM smoke test {what}: loading {self.model_path} and generating a few tokens in a child process.",
            f"CPU: {platform.machine()} {_cpu_model()}; vector flags: {' '.join(vector_flags()) or '(none found)'}",
            f"llama.cpp build: {self.build}: {build_info(self.build) or '(not recorded: built outside scripts/setup.sh)'}",
        ]
        tail = self.output.strip()
        if tail:
            lines.append("Its last output:\n    " + "\n    ".join(tail.splitlines()[-8:]))
        if self.signal_name or self.timed_out:
            if self.build != "portable":
                lines.append(
                    f"The {self.build} build is chosen for this CPU's flags; VRAAGBAAK_LLM_CPU_VARIANT=portable "
                    "runs the portable build instead."
                )
            lines.append(REBUILD_HINT)
        else:
            lines.append(
                "If the model file is damaged, `vraagbaak models verify` re-hashes it and "
                "`vraagbaak models install` fetches it again."
            )
        return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def smoke_test(
    model_path: str | Path,
    *,
    timeout: float = 300.0,
    prefill: int = 0,
    decode: int = 8,
    threads: int | None = None,
    command: list[str] | None = None,
    pythonpath: list[str] | None = None,
    variant: str = "auto",
) -> SmokeResult:
    """Load ``model_path`` and generate ``decode`` tokens in a child process.

    ``prefill``: prompt tokens to time (0: a short fixed prompt).  ``command`` replaces the
    child's command line (the tests use it to make a child that crashes).  ``pythonpath``:
    folders searched first (another llama_cpp build, for eval/llama_build_benchmark.py, which
    sets ``variant="portable"`` so that the path decides).  ``variant``: the build to run
    (settings.llm_cpu_variant; ValueError when it cannot run here)."""
    from .variants import choose_variant

    build = choose_variant(variant) or "portable"
    cmd = command or [
        sys.executable,
        "-m",
        "rag.llm.smoke",
        str(model_path),
        "--prefill",
        str(prefill),
        "--decode",
        str(decode),
        "--variant",
        build,
    ] + (["--threads", str(threads)] if threads else [])
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    paths = [*(pythonpath or []), root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raw = exc.stderr or b""
        out = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        return SmokeResult(False, str(model_path), None, time.monotonic() - t0, output=out, timed_out=True, build=build)
    seconds = time.monotonic() - t0
    detail: dict = {}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                detail = json.loads(line)
            except json.JSONDecodeError:
                pass
            break
    ok = proc.returncode == 0 and bool(detail.get("ok"))
    output = "" if ok else (proc.stderr + ("\n" + detail["error"] if detail.get("error") else ""))
    return SmokeResult(ok, str(model_path), proc.returncode, seconds, detail, output, build=build)


def _child(argv: list[str]) -> int:  # pragma: no cover - runs in the child process
    import argparse

    ap = argparse.ArgumentParser(prog="python -m rag.llm.smoke")
    ap.add_argument("model")
    ap.add_argument("--prefill", type=int, default=0, help="prompt tokens to time (0: a short prompt)")
    ap.add_argument("--decode", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variant", default="auto", help="llama.cpp build: auto, portable or a variant's name")
    args = ap.parse_args(argv)
    try:
        from rag.llm.variants import use_llama_variant

        build = use_llama_variant(args.variant)
        import llama_cpp

        threads = args.threads or max(1, len(os.sched_getaffinity(0)))
        t0 = time.perf_counter()
        n_ctx = max(512, args.prefill + args.decode + 64)
        llm = llama_cpp.Llama(
            model_path=args.model,
            n_ctx=n_ctx,
            n_batch=512,
            n_threads=threads,
            n_threads_batch=threads,
            seed=0,
            verbose=False,
        )
        load_s = time.perf_counter() - t0
        if args.prefill:
            base = llm.tokenize(("De gemeenteraad besluit over de begroting van het komende jaar. " * 200).encode())
            tokens = base[: args.prefill]
        else:
            tokens = llm.tokenize(PROMPT.encode())
        t1 = time.perf_counter()
        llm.eval(tokens)  # the prefill
        prefill_s = time.perf_counter() - t1
        out: list[int] = []
        t2 = time.perf_counter()
        for _ in range(args.decode):
            tok = llm.sample(temp=0.0)
            if llm.token_eos() == tok:
                # keep decoding a fixed number of tokens: timing needs the count
                tok = llm.tokenize(b" de", add_bos=False)[0]
            out.append(tok)
            llm.eval([tok])
        decode_s = time.perf_counter() - t2
        print(
            json.dumps(
                {
                    "ok": True,
                    "build": build,
                    "threads": threads,
                    "load_s": round(load_s, 2),
                    "prefill_tokens": len(tokens),
                    "prefill_s": round(prefill_s, 3),
                    "prefill_tokens_per_s": round(len(tokens) / prefill_s, 1) if prefill_s else None,
                    "decode_tokens": len(out),
                    "decode_s": round(decode_s, 3),
                    "decode_tokens_per_s": round(len(out) / decode_s, 2) if decode_s else None,
                    "text": llm.detokenize(out).decode("utf-8", errors="replace"),
                }
            ),
            flush=True,
        )
        return 0
    except Exception as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_child(sys.argv[1:]))
