"""The Open Inference Protocol (V2) endpoints that KServe, MLServer and Triton share, under ``/v2``.

Any V2 client (``tritonclient.http``, KServe's ``InferenceRESTClient``, plain curl) can use
every served model unchanged. An adapter like the JSON API's: the tensors decoded
(``service.api.tensors``), then the same data plane (``service.serving.dataplane``: version,
the kind's limits, one forward pass, labels, signals, shadow); only the envelope differs. Each
kind names its tensors (``-1``: any size):

* text classifier: input ``text`` BYTES [-1] or ``word_ids`` INT64 [-1, -1] (Keras ids, 0
  padding); outputs ``probability`` FP32 [-1, 1] (two labels) or ``probabilities`` FP32
  [-1, labels], and ``label`` BYTES [-1];
* table regressor: input ``features`` FP32 [-1, features] (raw); output named by the card's
  target field (Boston: ``price`` FP32 [-1, 1], $1000s; otherwise ``value``).

Errors are ``{"error": "..."}``: 400 for a bad request, 404 for an unknown model or version,
503 for a model that failed to load (with the reason).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.api.tensors import (
    HEADER_LENGTH,
    TensorError,
    decode_inputs,
    encode_response,
    parse_request,
)
from service.api.v2docs import INFER_BODY, INFER_RESPONSES, V2_ERRORS
from service.kinds.base import InputProblems, Kind, Limits, Problem, Tensor
from service.serving.dataplane import DataPlane, Read
from service.serving.errors import ModelUnavailable, UnknownModel, VersionNotServed
from service.serving.offload import Work
from service.serving.registry import Resolved, ServedModel
from service.serving.rollout import ROUTING_HEADER

SERVER_NAME = "keras-chapter3-serving"
EXTENSIONS = ["binary_tensor_data"]


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
    ready = request.app.state.plane.registry.ready and not request.app.state.draining
    return JSONResponse({"ready": ready}, status_code=200 if ready else 400)


def resolved_version(
    plane: DataPlane, name: str, version: str | None, key: str | None = None
) -> Resolved:
    """The version named in the path (a number, ``stable`` or ``canary``); none named: the
    rollout's choice for the routing ``key``. Registry errors in V2's words."""
    try:
        return plane.resolve(name, version, key)
    except UnknownModel as error:
        raise V2Error(404, f"unknown model '{error.name}'; models: {error.known}") from None
    except ModelUnavailable as error:
        raise V2Error(503, str(error)) from None
    except VersionNotServed as error:
        raise V2Error(503 if error.failed else 404, str(error)) from None


def served_model(request: Request, name: str, version: str | None) -> ServedModel:
    """The version named in the path; none named: the rollout's stable one (metadata, ready)."""
    return resolved_version(request.app.state.plane, name, version or "stable").served


@v2.get("/models/{name}", summary="Model metadata: its tensors' names, datatypes and shapes")
@v2.get("/models/{name}/versions/{version}", summary="Model metadata of one version")
async def model_metadata(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    served = served_model(request, name, version)
    return {
        "name": name,
        "versions": [s.version for s in request.app.state.plane.model(name).versions.values()],
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
    plane: DataPlane = request.app.state.plane
    resolved = resolved_version(plane, name, version, request.headers.get(ROUTING_HEADER))
    kind = resolved.served.kind
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        raise V2Error(400, "compressed request bodies are not supported (Content-Encoding)")
    try:
        body, binary = parse_request(await request.body(), request.headers.get(HEADER_LENGTH))
        tensors = decode_inputs(body, binary)
        one_input(kind, tensors)  # checked here too: a bad input is reported before a bad output
        wanted = requested_outputs(kind, body)
        outputs = await plane.infer(resolved, reader(tensors, plane.limits))
    except TensorError as error:
        raise V2Error(400, str(error)) from None
    except InputProblems as error:
        raise V2Error(400, "; ".join(map(_rendered, error.problems))) from None
    reply: dict[str, Any] = {"model_name": name, "model_version": resolved.served.version}
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


def reader(tensors: list[Tensor], limits: Limits) -> Read[dict[str, Tensor]]:
    """How the request's input tensor becomes one version's work: named and typed as that
    version's metadata says, then its kind's batch within the limits. A shadow reads it with its
    own metadata, so an input it does not take (``word_ids`` for a model that reads only
    ``text``) counts as a shadow error."""

    def read(served: ServedModel) -> Work[dict[str, Tensor]]:
        kind = served.kind
        tensor = one_input(kind, tensors)
        batch = kind.v2_batch(tensor, limits)
        return Work(len(batch), kind.v2_cost(tensor, batch), partial(kind.v2_answer, tensor.name, batch))

    return read


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
