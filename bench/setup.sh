#!/usr/bin/env bash
# Set up what the benchmark needs; safe to run again (each step is skipped when already done).
#
#   wrk                      from Debian's packages (apt-get), the load generator
#   bench/.venvs/ours        `pip install <repo>`: the project's serving install, no extras
#   bench/.venvs/baseline    tensorflow-cpu + fastapi + uvicorn: the book-style peer
#   bench/.venvs/bentoml     bentoml + tensorflow-cpu: the adaptive-batching peer
#   bench/.venvs/tensorflow  tensorflow-cpu alone: only measured (installed size), never run
#
# A venv is rebuilt when its requirement line (or, for `ours`, pyproject.toml) changes; a stamp
# file in the venv records what it was built from. pip's cache is reused, so only the first run
# downloads (a few minutes: TensorFlow is large). BENCH_PYTHON picks the interpreter (python3).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
VENVS="$BENCH_DIR/.venvs"
PYTHON="${BENCH_PYTHON:-python3}"

TF_REQ="tensorflow-cpu==2.21.0"
BASELINE_REQS="$TF_REQ fastapi uvicorn"
BENTOML_REQS="bentoml==1.4.40 $TF_REQ"

log() { printf '[setup] %s\n' "$*" >&2; }

ensure_wrk() {
    if command -v wrk >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        log "wrk is missing and this is not root: install it with 'apt-get install -y wrk'"
        exit 1
    fi
    log "installing wrk from Debian's packages"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null
    fi
}

# make_venv NAME STAMP PIP-ARGS...: (re)create bench/.venvs/NAME unless its stamp already matches.
make_venv() {
    local name="$1" stamp="$2"
    shift 2
    local venv="$VENVS/$name"
    if [ -f "$venv/.bench-stamp" ] && [ "$(cat "$venv/.bench-stamp")" = "$stamp" ] \
        && [ -x "$venv/bin/python" ]; then
        log "$name: up to date"
        return
    fi
    log "$name: building ($*)"
    local started=$SECONDS
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    # (the filter drops pip's notes about this machine's extra local index folders)
    "$venv/bin/python" -m pip install --quiet "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    printf '%s' "$stamp" >"$venv/.bench-stamp"
    log "$name: built in $((SECONDS - started)) s"
}

ensure_wrk
mkdir -p "$VENVS"
PYVER="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"

# `ours` is the plain serving install. The benchmark runs `python -m service` from the repo root,
# so the working tree's service/ is what serves; the venv supplies (and sizes) its dependencies.
# pip builds a local project in place (build/, *.egg-info): install from a staged copy instead, so
# setup never writes into the work tree outside bench/.
OURS_STAMP="$PYVER $(sha256sum "$REPO_DIR/pyproject.toml" | cut -c1-64)"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
for item in pyproject.toml README.md LICENSE service training; do
    if [ -e "$REPO_DIR/$item" ]; then
        cp -r "$REPO_DIR/$item" "$STAGE/"
    fi
done
find "$STAGE" -name __pycache__ -type d -prune -exec rm -rf {} +
make_venv ours "$OURS_STAMP" "$STAGE"
make_venv baseline "$PYVER $BASELINE_REQS" $BASELINE_REQS
make_venv bentoml "$PYVER $BENTOML_REQS" $BENTOML_REQS
make_venv tensorflow "$PYVER $TF_REQ" $TF_REQ
log "ready: wrk $(wrk -v 2>&1 | head -n1 | awk '{print $2}'), venvs in $VENVS"
