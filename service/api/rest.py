"""The JSON predict endpoints: ``POST /{name}/predict`` for every served model, and the book's
three paths as typed instances of it. /docs lists each model's path with its own typed body
(``service.api.modeldocs``), not the generic one.

One path for every request, top to bottom in ``answer``: the registry hands over a version, its
kind checks the limits, then preprocesses, predicts and postprocesses (inline or in the thread
pool, by cost), and the answer is rendered. A limit broken is a 422 naming the field, like a
schema error.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from service.api.book import (
    BOOK_MODELS,
    BostonRequest,
    BostonResponse,
    ImdbRequest,
    ImdbResponse,
    ReutersRequest,
    ReutersResponse,
)
from service.api.offload import run_sized
from service.api.schemas import Answer, ErrorResponse, ValidationErrorResponse
from service.kinds.base import InputProblems, ModelRef
from service.registry import ModelUnavailable, ServedModel

PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not valid UTF-8 or cannot be read."},
    413: {"model": ErrorResponse, "description": "The body is larger than MAX_BODY_BYTES."},
    404: {"model": ErrorResponse, "description": "The requested version is not served."},
    415: {"model": ErrorResponse, "description": "The body is not sent as application/json."},
    422: {"model": ValidationErrorResponse, "description": "A field is missing, wrong or too big."},
    503: {"model": ErrorResponse, "description": "The model (or version) is not loaded; why."},
}

rest = APIRouter(tags=["predict"], responses=PREDICT_ERRORS)


async def answer(request: Request, served: ServedModel, body: Any) -> Response:
    """The whole path of a predict request, once the body is parsed and the version chosen."""
    state = request.app.state
    kind = served.kind
    try:
        items, cost = kind.check(body, state.limits)
    except InputProblems as error:
        raise RequestValidationError(
            [{"loc": ("body", *p.loc), "msg": p.msg, "type": p.type} for p in error.problems]
        ) from None
    state.metrics.record_batch(served.name, served.version, items)
    predictions = await run_sized(partial(kind.answer, body), cost)
    reply = Answer(model=ModelRef(name=served.name, version=served.version), predictions=predictions)
    return Response(reply.model_dump_json(exclude_none=True), media_type="application/json")


# Predict routes take the ``Request`` and read ``app.state`` themselves rather than through
# ``Depends``: on a request that costs ~0.1 ms of model work, each resolved dependency adds
# ~0.05 ms. The state they read is built once, in the lifespan (service.app).


@rest.post("/imdb/predict", response_model=ImdbResponse, response_model_exclude_none=True,
           summary="Sentiment of movie reviews")  # fmt: skip
async def predict_imdb(body: ImdbRequest, request: Request) -> Response:
    """Probability that each review is positive (IMDB network, 10,000-word multi-hot input)."""
    return await answer(request, book_model(request, "imdb", body.version), body)


@rest.post("/reuters/predict", response_model=ReutersResponse, response_model_exclude_none=True,
           summary="Topics of newswires")  # fmt: skip
async def predict_reuters(body: ReutersRequest, request: Request) -> Response:
    """The 46 topic probabilities of each newswire, its topic, and the ``top_k`` best topics."""
    return await answer(request, book_model(request, "reuters", body.version), body)


@rest.post("/boston/predict", response_model=BostonResponse, response_model_exclude_none=True,
           summary="Median home values")  # fmt: skip
async def predict_boston(body: BostonRequest, request: Request) -> Response:
    """Median home value of each district from its 13 raw features (normalized inside the model)."""
    return await answer(request, book_model(request, "boston", body.version), body)


def book_model(request: Request, name: str, version: str | None) -> ServedModel:
    """The version a book endpoint asked for, if its folder still holds the model it expects."""
    served: ServedModel = request.app.state.registry.get(name, version)
    book, kind = BOOK_MODELS[name], served.kind
    if (kind.kind, kind.output_width, tuple(getattr(kind, "feature_names", book.features))) != (
        book.kind, book.outputs, book.features,
    ):  # fmt: skip
        raise ModelUnavailable(
            name, f"version {served.version} is a {kind.kind} with {kind.output_width} output(s), "
            f"not the {book.kind} /{name}/predict answers for; use /models/{name} to see it",
        )  # fmt: skip
    return served


# The generic route is not in the OpenAPI document: its body depends on the model named in the
# path, so the document could only call it "some object", and fuzzers and generated clients would
# send objects no model accepts. ``service.api.modeldocs`` documents it model by model instead: a
# typed ``POST /NAME/predict`` for every served model, with these routes' error answers.


@rest.post("/{name}/predict", summary="Predict with any served model (its kind's input forms)",
           response_model=Answer, include_in_schema=False)  # fmt: skip
async def predict(name: str, request: Request) -> Response:
    """Text classifiers take ``text``, ``texts`` or ``sequences``; table regressors take
    ``features``, ``instances`` or ``records``. The body is read by the model's own request
    schema, typed from its card (labels, feature names)."""
    registry = request.app.state.registry
    served: ServedModel = registry.get(name)
    raw = await request.body()
    body = parsed(served.kind.request_model, raw)
    if body.version is not None:  # type: ignore[attr-defined]
        served = registry.get(name, body.version)  # type: ignore[attr-defined]
        if not isinstance(body, served.kind.request_model):
            body = parsed(served.kind.request_model, raw)
    return await answer(request, served, body)


def parsed(model: type[BaseModel], raw: bytes) -> BaseModel:
    """The body read by ``model``; its errors as the 422 every schema error gets."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError(
            [{**issue, "loc": ("body", *issue["loc"])} for issue in error.errors()]
        ) from None
