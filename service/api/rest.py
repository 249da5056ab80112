"""The JSON predict endpoints: ``POST /{name}/predict`` for every served model, and the book's
three paths as typed instances of it. /docs lists each model's path with its own typed body
(``service.api.modeldocs``), not the generic one.

One path for every request, top to bottom in ``answer``: the registry hands over a version, its
kind checks the limits, then preprocesses, predicts and postprocesses (inline or in the thread
pool, by cost), and the answer is rendered. A limit broken is a 422 naming the field, like a
schema error.

``PredictLane`` walks that same path for a well-formed request without FastAPI's routing and
body machinery, which cost more CPU than the model (measured: bench/RESULTS.md): it reads the
body with the model's own pydantic schema, and hands anything it cannot answer at once (a
schema error, a broken limit, an unknown model or version) to the routes below, byte for byte
as they would have been. So the routes are the contract and the renderer of every error; the
lane is only the short way to a 200.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.book import (
    BOOK_MODELS,
    BostonRequest,
    BostonResponse,
    ImdbRequest,
    ImdbResponse,
    ReutersRequest,
    ReutersResponse,
)
from service.serving.offload import run_sized
from service.api.schemas import Answer, ErrorResponse, ValidationErrorResponse
from service.kinds.base import InputProblems, ModelRef
from service.serving.registry import (
    ModelUnavailable,
    Registry,
    ServedModel,
    UnknownModel,
    VersionNotServed,
)
from service.serving.rollout import ROUTING_HEADER
from service.observe.drift import Signals

PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not valid UTF-8 or cannot be read."},
    413: {"model": ErrorResponse, "description": "The body is larger than MAX_BODY_BYTES."},
    404: {"model": ErrorResponse, "description": "The requested version is not served."},
    415: {"model": ErrorResponse, "description": "The body is not sent as application/json."},
    422: {"model": ValidationErrorResponse, "description": "A field is missing, wrong or too big."},
    503: {"model": ErrorResponse, "description": "The model (or version) is not loaded; why."},
}

rest = APIRouter(tags=["predict"], responses=PREDICT_ERRORS)


async def answer(request: Request, served: ServedModel, body: Any, raw: bytes = b"") -> Response:
    """The whole path of a predict request, once the body is parsed and the version chosen."""
    try:
        cost = admitted(request.app.state, served, body)
    except InputProblems as error:
        raise RequestValidationError(
            [{"loc": ("body", *p.loc), "msg": p.msg, "type": p.type} for p in error.problems]
        ) from None
    state = request.app.state
    payload = await predictions(state, served, body, cost, shadowing(state, served, body, raw))
    return Response(payload, media_type="application/json")


def admitted(state: Any, served: ServedModel, body: Any) -> int:
    """The kind's limits (``InputProblems`` if broken), then the request is counted; its cost."""
    items, cost = served.kind.check(body, state.limits)
    state.metrics.record_batch(served.name, served.version, items)
    return cost


async def predictions(
    state: Any, served: ServedModel, body: Any, cost: int, then: Then | None = None
) -> bytes:
    """preprocess → predict → postprocess, inline or in the thread pool, rendered as JSON; what
    the kind saw on the way goes to the signal metrics."""
    seen = Signals()
    answers = await run_sized(partial(served.kind.answer, body, seen), cost)
    state.metrics.signals.record(served.name, served.version, seen)
    if then is not None:  # the shadow run, started off the response path
        then(seen)
    reply = Answer(model=ModelRef(name=served.name, version=served.version), predictions=answers)
    return reply.model_dump_json(exclude_none=True).encode()


Then = Callable[[Signals], None]


def shadowing(state: Any, served: ServedModel, body: Any, raw: bytes) -> Then | None:
    """When the rollout has a shadow and ``served`` answered as its stable version (the request
    named no version, or ``stable``): a callback that hands what stable answered and the same
    input to the shadow runner (``service.serving.rollout``). The shadow reads the raw body with its own
    schema when its labels or features differ from stable's, and checks its own limits."""
    if getattr(body, "version", None) not in (None, "stable"):
        return None
    shadow = state.registry.shadow(served)
    if shadow is None:
        return None

    def prepare() -> tuple[Callable[[Signals], Any], int]:
        if served.name in BOOK_REQUESTS:
            fit_for_book(served.name, shadow)
            parsed = body
        elif isinstance(body, shadow.kind.request_model):
            parsed = body
        else:
            parsed = shadow.kind.request_model.model_validate_json(raw)
        _, cost = shadow.kind.check(parsed, state.limits)
        return partial(shadow.kind.answer, parsed), cost

    return lambda seen: state.shadows.submit(served, seen, shadow, prepare)


# Predict routes take the ``Request`` and read ``app.state`` themselves rather than through
# ``Depends``: on a request that costs ~0.1 ms of model work, each resolved dependency adds
# ~0.05 ms. The state they read is built once, in the lifespan (service.app).


@rest.post("/imdb/predict", response_model=ImdbResponse, response_model_exclude_none=True,
           summary="Sentiment of movie reviews")  # fmt: skip
async def predict_imdb(body: ImdbRequest, request: Request) -> Response:
    """Probability that each review is positive (IMDB network, 10,000-word multi-hot input)."""
    key = request.headers.get(ROUTING_HEADER)
    served = book_model(request.app.state.registry, "imdb", body.version, key)
    return await answer(request, served, body)


@rest.post("/reuters/predict", response_model=ReutersResponse, response_model_exclude_none=True,
           summary="Topics of newswires")  # fmt: skip
async def predict_reuters(body: ReutersRequest, request: Request) -> Response:
    """The 46 topic probabilities of each newswire, its topic, and the ``top_k`` best topics."""
    key = request.headers.get(ROUTING_HEADER)
    served = book_model(request.app.state.registry, "reuters", body.version, key)
    return await answer(request, served, body)


@rest.post("/boston/predict", response_model=BostonResponse, response_model_exclude_none=True,
           summary="Median home values")  # fmt: skip
async def predict_boston(body: BostonRequest, request: Request) -> Response:
    """Median home value of each district from its 13 raw features (normalized inside the model)."""
    key = request.headers.get(ROUTING_HEADER)
    served = book_model(request.app.state.registry, "boston", body.version, key)
    return await answer(request, served, body)


def book_model(
    registry: Registry, name: str, version: str | None, key: str | None = None
) -> ServedModel:
    """The version a book endpoint asked for (none: the rollout's choice for ``key``), if its
    folder still holds the model it expects."""
    served = registry.get(name, version) if version is not None else registry.route(name, key)
    fit_for_book(name, served)
    return served


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
        served, body = resolved(request.app.state.registry, name, raw, key)
    except ValidationError as error:  # as the 422 every schema error gets
        raise RequestValidationError(
            [{**issue, "loc": ("body", *issue["loc"])} for issue in error.errors()]
        ) from None
    return await answer(request, served, body, raw)


def resolved(
    registry: Registry, name: str, raw: bytes, key: str | None = None
) -> tuple[ServedModel, BaseModel]:
    """The version a predict request asks for (none named: the rollout's choice for the routing
    ``key``), and its body read by that version's schema (a book path's: its own). Raises what
    the registry and pydantic raise."""
    if name in BOOK_REQUESTS:
        book_body = BOOK_REQUESTS[name].model_validate_json(raw)
        version = book_body.version  # type: ignore[attr-defined]
        return book_model(registry, name, version, key), book_body
    served = registry.get(name)
    body = served.kind.request_model.model_validate_json(raw)
    version = body.version  # type: ignore[attr-defined]
    chosen = registry.get(name, version) if version is not None else registry.route(name, key)
    if chosen is not served:
        served = chosen
        if not isinstance(body, served.kind.request_model):  # that version's labels or features
            body = served.kind.request_model.model_validate_json(raw)
    return served, body


BOOK_REQUESTS: dict[str, type[BaseModel]] = {
    "imdb": ImdbRequest, "reuters": ReutersRequest, "boston": BostonRequest,
}  # fmt: skip
"""The book paths' own request schemas: the lane reads their bodies as their routes do."""


@dataclass(frozen=True)
class RouteLabel:
    """What the access log and ``http_requests_total`` name a request's route by."""

    path: str


BOOK_ROUTES = {name: RouteLabel(f"/{name}/predict") for name in BOOK_REQUESTS}
GENERIC_ROUTE = RouteLabel("/{name}/predict")


class PredictLane:
    """Plain ASGI in front of the routes: answers a well-formed ``POST /NAME/predict`` itself.

    It tries, in order: the model's request schema on the raw body (pydantic's JSON parser), the
    version, the book endpoint's expectations, the kind's limits. Anything that fails there
    goes to the routes with the body replayed, so every error answer is the routes' own.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if scope.get("method") != "POST" or not path.endswith("/predict") or path.count("/") != 2:
            await self.app(scope, receive, send)
            return
        messages = [await receive()]
        while messages[-1].get("more_body", False):
            messages.append(await receive())
        raw = b"".join(message.get("body", b"") for message in messages)
        ready = self.ready(scope, path[1 : -len("/predict")], raw)
        if ready is None:
            await self.app(scope, _replaying(messages, receive), send)
            return
        served, body, cost = ready
        state = scope["app"].state
        payload = await predictions(state, served, body, cost, shadowing(state, served, body, raw))
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json"),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    def ready(scope: Scope, name: str, raw: bytes) -> tuple[ServedModel, BaseModel, int] | None:
        """The version, parsed body and cost of a request the lane can answer, else None."""
        state = scope["app"].state
        try:
            served, body = resolved(state.registry, name, raw, routing_key(scope))
            cost = admitted(state, served, body)
        except (ValidationError, InputProblems, UnknownModel, ModelUnavailable, VersionNotServed):
            return None
        scope["route"] = BOOK_ROUTES.get(name, GENERIC_ROUTE)
        return served, body, cost


def routing_key(scope: Scope) -> str | None:
    """The ``X-Routing-Key`` header of a request, if any (``service.serving.rollout``)."""
    for header, value in scope.get("headers", ()):
        if header.lower() == b"x-routing-key":
            return value.decode("latin-1")
    return None


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read again, then the real one's messages."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
