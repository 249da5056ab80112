"""New model versions made from the committed ones, for version and hot-reload tests.

A derived version is a real artifact: a Keras file saved by Keras, its ONNX export checked
against it on the card's reference rows (``training.onnx``), a model card with the sha256 of each
file, a version number that matches its folder. Its answers differ from version 1 in a
known way, so a test can tell from any response which version computed it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.contract.artifacts import METADATA_FILE, MODEL_FILE, write_metadata
from service.engine.runtime import reference_feeds
from training.onnx import write_onnx


def derive_version(
    source: Path, target: Path, version: str, change: Callable[[object], None]
) -> Path:
    """Copy the artifact at ``source`` to ``target`` as ``version``, its model changed by ``change``.

    Written under a dot-name first and renamed, as ``training.export`` does, so a server that
    rescans meanwhile never sees half a folder.
    """
    import keras

    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    model = keras.saving.load_model(staging / MODEL_FILE, compile=False, safe_mode=True)
    change(model)
    model.save(staging / MODEL_FILE)
    metadata = json.loads((staging / METADATA_FILE).read_text())
    metadata = {k: v for k, v in metadata.items() if k != "files"} | {"version": version}
    rows, _ = reference_feeds(metadata["onnx"])
    metadata["onnx"] = write_onnx(staging, model, rows)
    write_metadata(staging, metadata)
    staging.rename(target)
    return target


def flip_sentiment(model) -> None:
    """Negate the last layer: the probability of positive becomes 1 - p."""
    last = model.layers[-1]
    last.set_weights([-w for w in last.get_weights()])


def add_a_thousand_dollars(model) -> None:
    """Raise the last layer's bias by 1: every price goes up by exactly $1,000 (1.0)."""
    last = model.layers[-1]
    kernel, bias = last.get_weights()
    last.set_weights([kernel, bias + np.float32(1.0)])
