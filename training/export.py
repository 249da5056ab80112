"""Write a trained model as a self-contained version folder (format: ``service/contract/artifacts.py``).

``write_version`` is the one writer: the book's models (``write_artifact``) and the models
fitted on a user's own file (``training.fit``) both go through it, so both kinds of folder look
the same to the service and both appear complete or not at all. Keras and TensorFlow are only
imported to write, so ``fit`` can check a user's file first without them.

Every folder gets ``model.onnx`` beside ``model.keras`` (``training.onnx``): the writer is given
real input rows, checks ONNX Runtime against the model on them, and the card records the check.
"""

from __future__ import annotations

import platform
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.contract.artifacts import MODEL_FILE, ArtifactError, is_version, version_folders, write_metadata
from training.cards import Output
from training.datasets import DataSource, Split
from training.onnx import CHECK_ROWS, Rows, write_onnx
from training.networks import Trained
from training.recipes import BOOK

if TYPE_CHECKING:
    import keras


def libraries() -> dict[str, str]:
    import keras
    import numpy as np
    import tensorflow as tf

    return {"python": platform.python_version(), "keras": keras.__version__,
            "tensorflow": tf.__version__, "numpy": np.__version__}  # fmt: skip


def next_version(model_folder: Path) -> str:
    """One past the highest version in ``model_folder`` (a flat, pre-versions artifact is 1)."""
    if not model_folder.is_dir():
        return "1"
    return str(max(version_folders(model_folder), default=0) + 1)


def card_heading(output: Output, description: str) -> dict[str, Any]:
    """The first keys of every card: what the model is, and what made it."""
    return {
        "kind": output.kind, "task": output.task, "description": description,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "libraries": libraries(),
    }  # fmt: skip


def write_version(
    out: Path, name: str, model: keras.Model, card: dict[str, Any],
    files: dict[str, str] | None = None, version: str | None = None, *, rows: Rows,
) -> Path:  # fmt: skip
    """Write ``out/name/<version>/``: the model, its ONNX export checked on ``rows`` (real inputs,
    e.g. the first test rows), the ``files`` its card refers to, and the card.

    The version defaults to the next one, so a new model never touches what a server is serving;
    an explicit version that exists is replaced. The folder appears complete or not at all: it
    is written under a dot-name a server ignores, then renamed, so a reload never sees half of
    it, and a failed write leaves nothing behind.
    """
    model_folder = out / name
    version = version or next_version(model_folder)
    if not is_version(version):
        raise ArtifactError(f"version must be a positive integer such as 2, got {version!r}")
    folder, staging = model_folder / version, model_folder / f".{version}.partial"
    new_model_folder = not model_folder.exists()
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model.save(staging / MODEL_FILE)
        card = {**card, "onnx": write_onnx(staging, model, rows)}
        for file_name, text in (files or {}).items():
            (staging / file_name).write_text(text, encoding="utf-8")
        write_metadata(staging, {"name": name, "version": version, **card})
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if new_model_folder:
            shutil.rmtree(model_folder, ignore_errors=True)
        raise
    return folder


def write_artifact(
    out: Path, name: str, trained: Trained, split: Split, source: DataSource,
    version: str | None = None,
) -> Path:  # fmt: skip
    """Write a book model's version folder, its card filled from its row of ``recipes.BOOK``."""
    recipe = BOOK[name]
    # A recipe whose vectorization is fitted in training (the TF-IDF bags) hands its own.
    output = trained.extra.get("output") or recipe.output(source)
    card = {
        **card_heading(output, recipe.description),
        **output.card(trained.model, split.x_train, split.y_train),
        "dataset": {
            "name": name, "files": dict(source.used),
            "split": {"train": len(split.y_train), "test": len(split.y_test), **split.how},
        },
        "recipe": trained.recipe,
        "history": trained.history,
        "metrics": {key: round(float(value), 6) for key, value in trained.metrics.items()},
        "book_metrics": recipe.book_metrics,
    }
    rows = output.inputs(split.x_test[:CHECK_ROWS])
    return write_version(out, name, trained.model, card, output.files(), version, rows=rows)
