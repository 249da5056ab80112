"""The FastAPI application: settings in, models loaded once at start-up (lifespan), routes out.

Nothing here is per model: the registry finds the models in ``MODELS_DIR``, each model's kind
answers it, and the OpenAPI document lists each served model's typed request, built from its
card at start-up and again after each reload.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.api.admin import admin
from service.api.modeldocs import document_limits, model_paths
from service.api.operations import operations
from service.api.rest import PredictLane, rest
from service.api.v2 import V2Error, document_infer, v2, v2_error
from service.api.content_type import RequireJson
from service.kinds.base import Limits
from service.observe.logs import AccessLog
from service.lifecycle.memory import release_free_memory
from service.observe.metrics import Metrics
from service.api.middleware import RequestContext
from service.observe.payloads import PayloadCapture, PayloadLog
from service.lifecycle.poll import Poller
from service.serving.registry import ModelUnavailable, Registry, UnknownModel, VersionNotServed
from service.lifecycle.reload import Reloader
from service.serving.rollout import ShadowRunner
from service.settings import RequireModels, Settings
from service.lifecycle.workers import WorkerGroup

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
    poller = Poller(app, reloader, settings.model_poll_seconds)
    try:
        generation = reloader.generation()  # read before the scan, as a reload does
        registry = Registry.load(settings.models_dir, expected=settings.expected_models)
        while reloader.generation() != generation:  # a reload was asked for while we loaded:
            generation = reloader.generation()  # serve nothing older than the other workers
            registry = Registry.load(settings.models_dir, registry, settings.expected_models)
        app.state.metrics.record_registry(registry)
        required = settings.require_models
        if (required is RequireModels.all and not registry.ready) or (
            required is RequireModels.any and not registry.models
        ):
            reasons = "; ".join(f"{name}: {reason}" for name, reason in registry.failures.items())
            raise NoModelServed(f"REQUIRE_MODELS={required.value} not met ({reasons})")
        app.state.registry = registry
        reloader.record(generation, registry)
        release_free_memory()
        if settings.model_poll_seconds > 0:
            poller.start()
        yield
    finally:
        await poller.stop()
        await app.state.shadows.drain()
        reloader.uninstall_sighup()
        reloader.leave()
        if app.state.access_log is not None:
            app.state.access_log.flush()
        if app.state.payload_log is not None:
            app.state.payload_log.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``uvicorn --factory service.app:create_app`` reads settings from the env."""
    settings = settings or Settings()
    app = FastAPI(
        title="Keras chapter-3 models",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        # Our metrics are Prometheus' (service.observe.metrics); FastAPI's OpenTelemetry hooks would
        # look for providers on every request (about 2% of a request's CPU, measured).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.limits = Limits(settings.max_batch_size, settings.max_text_chars)
    app.state.metrics = Metrics()
    app.state.registry = Registry()
    app.state.reloader = Reloader(app, WorkerGroup.from_environment())
    app.state.reload_tasks = set()
    app.state.shadows = ShadowRunner(app.state.metrics, settings.shadow_max_in_flight)
    app.state.draining = False  # set at SIGTERM: /readyz answers 503 while requests still run
    app.state.page = PAGE.read_bytes()
    app.include_router(rest)
    app.include_router(operations)
    app.include_router(v2)
    app.include_router(admin)
    app.add_exception_handler(UnknownModel, unknown_model)
    app.add_exception_handler(ModelUnavailable, model_unavailable)
    app.add_exception_handler(VersionNotServed, version_not_served)
    app.add_exception_handler(V2Error, v2_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_middleware(PredictLane)  # innermost: the short way to a 200 (service.api.rest)
    app.add_middleware(RequireJson)
    app.state.access_log = AccessLog() if settings.access_log else None
    app.add_middleware(RequestContext, metrics=app.state.metrics, access_log=app.state.access_log)
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
    valid is one this server accepts. A reload clears the cache (``service.lifecycle.reload``), so it
    follows the models."""
    if app.openapi_schema is None:
        schema = base()
        model_paths(schema, app.state.registry)
        document_limits(schema, app.state.limits)
        document_infer(schema, app.state.registry, app.state.limits)
        app.openapi_schema = schema
    return app.openapi_schema


async def unknown_model(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=404)


async def model_unavailable(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=503)


async def version_not_served(request: Request, error: Exception) -> JSONResponse:
    """404 for a version that does not exist, 503 for one on disk that failed to load."""
    assert isinstance(error, VersionNotServed)
    return JSONResponse({"detail": str(error)}, status_code=503 if error.failed else 404)


async def invalid_request(request: Request, error: Exception) -> JSONResponse:
    """422 naming each bad field and what is wrong, never echoing the (possibly huge) input."""
    assert isinstance(error, RequestValidationError)
    return JSONResponse({"detail": [_issue(e) for e in error.errors()[:20]]}, status_code=422)


def _issue(error: dict[str, Any]) -> dict[str, Any]:
    message = str(error.get("msg", "invalid"))
    context = error.get("ctx") or {}
    if error.get("type") == "json_invalid" and "error" in context:
        message = f"{message}: {context['error']}"
    return {
        "loc": [part if isinstance(part, int) else str(part)[:64] for part in error.get("loc", ())],
        "msg": message[:300],
        "type": str(error.get("type", "value_error")),
    }
