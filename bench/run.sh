#!/usr/bin/env bash
# The benchmark in one command: set up (idempotent), run every server, write bench/RESULTS.md.
#   bash bench/run.sh                  # full run: about 5 minutes once set up
#   bash bench/run.sh --duration 3     # any bench/run.py option passes through (--help lists them)
# Every server serves the versions the image ships: models/ bundled by its rollouts
# (service/bundle.py: each model's stable version), in bench/out/models; --models-dir overrides.
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$BENCH_DIR/setup.sh"
rm -rf "$BENCH_DIR/out/models"
(cd "$BENCH_DIR/.." && "$BENCH_DIR/.venvs/ours/bin/python" -m service.bundle models "$BENCH_DIR/out/models")
exec "$BENCH_DIR/.venvs/ours/bin/python" "$BENCH_DIR/run.py" --models-dir "$BENCH_DIR/out/models" "$@"
