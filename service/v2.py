"""The Open Inference Protocol (V2) endpoints that KServe, MLServer and Triton share, under ``/v2``.

Any V2 client (``tritonclient.http``, KServe's ``InferenceRESTClient``, plain curl) can use the
three models unchanged. The request path is ours: registry → limits → the shared preprocessing
(``service.vectorize``) → one forward pass; only the envelope differs (``service.tensors``).

Tensors of each model (``-1``: any size):

======= ============================================== ==========================================
model   inputs (send one)                              outputs
======= ============================================== ==========================================
imdb    ``text`` BYTES [-1] or ``word_ids`` INT64      ``probability`` FP32 [-1, 1],
        [-1, -1] (Keras ids, 0 padding)                ``label`` BYTES [-1]
reuters same as imdb                                   ``probabilities`` FP32 [-1, 46],
                                                       ``label`` BYTES [-1]
boston  ``features`` FP32 [-1, 13] (raw)               ``price`` FP32 [-1, 1] ($1000s)
======= ============================================== ==========================================

Errors are ``{"error": "..."}``: 400 for a bad request, 404 for an unknown model or version,
503 for a model that failed to load (with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service.artifacts import MODEL_NAMES
from service.registry import ModelUnavailable, ServedModel, VersionNotServed
from service.routes import compute
from service.schemas import MAX_FEATURE, MAX_WORD_ID
from service.tensors import (
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


V2_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": V2ErrorBody, "description": "The request or a tensor is malformed."},
    404: {"model": V2ErrorBody, "description": "No such model or version."},
    503: {"model": V2ErrorBody, "description": "The model (or version) failed to load; why."},
}


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


INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "JSON; or, with the Inference-Header-Content-Length header, this JSON "
        "followed by binary tensor data.",
        "content": {"application/json": {"schema": _inlined(InferenceRequest.model_json_schema())}},
    }
}


class V2Error(Exception):
    """Answered as the protocol says: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def v2_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, V2Error)
    return JSONResponse({"error": str(error)}, status_code=error.status)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]
    accepts: tuple[str, ...] = ()
    """Other datatypes read as this one (an INT32 word id is as good as an INT64 one)."""

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


TEXT = TensorSpec("text", "BYTES", (-1,))
WORD_IDS = TensorSpec("word_ids", "INT64", (-1, -1), accepts=("INT32",))
FEATURES = TensorSpec("features", "FP32", (-1, 13), accepts=("FP64",))
LABEL = TensorSpec("label", "BYTES", (-1,))

INPUTS = {"imdb": (TEXT, WORD_IDS), "reuters": (TEXT, WORD_IDS), "boston": (FEATURES,)}
OUTPUTS = {
    "imdb": (TensorSpec("probability", "FP32", (-1, 1)), LABEL),
    "reuters": (TensorSpec("probabilities", "FP32", (-1, 46)), LABEL),
    "boston": (TensorSpec("price", "FP32", (-1, 1)),),
}

v2 = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"], responses=V2_ERRORS)


@v2.get("", summary="Server metadata")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}


@v2.get("/health/live", summary="Server live: 200 while the process answers")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@v2.get("/health/ready", summary="Server ready: 200 once every model serves, else 400")
async def server_ready(request: Request) -> JSONResponse:
    ready = request.app.state.registry.ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 400)


def served_model(request: Request, name: str, version: str | None) -> ServedModel:
    if name not in MODEL_NAMES:
        raise V2Error(404, f"unknown model '{name[:40]}'; models: {', '.join(MODEL_NAMES)}")
    try:
        return request.app.state.registry.get(name, version)
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
        "inputs": [spec.metadata() for spec in INPUTS[name]],
        "outputs": [spec.metadata() for spec in OUTPUTS[name]],
        "parameters": {"served_version": served.version, "task": served.metadata.get("task", "")},
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
)
@v2.post("/models/{name}/versions/{version}/infer", summary="Inference on one version",
         openapi_extra=INFER_BODY)  # fmt: skip
async def infer(request: Request, name: str, version: str | None = None) -> Response:
    """Registry → body → tensors → limits → the model → output tensors, JSON or binary."""
    served = served_model(request, name, version)
    state = request.app.state
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        raise V2Error(400, "compressed request bodies are not supported (Content-Encoding)")
    try:
        body, binary = parse_request(await request.body(), request.headers.get(HEADER_LENGTH))
        given = one_input(name, decode_inputs(body, binary))
        wanted = requested_outputs(name, body)
    except TensorError as error:
        raise V2Error(400, str(error)) from None
    batch = check_input(given, state.limits)
    state.metrics.record_batch(served.name, served.version, len(batch))
    characters = sum(len(item) for item in batch) if given.name != "features" else 0
    outputs = await compute(partial(run, served, given.name, batch), len(batch), characters)
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


def one_input(name: str, tensors: list[Tensor]) -> Tensor:
    """The one input tensor a request may send, named and typed as the model's metadata says."""
    names = " or ".join(f"'{spec.name}'" for spec in INPUTS[name])
    if len(tensors) != 1:
        raise TensorError(f"send exactly one input ({names}), got {len(tensors)}")
    tensor = tensors[0]
    spec = next((spec for spec in INPUTS[name] if spec.name == tensor.name), None)
    if spec is None:
        raise TensorError(f"model '{name}' has no input '{tensor.name[:40]}'; its inputs: {names}")
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


def requested_outputs(name: str, body: Any) -> dict[str, bool]:
    """Output name → whether it travels as binary data; every output when none is named."""
    known = [spec.name for spec in OUTPUTS[name]]
    all_binary = body.parameters.get("binary_data_output") is True
    if body.outputs is None:
        return {output: all_binary for output in known}
    wanted: dict[str, bool] = {}
    for output in body.outputs:
        if output.name not in known:
            raise TensorError(
                f"model '{name}' has no output '{output.name[:40]}'; its outputs: {', '.join(known)}"
            )
        wanted[output.name] = output.parameters.get("binary_data", all_binary) is True
    return wanted


def check_input(tensor: Tensor, limits: Any) -> list[Any]:
    """The input as a batch of items (texts, word-id rows or feature rows), within the limits
    and value ranges our JSON endpoints enforce; a ``V2Error`` 400 naming the problem if not."""
    n = tensor.shape[0]
    where = f"input '{tensor.name}'"
    if n > limits.max_batch_size:
        raise V2Error(400, f"{where}: at most {limits.max_batch_size} items allowed, got {n}")
    if tensor.name == "text":
        return [_text(element, i, limits.max_text_chars) for i, element in enumerate(tensor.data)]
    values = np.asarray(tensor.data).reshape(tensor.shape)
    if tensor.name == "word_ids":
        if tensor.shape[1] > limits.max_text_chars:
            raise V2Error(400, f"{where}: at most {limits.max_text_chars} word ids allowed per "
                               f"row, got {tensor.shape[1]}")  # fmt: skip
        if values.size and (values.min() < 0 or values.max() > MAX_WORD_ID):
            raise V2Error(400, f"{where}: word ids must be from 0 to {MAX_WORD_ID}")
        return list(values.astype(np.int64))
    values = values.astype(np.float64)
    if not np.isfinite(values).all() or np.abs(values).max() > MAX_FEATURE:
        raise V2Error(
            400, f"{where}: every feature must be a finite number within ±{MAX_FEATURE:g}"
        )
    return list(values)


def _text(element: bytes, i: int, max_chars: int) -> str:
    try:
        text = element.decode("utf-8")
    except UnicodeDecodeError:
        raise V2Error(400, f"input 'text'[{i}] is not valid UTF-8") from None
    if not text:
        raise V2Error(400, f"input 'text'[{i}] is empty")
    if len(text) > max_chars:
        raise V2Error(
            400, f"input 'text'[{i}]: at most {max_chars} characters allowed, got {len(text)}"
        )
    return text


def run(served: ServedModel, input_name: str, batch: list[Any]) -> dict[str, Tensor]:
    """One forward pass over the batch, as every output tensor of the model."""
    if input_name == "text":
        scores = served.predict_texts(batch)
    elif input_name == "word_ids":
        scores = served.predict_sequences(batch)
    else:
        scores = served.predict(np.asarray(batch, dtype=np.float32))
    scores = np.asarray(scores, dtype=np.float32)
    n = len(batch)
    if served.name == "boston":
        return {"price": Tensor("price", "FP32", (n, 1), scores)}
    if served.name == "imdb":
        labels = [b"positive" if p >= 0.5 else b"negative" for p in scores[:, 0].tolist()]
        outputs = {"probability": Tensor("probability", "FP32", (n, 1), scores)}
    else:
        names = served.labels
        labels = [names[i].encode() for i in np.argmax(scores, axis=1).tolist()]
        outputs = {"probabilities": Tensor("probabilities", "FP32", (n, 46), scores)}
    return {**outputs, "label": Tensor("label", "BYTES", (n,), labels)}
