"""Engines: what runs a model version's network. ONNX Runtime on ``model.onnx``
(``service.engine.runtime``), or the Keras fallback for a folder without one
(``service.engine.fallback``). Kinds receive a ``Runtime`` and never know which; ``open_runtime``
chooses, and refuses an export that does not reproduce its card's reference rows."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from service.contract.artifacts import METADATA_FILE, ArtifactError
from service.engine.fallback import keras_runtime
from service.engine.network import NumpyNetwork, network_of_graph
from service.engine.onnxfile import read_graph
from service.engine.runtime import (
    ONNX_FILE,
    PARITY_EPSILONS,
    OnnxRuntime,
    Runtime,
    parity_gap,
    reference_feeds,
)

logger = logging.getLogger("service.registry")


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
    runtime.network = gathering(path, card["onnx"]["reference"]["inputs"], expected)
    return runtime


def gathering(path: Path, inputs: Mapping[str, Any], expected: np.ndarray) -> NumpyNetwork | None:
    """For a network on one multi-hot input (the card records its reference rows as
    1-positions) that is a plain stack of Dense layers: the same network in NumPy, whose first
    layer sums the kernel rows of each row's positions (``service.engine.network``). Used when
    it reproduces the card's reference outputs to float32 precision; else None, and ONNX
    Runtime serves every row as a dense one."""
    rows = next(iter(inputs.values()))
    if len(inputs) != 1 or "positions" not in rows:
        return None
    try:
        network = network_of_graph(read_graph(path))
        if network is None:
            return None
        served = network.from_positions([np.asarray(p, dtype=np.int64) for p in rows["positions"]])
    except (OSError, ValueError, IndexError) as error:
        logger.warning("%s: no gather path (%s); ONNX Runtime serves dense rows", path, error)
        return None
    gap = parity_gap(expected, served)
    if gap is not None:
        logger.warning("%s: the gather path differs from the card's reference rows by %.3g; "
                       "ONNX Runtime serves dense rows", path, gap)  # fmt: skip
        return None
    return network


__all__ = ["Runtime", "open_runtime"]
