"""Payload logging: one JSON line per predict request (REST and V2), failures included, with the
inputs hashed unless asked otherwise; sampled per request; whole lines when several workers
append to one file. Real servers; the rendering rules on their own at the end."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from service.app import create_app
from service.api.middleware import PayloadCapture, predict_target
from service.observe.payloads import TRUNCATE_CHARS, PayloadLog
from service.settings import PayloadInputs, Settings
from tests.serverproc import running_server

SECRET = "My neighbour Alice Example wrote this review: a wonderful, moving film."


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_predict_request_is_one_whole_line_with_its_outcome_from_two_workers(tmp_path, models):
    log = tmp_path / "payloads.jsonl"
    env = {
        "WORKERS": "2",
        "MODELS_DIR": str(models),
        "ACCESS_LOG": "false",
        "PAYLOAD_LOG": str(log),
    }
    reuters = ["oil prices rose sharply as opec cut output " * 20] * 20  # long lines, ~20 kB each
    with running_server(tmp_path / "server.log", env=env) as server:

        def post(path: str, body: dict, request_id: str) -> httpx.Response:
            return httpx.post(server.url + path, json=body, timeout=30,
                              headers={"X-Request-ID": request_id, "Connection": "close"})  # fmt: skip

        ok = post("/imdb/predict", {"texts": [SECRET, "bad"]}, "ok-1")
        invalid = post("/imdb/predict", {"texts": [SECRET, 7]}, "invalid-1")
        unknown = post("/nosuchmodel/predict", {"text": SECRET}, "unknown-1")
        no_version = post("/imdb/predict", {"text": SECRET, "version": 9}, "noversion-1")
        v2_ok = post("/v2/models/boston/infer", {"inputs": [{"name": "features", "datatype": "FP32",
                     "shape": [2, 13], "data": [[1.0] * 13, [2.0] * 13]}]}, "v2-ok-1")  # fmt: skip
        v2_bad = post("/v2/models/imdb/infer", {"inputs": [{"name": "text", "datatype": "BYTES",
                      "shape": [1], "data": [""]}]}, "v2-bad-1")  # fmt: skip
        assert [r.status_code for r in (ok, invalid, unknown, no_version, v2_ok, v2_bad)] == [
            200, 422, 404, 404, 200, 400,
        ]  # fmt: skip
        with ThreadPoolExecutor(8) as pool:  # both workers write long lines at the same time
            loaded = list(
                pool.map(
                    lambda i: post("/reuters/predict", {"texts": reuters}, f"load-{i}"), range(80)
                )
            )
        assert all(r.status_code == 200 for r in loaded)
        httpx.post(server.url + "/imdb/nothing", json={}, timeout=30)  # not a predict path
    # the workers flushed at shutdown: every line whole, one per predict request, none other
    entries = {entry["request_id"]: entry for entry in lines_of(log)}
    assert len(log.read_text().splitlines()) == len(entries) == 6 + 80

    line = entries["ok-1"]
    assert (line["protocol"], line["model"], line["version"], line["status"]) == (
        "rest",
        "imdb",
        "1",
        200,
    )
    assert line["inputs"]["texts"] == [{"sha256": sha256(SECRET), "length": len(SECRET)},
                                       {"sha256": sha256("bad"), "length": 3}]  # fmt: skip
    assert [o["label"] for o in line["outputs"]] == [p["label"] for p in ok.json()["predictions"]]
    assert line["latency_ms"] > 0 and line["time"].endswith("Z")

    line = entries["invalid-1"]
    assert (line["model"], line["version"], line["status"]) == ("imdb", None, 422)
    assert line["error"] == invalid.json() and "outputs" not in line
    assert line["inputs"]["texts"][1] == {"sha256": sha256("7"), "length": 1}

    assert (entries["unknown-1"]["model"], entries["unknown-1"]["status"]) == ("nosuchmodel", 404)
    assert entries["unknown-1"]["error"] == unknown.json()
    assert (entries["noversion-1"]["version"], entries["noversion-1"]["status"]) == ("9", 404)

    line = entries["v2-ok-1"]
    assert (line["protocol"], line["model"], line["version"], line["status"]) == (
        "v2",
        "boston",
        "1",
        200,
    )
    tensor = line["inputs"]["inputs"][0]
    assert (tensor["name"], tensor["shape"], len(tensor["data"])) == ("features", [2, 13], 2)
    assert tensor["data"][0] == {
        "sha256": sha256(json.dumps([1.0] * 13, separators=(",", ":"))),
        "length": 13,
    }
    assert line["outputs"] == v2_ok.json()["outputs"]
    assert (entries["v2-bad-1"]["status"], entries["v2-bad-1"]["error"]) == (400, v2_bad.json())

    assert {entries[f"load-{i}"]["status"] for i in range(80)} == {200}
    assert SECRET not in log.read_text() and "Alice" not in log.read_text()


def test_sampling_keeps_about_the_asked_share_and_stdout_works(tmp_path, models):
    env = {"MODELS_DIR": str(models), "ACCESS_LOG": "false", "PAYLOAD_LOG": "stdout",
           "PAYLOAD_LOG_SAMPLE": "0.25"}  # fmt: skip
    with running_server(tmp_path / "server.log", env=env) as server, httpx.Client() as client:
        for i in range(400):
            response = client.post(
                server.url + "/boston/predict", json={"features": [float(i)] * 13}
            )
            assert response.status_code == 200
    logged = [json.loads(line) for line in server.log().splitlines() if '"protocol":' in line]
    # 400 draws at 0.25: mean 100, standard deviation 8.7; this fails about once in a million
    assert 55 <= len(logged) <= 145, len(logged)
    assert {entry["model"] for entry in logged} == {"boston"}


def test_payload_logging_is_off_unless_asked_for():
    app = create_app(Settings())
    assert app.state.payload_log is None
    assert not any(m.cls is PayloadCapture for m in app.user_middleware)
    assert Settings().payload_log_inputs is PayloadInputs.hash


def test_inputs_are_hashed_truncated_or_kept_whole_by_choice():
    body = {"texts": ["x" * 100, "short"], "explain": True, "version": 1}
    hashed = PayloadLog("stdout").rendered_inputs(body, b"")
    assert hashed == {"texts": [{"sha256": sha256("x" * 100), "length": 100},
                                {"sha256": sha256("short"), "length": 5}],
                      "explain": True, "version": 1}  # fmt: skip
    truncated = PayloadLog("stdout", inputs=PayloadInputs.truncate).rendered_inputs(body, b"")
    assert truncated["texts"][0] == {"start": "x" * TRUNCATE_CHARS, "length": 100}
    assert PayloadLog("stdout", inputs=PayloadInputs.full).rendered_inputs(body, b"") == body
    # a body that is not JSON is one item
    assert PayloadLog("stdout").rendered_inputs(None, b"{oops") == {
        "body": {"sha256": sha256("{oops"), "length": 5}
    }
    # explanations name the input's words: only ``full`` keeps them
    reply = {"predictions": [{"label": "positive", "explanation": {"words": [{"word": "alice"}]}}]}
    assert PayloadLog("stdout").rendered_outputs(reply) == [{"label": "positive"}]
    assert (
        PayloadLog("stdout", inputs=PayloadInputs.full).rendered_outputs(reply)
        == reply["predictions"]
    )


def test_the_predict_paths_are_the_rest_and_v2_ones():
    assert predict_target("/imdb/predict") == ("rest", "imdb", None)
    assert predict_target("/v2/models/imdb/infer") == ("v2", "imdb", None)
    assert predict_target("/v2/models/imdb/versions/2/infer") == ("v2", "imdb", "2")
    assert predict_target("/v2/models/imdb") is None and predict_target("/models/imdb") is None
