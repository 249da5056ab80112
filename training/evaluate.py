"""Recompute a saved book model's test metrics from the data, the way the service will run it."""

from __future__ import annotations

from pathlib import Path

import keras

from service.artifacts import MODEL_FILE, read_verified_metadata
from training.datasets import DataSource
from training.recipes import BOOK


def evaluate(folder: Path, source: DataSource) -> dict[str, float]:
    """Load the artifact as the service does (hashes checked, safe mode) and score its test split."""
    recipe = BOOK[read_verified_metadata(folder)["name"]]
    model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    split = recipe.load(source)
    x_test = recipe.output(source).inputs(split.x_test)
    recipe.compile(model)
    values = model.evaluate(x_test, split.y_test, batch_size=2048, verbose=0, return_dict=True)
    return {ours: float(values[theirs]) for theirs, ours in recipe.evaluated.items()}
