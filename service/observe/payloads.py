"""Payload logging: one JSON line per predict request, its inputs and outputs, failures included.

Off by default. ``PAYLOAD_LOG`` turns it on (``stdout`` or a file path), ``PAYLOAD_LOG_SAMPLE``
keeps a share of the requests (decided per request, before anything is read), and
``PAYLOAD_LOG_INPUTS`` says how inputs are written:

* ``hash`` (default): each input item (a text, a word-id sequence, a feature row, a record, a
  V2 tensor's element or row) as the sha256 of its text and its length. Enough to join a
  prediction to a known input, count duplicates or spot a changed input, never the text itself.
  Explanations are left out of the outputs too: they list the input's words.
* ``truncate``: each item's first 64 characters and its length.
* ``full``: the inputs as sent. Only by explicit choice: reviews and newswires may hold
  personal data, and a log is copied, shipped and kept longer than a request.

``PayloadCapture`` is plain ASGI around the whole app: it copies the request body on the way in
and the response (status, request id, body) on the way out, so it sees ``PredictLane``'s 200s
and the routes' 4xx and 5xx alike, and the kinds know nothing of it. ``PayloadLog`` writes the
lines in bursts, like ``service.observe.logs.AccessLog``: at most 50 ms late, one ``write()`` per burst
on a descriptor opened with ``O_APPEND``, so workers appending to one file never cut each
other's lines (one ``write`` to a local file is placed and written whole). ``stdout`` is shared
by the workers too; when it is a pipe (a container's log), the kernel keeps only writes of up to
4 KiB whole, so give several workers a file when lines are long (large batches).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from typing import Any

from pydantic_core import from_json, to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observe.logs import Bursts, timestamp
from service.settings import PayloadInputs

TRUNCATE_CHARS = 64
"""What ``truncate`` keeps of each input item."""

_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


def predict_target(path: str) -> tuple[str, str, str | None] | None:
    """(protocol, model, version in the path) of a predict path, else None."""
    if path.endswith("/predict") and path.count("/") == 2:
        return "rest", path[1 : -len("/predict")], None
    match = _V2_INFER.match(path)
    if match:
        return "v2", match.group(1), match.group(2)
    return None


class PayloadLog(Bursts):
    """The payload lines of one process, written in bursts (``Bursts``) to stdout or appended to
    a file: one ``write()`` per burst on an ``O_APPEND`` descriptor, so workers sharing a file
    never cut each other's lines."""

    def __init__(
        self, target: str, sample: float = 1.0, inputs: PayloadInputs = PayloadInputs.hash
    ) -> None:
        super().__init__()
        self.sample = sample
        self.inputs = inputs
        self.target = target
        self.fd: int | None = None

    def sampled(self) -> bool:
        return self.sample >= 1.0 or random.random() < self.sample

    def write(self, entry: dict[str, Any]) -> None:
        self.add(to_json(entry, inf_nan_mode="strings").decode())

    def emit(self, burst: str) -> None:
        data, fd = burst.encode(), self._descriptor()
        while data:
            data = data[os.write(fd, data) :]

    def _descriptor(self) -> int:
        """Opened at the first write, in the worker that writes (never inherited)."""
        if self.fd is None:
            if self.target == "stdout":
                self.fd = 1
            else:
                self.fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        return self.fd

    def close(self) -> None:
        self.flush()
        if self.fd not in (None, 1):
            os.close(self.fd)  # type: ignore[arg-type]
        self.fd = None

    # --- what a line says ---

    def entry(self, exchange: Exchange) -> dict[str, Any]:
        protocol, model, path_version = exchange.target
        reply = _json(exchange.response_body(), exchange.header_length)
        request = _json(exchange.request_body(), exchange.request_header_length)
        version = _served_version(reply) or path_version or _asked_version(request)
        entry: dict[str, Any] = {
            "time": timestamp(exchange.finished),
            "request_id": exchange.request_id,
            "protocol": protocol,
            "model": model,
            "version": version,
            "status": exchange.status,
            "latency_ms": round((exchange.finished_clock - exchange.started) * 1000, 3),
            "inputs": self.rendered_inputs(request, exchange.request_body()),
        }
        if exchange.request_header_length is not None:  # V2 binary tensor data after the JSON
            binary = exchange.request_body()[exchange.request_header_length :]
            entry["inputs_binary"] = {
                "sha256": hashlib.sha256(binary).hexdigest(),
                "length": len(binary),
            }
        if exchange.status == 200 and isinstance(reply, dict):
            entry["outputs"] = self.rendered_outputs(reply)
        else:
            entry["error"] = reply if reply is not None else _text(exchange.response_body())
        return entry

    def rendered_inputs(self, request: Any, raw: bytes) -> Any:
        if not isinstance(request, dict):  # not JSON: the raw body, as one item
            return {"body": self.item(raw.decode("utf-8", "replace"))}
        if self.inputs is PayloadInputs.full:
            return request
        if isinstance(request.get("inputs"), list):  # V2
            return {**request, "inputs": [self.tensor(t) for t in request["inputs"]]}
        return {key: self.batch(value) for key, value in request.items()}

    def tensor(self, tensor: Any) -> Any:
        """A V2 input: its name, datatype and shape as sent, its data item by item (each
        element of a BYTES tensor, each row of a numeric one)."""
        if not isinstance(tensor, dict):
            return self.item(tensor)
        data = tensor.get("data")
        rendered = {k: v for k, v in tensor.items() if k != "data"}
        if isinstance(data, list):
            flat = _flattened(data)
            shape = tensor.get("shape")
            width = 1
            if tensor.get("datatype") != "BYTES" and isinstance(shape, list) and len(shape) > 1:
                width = max(1, int(_product(shape[1:])))
            rows = flat if width == 1 else [flat[i : i + width] for i in range(0, len(flat), width)]
            rendered["data"] = [self.item(row) for row in rows]
        elif data is not None:
            rendered["data"] = self.item(data)
        return rendered

    def batch(self, value: Any) -> Any:
        """A REST field: scalars (version, explain, top_k) as sent; a text, row or record as one
        item; a list holding texts, rows or records (even among wrong values) item by item."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if (
            isinstance(value, list)
            and value
            and any(isinstance(v, str | list | dict) for v in value)
        ):
            return [self.item(v) for v in value]
        return self.item(value)

    def item(self, value: Any) -> Any:
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        length = len(value) if isinstance(value, str | list | dict) else 1
        if self.inputs is PayloadInputs.truncate:
            return {"start": text[:TRUNCATE_CHARS], "length": length}
        return {
            "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
            "length": length,
        }

    def rendered_outputs(self, reply: dict[str, Any]) -> Any:
        """The answers (REST ``predictions``, V2 ``outputs``); explanations only with ``full``,
        since they name the input's words."""
        outputs = reply.get("predictions", reply.get("outputs"))
        if self.inputs is not PayloadInputs.full and isinstance(outputs, list):
            outputs = [
                {k: v for k, v in o.items() if k != "explanation"} if isinstance(o, dict) else o
                for o in outputs
            ]
        return outputs


class Exchange:
    """One predict request and its response, as they went by."""

    def __init__(self, target: tuple[str, str, str | None], scope: Scope) -> None:
        self.target = target
        self.started = time.perf_counter()
        self.finished = 0.0
        self.finished_clock = 0.0
        self.status = 500
        self.request_id = ""
        self.request_chunks: list[bytes] = []
        self.response_chunks: list[bytes] = []
        self.header_length: int | None = None
        self.request_header_length = _header_length(scope.get("headers", []))

    def request_body(self) -> bytes:
        return b"".join(self.request_chunks)

    def response_body(self) -> bytes:
        return b"".join(self.response_chunks)

    def response_started(self, message: Message) -> None:
        self.status = message["status"]
        headers = message.get("headers", [])
        for name, value in headers:
            if name == b"x-request-id":
                self.request_id = value.decode("latin-1")
        self.header_length = _header_length(headers)


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
        exchange = Exchange(target, scope)

        async def receive_copy() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.request_chunks.append(message.get("body", b""))
            return message

        async def send_copy(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.response_started(message)
            elif message["type"] == "http.response.body":
                exchange.response_chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_copy, send_copy)
        finally:
            exchange.finished, exchange.finished_clock = time.time(), time.perf_counter()
            self.log.write(self.log.entry(exchange))


def _header_length(headers: Any) -> int | None:
    """A V2 binary message's JSON part length (``Inference-Header-Content-Length``)."""
    for name, value in headers:
        if name.lower() == b"inference-header-content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _json(raw: bytes, json_length: int | None = None) -> Any:
    """The body as JSON, or None. pydantic-core's parser: a third of the cost of ``json``'s."""
    try:
        return from_json(raw[:json_length] if json_length is not None else raw)
    except ValueError:
        return None


def _text(raw: bytes) -> str:
    return raw[:1000].decode("utf-8", "replace")


def _served_version(reply: Any) -> str | None:
    if not isinstance(reply, dict):
        return None
    model = reply.get("model")
    if isinstance(model, dict) and isinstance(model.get("version"), str):
        return model["version"]
    version = reply.get("model_version")
    return version if isinstance(version, str) else None


def _asked_version(request: Any) -> str | None:
    version = request.get("version") if isinstance(request, dict) else None
    return (
        str(version) if isinstance(version, str | int) and not isinstance(version, bool) else None
    )


def _flattened(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for element in data:
        if isinstance(element, list):
            flat.extend(_flattened(element))
        else:
            flat.append(element)
    return flat


def _product(dims: list[Any]) -> float:
    result = 1.0
    for dim in dims:
        result *= dim if isinstance(dim, int | float) and not isinstance(dim, bool) else 1
    return result
