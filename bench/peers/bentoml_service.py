"""Benchmark peer: BentoML with adaptive batching, serving the project's committed models.

One ``@bentoml.service`` holds the three networks (TensorFlow backend, loaded with
``keras.saving.load_model``); each endpoint is a ``@bentoml.api(batchable=True)`` method that
calls ``model.predict_on_batch`` on the batch BentoML's dispatcher assembles from concurrent
requests (adaptive batching, BentoML's defaults: ``max_batch_size=100``, ``max_latency_ms=60000``;
a larger request is split into chunks by the dispatcher). Preprocessing is the project's own
``service.contract.vectorize`` (through ``PYTHONPATH``); Boston's normalization is inside ``model.keras``.

BentoML exposes each method under its own name, with its parameters as the JSON keys, and a
batchable method answers with the list of per-input results, so the requests are:

* ``POST /imdb_predict``    ``{"texts": [str, ...]}``       → ``[{"label", "probability"}, ...]``
* ``POST /reuters_predict`` ``{"texts": [str, ...]}``       → ``[{"label", "class_id", "probabilities", "top"}, ...]``
* ``POST /boston_predict``  ``{"instances": [[13], ...]}``  → ``[{"price", "price_usd", "out_of_range"}, ...]``
* ``GET /readyz``           BentoML's own readiness probe

The per-item objects are the same as ``python -m service``'s ``predictions``; only the envelope
(``{"model", "predictions"}``) differs. Each model is called once in ``__init__`` so the first
request does not pay TensorFlow's tracing (cold start is "loaded and warmed" for every server).

One worker process by default; ``BENCH_BENTOML_WORKERS=N`` sets the service's ``workers`` (each
worker loads the three models and batches on its own), which ``bench/run.py --bentoml-workers N``
passes.

Run (from bench/peers, with the repo root on PYTHONPATH):
    MODELS_DIR=../../models bentoml serve bentoml_service:KerasModels --host 127.0.0.1 --port 8002
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from served import served_folder
from service.contract.vectorize import NUM_WORDS, WordIndex, multi_hot

MODELS_DIR = Path(os.environ.get("MODELS_DIR", Path(__file__).resolve().parents[2] / "models"))
TOP_K = 3


WORKERS = int(os.environ.get("BENCH_BENTOML_WORKERS", "1"))  # bench/run.py --bentoml-workers


@bentoml.service(workers=WORKERS, traffic={"timeout": 120})
class KerasModels:
    def __init__(self) -> None:
        import keras  # TensorFlow backend, Keras' default

        self.models: dict[str, Any] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self.word_index: dict[str, WordIndex] = {}
        for name in ("imdb", "reuters", "boston"):
            folder = served_folder(MODELS_DIR / name)  # the version ours serves by default
            self.models[name] = keras.saving.load_model(folder / "model.keras")
            self.metadata[name] = json.loads((folder / "metadata.json").read_text("utf-8"))
            if (folder / "word_index.json").exists():
                words = json.loads((folder / "word_index.json").read_text("utf-8"))
                self.word_index[name] = WordIndex(words, NUM_WORDS)
            width = 13 if name == "boston" else NUM_WORDS
            self.models[name].predict_on_batch(np.zeros((1, width), dtype="float32"))

    def _vectorize(self, name: str, texts: list[str]) -> np.ndarray:
        return multi_hot([self.word_index[name].encode(text) for text in texts], NUM_WORDS)

    @bentoml.api(batchable=True)
    def imdb_predict(self, texts: list[str]) -> list[dict[str, Any]]:
        probabilities = np.asarray(
            self.models["imdb"].predict_on_batch(self._vectorize("imdb", texts))
        )
        return [
            {"label": "positive" if p >= 0.5 else "negative", "probability": float(p)}
            for p in probabilities[:, 0]
        ]

    @bentoml.api(batchable=True)
    def reuters_predict(self, texts: list[str]) -> list[dict[str, Any]]:
        labels = self.metadata["reuters"]["labels"]
        x = self._vectorize("reuters", texts)
        probabilities = np.asarray(self.models["reuters"].predict_on_batch(x)).tolist()
        predictions = []
        for row in probabilities:
            order = sorted(range(len(row)), key=lambda i: -row[i])[:TOP_K]
            top = [{"class_id": i, "label": labels[i], "probability": row[i]} for i in order]
            predictions.append(
                {"label": top[0]["label"], "class_id": order[0], "probabilities": row, "top": top}
            )
        return predictions

    @bentoml.api(batchable=True)
    def boston_predict(self, instances: list[list[float]]) -> list[dict[str, Any]]:
        features = self.metadata["boston"]["features"]
        x = np.asarray(instances, dtype="float32")
        prices = np.asarray(self.models["boston"].predict_on_batch(x))[:, 0].tolist()
        predictions = []
        for price, row in zip(prices, instances):
            outside = [
                f["name"]
                for f, v in zip(features, row)
                if not f["train_min"] <= v <= f["train_max"]
            ]
            predictions.append(
                {"price": price, "price_usd": round(price * 1000, 2), "out_of_range": outside}
            )
        return predictions
