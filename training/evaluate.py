"""Recompute a saved artifact's test metrics from the data, the way the service will run it."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from service.artifacts import MODEL_FILE, read_verified_metadata
from service.vectorize import multi_hot
from training.datasets import DataSource, load_boston, load_imdb, load_reuters
from training.recipes import build_boston_model, build_imdb_model, build_reuters_model


def evaluate(folder: Path, source: DataSource) -> dict[str, float]:
    """Load the artifact as the service does (hashes checked, safe mode) and score its test split."""
    metadata = read_verified_metadata(folder)
    name = metadata["name"]
    model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    if name == "boston":
        split = load_boston(source)
        x_test = np.asarray(split.x_test, dtype="float32")
        reference = build_boston_model(np.asarray(split.x_train, dtype="float32"))
    else:
        split = load_imdb(source) if name == "imdb" else load_reuters(source)
        x_test = multi_hot(split.x_test)
        reference = build_imdb_model() if name == "imdb" else build_reuters_model()
    model.compile(optimizer="rmsprop", loss=reference.loss, metrics=_metrics(reference))
    values = model.evaluate(x_test, split.y_test, batch_size=2048, verbose=0, return_dict=True)
    keys = {
        "imdb": {"loss": "test_loss", "accuracy": "test_accuracy"},
        "reuters": {"loss": "test_loss", "accuracy": "test_accuracy", "top3_accuracy": "test_top3_accuracy"},
        "boston": {"loss": "test_mse", "mae": "test_mae"},
    }[name]  # fmt: skip
    return {ours: float(values[theirs]) for theirs, ours in keys.items()}


def _metrics(model: keras.Model) -> list:
    if isinstance(model.loss, str) and model.loss == "mse":
        return ["mae"]
    if model.name == "reuters":
        return ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3_accuracy")]
    return ["accuracy"]
