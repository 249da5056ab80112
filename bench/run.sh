#!/usr/bin/env bash
# The benchmark in one command: set up (idempotent), run every server, write bench/RESULTS.md.
#   bash bench/run.sh                  # full run: about 5 minutes once set up
#   bash bench/run.sh --duration 3     # any bench/run.py option passes through (--help lists them)
# Every server serves the versions the image ships: models/ bundled by its rollouts
# (service/bundle.py: each model's stable version), plus IMDB's version 2 for its scenarios, in
# bench/out/models; --models-dir overrides.
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$BENCH_DIR/setup.sh"
rm -rf "$BENCH_DIR/out/models"
(cd "$BENCH_DIR/.." && "$BENCH_DIR/.venvs/ours/bin/python" -m service.bundle models "$BENCH_DIR/out/models")
# IMDB's version 2 beside it (not routed: its rollout keeps 1 stable), for the scenarios that
# name it ("version": 2); ours and the limit probe load it, so it counts in their start and memory.
cp -r "$BENCH_DIR/../models/imdb/2" "$BENCH_DIR/out/models/imdb/2"
exec "$BENCH_DIR/.venvs/ours/bin/python" "$BENCH_DIR/run.py" --models-dir "$BENCH_DIR/out/models" "$@"
