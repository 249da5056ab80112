"""Faults: a broken artifact hurts only its own model; no model at all stops the process;
SIGTERM drains in-flight requests. Each test runs the real server on a copy of the models."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.contract.artifacts import METADATA_FILE, MODEL_FILE, write_metadata
from service.engine.runtime import ONNX_FILE
from tests.serverproc import running_server, start_server, wait_until_ready


@pytest.fixture
def models_copy(models: Path) -> Path:
    """One version of each book model: a broken one then has no other version to fall back on."""
    return models


def serve_broken(tmp_path: Path, models: Path, **env: str):
    """The server on ``models``, started once ``/readyz`` says 503 (something is broken)."""
    return running_server(tmp_path / "server.log", status=503, env={"MODELS_DIR": str(models), **env})


def test_a_missing_artifact_leaves_the_other_models_serving(tmp_path, models_copy):
    shutil.rmtree(models_copy / "boston")
    with serve_broken(tmp_path, models_copy) as server:
        # REQUIRE_MODELS=any (default): the process starts and says what is missing.
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["models"]["imdb"] == "ready"
        assert "no artifact folder" in ready.json()["models"]["boston"]
        boston = httpx.post(server.url + "/boston/predict", json={"features": [0.0] * 13})
        assert boston.status_code == 503
        assert "no artifact folder" in boston.json()["detail"]
        assert httpx.post(server.url + "/imdb/predict", json={"text": "fine"}).status_code == 200
        assert server.log().count("model boston not served") == 1


def test_a_truncated_model_file_is_refused_by_its_hash(tmp_path, models_copy):
    model = models_copy / "reuters" / "1" / MODEL_FILE
    model.write_bytes(model.read_bytes()[:1000])
    with serve_broken(tmp_path, models_copy) as server:
        reason = httpx.get(server.url + "/readyz").json()["models"]["reuters"]
        assert "does not match its sha256" in reason
        detail = httpx.post(server.url + "/reuters/predict", json={"text": "x"}).json()["detail"]
        assert "does not match its sha256" in detail


def test_a_changed_word_index_is_refused(tmp_path, models_copy):
    index_path = models_copy / "imdb" / "1" / "word_index.json"
    word_index = json.loads(index_path.read_text())
    word_index["wonderful"], word_index["awful"] = word_index["awful"], word_index["wonderful"]
    index_path.write_text(json.dumps(word_index))
    with serve_broken(tmp_path, models_copy) as server:
        assert "word_index.json does not match" in httpx.get(server.url + "/readyz").json()["models"]["imdb"]


def test_a_model_with_a_lambda_layer_is_refused_and_never_run(tmp_path, models_copy):
    import keras

    marker = tmp_path / "lambda-ran"
    inputs = keras.Input((10_000,))
    touch_marker = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")  # no closure
    hidden = keras.layers.Lambda(touch_marker)(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(hidden)
    folder = models_copy / "imdb" / "1"
    keras.Model(inputs, outputs).save(folder / MODEL_FILE)
    (folder / ONNX_FILE).unlink()  # no ONNX export: the Keras fallback reads model.keras
    marker.unlink(missing_ok=True)  # building the model ran it once, here, in the test
    metadata = json.loads((folder / METADATA_FILE).read_text())
    write_metadata(folder, {k: v for k, v in metadata.items() if k not in ("files", "onnx")})
    with serve_broken(tmp_path, models_copy) as server:
        reason = httpx.get(server.url + "/readyz").json()["models"]["imdb"]
        assert "cannot be loaded safely" in reason
        assert "Lambda" in reason or "safe_mode" in reason
        assert httpx.post(server.url + "/reuters/predict", json={"text": "x"}).status_code == 200
    assert not marker.exists()


def test_no_model_at_all_exits_non_zero_with_the_reason(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    server = start_server(tmp_path / "server.log", env={"MODELS_DIR": str(empty)})
    assert server.process.wait(60) != 0
    assert "REQUIRE_MODELS=any not met" in server.log()
    assert "no artifact folder" in server.log()


def test_a_models_dir_that_is_not_a_folder_exits_non_zero(tmp_path):
    not_a_folder = tmp_path / "models.txt"
    not_a_folder.write_text("")
    server = start_server(tmp_path / "server.log", env={"MODELS_DIR": str(not_a_folder)})
    assert server.process.wait(60) != 0
    assert "is not a folder" in server.log()


def test_require_models_none_starts_without_models_and_is_not_ready(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve_broken(tmp_path, empty, REQUIRE_MODELS="none") as server:
        assert httpx.get(server.url + "/readyz").status_code == 503
        assert httpx.get(server.url + "/healthz").status_code == 200


def test_require_models_all_exits_when_one_is_broken(tmp_path, models_copy):
    shutil.rmtree(models_copy / "imdb")
    server = start_server(
        tmp_path / "server.log", env={"MODELS_DIR": str(models_copy), "REQUIRE_MODELS": "all"}
    )
    assert server.process.wait(60) != 0
    assert "REQUIRE_MODELS=all not met" in server.log()


def test_sigterm_lets_in_flight_requests_finish_and_exits_zero(tmp_path, models_dir):
    server = start_server(tmp_path / "server.log", env={"GRACEFUL_TIMEOUT": "20"})
    wait_until_ready(server)
    batch = {"texts": ["a long and winding review of a film " * 200] * 1000}  # 7 MB, ~0.3 s
    results: list[int] = []

    def call() -> None:
        with httpx.Client(timeout=60) as client:
            results.append(client.post(server.url + "/imdb/predict", json=batch).status_code)

    callers = [threading.Thread(target=call) for _ in range(8)]
    for caller in callers:
        caller.start()
    time.sleep(0.5)  # all eight are sent and being served, one core's worth at a time (~2 s)
    server.process.send_signal(signal.SIGTERM)
    # Draining: new connections are refused as soon as the server has taken the ones already in
    # the kernel's queue (service/lifecycle/server.py); one that slips in before that is still answered.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(server.url + "/healthz", timeout=2)
        except httpx.ConnectError:
            break
        time.sleep(0.02)
    else:
        pytest.fail("new connections were still accepted 5 s after SIGTERM")
    assert len(results) < len(callers)  # ...while the earlier requests are still being served
    for caller in callers:
        caller.join(60)
    assert results == [200] * len(callers)
    assert server.process.wait(30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz", timeout=2)
