"""Load and soak: the real server under a bounded mixed load, with no failed or wrong answer.

wrk (C, so the load generator does not starve the server of the machine's two cores) drives
20,000 requests from 32 connections at the three endpoints, single inputs and batches, over
real sockets on 127.0.0.1; every answer must be a 200. While it runs, a Python client sends the
same requests and checks each answer's numbers against the offline Keras model (within 1e-5,
or a few float32 units in the last place at a price's size).
The test prints the throughput and p99.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.api.book import SAMPLE_FEATURES, SAMPLE_NEWSWIRE, SAMPLE_REVIEW
from service.contract.artifacts import MODEL_FILE, read_word_index
from service.serving.registry import PARITY_EPSILONS
from service.contract.vectorize import WordIndex, multi_hot

CLIENTS = 32
REQUESTS = 20_000
TOLERANCE = 1e-5
"""Absolute, for probabilities; prices (~20) also get PARITY_EPSILONS float32 epsilons relative,
as the served NumPy path and offline TensorFlow sum in different orders (a CPU's kernels)."""
RELATIVE = PARITY_EPSILONS * float(np.finfo(np.float32).eps)

REVIEWS = [
    SAMPLE_REVIEW,
    "A dull, lifeless film. The plot made no sense and the acting was terrible.",
    "Not the best, not the worst. Some scenes work <br /><br /> others drag on.",
    "I laughed, I cried, I bought the DVD. Ten out of ten!",
    "¡Qué película! Émotions fortes, 映画 — 🎬",
]
NEWSWIRES = [
    SAMPLE_NEWSWIRE,
    "Crude oil prices fell as OPEC ministers failed to agree on output quotas for next month.",
    "The company agreed to acquire all outstanding shares of its rival for 25 dlrs a share.",
    "Wheat and corn exports rose sharply, the agriculture department said in its weekly report.",
]


def offline_model(artifacts: dict[str, Path], name: str):
    import keras

    return keras.saving.load_model(artifacts[name] / MODEL_FILE, compile=False, safe_mode=True)


def text_expectations(artifacts: dict[str, Path], name: str, texts: list[str]) -> np.ndarray:
    word_index = WordIndex(read_word_index(artifacts[name]))
    model = offline_model(artifacts, name)
    return np.asarray(model.predict_on_batch(multi_hot(word_index.encode(t) for t in texts)))


@pytest.fixture(scope="module")
def workload(artifacts: dict[str, Path]) -> list[tuple[str, dict, object]]:
    """(path, body, expected output) triples: singles and batches for the three models."""
    imdb = text_expectations(artifacts, "imdb", REVIEWS)[:, 0]
    reuters = text_expectations(artifacts, "reuters", NEWSWIRES)
    rows = np.array([SAMPLE_FEATURES, [v * 1.1 for v in SAMPLE_FEATURES]], dtype=np.float32)
    boston = np.asarray(offline_model(artifacts, "boston").predict_on_batch(rows))[:, 0]
    work: list[tuple[str, dict, object]] = []
    for review, p in zip(REVIEWS, imdb):
        work.append(("/imdb/predict", {"text": review}, [p]))
    work.append(("/imdb/predict", {"texts": REVIEWS}, list(imdb)))
    for newswire, p in zip(NEWSWIRES, reuters):
        work.append(("/reuters/predict", {"text": newswire}, [p]))
    work.append(("/reuters/predict", {"texts": NEWSWIRES}, list(reuters)))
    work.append(("/boston/predict", {"features": SAMPLE_FEATURES}, [boston[0]]))
    work.append(("/boston/predict", {"instances": rows.tolist() * 8}, list(boston) * 8))
    return work


def matches(path: str, body: dict, expected: list) -> bool:
    predictions = body["predictions"]
    if len(predictions) != len(expected):
        return False
    if path == "/imdb/predict":
        got = [p["probability"] for p in predictions]
    elif path == "/reuters/predict":
        got = [p["probabilities"] for p in predictions]
    else:
        got = [p["price"] for p in predictions]
    return bool(np.allclose(np.array(got), np.array(expected), rtol=RELATIVE, atol=TOLERANCE))


WRK_SCRIPT = Path(__file__).parent / "load" / "mixed.lua"


def posts_served(url: str) -> int:
    """POST requests the server has answered so far, from its Prometheus counter."""
    text = httpx.get(url + "/metrics").text
    return int(sum(float(v) for v in re.findall(r'http_requests_total\{method="POST".*\} (\S+)', text)))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_mixed_load_of_20000_requests_has_no_failed_or_wrong_answer(server, workload, tmp_path):
    request_files = []
    for i, (path, body, _) in enumerate(workload):
        request_file = tmp_path / f"request-{i}.txt"
        request_file.write_text(path + "\n" + json.dumps(body))
        request_files.append(str(request_file))

    wrong: list[str] = []
    checked = 0
    load_running = threading.Event()
    load_running.set()

    def sample_and_check() -> None:
        nonlocal checked
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while load_running.is_set():
                for path, body, expected in workload:
                    response = client.post(path, json=body)
                    checked += 1
                    if response.status_code != 200 or not matches(path, response.json(), expected):
                        wrong.append(f"{path} {response.status_code} {response.text[:200]}")
                    time.sleep(0.005)  # a sample: leave the machine to the load

    already_served = posts_served(server.url)  # the server is shared with other tests
    checker = threading.Thread(target=sample_and_check)
    checker.start()
    wrk = subprocess.Popen(
        ["wrk", "-t2", f"-c{CLIENTS}", "-d300s", "-s", str(WRK_SCRIPT), server.url, "--",
         *request_files],
        env={**os.environ, "WRK_REQUESTS": str(REQUESTS), "WRK_THREADS": "2"},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # wrk runs for its -d; each of its threads stops after its share of answers, and
        # SIGINT then makes wrk print its totals. The server's own counter says when.
        deadline = time.monotonic() + 240
        while (posts_served(server.url) - already_served < REQUESTS + checked
               and time.monotonic() < deadline):  # fmt: skip
            time.sleep(0.2)
        wrk.send_signal(signal.SIGINT)
        stdout, _ = wrk.communicate(timeout=30)
    finally:
        load_running.clear()
        checker.join(60)
        wrk.kill()
    totals = json.loads(stdout.strip().splitlines()[-1])
    print(json.dumps({**totals, "req_per_s": round(totals["answered"] / totals["seconds"]),
                      "checked_against_offline_model": checked}))  # fmt: skip
    assert totals["answered"] >= REQUESTS
    assert totals["non_200"] == 0
    assert totals["socket_errors"] == 0
    assert wrong == []
    assert checked >= len(workload)
