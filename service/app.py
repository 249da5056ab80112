"""The composition root: settings in, the app's state built once, routes and layers out.

Nothing here is per model. ``create_app`` builds, once: the model store (``MODELS_DIR``), the
data plane (limits, metrics with every kind's drift series, the shadow runner), the reloader
that loads the store into the data plane, and the HTTP side (routes, error handlers, the ASGI
layers). The lifespan loads the models, checks ``REQUIRE_MODELS`` and starts the poller. The
OpenAPI document lists each served model's typed request, built from its card at start-up and
again after each reload.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from service.api.admin import admin
from service.api.errors import HANDLERS
from service.api.lane import PredictLane
from service.api.middleware import Bookkeeping, PayloadCapture, RequestContext, RequireJson
from service.api.modeldocs import document_limits, model_paths
from service.api.operations import operations
from service.api.rest import rest
from service.api.v2 import v2
from service.api.v2docs import document_infer
from service.kinds import KINDS
from service.kinds.base import Limits
from service.lifecycle.memory import release_free_memory
from service.lifecycle.poll import Poller
from service.lifecycle.reload import Reloader
from service.lifecycle.workers import WorkerGroup
from service.observe.logs import AccessLog
from service.observe.metrics import Metrics
from service.observe.payloads import PayloadLog
from service.serving.dataplane import DataPlane
from service.serving.registry import Registry
from service.serving.shadow import ShadowRunner
from service.serving.store import FolderStore
from service.settings import RequireModels, Settings

logger = logging.getLogger("service.app")

PAGE = Path(__file__).parent / "static" / "index.html"

DESCRIPTION = """
The three Keras networks of *Deep Learning with Python*, chapter 3, trained on the real
datasets: IMDB review sentiment, Reuters newswire topics (46) and Boston housing prices; and any
other text classifier or table regressor in `MODELS_DIR`, such as one trained on your own data
with `python -m training fit`. Send raw text or raw features: tokenization, vectorization and
normalization happen here, exactly as in training. Every endpoint takes one input or a batch.
"""


class NoModelServed(RuntimeError):
    """Start-up found fewer models than ``REQUIRE_MODELS`` asks for; the process exits non-zero."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    reloader: Reloader = app.state.reloader
    # First: a SIGHUP forwarded while this worker loads reloads it once loaded, never kills it.
    reloader.install_sighup()
    poller = Poller(reloader, settings.model_poll_seconds)
    try:
        require(settings.require_models, reloader.first_load())
        release_free_memory()
        if settings.model_poll_seconds > 0:
            poller.start()
        yield
    finally:
        await poller.stop()
        await app.state.plane.shadows.drain()
        reloader.uninstall_sighup()
        reloader.leave()
        if app.state.access_log is not None:
            app.state.access_log.flush()
        if app.state.payload_log is not None:
            app.state.payload_log.close()


def require(required: RequireModels, registry: Registry) -> None:
    """``NoModelServed`` unless the models ``REQUIRE_MODELS`` asks for loaded."""
    if (required is RequireModels.all and not registry.ready) or (
        required is RequireModels.any and not registry.models
    ):
        reasons = "; ".join(f"{name}: {reason}" for name, reason in registry.failures.items())
        raise NoModelServed(f"REQUIRE_MODELS={required.value} not met ({reasons})")


class ServiceApp(FastAPI):
    """FastAPI with the predict lane (``service.api.lane``) outermost: a well-formed predict
    request is answered before FastAPI's own layers, everything else goes through them."""

    def build_middleware_stack(self) -> ASGIApp:
        state = self.state
        return PredictLane(super().build_middleware_stack(), state.plane, state.bookkeeping,
                           state.settings.max_body_bytes, state.payload_log)  # fmt: skip


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``uvicorn --factory service.app:create_app`` reads settings from the env."""
    settings = settings or Settings()
    for module in settings.kind_modules:  # each registers its kinds (service.kinds.register)
        importlib.import_module(module)
    app = ServiceApp(
        title="Keras chapter-3 models",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        # Our metrics are Prometheus' (service.observe.metrics); FastAPI's OpenTelemetry hooks
        # would look for providers on every request (about 2% of a request's CPU, measured).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    metrics = Metrics(dict.fromkeys(series for kind in KINDS.values() for series in kind.signals))
    plane = DataPlane(
        Limits(settings.max_batch_size, settings.max_text_chars),
        metrics,
        ShadowRunner(metrics, settings.shadow_max_in_flight),
    )
    app.state.settings = settings
    app.state.plane = plane
    app.state.reloader = Reloader(
        plane, FolderStore(settings.models_dir), settings.expected_models,
        WorkerGroup.from_environment(), swapped=lambda _: setattr(app, "openapi_schema", None),
    )  # fmt: skip
    app.state.draining = False  # set at SIGTERM: /readyz answers 503 while requests still run
    app.state.page = PAGE.read_bytes()
    app.include_router(rest)
    app.include_router(operations)
    app.include_router(v2)
    app.include_router(admin)
    for error, handler in HANDLERS.items():
        app.add_exception_handler(error, handler)
    app.add_middleware(RequireJson)
    app.state.access_log = AccessLog() if settings.access_log else None
    app.state.bookkeeping = Bookkeeping(metrics, app.state.access_log)
    app.add_middleware(RequestContext, bookkeeping=app.state.bookkeeping)
    app.state.payload_log = None
    if settings.payload_log:  # outermost: sees every answer, with its request id
        app.state.payload_log = PayloadLog(
            settings.payload_log, settings.payload_log_sample, settings.payload_log_inputs
        )
        app.add_middleware(PayloadCapture, log=app.state.payload_log)
    app.openapi = lambda: openapi_with_models(app, FastAPI.openapi.__get__(app))  # type: ignore[method-assign]
    return app


def openapi_with_models(app: FastAPI, base: Any) -> dict[str, Any]:
    """FastAPI's document plus a typed ``/NAME/predict`` for every served model that has no
    route of its own, the V2 request the served models take, and the configured limits
    (MAX_BATCH_SIZE, MAX_TEXT_CHARS) in every request schema, so a request the document calls
    valid is one this server accepts. A reload clears the cache (``Reloader.swapped``), so it
    follows the models."""
    if app.openapi_schema is None:
        plane: DataPlane = app.state.plane
        schema = base()
        served = plane.registry.models
        newest = {name: versions[max(versions)].kind for name, versions in served.items()}
        model_paths(schema, newest)
        document_limits(schema, plane.limits, newest)
        every = [model.kind for versions in served.values() for model in versions.values()]
        document_infer(schema, every, plane.limits)
        app.openapi_schema = schema
    return app.openapi_schema
