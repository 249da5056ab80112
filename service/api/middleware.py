"""The plain ASGI layers every HTTP request passes, outermost first: the payload log's capture
(``PayloadCapture``, when ``PAYLOAD_LOG`` is on), the request context (``RequestContext``:
request id, one access-log line, metrics) and the JSON guard of the predict paths
(``RequireJson``). Then ``service.api.lane`` and the routes.

Plain ASGI (not ``BaseHTTPMiddleware``) keeps the cost per request to a few microseconds and
never buffers the response body.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observe.logs import AccessLog
from service.observe.metrics import Metrics
from service.observe.payloads import Exchange, PayloadLog

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""Request ids we echo: short and printable, so a client cannot inject text into our logs."""


class Bookkeeping:
    """What every request leaves behind, whoever answers it (the routes through
    ``RequestContext``, or ``service.api.lane``): a count and a latency by route and status in
    ``/metrics``, and one access-log line."""

    def __init__(self, metrics: Metrics, access_log: AccessLog | None) -> None:
        self.metrics = metrics
        self.access_log = access_log

    def done(self, scope: Scope, route: str, status: int, started: float, request_id: str) -> None:
        elapsed = time.perf_counter() - started
        method = scope["method"]
        self.metrics.record_request(method, route, status, elapsed)
        if self.access_log is not None:
            self.access_log.request(method, scope["path"], status, round(elapsed * 1000, 3), request_id)


def request_id(scope: Scope) -> str:
    """The request's ``X-Request-ID`` when it is short and printable, else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return secrets.token_hex(16)


class RequestContext:
    """Give every request an id (``X-Request-ID`` honoured and echoed), time it, log and count it."""

    def __init__(self, app: ASGIApp, bookkeeping: Bookkeeping) -> None:
        self.app = app
        self.bookkeeping = bookkeeping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given_id = request_id(scope)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", given_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.bookkeeping.done(scope, route, status, started, given_id)


# --- Predict bodies are JSON ---------------------------------------------------------------


class RequireJson:
    """A predict body that says it is not JSON gets 415 and the reason.

    It guards our ``/<model>/predict`` routes only: the V2 endpoints also take binary tensor
    data, and ``POST /admin/reload`` has no body. Without it, ``curl -d`` (which sends
    ``application/x-www-form-urlencoded``) would get a puzzling 422 about the body not being an
    object."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/predict"):
            content_type = _content_type(scope)
            if not is_json(content_type):
                shown = content_type[:80].decode("latin-1") or "none"
                body = json.dumps(
                    {"detail": f"Content-Type must be application/json, got {shown!r}"}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 415,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _content_type(scope: Scope) -> bytes:
    return next((v for k, v in scope["headers"] if k == b"content-type"), b"")


def is_json(content_type: bytes) -> bool:
    """``application/json`` or any ``+json`` type, parameters aside."""
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or media_type.endswith(b"+json")


# --- The payload log's capture ---------------------------------------------------------------

_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


def predict_target(path: str) -> tuple[str, str, str | None] | None:
    """(protocol, model, version in the path) of a predict path, else None."""
    if path.endswith("/predict") and path.count("/") == 2:
        return "rest", path[1 : -len("/predict")], None
    match = _V2_INFER.match(path)
    if match:
        return "v2", match.group(1), match.group(2)
    return None


class PayloadCapture:
    """Plain ASGI, outermost: copy each sampled predict request and its response to the log."""

    def __init__(self, app: ASGIApp, log: PayloadLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = (
            predict_target(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if target is None or not self.log.sampled():
            await self.app(scope, receive, send)
            return
        exchange = Exchange(target, _header_length(scope.get("headers", [])))

        async def receive_copy() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.request_chunks.append(message.get("body", b""))
            return message

        async def send_copy(message: Message) -> None:
            if message["type"] == "http.response.start":
                _response_started(exchange, message)
            elif message["type"] == "http.response.body":
                exchange.response_chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_copy, send_copy)
        finally:
            exchange.finished, exchange.finished_clock = time.time(), time.perf_counter()
            self.log.write(self.log.entry(exchange))


def _response_started(exchange: Exchange, message: Message) -> None:
    exchange.status = message["status"]
    headers = message.get("headers", [])
    for name, value in headers:
        if name == b"x-request-id":
            exchange.request_id = value.decode("latin-1")
    exchange.header_length = _header_length(headers)


def _header_length(headers: Any) -> int | None:
    """A V2 binary message's JSON part length (``Inference-Header-Content-Length``)."""
    for name, value in headers:
        if name.lower() == b"inference-header-content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
