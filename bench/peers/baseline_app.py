"""Benchmark peer: the book's models put online the plain way (FastAPI + ``model.predict``).

This is what a reader of *Deep Learning with Python* would most likely write to serve the three
chapter-3 networks: load each ``.keras`` file with ``keras.saving.load_model`` (TensorFlow
backend, Keras' default), turn the request into the multi-hot input and call ``model.predict(x)``
in a plain FastAPI route, once per request. It serves the project's committed models with the
project's own preprocessing (``service.contract.vectorize``, imported through ``PYTHONPATH``; Boston's
normalization is inside ``model.keras``) and speaks the same JSON as ``python -m service``:

* ``POST /imdb/predict``    ``{"text": str}`` | ``{"texts": [str]}``
* ``POST /reuters/predict`` ``{"text": str}`` | ``{"texts": [str]}`` (+ ``"top_k"``, default 3)
* ``POST /boston/predict``  ``{"features": [13]}`` | ``{"instances": [[13]]}``
* ``GET /readyz``           200 once every model is loaded

Two choices keep the comparison fair rather than book-literal, both in the peer's favour:
``predict`` runs with ``verbose=0`` (no progress bar written per request), and each model is
called once at start-up, so the first request does not pay TensorFlow's tracing and cold start
is measured "loaded and warmed", as for the other servers. Routes are plain ``def``: FastAPI runs
them in its thread pool, the documented way to call blocking code. ``BASELINE_ASYNC=1`` makes them
``async def`` instead (``model.predict`` then runs on the event loop, one request at a time), the
other way the book's readers write it.

Run (from bench/peers, with the repo root on PYTHONPATH):
    MODELS_DIR=../../models uvicorn baseline_app:app --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import keras
import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from served import served_folder
from service.contract.vectorize import NUM_WORDS, WordIndex, multi_hot

MODELS_DIR = Path(os.environ.get("MODELS_DIR", Path(__file__).resolve().parents[2] / "models"))


def _load(name: str) -> dict:
    folder = served_folder(MODELS_DIR / name)  # the version ours serves by default
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    served = {
        "model": keras.saving.load_model(folder / "model.keras"),
        "metadata": metadata,
        "ref": {"name": name, "version": str(metadata.get("version", "1"))},
    }
    if (folder / "word_index.json").exists():
        word_index = json.loads((folder / "word_index.json").read_text(encoding="utf-8"))
        served["word_index"] = WordIndex(word_index, NUM_WORDS)
    return served


MODELS = {name: _load(name) for name in ("imdb", "reuters", "boston")}
for _served in MODELS.values():  # warm-up: one call each, so no request pays the tracing
    _width = 13 if _served["ref"]["name"] == "boston" else NUM_WORDS
    _served["model"].predict(np.zeros((1, _width), dtype="float32"), verbose=0)

app = FastAPI(title="baseline: FastAPI + model.predict")
ASYNC_ROUTES = os.environ.get("BASELINE_ASYNC", "") == "1"


def post(path: str):
    """``app.post(path)``, registering the route as ``async def`` when BASELINE_ASYNC=1."""

    def register(function):
        if not ASYNC_ROUTES:
            return app.post(path)(function)

        @functools.wraps(function)
        async def on_event_loop(*args, **kwargs):
            return function(*args, **kwargs)

        app.post(path)(on_event_loop)
        return function

    return register


class TextRequest(BaseModel):
    text: str | None = None
    texts: list[str] | None = None
    top_k: int = 3

    def items(self) -> list[str]:
        if self.text is not None:
            return [self.text]
        if self.texts:
            return self.texts
        raise HTTPException(422, "give 'text' or 'texts'")


class BostonRequest(BaseModel):
    features: list[float] | None = None
    instances: list[list[float]] | None = None

    def rows(self) -> list[list[float]]:
        if self.features is not None:
            return [self.features]
        if self.instances:
            return self.instances
        raise HTTPException(422, "give 'features' or 'instances'")


def _vectorize(served: dict, texts: list[str]) -> np.ndarray:
    return multi_hot([served["word_index"].encode(text) for text in texts], NUM_WORDS)


@post("/imdb/predict")
def predict_imdb(request: TextRequest) -> dict:
    served = MODELS["imdb"]
    probabilities = served["model"].predict(_vectorize(served, request.items()), verbose=0)
    return {
        "model": served["ref"],
        "predictions": [
            {"label": "positive" if p >= 0.5 else "negative", "probability": float(p)}
            for p in probabilities[:, 0]
        ],
    }


@post("/reuters/predict")
def predict_reuters(request: TextRequest) -> dict:
    served = MODELS["reuters"]
    labels = served["metadata"]["labels"]
    probabilities = served["model"].predict(_vectorize(served, request.items()), verbose=0)
    predictions = []
    for row in probabilities.tolist():
        order = sorted(range(len(row)), key=lambda i: -row[i])[: request.top_k]
        top = [{"class_id": i, "label": labels[i], "probability": row[i]} for i in order]
        predictions.append(
            {"label": top[0]["label"], "class_id": order[0], "probabilities": row, "top": top}
        )
    return {"model": served["ref"], "predictions": predictions}


@post("/boston/predict")
def predict_boston(request: BostonRequest) -> dict:
    served = MODELS["boston"]
    features = served["metadata"]["features"]
    rows = request.rows()
    prices = served["model"].predict(np.asarray(rows, dtype="float32"), verbose=0)[:, 0]
    predictions = []
    for price, row in zip(prices.tolist(), rows):
        outside = [
            f["name"] for f, v in zip(features, row) if not f["train_min"] <= v <= f["train_max"]
        ]
        predictions.append(
            {"price": price, "price_usd": round(price * 1000, 2), "out_of_range": outside}
        )
    return {"model": served["ref"], "predictions": predictions}


@app.get("/readyz")
def readyz() -> dict:
    return {"ready": True, "models": {name: "ready" for name in MODELS}}
