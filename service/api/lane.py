"""``PredictLane``: plain ASGI, outermost, the short way to a predict 200.

FastAPI's layers (its error, telemetry and body-limit middlewares, routing, body machinery) and
our own per-request ones each cost a few microseconds, together more CPU than the model
(measured: bench/RESULTS.md). So a well-formed ``POST /NAME/predict`` is answered here, before
any of them: the body read (within ``MAX_BODY_BYTES``), the model's own pydantic schema
(``service.api.rest.read_request``), the version resolved, then the same data plane call as the
routes; the lane does the per-request bookkeeping itself (request id, metrics, access log, the
payload log when on), exactly as the layers it skips would have.

Anything the lane cannot answer at once (not JSON, too large, a schema error, a broken limit, an
unknown model or version) goes to the full stack with the body replayed, byte for byte as the
routes would have answered it: the routes are the contract and the renderer of every error.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.middleware import Bookkeeping, is_json, request_id
from service.api.rest import BOOK_REQUESTS, predictions, read_request, reader
from service.kinds.base import InputProblems
from service.observe.payloads import Exchange, PayloadLog
from service.serving.dataplane import DataPlane
from service.serving.errors import NOT_SERVED
from service.serving.registry import Resolved
from service.serving.rollout import ROUTING_HEADER

CONTENT_TYPE = (b"content-type", b"application/json")
TEXT_TYPE = (b"content-type", b"text/plain; charset=utf-8")

SERVER_ERROR = b"Internal Server Error"
"""What the stack's error middleware answers an unexpected failure with (Starlette's)."""


BOOK_ROUTES = {name: f"/{name}/predict" for name in BOOK_REQUESTS}
GENERIC_ROUTE = "/{name}/predict"
"""What the access log and ``http_requests_total`` name a request's route by."""


class PredictLane:
    """Answers a well-formed ``POST /NAME/predict`` itself; hands anything else to ``stack``."""

    def __init__(self, stack: ASGIApp, plane: DataPlane, bookkeeping: Bookkeeping,
                 max_body_bytes: int, payload_log: PayloadLog | None = None) -> None:  # fmt: skip
        self.stack = stack
        self.plane = plane
        self.bookkeeping = bookkeeping
        self.max_body_bytes = max_body_bytes
        self.payload_log = payload_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if scope.get("method") != "POST" or not path.endswith("/predict") or path.count("/") != 2:
            await self.stack(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(reversed(scope["headers"]))  # a repeated header: its first value, as RequireJson
        if not is_json(headers.get(b"content-type", b"")) or declared_length(headers) > self.max_body_bytes:
            await self.stack(scope, receive, send)
            return
        messages, size = [await receive()], 0
        while True:
            size += len(messages[-1].get("body", b""))
            if size > self.max_body_bytes or not messages[-1].get("more_body", False):
                break
            messages.append(await receive())
        name, raw, payload = path[1 : -len("/predict")], b"", None
        if size <= self.max_body_bytes:
            raw = b"".join(message.get("body", b"") for message in messages)
            try:
                payload = await self.answer(name, raw, routing_key(headers))
            except Exception:  # as the stack's error middleware: a 500, counted, then raised
                await self.respond(scope, send, name, raw, started, 500, SERVER_ERROR)
                raise
        if payload is None:
            await self.stack(scope, _replaying(messages, receive), send)
            return
        await self.respond(scope, send, name, raw, started, 200, payload)

    async def respond(self, scope: Scope, send: Send, name: str, raw: bytes, started: float,
                      status: int, payload: bytes) -> None:  # fmt: skip
        """Send the answer with its request id; count it, log it (and its payload, when on)."""
        given_id = request_id(scope)
        content_type = CONTENT_TYPE if status == 200 else TEXT_TYPE
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-length", str(len(payload)).encode()), content_type,
            (b"x-request-id", given_id.encode()),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload})
        route = BOOK_ROUTES.get(name, GENERIC_ROUTE)
        self.bookkeeping.done(scope, route, status, started, given_id)
        if self.payload_log is not None and self.payload_log.sampled():
            exchange = Exchange(("rest", name, None), started=started, status=status,
                                request_id=given_id, request_chunks=[raw],
                                response_chunks=[payload])  # fmt: skip
            exchange.finished, exchange.finished_clock = time.time(), time.perf_counter()
            self.payload_log.write(self.payload_log.entry(exchange))

    async def answer(self, name: str, raw: bytes, key: str | None) -> bytes | None:
        """The answer's body, when the lane can give it; None hands the request to the stack."""
        read = self.read(self.plane, name, raw, key)
        if read is None:
            return None
        resolved, body = read
        try:
            return await predictions(self.plane, resolved, reader(name, body, raw, self.plane.limits))
        except InputProblems:  # a limit broken: the route renders the 422
            return None

    @staticmethod
    def read(
        plane: DataPlane, name: str, raw: bytes, key: str | None
    ) -> tuple[Resolved, BaseModel] | None:
        """The resolved version and read body of a request the lane can answer, else None."""
        try:
            return read_request(plane, name, raw, key)
        except (ValidationError, *NOT_SERVED):
            return None


def declared_length(headers: dict[bytes, bytes]) -> int:
    """The request's ``Content-Length`` (0 when absent or unreadable: the read counts then)."""
    value = headers.get(b"content-length", b"")
    return int(value) if value.isdigit() else 0


def routing_key(headers: dict[bytes, bytes]) -> str | None:
    """The ``X-Routing-Key`` header of a request, if any (``service.serving.rollout``); ASGI
    servers give header names in lower case."""
    value = headers.get(ROUTING_HEADER.encode())
    return value.decode("latin-1") if value is not None else None


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read again, then the real one's messages."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
