"""The llama.cpp build runs on this CPU: its libraries hold no AMX and no instruction this CPU
lacks (objdump), and the smoke test proves it in a child process — or says clearly what
failed (a real SIGSEGV of a real child, a truncated GGUF)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.llm.smoke import cpu_flags, llama_libraries, scan_library, smoke_test, vector_flags

needs_binutils = pytest.mark.skipif(
    not (shutil.which("objdump") and shutil.which("as")), reason="binutils (objdump, as) are not installed"
)

ASM = """
    .text
    .globl f
f:
    vaddps %ymm1, %ymm2, %ymm3
    vfmadd231ps %ymm1, %ymm2, %ymm3
    vpermq $0x4e, %ymm1, %ymm2
    vaddps %zmm1, %zmm2, %zmm3
    ldtilecfg (%rax)
    tdpbssd %tmm1, %tmm2, %tmm3
    ret
"""


@needs_binutils
def test_scan_library_finds_the_extensions_and_what_the_cpu_lacks(tmp_path):
    src, obj = tmp_path / "k.s", tmp_path / "k.o"
    src.write_text(ASM)
    subprocess.run(["as", "-o", str(obj), str(src)], check=True)
    avx2_cpu = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}
    scan = scan_library(obj, flags=avx2_cpu)
    assert {"avx", "fma", "avx2", "avx512f", "amx"} <= set(scan.uses)
    assert scan.amx and scan.missing == ["amx", "avx512f"] and not scan.ok
    assert "ldtilecfg" in scan.describe() and "avx512f" in scan.describe()
    # AMX is refused even where the CPU lists it (it faulted on such virtual machines)
    scan = scan_library(obj, flags=avx2_cpu | {"avx512f", "amx_tile", "amx_int8"})
    assert scan.missing == [] and scan.amx and not scan.ok
    # an AVX2 CPU runs an AVX2-only object
    src.write_text(
        ASM.replace("    vaddps %zmm1, %zmm2, %zmm3\n", "")
        .replace("    ldtilecfg (%rax)\n", "")
        .replace("    tdpbssd %tmm1, %tmm2, %tmm3\n", "")
    )
    subprocess.run(["as", "-o", str(obj), str(src)], check=True)
    assert scan_library(obj, flags=avx2_cpu).ok


@needs_binutils
def test_the_installed_llama_cpp_runs_on_this_cpu():
    """The libraries setup built: no AMX, nothing this CPU cannot execute."""
    libs = llama_libraries()
    if not libs:
        pytest.skip("llama-cpp-python is not installed (scripts/setup.sh installs it)")
    assert any(p.name.startswith("libggml-cpu") for p in libs), libs
    flags = cpu_flags()
    bad = [scan.describe() for scan in (scan_library(p, flags) for p in libs) if not scan.ok]
    assert not bad, f"CPU vector flags: {' '.join(vector_flags(flags))}\n" + "\n".join(bad)


@needs_binutils
def test_the_installed_variants_hold_no_amx_and_the_chosen_one_runs_here():
    from rag.llm.variants import VARIANTS, choose_variant, variants_dir

    installed = [n for n in VARIANTS if (variants_dir() / n / "llama_cpp").is_dir()]
    if not installed:
        pytest.skip("no llama.cpp build variant is installed (scripts/setup.sh installs them on x86-64)")
    flags, chosen = cpu_flags(), choose_variant("auto")
    for name in installed:
        lib = next((variants_dir() / name / "llama_cpp" / "lib").glob("libggml-cpu*.so*"))
        scan = scan_library(lib, flags)
        assert not scan.amx, scan.describe()
        if name == chosen:  # what this CPU will run: nothing it lacks
            assert scan.ok, scan.describe()
        if name == "avx512":
            assert "avx512f" in scan.uses


def _fake_variant(root: Path, name: str) -> None:
    (root / name / "llama_cpp").mkdir(parents=True)
    (root / name / "llama_cpp" / "__init__.py").write_text("")


def test_choose_variant_by_cpu_flags(tmp_path):
    from rag.llm.variants import choose_variant

    v3 = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}
    v4 = v3 | {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512_vnni"}
    assert choose_variant("auto", v4, tmp_path) is None  # nothing installed: the portable build
    _fake_variant(tmp_path, "avx512")
    assert choose_variant("auto", v4, tmp_path) == "avx512"
    assert choose_variant("auto", v4 | {"amx_tile", "amx_int8"}, tmp_path) == "avx512"
    assert choose_variant("auto", v3, tmp_path) is None
    assert choose_variant("auto", v4 - {"avx512_vnni"}, tmp_path) is None  # Skylake-X: no VNNI
    assert choose_variant("portable", v4, tmp_path) is None
    assert choose_variant("avx512", v4, tmp_path) == "avx512"
    with pytest.raises(ValueError, match="lacks avx512_vnni"):
        choose_variant("avx512", v4 - {"avx512_vnni"}, tmp_path)
    with pytest.raises(ValueError, match="unknown llama.cpp build"):
        choose_variant("amx", v4, tmp_path)
    with pytest.raises(ValueError, match="not installed"):
        choose_variant("avx512", v4, tmp_path / "elsewhere")


def test_cpu_flags_parses_cpuinfo():
    text = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 avx512f amx_tile\n"
    assert cpu_flags(text) == {"fpu", "sse4_2", "avx", "avx2", "avx512f", "amx_tile"}
    assert vector_flags(cpu_flags(text)) == ["amx_tile", "avx", "avx2", "avx512f", "sse4_2"]
    assert cpu_flags("") == set()


def test_a_crashing_child_gives_a_clear_message():
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    r = smoke_test("/models/x.gguf", command=crash, timeout=60)
    assert not r.ok and r.signal_name == "SIGSEGV"
    msg = r.message()
    assert "killed by SIGSEGV" in msg and "/models/x.gguf" in msg and "vector flags:" in msg
    assert "rm -rf ~/.cache/vraagbaak/wheels/llama-*" in msg and "dmesg" in msg


def test_a_hanging_child_times_out():
    r = smoke_test("/m.gguf", command=[sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert not r.ok and r.timed_out and "did not finish" in r.message()


def test_a_truncated_gguf_fails_with_the_reason(tmp_path):
    pytest.importorskip("llama_cpp")
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 4096)
    r = smoke_test(bad, timeout=120)
    assert not r.ok and r.returncode == 1 and r.signal_name is None
    msg = r.message()
    assert "failed with exit status 1" in msg and str(bad) in msg and "models verify" in msg


def test_models_smoke_cli_fails_on_a_truncated_gguf(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    from typer.testing import CliRunner

    from rag.cli import app

    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 4096)
    monkeypatch.setenv("VRAAGBAAK_LLM", str(bad))
    result = CliRunner().invoke(app, ["models", "smoke", "--timeout", "120"])
    assert result.exit_code == 1
    assert "FAILED The LLM smoke test failed" in result.output and str(bad) in result.output


@pytest.mark.slow
def test_the_default_model_generates_in_a_child_process():
    from rag.models import resolve_llm
    from rag.settings import Settings
    from tests.conftest import _require_installed

    pytest.importorskip("llama_cpp")
    s = Settings()
    _require_installed(s.llm)
    r = smoke_test(resolve_llm(s), timeout=300)
    assert r.ok, r.message()
    assert r.detail["decode_tokens"] == 8 and r.detail["decode_tokens_per_s"] > 0
    assert r.detail["prefill_tokens_per_s"] > 0 and "tokens/s" in r.message()


def test_setup_builds_portably_and_keys_the_wheelhouse_by_its_flags():
    """scripts/setup.sh and deploy/Dockerfile choose the same portable flags."""
    root = Path(__file__).resolve().parent.parent
    setup = (root / "scripts" / "setup.sh").read_text()
    docker = (root / "deploy" / "Dockerfile").read_text()
    no_amx = "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF"
    assert (
        f'LLAMA_NO_AMX="{no_amx}"' in setup
        and 'LLAMA_PORTABLE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF $LLAMA_NO_AMX"' in setup
    )
    assert f"-DGGML_NATIVE=OFF -DGGML_AVX512=OFF {no_amx}" in docker
    assert 'dir="$WHEELHOUSE/llama-$key"' in setup
    assert "--force-reinstall" in setup and "models smoke" in setup and "--no-cache-dir" in setup
    assert "-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON $LLAMA_NO_AMX" in setup
