"""Serving runs ONNX Runtime on each version's model.onnx and never imports TensorFlow, Keras, or
the jax and scipy that Keras' numpy backend would bring (see service/engine/runtime.py)."""

from __future__ import annotations

import json
import sys

import httpx

from service.api.book import SAMPLE_FEATURES
from tests.serverproc import start_server, wait_until_ready

HEAVY = ("tensorflow", "tf_keras", "keras", "jax", "jaxlib", "scipy", "h5py")

# Runs the service as ``python -m service`` would, and reports at exit what the process imported.
REPORTING_SERVICE = f"""
import atexit, json, runpy, sys
def report():
    tops = {{m.split(".")[0] for m in sys.modules}}
    print("IMPORT-REPORT " + json.dumps({{"heavy": sorted(tops & set({HEAVY!r})),
                                          "onnxruntime": "onnxruntime" in tops}}), flush=True)
atexit.register(report)
sys.argv = ["service"]
runpy.run_module("service", run_name="__main__", alter_sys=True)
"""


def test_the_server_process_never_imports_tensorflow_keras_jax_or_scipy(tmp_path):
    # Even a user whose environment asks Keras for TensorFlow gets no Keras at all.
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
    assert report == {"heavy": [], "onnxruntime": True}
