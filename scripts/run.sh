#!/usr/bin/env bash
# Set up (idempotent), build the index over the demo corpus (incremental), answer one sample
# question on the command line (streamed, with its sources), then serve the API and widget.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> index over the demo corpus (data/voorbeeld)"
.venv/bin/vraagbaak ingest data/voorbeeld --sync
# VRAAGBAAK_SAMPLE_QUESTION="" skips the sample answer
question="${VRAAGBAAK_SAMPLE_QUESTION-Sinds wanneer is de gemeente verantwoordelijk voor de zorgtaken die vroeger onder de AWBZ vielen?}"
if [ -n "$question" ]; then
  echo "==> sample question: $question"
  .venv/bin/vraagbaak ask "$question"
fi
echo "==> serving on http://127.0.0.1:${VRAAGBAAK_PORT:-8000}  (demo page: /demo, API docs: /docs; Ctrl-C stops)"
# --dev: requests from this machine need no API key (see README, 'Access'); never on a shared host
exec .venv/bin/vraagbaak serve --dev
