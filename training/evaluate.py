"""Recompute a saved model's test metrics from the data, the way the service will run it."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from service.contract.artifacts import MODEL_FILE, read_verified_metadata
from service.contract.tfidf import KIND as TFIDF_BAG
from service.contract.tfidf import TfidfBag
from training.datasets import DataSource
from training.recipes import BOOK, VERSION_2


def evaluate(folder: Path, source: DataSource) -> dict[str, float]:
    """Load the artifact as the service does (hashes checked, safe mode) and score its test
    split: a TF-IDF bag (version 2 of the text models) on the raw test texts through its own
    vocabulary file, any other on the Keras split through its recipe's encoding."""
    card = read_verified_metadata(folder)
    model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    if card.get("preprocessing", {}).get("kind") == TFIDF_BAG:
        from training.tfidf_networks import score

        split = VERSION_2[card["name"]].load(source)
        bag = TfidfBag.read(folder, card["preprocessing"])
        labels = np.asarray(split.y_test)
        return score(model, bag, split.x_test, labels, binary=len(card["labels"]) == 2)
    recipe = BOOK[card["name"]]
    split = recipe.load(source)
    x_test = recipe.output(source).inputs(split.x_test)
    recipe.compile(model)
    values = model.evaluate(x_test, split.y_test, batch_size=2048, verbose=0, return_dict=True)
    return {ours: float(values[theirs]) for theirs, ours in recipe.evaluated.items()}
