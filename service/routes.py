"""The HTTP endpoints. Each predict route reads top to bottom as the request's whole path:
schema → registry → limits → preprocessing → one model call over the batch → response schema.

A single review is cheaper to answer on the event loop than to hand to a thread; a batch of
1,000 reviews goes to the thread pool (``compute``), so it never stalls the loop that accepts
other requests.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.artifacts import MODEL_NAMES
from service.explain import explain_features, explain_words, unknown_in_sequence
from service.limits import check_boston_input, check_text_input
from service.metrics import Metrics
from service.registry import Registry, ServedModel
from service.schemas import (
    BostonRequest,
    BostonResponse,
    ErrorResponse,
    ImdbRequest,
    ImdbResponse,
    ModelList,
    ModelRef,
    ModelSummary,
    PricePrediction,
    Readiness,
    ReutersRequest,
    ReutersResponse,
    SentimentPrediction,
    TextExplanation,
    TextInput,
    TopicPrediction,
    TopicScore,
    ValidationErrorResponse,
    VersionSummary,
)


async def get_registry(request: Request) -> Registry:
    return request.app.state.registry


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


RegistryDep = Annotated[Registry, Depends(get_registry)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not valid UTF-8 or cannot be read."},
    413: {"model": ErrorResponse, "description": "The body is larger than MAX_BODY_BYTES."},
    404: {"model": ErrorResponse, "description": "The requested version is not served."},
    415: {"model": ErrorResponse, "description": "The body is not sent as application/json."},
    422: {"model": ValidationErrorResponse, "description": "A field is missing, wrong or too big."},
    503: {"model": ErrorResponse, "description": "The model (or version) is not loaded; why."},
}

predict = APIRouter(tags=["predict"], responses=PREDICT_ERRORS)
probes = APIRouter(tags=["operations"])

INLINE_ITEMS = 8
"""Batches up to this size run on the event loop: a review costs ~0.1 ms, less than the ~0.15 ms
round trip to the thread pool. Larger batches go to the pool so the loop keeps serving."""


async def compute(work: Callable[[], str], items: int, characters: int = 0) -> str:
    if items <= INLINE_ITEMS and characters <= 20_000:
        return work()
    return await run_in_threadpool(work)


def json_response(body: str) -> Response:
    return Response(content=body, media_type="application/json")


def model_ref(served: ServedModel) -> ModelRef:
    return ModelRef(name=served.name, version=served.version)


def predict_text_input(served: ServedModel, body: TextInput) -> np.ndarray:
    if body.sequences is not None:
        return served.predict_sequences(body.sequences)
    return served.predict_texts(body.items())  # type: ignore[arg-type]


def text_size(body: TextInput) -> tuple[int, int]:
    """Items and characters (or word ids) of a text request, to decide where it runs."""
    items = body.items()
    return len(items), sum(len(item) for item in items)


# Predict routes take the ``Request`` and read ``app.state`` themselves rather than through
# ``Depends``: on a request that costs ~0.1 ms of model work, each resolved dependency adds
# ~0.05 ms. The state they read is built once, in the lifespan (service.app).


async def answer_text_request(
    request: Request, name: str, body: TextInput, answer: Callable[[ServedModel, Any], str]
) -> Response:
    """The path every text request takes: registry → limits → count → model (inline or pooled)."""
    state = request.app.state
    served = state.registry.get(name, body.version)
    check_text_input(body, state.limits)
    items, characters = text_size(body)
    state.metrics.record_batch(served.name, served.version, items)
    if body.explain:
        characters *= 10  # one extra row per distinct word: keep explained batches off the loop
    return json_response(await compute(partial(answer, served, body), items, characters))


@predict.post("/imdb/predict", response_model=ImdbResponse, response_model_exclude_none=True,
              summary="Sentiment of movie reviews")  # fmt: skip
async def predict_imdb(body: ImdbRequest, request: Request) -> Response:
    """Probability that each review is positive (IMDB network, 10,000-word multi-hot input)."""
    return await answer_text_request(request, "imdb", body, imdb_predictions)


def imdb_predictions(served: ServedModel, body: ImdbRequest) -> str:
    probabilities = predict_text_input(served, body)[:, 0].tolist()
    predictions = [
        SentimentPrediction(label="positive" if p >= 0.5 else "negative", probability=p)
        for p in probabilities
    ]
    if body.explain:
        for prediction, explanation in zip(
            predictions, explain_text_input(served, body, lambda out, i: out[:, 0])
        ):
            prediction.explanation = explanation
    return ImdbResponse(model=model_ref(served), predictions=predictions).model_dump_json(
        exclude_none=True
    )


@predict.post("/reuters/predict", response_model=ReutersResponse, response_model_exclude_none=True,
              summary="Topics of newswires")  # fmt: skip
async def predict_reuters(body: ReutersRequest, request: Request) -> Response:
    """The 46 topic probabilities of each newswire, its topic, and the ``top_k`` best topics."""
    return await answer_text_request(request, "reuters", body, reuters_predictions)


def reuters_predictions(served: ServedModel, body: ReutersRequest) -> str:
    probabilities = predict_text_input(served, body)
    best_first = np.argsort(-probabilities, axis=1, kind="stable")[:, : body.top_k]
    labels = served.labels
    predictions = []
    for row, order in zip(probabilities.tolist(), best_first.tolist()):
        top = [TopicScore(class_id=i, label=labels[i], probability=row[i]) for i in order]
        predictions.append(
            TopicPrediction(label=top[0].label, class_id=top[0].class_id, probabilities=row, top=top)
        )
    if body.explain:
        topics = [prediction.class_id for prediction in predictions]
        for prediction, explanation in zip(
            predictions, explain_text_input(served, body, lambda out, i: out[:, topics[i]])
        ):
            prediction.explanation = explanation
    return ReutersResponse(model=model_ref(served), predictions=predictions).model_dump_json(
        exclude_none=True
    )


def explain_text_input(
    served: ServedModel, body: TextInput, score: Callable[[np.ndarray, int], np.ndarray]
) -> list[TextExplanation]:
    """One explanation per input item; ``score(outputs, item)`` picks the number explained."""
    word_index = served.word_index
    assert word_index is not None
    explanations = []
    for i, item in enumerate(body.items()):
        if isinstance(item, str):
            sequence, unknown = word_index.encode_counting_unknown(item)
        else:
            sequence, unknown = item, unknown_in_sequence(item, word_index.num_words)
        explanations.append(
            explain_words(served, sequence, unknown, partial(score, i=i), body.explain_top)
        )
    return explanations


@predict.post("/boston/predict", response_model=BostonResponse, response_model_exclude_none=True,
              summary="Median home values")  # fmt: skip
async def predict_boston(body: BostonRequest, request: Request) -> Response:
    """Median home value of each district from its 13 raw features (normalized inside the model)."""
    state = request.app.state
    served = state.registry.get("boston", body.version)
    check_boston_input(body, state.limits)
    rows = body.rows()
    state.metrics.record_batch(served.name, served.version, len(rows))
    work = partial(boston_predictions, served, rows, body.explain)
    return json_response(await compute(work, len(rows) * (14 if body.explain else 1)))


def boston_predictions(served: ServedModel, rows: list[list[float]], explain: bool) -> str:
    features = np.asarray(rows, dtype=np.float64)
    prices = served.predict(features.astype(np.float32))[:, 0].tolist()
    names = [feature["name"] for feature in served.features]
    lows = np.array([feature["train_min"] for feature in served.features])
    highs = np.array([feature["train_max"] for feature in served.features])
    outside = ((features < lows) | (features > highs)).tolist()
    return BostonResponse(
        model=model_ref(served),
        predictions=[
            PricePrediction(
                price=price,
                price_usd=round(price * 1000, 2),
                out_of_range=[name for name, out in zip(names, flags) if out],
                explanation=explain_features(served, row) if explain else None,
            )
            for price, flags, row in zip(prices, outside, rows)
        ],
    ).model_dump_json(exclude_none=True)


@probes.get("/", include_in_schema=False)
async def page(request: Request) -> Response:
    """The page to try the three models (service/static/index.html: no build, no CDN)."""
    return Response(request.app.state.page, media_type="text/html; charset=utf-8")


@probes.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: every model loaded and warmed",
    responses={503: {"model": Readiness, "description": "At least one model is not served."}},
)
async def readyz(registry: RegistryDep) -> Response:
    readiness = Readiness(
        ready=registry.ready, models=registry.states(), serving=registry.serving(),
        failures=registry.failures,
    )  # fmt: skip
    return Response(
        readiness.model_dump_json(), status_code=200 if readiness.ready else 503,
        media_type="application/json",
    )  # fmt: skip


HEADLINE_METRIC = {"imdb": "test_accuracy", "reuters": "test_accuracy", "boston": "test_mae"}
INPUT_FORMS = {
    "imdb": ["text", "texts", "sequences"],
    "reuters": ["text", "texts", "sequences"],
    "boston": ["features", "instances", "records"],
}


@probes.get("/models", response_model=ModelList, summary="What is served, with headline metrics")
async def list_models(registry: RegistryDep) -> ModelList:
    summaries = []
    for name in MODEL_NAMES:
        versions = registry.versions(name)
        default = versions[-1] if versions else None
        metric = HEADLINE_METRIC[name]
        summaries.append(
            ModelSummary(
                name=name,
                version=default.version if default else "",
                versions=[served.version for served in versions],
                task=default.metadata.get("task", "") if default else "",
                ready=default is not None,
                inputs=INPUT_FORMS[name],
                metric={metric: default.metadata["metrics"][metric]} if default else {},
                error="; ".join(registry.problems(name)) or None,
            )
        )
    return ModelList(models=summaries)


CARD_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such model or version."},
    503: {"model": ErrorResponse, "description": "Not loaded; the detail says why."},
}


@probes.get(
    "/models/{name}",
    summary="The default version's model card, and every served version with its metrics",
    responses=CARD_ERRORS,
)
async def model_card(name: str, registry: RegistryDep) -> dict[str, Any]:
    """The model card (metrics, recipe, dataset hashes, labels or features) of the version served
    by default, plus ``versions``: each served version with its creation time and test metrics."""
    card = version_card(name, None, registry)
    versions = [
        VersionSummary(
            version=served.version,
            created=served.metadata.get("created", ""),
            metrics=served.metadata.get("metrics", {}),
        ).model_dump()
        for served in registry.versions(name)
    ]
    return {**card, "versions": versions}


@probes.get(
    "/models/{name}/versions/{version}",
    summary="The model card of one version",
    responses=CARD_ERRORS,
)
async def model_version_card(name: str, version: str, registry: RegistryDep) -> dict[str, Any]:
    return version_card(name, version, registry)


def version_card(name: str, version: str | None, registry: Registry) -> dict[str, Any]:
    if name not in MODEL_NAMES:
        raise HTTPException(404, f"no model named {name[:40]!r}; models: {', '.join(MODEL_NAMES)}")
    return registry.get(name, version).metadata


@probes.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
