#!/usr/bin/env bash
# The benchmark in one command: set up (idempotent), run every server, write bench/RESULTS.md.
#   bash bench/run.sh                  # full run: about 5 minutes once set up
#   bash bench/run.sh --duration 3     # any bench/run.py option passes through (--help lists them)
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$BENCH_DIR/setup.sh"
exec "$BENCH_DIR/.venvs/ours/bin/python" "$BENCH_DIR/run.py" "$@"
