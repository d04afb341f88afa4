#!/usr/bin/env bash
# Set up (idempotent), build the index over the demo corpus (incremental), and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> index over the demo corpus (data/voorbeeld)"
.venv/bin/vraagbaak ingest data/voorbeeld --sync
echo "==> sample search"
.venv/bin/vraagbaak search "Hoeveel geld gaat er naar mantelzorgondersteuning?" --top-k 3
