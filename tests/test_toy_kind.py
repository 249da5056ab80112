"""A new kind is one module and one line: ``tests/toykind.py`` defines a *banded regressor* and
registers it; a real server started with ``KIND_MODULES=tests.toykind`` serves a model of that
kind over REST and V2, with its limits, its /docs and its signals, and no file of the service
names it.

The model is Boston's committed network (version 1) under a card of the new kind, so its values
can be checked against ``/boston/predict`` on the same server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.golden import FAR_HOUSE, HOUSE, HOUSE_2
from tests.serverproc import running_server

REPO = Path(__file__).resolve().parent.parent
BANDS = [{"label": "cheap", "below": 15}, {"label": "middling", "below": 30}, {"label": "dear"}]


def banded_model(source: Path, target: Path) -> None:
    """``target/1``: Boston's model files, linked, under a card of kind ``banded-regressor``."""
    card = json.loads((source / "metadata.json").read_text())
    card = {
        "name": "bands", "version": "1", "kind": "banded-regressor", "task": "regression",
        "description": "The price band of a Boston district.", "width": 13, "bands": BANDS,
        "metrics": {"test_mae": card["metrics"]["test_mae"]},
        "onnx": card["onnx"], "files": card["files"],
    }  # fmt: skip
    (target / "1").mkdir(parents=True)
    (target / "1" / "metadata.json").write_text(json.dumps(card))
    for name in card["files"]:
        os.symlink((source / name).resolve(), target / "1" / name)


@pytest.fixture(scope="module")
def api(tmp_path_factory, artifacts):
    models = tmp_path_factory.mktemp("toy") / "models"
    (models / "boston" / "1").mkdir(parents=True)
    for path in artifacts["boston"].iterdir():
        os.symlink(path.resolve(), models / "boston" / "1" / path.name)
    banded_model(artifacts["boston"], models / "bands")
    env = {"MODELS_DIR": str(models), "EXPECTED_MODELS": "boston,bands", "KIND_MODULES": "tests.toykind",
           "MAX_BATCH_SIZE": "3"}  # fmt: skip
    with running_server(models.parent / "server.log", env=env) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client


def band_of(value: float) -> str:
    return next(b["label"] for b in BANDS if "below" not in b or value < b["below"])


def test_the_new_kind_answers_over_rest_with_the_networks_values(api):
    rows = [HOUSE, HOUSE_2, FAR_HOUSE]
    answer = api.post("/bands/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    prices = [p["price"] for p in api.post("/boston/predict", json={"instances": rows}).json()["predictions"]]
    assert answer.json() == {
        "model": {"name": "bands", "version": "1"},
        "predictions": [{"band": band_of(price), "value": price} for price in prices],
    }
    assert {p["band"] for p in answer.json()["predictions"]} == {"cheap", "middling"}


def test_the_new_kind_answers_over_v2(api):
    body = {"inputs": [{"name": "rows", "shape": [2, 13], "datatype": "FP32", "data": HOUSE + HOUSE_2}]}
    answer = api.post("/v2/models/bands/infer", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == [
        {"name": "band", "datatype": "BYTES", "shape": [2], "data": ["middling", "middling"]}
    ]
    metadata = api.get("/v2/models/bands").json()
    assert metadata["inputs"] == [{"name": "rows", "datatype": "FP32", "shape": [-1, 13]}]


def test_the_kinds_limits_apply_with_the_usual_messages(api):
    too_many = api.post("/bands/predict", json={"rows": [HOUSE] * 4})
    assert too_many.status_code == 422
    assert too_many.json()["detail"] == [
        {"loc": ["body", "rows"], "msg": "at most 3 items allowed, got 4", "type": "too_long"}
    ]
    short = api.post("/bands/predict", json={"rows": [HOUSE[:5]]})
    assert short.status_code == 422 and "every row must hold 13 numbers" in short.text
    v2 = api.post("/v2/models/bands/infer", json={"inputs": [
        {"name": "rows", "shape": [4, 13], "datatype": "FP32", "data": HOUSE * 4}]})  # fmt: skip
    assert (v2.status_code, v2.json()) == (400, {"error": "input 'rows': at most 3 items allowed, got 4"})


def test_the_document_types_the_new_models_request_and_its_limits(api):
    document = api.get("/openapi.json").json()
    request = document["paths"]["/bands/predict"]["post"]["requestBody"]["content"]["application/json"]
    schema = document["components"]["schemas"][request["schema"]["$ref"].rsplit("/", 1)[1]]
    assert schema["properties"]["rows"]["maxItems"] == 3
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]
    inputs = infer["application/json"]["schema"]["properties"]["inputs"]["items"]["oneOf"]
    rows = next(i for i in inputs if i["properties"]["name"] == {"const": "rows"})
    assert rows["properties"]["data"]["anyOf"][0]["maxItems"] == 3 * 13
    assert rows["properties"]["data"]["anyOf"][1] == {"type": "number", "minimum": -1e6, "maximum": 1e6}


def test_the_new_kinds_answers_are_counted_by_label(api):
    api.post("/bands/predict", json={"rows": [FAR_HOUSE]})
    metrics = api.get("/metrics").text
    assert 'model_predictions_by_label_total{label="cheap",model="bands",version="1"}' in metrics
    assert 'predictions_total{model="bands",version="1"}' in metrics


def test_no_file_of_the_service_names_the_new_kind():
    for path in (REPO / "service").rglob("*"):
        if path.is_file() and path.suffix in {".py", ".html", ".json"}:
            assert "banded" not in path.read_text(errors="replace"), path
