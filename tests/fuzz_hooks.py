"""Schemathesis hooks for ``tests/test_fuzz.py``: the two V2 rules JSON Schema cannot state.

The OpenAPI document states everything JSON Schema can about a V2 inference request (one input,
as one of the served models' input tensors: name, datatype, rank, fixed dimensions, element
type, limits). Two rules are beyond it, so schemathesis' schema-valid ("positive") requests break
them at random, and a correct server must answer 400:

* ``data`` holds exactly as many elements as the product of ``shape`` (a relation between two
  fields);
* the model named in the *path* has the input and outputs named in the *body* (IMDB takes
  ``text`` and answers ``probability``, Boston takes ``features`` of width 13 and answers
  ``price``).

This hook makes each positive V2 infer request keep those two rules, and nothing else: the
shape is recomputed from the generated data, the path names a served model that takes the
generated input, and outputs that model does not have are dropped from ``outputs``. Everything else stays as generated, so the positive-data check still holds the
server to the document (a schema-valid request answered 400 for any other reason is a failure),
and negative (schema-invalid) requests are left untouched.

Loaded by ``st run`` through ``SCHEMATHESIS_HOOKS=tests.fuzz_hooks``; ``FUZZ_BASE_URL`` is the
server, whose ``/v2/models/NAME`` metadata says which model takes which input.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import httpx
import schemathesis


@cache
def served() -> dict[str, tuple[list[tuple[str, tuple[int, ...]]], set[str]]]:
    """Each served model → its inputs (name, shape with -1 for any size) and its output names."""
    base = os.environ["FUZZ_BASE_URL"]
    models = {}
    for model in sorted(m["name"] for m in httpx.get(f"{base}/models").json()["models"]):
        metadata = httpx.get(f"{base}/v2/models/{model}")
        if metadata.status_code == 200:
            inputs = [(spec["name"], tuple(spec["shape"])) for spec in metadata.json()["inputs"]]
            models[model] = (inputs, {spec["name"] for spec in metadata.json()["outputs"]})
    return models


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    return [element for item in data for element in _flat(item)]


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    if (
        not case.operation.path.endswith("/infer")
        or case.meta is None
        or not case.meta.generation.mode.is_positive
        or not isinstance(case.body, dict)
        or len(case.body.get("inputs") or []) != 1
    ):
        return case
    given = case.body["inputs"][0]
    shape = given.get("shape")
    if not isinstance(shape, list) or not shape:
        return case
    takers = {model: spec for model, (inputs, _) in served().items() for (name, spec) in inputs
              if name == given.get("name") and len(spec) == len(shape)
              and all(d in (-1, s) for d, s in zip(spec[1:], shape[1:]))}  # fmt: skip
    if not takers:
        return case
    if case.path_parameters.get("name") not in takers:
        case.path_parameters["name"] = min(takers)
    spec = takers[case.path_parameters["name"]]
    if isinstance(case.body.get("outputs"), list):
        outputs = served()[case.path_parameters["name"]][1]
        case.body["outputs"] = [o for o in case.body["outputs"] if o.get("name") in outputs]
    elements = _flat(given.get("data"))
    if len(spec) == 1:  # [N]: one element per item
        given["shape"] = [len(elements)]
    elif spec[1] == -1:  # [N, L]: keep N if it divides the elements, else one row
        rows = int(shape[0]) if shape[0] >= 1 and len(elements) % shape[0] == 0 else 1
        given["shape"] = [rows, len(elements) // rows]
    else:  # [N, width]: as many whole rows as the elements make, at least one
        width = spec[1]
        rows = max(1, len(elements) // width)
        elements = (elements * width)[: rows * width]
        given["shape"], given["data"] = [rows, width], elements
    return case
