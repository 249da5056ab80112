"""A network's forward pass as NumPy on its weights: ``Dense`` and ``Normalize`` steps in a chain
(``NumpyNetwork``), built from a Keras model (``service.engine.fallback``) or read from a
``model.onnx`` (``network_of_graph``).

What it is for: a multi-hot row times the first kernel is the sum of the kernel rows at the
row's 1-positions. ``NumpyNetwork.from_positions`` computes exactly that, so a review of 150
distinct words costs 150 row additions instead of a product with the whole 10,000-row kernel
(640 kB of IMDB's weights, 2.5 MB of Reuters', read on every request and pushed through the
cache), and no 40 MB matrix is built for a batch of 1,000. The same operations as Keras and ONNX
Runtime, in float32; only the order of the additions differs, so answers differ in their last
bits at most (``PARITY_EPSILONS``), which every load checks on the card's reference rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.engine.onnxfile import Graph

def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0.0))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    one = np.float32(1.0)
    return one / (one + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    exp_x = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return exp_x / np.sum(exp_x, axis=-1, keepdims=True)


def _linear(x: np.ndarray) -> np.ndarray:
    return x


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": _relu,
    "sigmoid": _sigmoid,
    "softmax": _softmax,
    "linear": _linear,
    "tanh": np.tanh,
}


@dataclass(frozen=True)
class Dense:
    kernel: np.ndarray
    bias: np.ndarray | None
    activation: Callable[[np.ndarray], np.ndarray]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._finish(np.matmul(x, self.kernel))

    def from_positions(self, positions: Sequence[np.ndarray]) -> np.ndarray:
        """The layer on multi-hot rows given by their 1-positions: sums of kernel rows, for
        ``GATHER_CHUNK`` rows at a time (a batch of 1,000 reviews gathers 150,000 kernel rows)."""
        if len(positions) > GATHER_CHUNK:
            return np.concatenate([self.from_positions(positions[i : i + GATHER_CHUNK])
                                   for i in range(0, len(positions), GATHER_CHUNK)])  # fmt: skip
        if len(positions) == 1:
            return self._finish(self.kernel[positions[0]].sum(axis=0, keepdims=True))
        starts = np.cumsum([0, *(len(hot) for hot in positions[:-1])])
        gathered = self.kernel[np.concatenate(positions)]
        return self._finish(np.add.reduceat(gathered, starts, axis=0))

    def _finish(self, y: np.ndarray) -> np.ndarray:
        return self.activation(y + self.bias if self.bias is not None else y)


@dataclass(frozen=True)
class Normalize:
    mean: np.ndarray
    scale: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale


@dataclass(frozen=True)
class NumpyNetwork:
    """A chain of ``Normalize`` and ``Dense`` steps, callable like the Keras model."""

    steps: tuple[Dense | Normalize, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for step in self.steps:
            x = step(x)
        return x

    @property
    def reads_positions(self) -> bool:
        return bool(self.steps) and isinstance(self.steps[0], Dense)

    def from_positions(self, positions: Sequence[np.ndarray]) -> np.ndarray:
        """The network on multi-hot rows given by their 1-positions (first step must be Dense)."""
        first, *rest = self.steps
        assert isinstance(first, Dense)
        x = first.from_positions(positions)
        for step in rest:
            x = step(x)
        return x


GATHER_CHUNK = 128
"""Rows gathered at once by ``Dense.from_positions``."""

ONNX_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Softmax": "softmax", "Tanh": "tanh"}


def network_of_graph(graph: Graph) -> NumpyNetwork | None:
    """A ``model.onnx`` graph as a ``NumpyNetwork`` when it is a plain stack of Dense layers on
    one input (``MatMul`` by a weight, then optionally ``Add`` of a bias, then optionally one
    activation; softmax on the last axis), as Keras exports its Dense networks; else None."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return None
    steps: list[Dense] = []
    value = graph.inputs[0]
    for node in graph.nodes:
        if not node.inputs or node.inputs[0] != value or len(node.outputs) != 1:
            return None
        weight = graph.weights.get(node.inputs[1]) if len(node.inputs) == 2 else None
        if node.op == "MatMul" and weight is not None and weight.ndim == 2:
            steps.append(Dense(np.asarray(weight, dtype=np.float32), None, ACTIVATIONS["linear"]))
        elif node.op == "Add" and weight is not None and steps and steps[-1].bias is None \
                and steps[-1].activation is ACTIVATIONS["linear"]:  # fmt: skip
            steps[-1] = Dense(steps[-1].kernel, np.asarray(weight, dtype=np.float32).reshape(-1),
                              ACTIVATIONS["linear"])  # fmt: skip
        elif node.op in ONNX_ACTIVATIONS and len(node.inputs) == 1 and steps \
                and steps[-1].activation is ACTIVATIONS["linear"] \
                and node.attributes.get("axis", -1) in (-1, 1):  # fmt: skip
            steps[-1] = Dense(steps[-1].kernel, steps[-1].bias, ACTIVATIONS[ONNX_ACTIVATIONS[node.op]])
        elif node.op != "Identity":
            return None
        value = node.outputs[0]
    return NumpyNetwork(tuple(steps)) if steps and value == graph.outputs[0] else None
