# syntax=docker/dockerfile:1
#
# Serving image (the default, last stage):   docker build -t keras-serving .
# Training image (TensorFlow, CPU build):    docker build --target train -t keras-serving-train .
#
# Stages: base -> builder (serving venv) -> runtime (final)
#                         \-> train-builder (+ tensorflow-cpu) -> train
# With BuildKit (the default builder) `docker build .` only builds base, builder and runtime.

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


# ---- builder: the serving install (Keras on its numpy backend; no TensorFlow, no extras) ----
FROM base AS builder
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY service/ service/
COPY training/ training/
# Every dependency ships manylinux wheels for CPython 3.11: no compiler is needed.
RUN pip install --no-cache-dir .


# ---- train-builder / train: `docker compose --profile train run --rm train` ----
FROM builder AS train-builder
RUN pip install --no-cache-dir "./[train]"

FROM base AS train
COPY --from=train-builder /opt/venv /opt/venv
USER 10001:10001
CMD ["python", "-m", "training", "train", "all", "--data-dir", "/data", "--out", "/models"]


# ---- runtime: the serving image ----
FROM base AS runtime
# The service and training packages live in the venv's site-packages (installed, not editable),
# so no source tree is copied; the bundled models are found through MODELS_DIR.
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY models/ /app/models/
ENV MODELS_DIR=/app/models
USER 10001:10001
EXPOSE 8000
# python:3.11-slim has no curl or wget; urlopen raises on any non-2xx answer, so a 503 from
# /readyz (models not loaded) makes the check fail.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000"]
