"""The operational endpoints: the page, the probes, the model list and cards, the metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.schemas import ErrorResponse, ModelList, ModelSummary, Readiness, VersionSummary
from service.observe.metrics import Metrics
from service.serving.registry import Registry


async def get_registry(request: Request) -> Registry:
    return request.app.state.plane.registry


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.plane.metrics


RegistryDep = Annotated[Registry, Depends(get_registry)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

operations = APIRouter(tags=["operations"])


@operations.get("/", include_in_schema=False)
async def page(request: Request) -> Response:
    """The page to try every model (service/static/index.html: no build, no CDN)."""
    return Response(request.app.state.page, media_type="text/html; charset=utf-8")


@operations.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@operations.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: every model loaded and warmed",
    responses={503: {"model": Readiness, "description": "At least one model is not served."}},
)
async def readyz(request: Request, registry: RegistryDep) -> Response:
    """503 while a model is missing, and from SIGTERM on (``SHUTDOWN_DELAY``: the lame duck)."""
    readiness = Readiness(
        ready=registry.ready and not request.app.state.draining, models=registry.states(),
        serving=registry.serving(), failures=registry.failures,
    )  # fmt: skip
    return Response(
        readiness.model_dump_json(), status_code=200 if readiness.ready else 503,
        media_type="application/json",
    )  # fmt: skip


@operations.get("/models", response_model=ModelList, summary="What is served, with headline metrics")
async def list_models(registry: RegistryDep) -> ModelList:
    summaries = []
    for name in registry.names:
        versions = registry.versions(name)
        default = registry.get(name) if versions else None  # the rollout's stable version
        metric: dict[str, float] = {}
        if default is not None:
            headline = default.kind.headline_metric
            value = default.card.get("metrics", {}).get(headline)
            metric = {headline: value} if isinstance(value, (int, float)) else {}
        summaries.append(
            ModelSummary(
                name=name,
                version=default.version if default else "",
                versions=[served.version for served in versions],
                task=default.card.get("task", "") if default else "",
                ready=default is not None,
                inputs=list(default.kind.input_forms) if default else [],
                metric=metric,
                error="; ".join(registry.problems(name)) or None,
            )
        )
    return ModelList(models=summaries)


CARD_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such model or version."},
    503: {"model": ErrorResponse, "description": "Not loaded; the detail says why."},
}


@operations.get(
    "/models/{name}",
    summary="The default version's model card, and every served version with its metrics",
    responses=CARD_ERRORS,
)
async def model_card(name: str, registry: RegistryDep) -> dict[str, Any]:
    """The model card (kind, metrics, recipe, dataset hashes, labels or features) of the version
    served by default, plus ``versions``: each served version with its creation time and test
    metrics, and ``rollout``: ``models/NAME/rollout.json`` as in force (``file``, null without
    one), the effective ``stable``, ``canary``, ``canary_percent`` and ``shadow``, and the
    ``problem`` of a file that could not be applied."""
    card = registry.get(name).card
    versions = [
        VersionSummary(
            version=served.version,
            created=served.card.get("created", ""),
            metrics=served.card.get("metrics", {}),
        ).model_dump()
        for served in registry.versions(name)
    ]
    return {**card, "versions": versions, "rollout": registry.rollout(name).shown()}


@operations.get(
    "/models/{name}/versions/{version}",
    summary="The model card of one version",
    responses=CARD_ERRORS,
)
async def model_version_card(name: str, version: str, registry: RegistryDep) -> dict[str, Any]:
    return registry.get(name, version).card


@operations.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.exposed()), media_type=CONTENT_TYPE_LATEST)
