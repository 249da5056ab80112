"""Serving runs on Keras' numpy backend and never imports TensorFlow (see service/backend.py)."""

from __future__ import annotations

import json
import sys

import httpx

from service.api.book import SAMPLE_FEATURES
from tests.serverproc import start_server, wait_until_ready

# Runs the service as ``python -m service`` would, and reports at exit what the process imported.
REPORTING_SERVICE = """
import atexit, json, runpy, sys
def report():
    import keras
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras"))
    print("IMPORT-REPORT " + json.dumps({"tensorflow": loaded, "backend": keras.backend.backend()}),
          flush=True)
atexit.register(report)
sys.argv = ["service"]
runpy.run_module("service", run_name="__main__", alter_sys=True)
"""


def test_the_server_process_never_imports_tensorflow(tmp_path):
    # Even a user whose environment asks Keras for TensorFlow gets the numpy backend.
    server = start_server(
        tmp_path / "server.log",
        env={"KERAS_BACKEND": "tensorflow"},
        command=[sys.executable, "-c", REPORTING_SERVICE],
    )
    wait_until_ready(server)
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/imdb/predict", json={"text": "great"}).status_code == 200
        assert client.post("/reuters/predict", json={"text": "oil"}).status_code == 200
        assert client.post("/boston/predict", json={"features": SAMPLE_FEATURES}).status_code == 200
    assert server.stop() == 0
    report_line = next(l for l in server.log().splitlines() if l.startswith("IMPORT-REPORT "))
    report = json.loads(report_line.removeprefix("IMPORT-REPORT "))
    assert report == {"tensorflow": [], "backend": "numpy"}
