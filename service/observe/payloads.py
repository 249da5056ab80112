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

The HTTP side (``service.api.middleware.PayloadCapture``, plain ASGI around the whole app)
copies each sampled request body on the way in and the response (status, request id, body) on
the way out into an ``Exchange``, so it sees the lane's 200s and the routes' 4xx and 5xx alike,
and the kinds know nothing of it. ``PayloadLog`` renders an exchange as one line and writes the
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
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic_core import from_json, to_json

from service.observe.logs import Bursts, timestamp

TRUNCATE_CHARS = 64
"""What ``truncate`` keeps of each input item."""


class PayloadInputs(str, Enum):
    """How the payload log writes a request's inputs (``PAYLOAD_LOG_INPUTS``)."""

    hash = "hash"
    truncate = "truncate"
    full = "full"


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


@dataclass
class Exchange:
    """One predict request and its response, as they went by: ``target`` is (protocol, model,
    version named in the path), the header lengths those of V2's binary framing."""

    target: tuple[str, str, str | None]
    request_header_length: int | None = None
    started: float = field(default_factory=time.perf_counter)
    finished: float = 0.0
    finished_clock: float = 0.0
    status: int = 500
    request_id: str = ""
    header_length: int | None = None
    request_chunks: list[bytes] = field(default_factory=list)
    response_chunks: list[bytes] = field(default_factory=list)

    def request_body(self) -> bytes:
        return b"".join(self.request_chunks)

    def response_body(self) -> bytes:
        return b"".join(self.response_chunks)


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
