#!/usr/bin/env bash
# Set up (idempotent), build the index over the demo corpus (incremental), and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> index over the demo corpus (data/voorbeeld)"
.venv/bin/vraagbaak ingest data/voorbeeld --sync
echo "==> serving on http://127.0.0.1:${VRAAGBAAK_PORT:-8000}  (demo page: /demo, API docs: /docs; Ctrl-C stops)"
# --dev: requests from this machine need no API key (see README, 'Access'); never on a shared host
exec .venv/bin/vraagbaak serve --dev
