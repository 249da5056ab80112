"""Write a trained model as a self-contained artifact folder (format: ``service/artifacts.py``)."""

from __future__ import annotations

import json
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np

from service.artifacts import (
    MODEL_FILE,
    WORD_INDEX_FILE,
    ArtifactError,
    is_version,
    version_folders,
    write_metadata,
)
from service.schemas import FEATURE_NAMES, HousingRecord
from service.vectorize import INDEX_FROM, NUM_WORDS, OOV_ID, START_ID
from training.datasets import SEED, TEST_SPLIT, DataSource, Split
from training.recipes import Trained

BOOK_METRICS = {
    "imdb": {"test_accuracy": 0.8836, "test_loss": 0.292},
    "reuters": {"test_accuracy": 0.7912, "test_loss": 0.983},
    "boston": {"test_mae": 2.61, "test_mse": 17.43, "kfold_val_mae": 2.40},
}
TASKS = {
    "imdb": ("binary-classification", "Probability that a movie review is positive."),
    "reuters": ("multiclass-classification", "The topic of a Reuters newswire among 46."),
    "boston": ("regression", "Median value of homes in a 1970s Boston district, in $1000s."),
}


def libraries() -> dict[str, str]:
    import tensorflow as tf

    return {"python": platform.python_version(), "keras": keras.__version__,
            "tensorflow": tf.__version__, "numpy": np.__version__}  # fmt: skip


def text_preprocessing(word_index: dict[str, int]) -> dict[str, Any]:
    return {
        "kind": "multi-hot", "num_words": NUM_WORDS, "index_from": INDEX_FROM,
        "start_id": START_ID, "oov_id": OOV_ID, "word_index_size": len(word_index),
        "tokenizer": "service.vectorize.tokenize",
    }  # fmt: skip


FEATURE_UNITS = {
    "CRIM": "crimes per capita", "ZN": "%", "INDUS": "%", "CHAS": "0 or 1",
    "NOX": "parts per 10 million", "RM": "rooms", "AGE": "%", "DIS": "weighted distance (index)",
    "RAD": "index", "TAX": "dollars per $10,000", "PTRATIO": "pupils per teacher",
    "B": "index", "LSTAT": "%",
}  # fmt: skip
"""The unit of each Boston feature, for the model card (the dataset itself carries none)."""


def boston_features(split: Split) -> list[dict[str, Any]]:
    """Name, meaning and training range of each feature: the service flags values outside it."""
    x = np.asarray(split.x_train, dtype="float64")
    return [
        {
            "name": name,
            "description": HousingRecord.model_fields[name].description,
            "unit": FEATURE_UNITS[name],
            "train_min": float(x[:, i].min()), "train_max": float(x[:, i].max()),
            "train_mean": float(x[:, i].mean()), "train_std": float(x[:, i].std()),
        }  # fmt: skip
        for i, name in enumerate(FEATURE_NAMES)
    ]


def next_version(model_folder: Path) -> str:
    """One past the highest version in ``model_folder`` (a flat, pre-versions artifact is 1)."""
    if not model_folder.is_dir():
        return "1"
    return str(max(version_folders(model_folder), default=0) + 1)


def write_artifact(
    out: Path, name: str, trained: Trained, split: Split, source: DataSource,
    version: str | None = None,
    word_index: dict[str, int] | None = None, labels: list[str] | None = None,
) -> Path:  # fmt: skip
    """Write ``out/name/<version>/``: the model, its preprocessing state and its model card.

    The version defaults to the next one, so a retrain never touches what a server is serving;
    an explicit version that exists is replaced. The folder appears complete or not at all (it is
    written under a dot-name a server ignores, then renamed), so a reload never sees half of it.
    """
    version = version or next_version(out / name)
    if not is_version(version):
        raise ArtifactError(f"version must be a positive integer such as 2, got {version!r}")
    folder = out / name / version
    staging = out / name / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    trained.model.save(staging / MODEL_FILE)
    task, description = TASKS[name]
    metadata: dict[str, Any] = {
        "name": name, "version": version, "task": task, "description": description,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "libraries": libraries(),
    }  # fmt: skip
    if word_index is not None:
        (staging / WORD_INDEX_FILE).write_text(json.dumps(word_index, ensure_ascii=False))
        metadata["preprocessing"] = text_preprocessing(word_index)
    if labels is not None:
        metadata["labels"] = labels
    if name == "boston":
        mean = trained.model.layers[0].mean.numpy().ravel().tolist()
        std = np.sqrt(trained.model.layers[0].variance.numpy()).ravel().tolist()
        metadata["preprocessing"] = {"kind": "normalization-in-model", "mean": mean, "std": std}
        metadata["features"] = boston_features(split)
        y = np.asarray(split.y_train, dtype="float64")
        metadata["target"] = {
            "name": "MEDV", "description": "median value of owner-occupied homes",
            "unit": "thousands of dollars", "train_min": float(y.min()),
            "train_max": float(y.max()), "train_mean": float(y.mean()),
        }  # fmt: skip
    metadata["dataset"] = {
        "name": name, "files": dict(source.used),
        "split": {"train": len(split.y_train), "test": len(split.y_test), "seed": SEED,
                  **({"test_split": TEST_SPLIT} if name != "imdb" else {})},
    }  # fmt: skip
    metadata["recipe"] = trained.recipe
    metadata["history"] = trained.history
    metadata["metrics"] = {key: round(float(value), 6) for key, value in trained.metrics.items()}
    metadata["book_metrics"] = BOOK_METRICS[name]
    write_metadata(staging, metadata)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder
