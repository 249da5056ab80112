"""``PredictLane``: plain ASGI in front of the routes, the short way to a predict 200.

FastAPI's routing and body machinery cost more CPU than the model (measured: bench/RESULTS.md),
so a well-formed ``POST /NAME/predict`` is answered here: the body read by the model's own
pydantic schema (``service.api.rest.read_request``), the version resolved, then the same data
plane call as the routes. Anything the lane cannot answer at once (a schema error, a broken
limit, an unknown model or version) goes to the routes with the body replayed, byte for byte as
they would have answered it: the routes are the contract and the renderer of every error.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.rest import BOOK_REQUESTS, predictions, read_request, reader
from service.kinds.base import InputProblems
from service.serving.dataplane import DataPlane
from service.serving.errors import NOT_SERVED
from service.serving.registry import Resolved


@dataclass(frozen=True)
class RouteLabel:
    """What the access log and ``http_requests_total`` name a request's route by."""

    path: str


BOOK_ROUTES = {name: RouteLabel(f"/{name}/predict") for name in BOOK_REQUESTS}
GENERIC_ROUTE = RouteLabel("/{name}/predict")


class PredictLane:
    """Answers a well-formed ``POST /NAME/predict`` itself; hands anything else to the routes."""

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
        name = path[1 : -len("/predict")]
        plane: DataPlane = scope["app"].state.plane
        read = self.read(plane, name, raw, routing_key(scope))
        payload = None
        if read is not None:
            resolved, body = read
            try:
                payload = await predictions(plane, resolved, reader(name, body, raw, plane.limits))
            except InputProblems:  # a limit broken: the route renders the 422
                payload = None
        if payload is None:
            await self.app(scope, _replaying(messages, receive), send)
            return
        scope["route"] = BOOK_ROUTES.get(name, GENERIC_ROUTE)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json"),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    def read(
        plane: DataPlane, name: str, raw: bytes, key: str | None
    ) -> tuple[Resolved, BaseModel] | None:
        """The resolved version and read body of a request the lane can answer, else None."""
        try:
            return read_request(plane, name, raw, key)
        except (ValidationError, *NOT_SERVED):
            return None


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
