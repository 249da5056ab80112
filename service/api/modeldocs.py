"""Typed /docs for models the service did not know when it was written, and the configured
limits written into the document.

Each served model without a route of its own (any model but the book's three) gets a
``POST /NAME/predict`` entry in the OpenAPI document, with its kind's request and answer
schemas built from its card: the labels, ``top_k``'s bound, the feature names with their
descriptions, and every error status the route can answer. The generic route
``/{name}/predict`` answers them all; it is kept out of the document (its body can only be
described as "some object"), and these entries document it, model by model, so generated
clients and fuzzers see real types.

``document_limits`` then writes the configurable limits (``MAX_BATCH_SIZE``,
``MAX_TEXT_CHARS``) into every predict request schema as each request model says (``maxItems``,
``maxLength``), so a request the document calls valid is one the service accepts.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, create_model

from service.api.rest import BOOK_REQUESTS, PREDICT_ERRORS
from service.kinds.base import InputForms, Kind, Limits, ModelRef

REF = "#/components/schemas/{model}"


def model_paths(schema: dict[str, Any], kinds: dict[str, Kind]) -> None:
    """Add each served model's typed predict path to an OpenAPI ``schema``, in place: ``kinds``
    holds each model's highest served version's kind."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    errors = error_responses(PREDICT_ERRORS, components)
    for name, kind in kinds.items():
        path = f"/{name}/predict"
        if path in schema["paths"]:
            continue
        answer = create_model(
            f"{kind.request_model.__name__.removesuffix('Request')}Response",
            model=(ModelRef, ...), predictions=(list[kind.prediction_model], ...),  # type: ignore[name-defined]
        )  # fmt: skip
        schema["paths"][path] = {
            "post": {
                "tags": ["predict"],
                "summary": f"{kind.card.get('description') or name} ({kind.kind})",
                "operationId": f"predict_{name.replace('-', '_')}",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _component(kind.request_model, components)}
                    },
                },
                "responses": {
                    "200": {
                        "description": "One prediction per input, in order.",
                        "content": {"application/json": {"schema": _component(answer, components)}},
                    },
                    **copy.deepcopy(errors),
                },
            }
        }


def _component(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    """Put ``model``'s JSON schema (and its sub-models) under components; return its $ref."""
    body = model.model_json_schema(ref_template=REF)
    for sub_name, sub_schema in body.pop("$defs", {}).items():
        components.setdefault(sub_name, sub_schema)
    components[model.__name__] = body
    return {"$ref": REF.format(model=model.__name__)}


def error_responses(
    errors: dict[int | str, dict[str, Any]], components: dict[str, Any]
) -> dict[str, Any]:
    """FastAPI's ``responses=`` table (status → body model and description) as OpenAPI responses."""
    return {
        str(code): {
            "description": entry["description"],
            "content": {"application/json": {"schema": _component(entry["model"], components)}},
        }
        for code, entry in errors.items()
    }


# --- The configured limits, in the document ------------------------------------------------


def document_limits(schema: dict[str, Any], limits: Limits, kinds: dict[str, Kind]) -> None:
    """Write ``limits`` into the request schema of every predict path, in place, as each path's
    request model says (``InputForms.document_limits``): the book paths' own models, and each
    served model's (``kinds``: as for ``model_paths``)."""
    requests: dict[str, type[InputForms]] = {
        **{name: kind.request_model for name, kind in kinds.items()},
        **BOOK_REQUESTS,  # type: ignore[dict-item]
    }
    components = schema.get("components", {}).get("schemas", {})
    for path, operations in schema["paths"].items():
        body = operations.get("post", {}).get("requestBody", {})
        ref = body.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
        request = requests.get(path[1 : -len("/predict")]) if path.endswith("/predict") else None
        if request is not None and ref:
            request.document_limits(components[ref.rsplit("/", 1)[1]].get("properties", {}), limits)
