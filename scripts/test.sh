#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, real-model and browser tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# Browser tests: Debian's Chromium (no browser download) and axe-core from npm.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing chromium (Debian) for the widget's browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: the browser tests will be skipped (sudo apt-get install chromium)" >&2
  fi
fi
if [ ! -f tests/browser/node_modules/axe-core/axe.min.js ] && command -v npm >/dev/null; then
  echo "==> npm ci (axe-core) for the browser tests"
  (cd tests/browser && npm ci --silent --no-audit --no-fund)
fi

# Static checks first (seconds): lint, formatting, types of rag/ and service/ (config in pyproject.toml).
echo "==> ruff check, ruff format --check, mypy"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

exec .venv/bin/python -m pytest -q "$@"
