#!/usr/bin/env bash
# A container engine for tests/test_container.py on a Debian machine without Docker or a registry:
#   1. podman (Docker-compatible API), runc, catatonit, Debian's docker-compose 1.29, debootstrap;
#   2. /etc/containers/containers.conf selecting runc (crun fails in this kind of sandbox:
#      `setrlimit RLIMIT_NOFILE` without CAP_SYS_RESOURCE, and "cgroups in hybrid mode");
#   3. a local stand-in for the Dockerfile's base image, docker.io/library/python:3.11-slim-bookworm,
#      built with debootstrap from apt's own Debian mirror (no registry is reachable).
# Idempotent: each step runs only when its result is missing, so a machine keeps the base image
# (and podman its built layers) between runs. Where it cannot run (not root, no apt-get) it says
# so and exits 0: the container test then skips with the reason.
#
# Usage: deploy/podman-setup.sh            (make tools runs it; FORCE_BASE=1 rebuilds the base)
set -euo pipefail

BASE_IMAGE="docker.io/library/python:3.11-slim-bookworm"
CONF=/etc/containers/containers.conf
# catatonit: the init of the pause image that `podman kube play` builds for a pod's infra container.
PACKAGES=(podman runc catatonit docker-compose debootstrap)

note() { echo "podman-setup: $*"; }

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    note "not root with apt-get: podman and the base image are not set up (tests/test_container.py will skip)"
    exit 0
fi

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    note "installing ${missing[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
        note "apt-get could not install ${missing[*]}: tests/test_container.py will skip"
        exit 0
    fi
fi

# Only our keys: an existing file someone wrote by hand is kept as it is.
if [[ ! -f "$CONF" ]]; then
    note "writing $CONF (runtime runc; ulimits this sandbox may set)"
    mkdir -p "$(dirname "$CONF")"
    cat >"$CONF" <<'EOF'
# Written by deploy/podman-setup.sh. crun (podman's default) fails here: it raises RLIMIT_NOFILE
# without CAP_SYS_RESOURCE, and it refuses cgroups in hybrid mode. runc works; the ulimits are
# ones a process without CAP_SYS_RESOURCE may set.
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
fi

if podman image exists "$BASE_IMAGE" && [[ -z "${FORCE_BASE:-}" ]]; then
    note "base image $BASE_IMAGE is there (kept between runs)"
    exit 0
fi

# The mirror apt itself uses (deb822 sources first, then the one-line format).
mirror="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
    | grep -v security | head -n 1 || true)"
if [[ -z "$mirror" ]]; then
    mirror="$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -v security | awk '{print $2}' | head -n 1 || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

root="$(mktemp -d /var/tmp/python-slim-root.XXXXXX)"
trap 'rm -rf "$root"' EXIT
note "building the stand-in $BASE_IMAGE with debootstrap from $mirror (about a minute)"
if ! debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    bookworm "$root" "$mirror" >"$root.log" 2>&1; then
    note "debootstrap failed (log: $root.log): no base image, tests/test_container.py will skip"
    exit 0
fi
rm -f "$root.log"
# pip inside the build must trust what pip trusts here (a proxy's CA may be in this bundle).
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
# Like the official image: no apt lists, no caches.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | podman import \
    --change 'CMD ["python3"]' \
    --change 'ENV LANG=C.UTF-8' \
    - "$BASE_IMAGE" >/dev/null
note "base image $BASE_IMAGE: $(podman image inspect "$BASE_IMAGE" --format '{{.Size}}') bytes"
