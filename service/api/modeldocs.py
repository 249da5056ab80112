"""Typed /docs for models the service did not know when it was written.

Each served model without a route of its own (any model but the book's three) gets a
``POST /NAME/predict`` entry in the OpenAPI document, with its kind's request and answer
schemas built from its card: the labels, ``top_k``'s bound, the feature names with their
descriptions. The generic route ``/{name}/predict`` answers them all; these entries only
document it, model by model, so generated clients and fuzzers see real types.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, create_model

from service.api.rest import PREDICT_ERRORS
from service.kinds.base import ModelRef
from service.registry import Registry

REF = "#/components/schemas/{model}"


def model_paths(schema: dict[str, Any], registry: Registry) -> None:
    """Add each served model's typed predict path to an OpenAPI ``schema``, in place."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    errors = _error_responses(schema)
    for name, versions in registry.models.items():
        path = f"/{name}/predict"
        if path in schema["paths"] or not versions:
            continue
        kind = versions[max(versions)].kind
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
                    "content": {"application/json": {"schema": _component(kind.request_model, components)}},
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


def _error_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """The error answers the generic predict route documents (same codes for every model)."""
    generic = schema["paths"].get("/{name}/predict", {}).get("post", {}).get("responses", {})
    return {code: answer for code, answer in generic.items() if code in {str(c) for c in PREDICT_ERRORS}}
