"""The Open Inference Protocol (V2) endpoints that KServe, MLServer and Triton share, under ``/v2``.

Any V2 client (``tritonclient.http``, KServe's ``InferenceRESTClient``, plain curl) can use
every served model unchanged. The request path is the JSON API's: registry → the model's kind
(limits, preprocessing, one forward pass, labels); only the envelope differs
(``service.api.tensors``). Each kind names its tensors (``-1``: any size):

* text classifier: input ``text`` BYTES [-1] or ``word_ids`` INT64 [-1, -1] (Keras ids, 0
  padding); outputs ``probability`` FP32 [-1, 1] (two labels) or ``probabilities`` FP32
  [-1, labels], and ``label`` BYTES [-1];
* table regressor: input ``features`` FP32 [-1, features] (raw); output named by the card's
  target field (Boston: ``price`` FP32 [-1, 1], $1000s; otherwise ``value``).

Errors are ``{"error": "..."}``: 400 for a bad request, 404 for an unknown model or version,
503 for a model that failed to load (with the reason).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service.serving.offload import run_sized
from service.kinds.base import (
    MAX_FEATURE,
    MAX_WORD_ID,
    InputProblems,
    Kind,
    Limits,
    Problem,
    TensorSpec,
    text_cost,
)
from service.serving.registry import (
    ModelUnavailable,
    Registry,
    ServedModel,
    UnknownModel,
    VersionNotServed,
)
from service.serving.rollout import ROUTING_HEADER
from service.observe.drift import Signals
from service.api.tensors import (
    HEADER_LENGTH,
    InferenceRequest,
    Tensor,
    TensorError,
    decode_inputs,
    encode_response,
    parse_request,
)

SERVER_NAME = "keras-chapter3-serving"
EXTENSIONS = ["binary_tensor_data"]


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
    limits: Limits, specs: list[TensorSpec], outputs: list[str]
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
    inputs["items"] = {"oneOf": [_input_schema(spec, limits) for spec in specs]}
    wanted = schema["properties"]["outputs"]["anyOf"][0]["items"]
    wanted["properties"]["name"] = {"type": "string", "enum": sorted(outputs),
                                    "description": "One of the model's outputs."}  # fmt: skip
    return schema


def _input_schema(spec: TensorSpec, limits: Limits) -> dict[str, Any]:
    """One served input tensor (``text`` BYTES [-1], ``features`` FP32 [-1, 13], ...) as JSON Schema."""
    dims = [{"type": "integer", "minimum": 1, "maximum": limits.max_batch_size}] + [
        {"const": d} if d != -1 else {"type": "integer", "minimum": 1, "maximum": limits.max_text_chars}
        for d in spec.shape[1:]
    ]  # fmt: skip
    if spec.datatype == "BYTES":
        element: dict[str, Any] = {
            "type": "string",
            "minLength": 1,
            "maxLength": limits.max_text_chars,
        }
    elif spec.datatype.startswith("FP"):
        element = {"type": "number", "minimum": -MAX_FEATURE, "maximum": MAX_FEATURE}
    else:
        element = {"type": "integer", "minimum": 0, "maximum": MAX_WORD_ID}
    shape = ", ".join(
        "N" if i == 0 else ("L" if d == -1 else str(d)) for i, d in enumerate(spec.shape)
    )
    most = limits.max_batch_size * math.prod(
        d if d != -1 else limits.max_text_chars for d in spec.shape[1:]
    )
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
                    {"type": "array", "minItems": 1, "maxItems": most,
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


def document_infer(schema: dict[str, Any], registry: Registry, limits: Limits) -> None:
    """Give both infer operations of an OpenAPI ``schema`` the request the served models take,
    with the configured limits, in place (``service.app`` calls it when it builds /docs)."""
    kinds = [served.kind for versions in registry.models.values() for served in versions.values()]
    specs = list(dict.fromkeys(spec for kind in kinds for spec in kind.v2_inputs()))
    outputs = {spec.name for kind in kinds for spec in kind.v2_outputs()}
    if not specs:
        return  # nothing served: the document keeps the protocol's own request
    body = infer_request_schema(limits, specs, sorted(outputs))
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        content = schema["paths"][path]["post"]["requestBody"]["content"]
        content["application/json"]["schema"] = copy.deepcopy(body)


class V2Error(Exception):
    """Answered as the protocol says: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def v2_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, V2Error)
    return JSONResponse({"error": str(error)}, status_code=error.status)


v2 = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"], responses=V2_ERRORS)


@v2.get("", summary="Server metadata")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}


@v2.get("/health/live", summary="Server live: 200 while the process answers")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@v2.get("/health/ready", summary="Server ready: 200 once every model serves, else 400")
async def server_ready(request: Request) -> JSONResponse:
    ready = request.app.state.registry.ready and not request.app.state.draining
    return JSONResponse({"ready": ready}, status_code=200 if ready else 400)


def served_model(
    request: Request, name: str, version: str | None, routed: bool = False
) -> ServedModel:
    """The version named in the path (a number, ``stable`` or ``canary``); none named: the
    rollout's stable one, or with ``routed`` (inference) its choice for ``X-Routing-Key``."""
    registry = request.app.state.registry
    try:
        if routed and version is None:
            return registry.route(name, request.headers.get(ROUTING_HEADER))
        return registry.get(name, version)
    except UnknownModel as error:
        raise V2Error(404, f"unknown model '{error.name}'; models: {error.known}") from None
    except ModelUnavailable as error:
        raise V2Error(503, str(error)) from None
    except VersionNotServed as error:
        raise V2Error(503 if error.failed else 404, str(error)) from None


@v2.get("/models/{name}", summary="Model metadata: its tensors' names, datatypes and shapes")
@v2.get("/models/{name}/versions/{version}", summary="Model metadata of one version")
async def model_metadata(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    served = served_model(request, name, version)
    return {
        "name": name,
        "versions": [s.version for s in request.app.state.registry.versions(name)],
        "platform": "keras",
        "inputs": [spec.metadata() for spec in served.kind.v2_inputs()],
        "outputs": [spec.metadata() for spec in served.kind.v2_outputs()],
        "parameters": {"served_version": served.version, "task": served.card.get("task", "")},
    }


@v2.get("/models/{name}/ready", summary="Model ready: 200 when a version serves, else 400")
@v2.get("/models/{name}/versions/{version}/ready", summary="Model version ready")
async def model_ready(request: Request, name: str, version: str | None = None) -> JSONResponse:
    try:
        served_model(request, name, version)
    except V2Error as error:
        if error.status == 404:
            raise
        return JSONResponse({"name": name, "ready": False}, status_code=400)
    return JSONResponse({"name": name, "ready": True})


@v2.post(
    "/models/{name}/infer",
    summary="Inference (JSON, or binary tensor data)",
    openapi_extra=INFER_BODY,
    responses=INFER_RESPONSES,
)
@v2.post("/models/{name}/versions/{version}/infer", summary="Inference on one version",
         openapi_extra=INFER_BODY, responses=INFER_RESPONSES)  # fmt: skip
async def infer(request: Request, name: str, version: str | None = None) -> Response:
    """Registry → body → tensors → the kind (limits, model, labels) → output tensors."""
    served = served_model(request, name, version, routed=True)
    kind, state = served.kind, request.app.state
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        raise V2Error(400, "compressed request bodies are not supported (Content-Encoding)")
    try:
        body, binary = parse_request(await request.body(), request.headers.get(HEADER_LENGTH))
        given = one_input(kind, decode_inputs(body, binary))
        wanted = requested_outputs(kind, body)
        batch = kind.v2_batch(given, state.limits)
    except TensorError as error:
        raise V2Error(400, str(error)) from None
    except InputProblems as error:
        raise V2Error(400, "; ".join(map(_rendered, error.problems))) from None
    state.metrics.record_batch(served.name, served.version, len(batch))
    cost = batch_cost(given, batch)
    seen = Signals()
    outputs = await run_sized(partial(kind.v2_answer, given.name, batch, seen), cost)
    state.metrics.signals.record(served.name, served.version, seen)
    if version in (None, "stable"):
        shadowing(state, served, given, seen)
    reply: dict[str, Any] = {"model_name": name, "model_version": served.version}
    if body.id is not None:
        reply["id"] = body.id
    content, header_length = encode_response(
        reply, [outputs[n] for n in wanted], {n for n, binary in wanted.items() if binary}
    )
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )  # fmt: skip


def shadowing(state: Any, served: ServedModel, given: Tensor, seen: Signals) -> None:
    """When the rollout has a shadow and ``served`` answered as its stable version: the shadow
    runs on the same input tensor off the response path (``service.serving.rollout``). It reads the
    tensor with its own metadata and limits, so an input it does not take (``word_ids`` for a
    model that reads only ``text``) counts as a shadow error."""
    shadow = state.registry.shadow(served)
    if shadow is None:
        return

    def prepare() -> tuple[Callable[[Signals], Any], int]:
        tensor = one_input(shadow.kind, [given])
        batch = shadow.kind.v2_batch(tensor, state.limits)
        return partial(shadow.kind.v2_answer, tensor.name, batch), batch_cost(tensor, batch)

    state.shadows.submit(served, seen, shadow, prepare)


def batch_cost(tensor: Tensor, batch: list[Any]) -> int:
    """What a V2 batch costs to answer (``service.serving.offload``): its items, and for text its
    characters."""
    characters = sum(len(item) for item in batch) if tensor.datatype == "BYTES" else 0
    return text_cost(len(batch), characters)


def one_input(kind: Kind, tensors: list[Tensor]) -> Tensor:
    """The one input tensor a request may send, named and typed as the model's metadata says."""
    specs = kind.v2_inputs()
    names = " or ".join(f"'{spec.name}'" for spec in specs)
    if len(tensors) != 1:
        raise TensorError(f"send exactly one input ({names}), got {len(tensors)}")
    tensor = tensors[0]
    spec = next((spec for spec in specs if spec.name == tensor.name), None)
    if spec is None:
        raise TensorError(
            f"model '{kind.name}' has no input '{tensor.name[:40]}'; its inputs: {names}"
        )
    if tensor.datatype not in (spec.datatype, *spec.accepts):
        raise TensorError(
            f"input '{spec.name}' must be {spec.datatype}, got {tensor.datatype[:20]}"
        )
    if len(tensor.shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, tensor.shape)
    ):
        shape = ", ".join("N" if d == -1 and i == 0 else ("L" if d == -1 else str(d))
                          for i, d in enumerate(spec.shape))  # fmt: skip
        raise TensorError(
            f"input '{spec.name}' must have shape [{shape}], got {list(tensor.shape)}"
        )
    if tensor.shape[0] == 0:
        raise TensorError(f"input '{spec.name}' holds no item (shape {list(tensor.shape)})")
    return tensor


def requested_outputs(kind: Kind, body: Any) -> dict[str, bool]:
    """Output name → whether it travels as binary data; every output when none is named."""
    known = [spec.name for spec in kind.v2_outputs()]
    all_binary = body.parameters.get("binary_data_output") is True
    if body.outputs is None:
        return {output: all_binary for output in known}
    wanted: dict[str, bool] = {}
    for output in body.outputs:
        if output.name not in known:
            raise TensorError(
                f"model '{kind.name}' has no output '{output.name[:40]}'; its outputs: {', '.join(known)}"
            )
        wanted[output.name] = output.parameters.get("binary_data", all_binary) is True
    return wanted


def _rendered(problem: Problem) -> str:
    """A problem in V2's words: ``input 'text'[3]: at most 100000 characters allowed, got ...``."""
    name, *rest = problem.loc
    where = f"input '{name}'" + "".join(f"[{part}]" for part in rest)
    return f"{where} {problem.msg}" if problem.msg.startswith("is ") else f"{where}: {problem.msg}"
