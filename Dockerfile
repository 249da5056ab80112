# syntax=docker/dockerfile:1
#
# Serving image (the default, last stage):   docker build -t keras-serving .
# Training image (TensorFlow, CPU build):    docker build --target train -t keras-serving-train .
#
# Stages (the dependencies first, so that a source change reuses their layers):
#   base -> deps (serving dependencies) -> builder (+ our packages) -> serving-venv (no pip) -> runtime
#           deps -> train-deps (+ the train extra) -> train (+ our packages)
# BuildKit and podman/buildah build only the stages the target needs: `docker build .` never
# installs TensorFlow.

FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    KERAS_HOME=/tmp/keras \
    MPLCONFIGDIR=/tmp/matplotlib
# A fixed, unprivileged user (uid/gid 10001) with no home and no login shell.
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin app


# ---- deps: the serving dependencies (pyproject.toml's `dependencies`, no extras) ----
FROM base AS deps
WORKDIR /src
# `python` is the base image's interpreter, wherever it lives (the official image's /usr/local,
# or Debian's /usr/bin in a local stand-in): no hard-coded path.
RUN python -m venv /opt/venv
COPY pyproject.toml ./
# The requirement lists, read from pyproject.toml alone: this layer and the install below are
# rebuilt only when pyproject.toml changes, not on every edit of the source.
# build.txt (setuptools, wheel) goes in too, so that our own package installs below without
# fetching a build environment (--no-build-isolation) each time the source changes.
RUN python -c "import tomllib; t = tomllib.load(open('pyproject.toml', 'rb')); p = t['project']; \
print(*p['dependencies'], sep='\n', file=open('serving.txt', 'w')); \
print(*p['optional-dependencies']['train'], sep='\n', file=open('train.txt', 'w')); \
print(*t['build-system']['requires'], sep='\n', file=open('build.txt', 'w'))"
# Every dependency ships manylinux wheels for CPython 3.11: no compiler is needed. (A RUN of its
# own: tests/test_packaging.py reads every `pip install` line for extras and cache flags.)
# hadolint ignore=DL3059
RUN pip install --no-cache-dir -r serving.txt -r build.txt


# ---- builder: our two packages on top (service, training), their dependencies already in ----
FROM deps AS builder
COPY README.md ./
COPY service/ service/
COPY training/ training/
RUN pip install --no-cache-dir --no-deps --no-build-isolation .


# ---- bundled-models: the versions models/ serves by its rollouts (service/bundle.py) ----
# The repository keeps every version; the image carries the ones each rollout.json names
# (stable, canary, shadow), or all of a model's versions without one. Mount a models folder to
# serve others (compose mounts ./models).
FROM builder AS bundled-models
COPY models/ /src/models/
RUN python -m service.bundle /src/models /bundle/models


# ---- serving-venv: the builder's venv without what only installing needs ----
# pip, setuptools and wheel stay behind (the running service never installs anything), and so do
# the test suites some wheels ship; the runtime stage copies this stage's venv, nothing else.
FROM builder AS serving-venv
RUN pip uninstall --yes --quiet pip setuptools wheel \
    && find /opt/venv -depth -type d -name tests -path '*/site-packages/numpy/*' -exec rm -rf {} +


# ---- train-deps / train: `docker compose --profile train run --rm train` ----
# TensorFlow and the rest of the train extra in one layer, rebuilt only when pyproject.toml
# changes; the train image is that stage plus our packages (a few hundred kB per source change,
# where copying its 1.8 GB venv into a fresh stage would rewrite it every time).
FROM deps AS train-deps
RUN pip install --no-cache-dir -r serving.txt -r train.txt

FROM train-deps AS train
COPY README.md ./
COPY service/ service/
COPY training/ training/
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
WORKDIR /
USER 10001:10001
CMD ["python", "-m", "training", "train", "all", "--data-dir", "/data", "--out", "/models"]


# ---- runtime: the serving image ----
FROM base AS runtime
# The service and training packages live in the venv's site-packages (installed, not editable),
# so no source tree is copied; the bundled models are found through MODELS_DIR.
COPY --from=serving-venv /opt/venv /opt/venv
WORKDIR /app
COPY --from=bundled-models /bundle/models /app/models/
ENV MODELS_DIR=/app/models
USER 10001:10001
EXPOSE 8000
# python:3.11-slim has no curl or wget; urlopen raises on any non-2xx answer, so a 503 from
# /readyz (models not loaded) makes the check fail.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000"]
