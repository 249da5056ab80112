"""The JSON predict endpoints: ``POST /{name}/predict`` for every served model, and the book's
three paths as typed instances of it. /docs lists each model's path with its own typed body
(``service.api.modeldocs``), not the generic one.

An adapter, nothing more: it reads the body with the model's request schema, resolves the
version once (the body may name one), hands the data plane (``service.serving.dataplane``) a
``read`` that turns the body into the kind's work for a version, and renders the answer. A limit
broken is a 422 naming the field, like a schema error. ``service.api.lane`` is the short way to
the same answer for a well-formed request.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from service.api.book import (
    BOOK_MODELS,
    BostonRequest,
    BostonResponse,
    ImdbRequest,
    ImdbResponse,
    ReutersRequest,
    ReutersResponse,
)
from service.api.schemas import Answer, ErrorResponse, ValidationErrorResponse
from service.kinds.base import InputProblems, Limits
from service.serving.dataplane import DataPlane, Read
from service.serving.errors import ModelUnavailable
from service.serving.offload import Work
from service.serving.registry import Resolved, ServedModel
from service.serving.rollout import ROUTING_HEADER

PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not valid UTF-8 or cannot be read."},
    413: {"model": ErrorResponse, "description": "The body is larger than MAX_BODY_BYTES."},
    404: {"model": ErrorResponse, "description": "The requested version is not served."},
    415: {"model": ErrorResponse, "description": "The body is not sent as application/json."},
    422: {"model": ValidationErrorResponse, "description": "A field is missing, wrong or too big."},
    503: {"model": ErrorResponse, "description": "The model (or version) is not loaded; why."},
}

rest = APIRouter(tags=["predict"], responses=PREDICT_ERRORS)

BOOK_REQUESTS: dict[str, type[BaseModel]] = {
    "imdb": ImdbRequest, "reuters": ReutersRequest, "boston": BostonRequest,
}  # fmt: skip
"""The book paths' own request schemas: the lane reads their bodies as their routes do."""


def reader(name: str, body: BaseModel, raw: bytes, limits: Limits) -> Read[list[BaseModel]]:
    """How a predict body becomes one version's work: read by that version's schema (a book
    path's: its own, if the version is the model the path answers for), then the kind's limits.
    The served version gets the body already read; a shadow with other labels or features reads
    the raw body again with its own schema."""

    def read(served: ServedModel) -> Work[list[BaseModel]]:
        kind = served.kind
        if name in BOOK_REQUESTS:
            fit_for_book(name, served)
            parsed = body
        elif isinstance(body, kind.request_model):
            parsed = body
        else:
            parsed = kind.request_model.model_validate_json(raw)
        items, cost = kind.check(parsed, limits)
        return Work(items, cost, partial(kind.answer, parsed))

    return read


async def predictions(plane: DataPlane, resolved: Resolved, read: Read[list[BaseModel]]) -> bytes:
    """The data plane's answer, rendered as the JSON every predict endpoint gives: ``Answer``
    (its schema in /docs), written as its serializer would (model names and versions need no
    escaping: ``service.contract.artifacts.MODEL_NAME``) with the predictions serialized
    alone, a third of the cost of building the ``Answer`` (3.6 → 0.7 µs for one review)."""
    answers = await plane.infer(resolved, read)
    served = resolved.served
    model = f'{{"model":{{"name":"{served.name}","version":"{served.version}"}},"predictions":'
    return model.encode() + to_json(answers, exclude_none=True) + b"}"


async def answer(request: Request, name: str, resolved: Resolved, body: BaseModel,
                 raw: bytes = b"") -> Response:  # fmt: skip
    """The whole path of a predict request once its body is read and its version resolved."""
    plane: DataPlane = request.app.state.plane
    try:
        payload = await predictions(plane, resolved, reader(name, body, raw, plane.limits))
    except InputProblems as error:
        raise RequestValidationError(
            [{"loc": ("body", *p.loc), "msg": p.msg, "type": p.type} for p in error.problems]
        ) from None
    return Response(payload, media_type="application/json")


# Predict routes take the ``Request`` and read ``app.state`` themselves rather than through
# ``Depends``: on a request that costs ~0.1 ms of model work, each resolved dependency adds
# ~0.05 ms. The state they read is built once, at start-up (service.app).


@rest.post("/imdb/predict", response_model=ImdbResponse, response_model_exclude_none=True,
           summary="Sentiment of movie reviews")  # fmt: skip
async def predict_imdb(body: ImdbRequest, request: Request) -> Response:
    """Probability that each review is positive (IMDB network, 10,000-word multi-hot input)."""
    return await predict_book(request, "imdb", body)


@rest.post("/reuters/predict", response_model=ReutersResponse, response_model_exclude_none=True,
           summary="Topics of newswires")  # fmt: skip
async def predict_reuters(body: ReutersRequest, request: Request) -> Response:
    """The 46 topic probabilities of each newswire, its topic, and the ``top_k`` best topics."""
    return await predict_book(request, "reuters", body)


@rest.post("/boston/predict", response_model=BostonResponse, response_model_exclude_none=True,
           summary="Median home values")  # fmt: skip
async def predict_boston(body: BostonRequest, request: Request) -> Response:
    """Median home value of each district from its 13 raw features (normalized inside the model)."""
    return await predict_book(request, "boston", body)


async def predict_book(request: Request, name: str, body: BaseModel) -> Response:
    key = request.headers.get(ROUTING_HEADER)
    resolved = book_version(request.app.state.plane, name, body.version, key)  # type: ignore[attr-defined]
    return await answer(request, name, resolved, body)


def book_version(plane: DataPlane, name: str, version: str | None, key: str | None) -> Resolved:
    """The version a book endpoint asked for (none: the rollout's choice for ``key``), if its
    folder still holds the model it expects."""
    resolved = plane.resolve(name, version, key)
    fit_for_book(name, resolved.served)
    return resolved


def fit_for_book(name: str, served: ServedModel) -> None:
    """``ModelUnavailable`` unless ``served`` is the kind of model the book endpoint answers for."""
    book, kind = BOOK_MODELS[name], served.kind
    if (kind.kind, kind.output_width, tuple(getattr(kind, "feature_names", book.features))) != (
        book.kind, book.outputs, book.features,
    ):  # fmt: skip
        raise ModelUnavailable(
            name, f"version {served.version} is a {kind.kind} with {kind.output_width} output(s), "
            f"not the {book.kind} /{name}/predict answers for; use /models/{name} to see it",
        )  # fmt: skip


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
    raw, key = await request.body(), request.headers.get(ROUTING_HEADER)
    try:
        resolved, body = read_request(request.app.state.plane, name, raw, key)
    except ValidationError as error:  # as the 422 every schema error gets
        raise RequestValidationError(
            [{**issue, "loc": ("body", *issue["loc"])} for issue in error.errors()]
        ) from None
    return await answer(request, name, resolved, body, raw)


def read_request(
    plane: DataPlane, name: str, raw: bytes, key: str | None = None
) -> tuple[Resolved, BaseModel]:
    """A predict body read by its model's schema (a book path's: its own), and the version it
    resolves to (none named: the rollout's choice for the routing ``key``), read again by that
    version's schema if its labels or features differ. Raises what the data plane and pydantic
    raise."""
    if name in BOOK_REQUESTS:
        book_body = BOOK_REQUESTS[name].model_validate_json(raw)
        return book_version(plane, name, book_body.version, key), book_body  # type: ignore[attr-defined]
    model = plane.model(name)
    body = model.default.kind.request_model.model_validate_json(raw)
    resolved = model.resolve(body.version, key)  # type: ignore[attr-defined]
    schema = resolved.served.kind.request_model
    if not isinstance(body, schema):
        body = schema.model_validate_json(raw)
    return resolved, body
