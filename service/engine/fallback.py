"""The Keras fallback engine: a network's forward pass as NumPy on the weights Keras loaded.

Serving runs ``model.onnx`` on ONNX Runtime (``service.engine.runtime``); this module serves a version
folder that has no ONNX export yet, when Keras is installed (``pip install ".[keras]"``).

Keras loads and checks the artifact (``safe_mode=True``); calling the Keras model then costs
about 0.4 ms per call in layer bookkeeping, forty times the arithmetic of these small networks.
For a plain stack of ``Normalization`` and ``Dense`` layers, this module runs the same operations
Keras' numpy backend runs, in float32, straight on the weight arrays. Any other layer keeps the
Keras call. Either way the registry compares the result with ``model(x)`` at load time and
refuses a model whose fast path disagrees.

A multi-hot row times the first kernel is the sum of the kernel rows at the row's 1-positions:
``from_positions`` computes exactly that, so a review of 150 distinct words costs 150 row
additions instead of a 10,000-row product, and no 40 MB matrix is built for a batch of 1,000.

Keras' backend is picked here too, before Keras is first imported (``load_keras``): serving
three small Dense networks does not need TensorFlow. Keras 3 runs the same ``.keras`` files on
its ``numpy`` backend (inference only), which starts in a fraction of a second and needs about a
third of the memory and disk of TensorFlow. Keras reads the backend once, at import, from
``KERAS_BACKEND``; so the service sets it itself, overriding whatever the user's environment
says. Only a process that imported Keras before the service (a test suite that also trains,
say) keeps its backend: the models load the same, and the service logs which backend it got.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from service.contract.artifacts import MODEL_FILE, ArtifactError
from service.contract.vectorize import rows_from_positions
from service.engine.network import ACTIVATIONS, Dense, Normalize, NumpyNetwork
from service.engine.runtime import ONNX_FILE, Runtime

SERVING_BACKEND = "numpy"

logger = logging.getLogger("service.backend")

Forward = Callable[[np.ndarray], np.ndarray]

_EPSILON = np.float32(1e-7)  # keras.backend.epsilon(), used by Normalization


def _dense(layer: Any) -> Dense | None:
    # Read attributes, not get_config(): serializing a config makes Keras probe for TensorFlow.
    activation = ACTIVATIONS.get(getattr(layer.activation, "__name__", ""))
    if activation is None or getattr(layer, "lora_enabled", False) or layer.dtype != "float32":
        return None
    bias = np.asarray(layer.bias.numpy(), dtype=np.float32) if layer.use_bias else None
    return Dense(np.asarray(layer.kernel.numpy(), dtype=np.float32), bias, activation)


def _normalize(layer: Any) -> Normalize | None:
    if layer.invert:
        return None
    scale = np.maximum(np.sqrt(np.asarray(layer.variance, dtype=np.float32)), _EPSILON)
    return Normalize(np.asarray(layer.mean, dtype=np.float32), scale)


def numpy_network(model: Any) -> NumpyNetwork | None:
    """The model as a ``NumpyNetwork``, or ``None`` if a layer is not a plain one."""
    steps: list[Dense | Normalize] = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        step = _dense(layer) if kind == "Dense" else _normalize(layer) if kind == "Normalization" else None
        if step is None:
            return None
        steps.append(step)
    return NumpyNetwork(tuple(steps))


def keras_forward(model: Any) -> Forward:
    """The general path: call the Keras model itself (numpy backend) and return an array."""

    def forward(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(x, training=False))

    return forward


@dataclass(frozen=True)
class KerasRuntime(Runtime):
    """The fallback engine for a version folder with no ``model.onnx``: Keras (numpy backend,
    ``pip install ".[keras]"``) loads ``model.keras``, and the NumPy path runs it when the network
    is a plain stack, else the Keras call.

    ``reference`` is always the Keras model's own call: the kinds' load-time probe checks the
    served path against it.
    """

    forward: Forward
    keras_call: Forward
    network: NumpyNetwork | None = None
    inputs: tuple[str, ...] = ("input",)
    model: Any = None

    @classmethod
    def of(cls, model: Any) -> KerasRuntime:
        reference = keras_forward(model)
        network = numpy_network(model) if len(model.inputs) == 1 else None
        names = tuple(getattr(i, "name", f"input_{n}") for n, i in enumerate(model.inputs))
        return cls(network or reference, reference, network, names, model)

    @property
    def description(self) -> str:  # type: ignore[override]
        engine = "NumPy forward pass" if self.network is not None else "Keras call"
        return f"{engine} (Keras fallback, no model.onnx)"

    def reference(self, x: np.ndarray) -> np.ndarray:
        return self.keras_call(np.ascontiguousarray(x, dtype=np.float32))

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        if len(self.inputs) == 1:
            return self.forward(np.ascontiguousarray(feeds[self.inputs[0]], dtype=np.float32))
        named = {name: np.asarray(feeds[name]) for name in self.inputs}
        return np.asarray(self.model(named, training=False))

    def from_positions(self, positions: Sequence[np.ndarray], width: int) -> np.ndarray:
        """One forward pass over multi-hot rows of ``width`` given by their 1-positions."""
        if self.network is not None and self.network.reads_positions:
            return self.network.from_positions(positions)
        return self(rows_from_positions(positions, width))


def load_keras() -> ModuleType:
    """Import Keras on the serving backend and return the module."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = SERVING_BACKEND
    import keras

    if keras.backend.backend() != SERVING_BACKEND:
        logger.warning(
            "Keras was imported with the %r backend before the service could select %r",
            keras.backend.backend(),
            SERVING_BACKEND,
        )
    return keras


def keras_runtime(folder: Path) -> Runtime:
    """A folder written before ONNX export: Keras (``pip install ".[keras]"``) loads its
    ``model.keras`` in safe mode, or the reason it cannot and the two ways out."""
    try:
        keras = load_keras()
    except ImportError as error:
        raise ArtifactError(
            f"{folder} has no {ONNX_FILE}, and the Keras fallback that would load its "
            f"{MODEL_FILE} is not installed ({error}): export it with `python -m training "
            f'export-onnx {folder}`, or install the fallback with `pip install ".[keras]"`'
        ) from None
    try:
        model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, TypeError, OSError... for a bad file
        raise ArtifactError(f"{folder / MODEL_FILE} cannot be loaded safely: {error}") from None
    return KerasRuntime.of(model)
