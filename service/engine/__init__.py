"""Engines: what runs a model version's network. ONNX Runtime on ``model.onnx``
(``service.engine.runtime``), or the Keras fallback for a folder without one
(``service.engine.fallback``). Kinds receive a ``Runtime`` and never know which; ``open_runtime``
chooses, and refuses an export that does not reproduce its card's reference rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.contract.artifacts import METADATA_FILE, ArtifactError
from service.engine.fallback import keras_runtime
from service.engine.runtime import (
    ONNX_FILE,
    PARITY_EPSILONS,
    OnnxRuntime,
    Runtime,
    parity_gap,
    reference_feeds,
)


def open_runtime(folder: Path, card: dict[str, Any]) -> Runtime:
    """The version's engine: an ONNX Runtime session on ``model.onnx`` that reproduces the card's
    reference rows; without ``model.onnx``, the Keras fallback if Keras is installed; else
    ``ArtifactError`` naming both fixes."""
    path = folder / ONNX_FILE
    if not path.exists():
        return keras_runtime(folder)
    if ONNX_FILE not in card.get("files", {}) or not isinstance(card.get("onnx"), dict):
        raise ArtifactError(
            f"{path} is not recorded in its {METADATA_FILE} (no sha256 in 'files' or no 'onnx' "
            f"section with reference rows): re-export it with `python -m training export-onnx {folder}`"
        )
    try:
        runtime = OnnxRuntime(path)
        feeds, expected = reference_feeds(card["onnx"])
        served = runtime.run(feeds)
    except Exception as error:  # ORT raises its own Fail/InvalidGraph...; a bad section KeyError...
        raise ArtifactError(f"{path} cannot be run by ONNX Runtime on its card's reference rows: "
                            f"{type(error).__name__}: {error}") from None  # fmt: skip
    gap = parity_gap(expected, served)
    if gap is not None:
        raise ArtifactError(
            f"{path} differs from the reference rows in its card by {gap:.3g}, more than float32 "
            f"rounding explains ({PARITY_EPSILONS} epsilons relative): refusing it; re-export it "
            f"with `python -m training export-onnx {folder}`"
        )
    return runtime


__all__ = ["Runtime", "open_runtime"]
