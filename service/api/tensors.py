"""Tensors of the Open Inference Protocol (V2), in both encodings a V2 client may use.

* JSON: ``{"name", "datatype", "shape", "data"}`` with ``data`` in row-major order, flat or
  nested; a ``BYTES`` element is a JSON string.
* Binary tensor data (the extension Triton defined and ``tritonclient`` uses by default): the
  body is the JSON request, whose length is in the ``Inference-Header-Content-Length`` header,
  followed by each binary input's raw little-endian bytes, sized by its
  ``parameters.binary_data_size``. A ``BYTES`` element is a 4-byte little-endian length and
  then its bytes. Responses use the same framing for the outputs asked for in binary.

Everything malformed raises ``TensorError``, which the V2 routes answer with 400 and the message.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError

HEADER_LENGTH = "inference-header-content-length"

NUMERIC_DTYPES = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
"""Every numeric V2 datatype and its little-endian NumPy type (the binary extension's layout)."""


class TensorError(ValueError):
    """A V2 request that cannot be read as tensors; the message says which one and why."""


def _integral_float_to_int(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer; so do we. 2.5, "2" and true stay errors."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Dimension = Annotated[StrictInt, BeforeValidator(_integral_float_to_int)]


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[Dimension] = Field(max_length=8)
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferenceRequest(BaseModel):
    """The JSON part of a V2 inference request."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


@dataclass(frozen=True)
class Tensor:
    """A decoded input or a computed output: numbers in a NumPy array, ``BYTES`` as a list."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes]


def parse_request(body: bytes, header_length: str | None) -> tuple[InferenceRequest, bytes]:
    """Split the body into the JSON request and the binary tensor data after it, and parse it."""
    if header_length is None:
        header, binary = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise TensorError(
                f"Inference-Header-Content-Length {header_length[:20]!r} is not a length "
                f"within the {len(body)}-byte body"
            )
        header, binary = body[: int(header_length)], body[int(header_length) :]
    try:
        return InferenceRequest.model_validate_json(header), binary
    except ValidationError as error:
        raise TensorError(_first_problem(error)) from None


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"])
    where = where.lstrip(".") or "body"
    if problem["type"] == "json_invalid":
        return f"the request is not valid JSON: {problem.get('ctx', {}).get('error', '')}"
    return f"{where[:80]}: {problem['msg']}"


def decode_inputs(request: InferenceRequest, binary: bytes) -> list[Tensor]:
    """Every input as a ``Tensor``, its element count checked against its shape."""
    tensors, offset = [], 0
    for given in request.inputs:
        where = f"input '{given.name[:40]}'"
        if any(dim < 0 for dim in given.shape):
            raise TensorError(f"{where}: shape {given.shape} has a negative dimension")
        count = math.prod(given.shape)  # Python ints: a shape past int64 is just too big
        size = given.parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise TensorError(f"{where}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise TensorError(f"{where}: binary_data_size {size} runs past the body's end")
            data = _from_binary(binary[offset : offset + size], given.datatype, count, where)
            offset += size
        elif given.data is None:
            raise TensorError(f"{where}: no 'data' and no binary_data_size parameter")
        else:
            data = _from_json(given.data, given.datatype, count, where)
        tensors.append(Tensor(given.name, given.datatype, tuple(given.shape), data))
    if offset != len(binary):
        raise TensorError(f"{len(binary) - offset} bytes of binary data belong to no input")
    return tensors


def _from_binary(raw: bytes, datatype: str, count: int, where: str) -> np.ndarray | list[bytes]:
    if datatype == "BYTES":
        elements, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise TensorError(f"{where}: a BYTES element's 4-byte length is cut short")
            (length,) = struct.unpack_from("<I", raw, offset)
            elements.append(raw[offset + 4 : offset + 4 + length])
            offset += 4 + length
        if offset != len(raw) or len(elements) != count:
            raise TensorError(
                f"{where}: the binary data holds {len(elements)} BYTES elements, its shape {count}"
            )
        return elements
    dtype = _numpy_dtype(datatype, where)
    if len(raw) != count * dtype.itemsize:
        raise TensorError(
            f"{where}: {len(raw)} bytes of binary data, but {count} {datatype} elements "
            f"take {count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype)


def _from_json(data: Any, datatype: str, count: int, where: str) -> np.ndarray | list[bytes]:
    elements = _flatten(data)
    if len(elements) != count:
        raise TensorError(f"{where}: 'data' holds {len(elements)} elements, its shape {count}")
    if datatype == "BYTES":
        if not all(isinstance(e, str) for e in elements):
            raise TensorError(f"{where}: every BYTES element in JSON must be a string")
        return [e.encode("utf-8") for e in elements]
    dtype = _numpy_dtype(datatype, where)
    if dtype.kind == "b":
        allowed: tuple[type, ...] = (bool,)
    elif dtype.kind in "iu":
        # JSON Schema (and the REST endpoints) count 14.0 as an integer; so do we. 14.5 stays an error.
        elements = [_integral_float_to_int(e) for e in elements]
        allowed = (int,)
    else:
        allowed = (int, float)
    if not all(_is_a(e, allowed) for e in elements):
        raise TensorError(f"{where}: every {datatype} element must be a JSON {_json_kind(dtype)}")
    try:
        return np.array(elements, dtype=dtype.newbyteorder("="))
    except OverflowError:
        raise TensorError(f"{where}: a value does not fit in {datatype}") from None


def _is_a(element: Any, allowed: tuple[type, ...]) -> bool:
    """``isinstance``, except that a JSON true or false is never a number."""
    return isinstance(element, allowed) and (bool in allowed or not isinstance(element, bool))


def _json_kind(dtype: np.dtype) -> str:
    return {"b": "boolean", "i": "integer", "u": "integer"}.get(dtype.kind, "number")


def _flatten(data: Any) -> list[Any]:
    """Row-major elements of flat or nested JSON arrays (a lone scalar is one element)."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(e, list) for e in data):
        return data
    flat: list[Any] = []
    for element in data:
        flat.extend(_flatten(element))
    return flat


def _numpy_dtype(datatype: str, where: str) -> np.dtype:
    try:
        return np.dtype(NUMERIC_DTYPES[datatype])
    except KeyError:
        raise TensorError(f"{where}: unknown datatype {datatype[:20]!r}") from None


def encode_response(
    response: dict[str, Any], outputs: list[Tensor], binary: set[str]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's length when any output travels in binary."""
    blobs, described = [], []
    for tensor in outputs:
        entry: dict[str, Any] = {
            "name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape),
        }  # fmt: skip
        if tensor.name in binary:
            blob = _to_binary(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif tensor.datatype == "BYTES":
            entry["data"] = [element.decode("utf-8") for element in tensor.data]  # type: ignore[union-attr]
        else:
            entry["data"] = np.asarray(tensor.data).ravel().tolist()
        described.append(entry)
    header = json.dumps({**response, "outputs": described}, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _to_binary(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(e)) + e for e in tensor.data)  # type: ignore[arg-type]
    return np.ascontiguousarray(tensor.data, dtype=NUMERIC_DTYPES[tensor.datatype]).tobytes()
