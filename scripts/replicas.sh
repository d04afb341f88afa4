#!/usr/bin/env bash
# Multi-replica load test (eval/replica_loadtest.py): one llama_cpp.server, N `vraagbaak serve`
# replicas over one index, an ingest mid-run, consistency and writer-lock checks.
# Loopback only; stops everything it started. Runs at a lower CPU priority (NICE, default 10).
# --netns (as root): each replica in a network namespace of its own, PostgreSQL and the LLM
# server on the host side of a private test network (see deploy/README.md).
#
#   bash scripts/replicas.sh                                   # 3 replicas, real LLM
#   bash scripts/replicas.sh --fake-llm --replicas 2 --report /tmp/r.json
#   NICE=0 bash scripts/replicas.sh --replicas 3 --clients 4   # on a quiet machine
#   sudo bash scripts/replicas.sh --netns                      # 3 "hosts", PostgreSQL, real LLM
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run 'bash scripts/setup.sh' first" >&2; exit 2; }
exec nice -n "${NICE:-10}" .venv/bin/python -m eval.replica_loadtest "$@"
