"""The Open Inference Protocol (V2) in the OpenAPI document: the bodies the V2 routes answer,
and the inference request as the served models take it, with the configured limits.

What a V2 input accepts beyond its datatype (text lengths, word-id and feature ranges, a free
dimension's bound) comes from each model's kind (``Kind.v2_bounds``); this module only knows
V2's envelope and how V2 datatypes are written in JSON.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from pydantic import BaseModel, Field

from service.api.tensors import InferenceRequest
from service.kinds.base import Kind, Limits, TensorBounds, TensorSpec

class V2ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in words.")


class BodyTooLarge(BaseModel):
    detail: str = Field(description="The body is larger than MAX_BODY_BYTES (answered before V2).")


V2_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": V2ErrorBody, "description": "The request or a tensor is malformed."},
    404: {"model": V2ErrorBody, "description": "No such model or version."},
    503: {"model": V2ErrorBody, "description": "The model (or version) failed to load; why."},
}


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = Field(
        None, description="Row-major elements; absent when sent in binary."
    )
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size, when in binary.")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = Field(None, description="The request's id, when it gave one.")
    outputs: list[OutputTensor]


def _inlined(schema: dict[str, Any], definitions: dict[str, Any] | None = None) -> Any:
    """A pydantic JSON schema with its ``$defs`` references written in place, so it can sit
    inside the OpenAPI document (the infer route reads its body itself, JSON or binary)."""
    definitions = definitions if definitions is not None else schema.get("$defs", {})
    if isinstance(schema, list):
        return [_inlined(item, definitions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inlined(definitions[schema["$ref"].rsplit("/", 1)[1]], definitions)
    return {k: _inlined(v, definitions) for k, v in schema.items() if k != "$defs"}


def infer_request_schema(
    limits: Limits, specs: dict[TensorSpec, TensorBounds], outputs: list[str]
) -> dict[str, Any]:
    """The JSON request as the document states it: everything JSON Schema can say of what the
    route accepts. One input, as one of the served models' input tensors (``specs``): its name,
    datatype, rank and fixed dimensions, elements of its type, a batch within MAX_BATCH_SIZE, a
    word-id sequence within MAX_TEXT_CHARS; a pure-JSON request carries ``data`` (binary tensor
    data needs the ``Inference-Header-Content-Length`` header, so ``binary_data_size`` has no
    place here). What JSON Schema cannot say is in the descriptions: that the elements number
    the product of the shape, and that the model in the path takes the input."""
    schema = _inlined(InferenceRequest.model_json_schema())
    inputs = schema["properties"]["inputs"]
    inputs["maxItems"] = 1
    inputs["description"] = (
        "Exactly one input: one of the inputs /v2/models/NAME lists for the model."
    )
    inputs["items"] = {"oneOf": [_input_schema(spec, bounds, limits) for spec, bounds in specs.items()]}
    wanted = schema["properties"]["outputs"]["anyOf"][0]["items"]
    wanted["properties"]["name"] = {"type": "string", "enum": sorted(outputs),
                                    "description": "One of the model's outputs."}  # fmt: skip
    return schema


JSON_TYPES = {"BYTES": "string", "BOOL": "boolean", "FP16": "number", "FP32": "number", "FP64": "number"}
"""How V2 writes each datatype's elements in JSON (every other datatype: an integer)."""


def _input_schema(spec: TensorSpec, bounds: TensorBounds, limits: Limits) -> dict[str, Any]:
    """One served input tensor (``text`` BYTES [-1], ``features`` FP32 [-1, 13], ...) as JSON
    Schema: V2's envelope, the datatype's JSON type, and the kind's ``bounds``."""
    free = {} if bounds.length is None else {"maximum": bounds.length}
    dims = [{"type": "integer", "minimum": 1, "maximum": limits.max_batch_size}] + [
        {"const": d} if d != -1 else {"type": "integer", "minimum": 1, **free}
        for d in spec.shape[1:]
    ]  # fmt: skip
    element: dict[str, Any] = {"type": JSON_TYPES.get(spec.datatype, "integer"), **bounds.element}
    shape = ", ".join(
        "N" if i == 0 else ("L" if d == -1 else str(d)) for i, d in enumerate(spec.shape)
    )
    items: dict[str, int] = {}  # the most elements 'data' may hold, when every dimension is bounded
    if bounds.length is not None or -1 not in spec.shape[1:]:
        dimensions = (bounds.length if d == -1 else d for d in spec.shape[1:])
        items["maxItems"] = limits.max_batch_size * math.prod(dimensions)  # type: ignore[arg-type]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"const": spec.name},
            "datatype": {"enum": [spec.datatype, *spec.accepts]},
            "shape": {
                "type": "array", "prefixItems": dims, "items": False,
                "minItems": len(dims), "maxItems": len(dims),
                "description": f"[{shape}]: N items (at most MAX_BATCH_SIZE); 'data' holds "
                "exactly as many elements as the product of these.",
            },
            "data": {
                "anyOf": [
                    {"type": "array", "minItems": 1, **items,
                     "items": {"anyOf": [element, {"type": "array", "minItems": 1, "items": element}]}},
                    element,
                ],
                "description": "The elements in row-major order: flat, or nested by row.",
            },
            "parameters": {
                "type": "object", "not": {"required": ["binary_data_size"]},
                "description": "binary_data_size only with the Inference-Header-Content-Length header.",
            },
        },
    }  # fmt: skip


INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "JSON; or, with the Inference-Header-Content-Length header, this JSON "
        "followed by binary tensor data.",
        "content": {"application/json": {"schema": _inlined(InferenceRequest.model_json_schema())}},
    }
}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferenceResponse,
        "description": "The outputs: JSON; or, when an output is asked for in binary, this JSON "
        "(its length in the Inference-Header-Content-Length header) then the binary data.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    413: {"model": BodyTooLarge, "description": "The body is larger than MAX_BODY_BYTES."},
}


def document_infer(schema: dict[str, Any], kinds: list[Kind], limits: Limits) -> None:
    """Give both infer operations of an OpenAPI ``schema`` the request the served models (their
    ``kinds``) take, with the configured limits, in place (``service.app`` calls it when it
    builds /docs)."""
    specs: dict[TensorSpec, TensorBounds] = {}
    for kind in kinds:
        for spec in kind.v2_inputs():
            if spec not in specs:
                specs[spec] = kind.v2_bounds(spec, limits)
    outputs = {spec.name for kind in kinds for spec in kind.v2_outputs()}
    if not specs:
        return  # nothing served: the document keeps the protocol's own request
    body = infer_request_schema(limits, specs, sorted(outputs))
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        content = schema["paths"][path]["post"]["requestBody"]["content"]
        content["application/json"]["schema"] = copy.deepcopy(body)
