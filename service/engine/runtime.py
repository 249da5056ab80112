"""How a loaded model runs: one ONNX Runtime session per model version.

Training exports every model next to its ``model.keras`` (the artifact of record) as
``model.onnx`` with Keras' own exporter, checked against TensorFlow on real rows, and records a
few of those rows with their outputs in the card (``"onnx": {"reference": ...}``). Serving opens
the ONNX file here and needs neither TensorFlow, nor Keras, nor the jax and scipy that Keras'
numpy backend imports: ``onnxruntime`` and NumPy are the whole engine.

Kinds receive a ``Runtime`` and never know which engine is behind it: ``OnnxRuntime`` here, or,
for a folder with no ``model.onnx`` and Keras installed (``pip install ".[keras]"``), the Keras
fallback of ``service.engine.fallback``. Both take named inputs (``run``), so a network with two inputs
(term ids and their weights) is served the same way as one with one.

The multi-hot networks (version 1 of IMDB and Reuters) run in NumPy instead, when they can
(``OnnxRuntime.network``, built and checked by ``service.engine.open_runtime``): their first
layer as the sum of the kernel rows at a row's 1-positions (``service.engine.network``), the
weights read from this same ``model.onnx``. Issue 14 dropped such a path (a dense row through the
session was as fast, then, at 24 µs against 49 µs); issue 25 measured it again, in process on
the 235-word review, once the request's other costs had been cut (2026-12-08, AMD EPYC, 2 cores):

* IMDB: kernel-row sums 15.5 µs against 22.6 µs for the dense row through the session; a batch
  of 1,000 reviews 3.2 ms against 3.8 ms;
* Reuters (a 10,000 × 64 kernel, 2.5 MB read by every dense call): 21.0 µs against 46.3 µs;
  1,000 newswires 8.2 ms against 12.4 ms.

Under load the gap is larger: the dense call streams the whole kernel through the cache on
every request. The answers differ from the session's in the last bits only (the sums' order),
within ``PARITY_EPSILONS``, checked at every load on the card's reference rows and, in
``tests/test_parity.py``, on every raw test text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from service.contract.vectorize import rows_from_positions

ONNX_FILE = "model.onnx"

PARITY_EPSILONS = 16
"""How far a served output may differ from its reference at load time, in float32 epsilons
relative to the output's size (at least 1): sums of the same float32 numbers in another order
(a gather-sum against a matrix product, ONNX Runtime's kernels against TensorFlow's, one CPU's
against another's) differ by a few units in the last place, never by more. 16 × 1.19e-7 is
1.9e-6 on a probability and 3.8e-5 on a price near 20; a wrong weight or layer is off by orders
of magnitude more."""

DENSE_CHUNK = 128
"""Multi-hot rows built and run at once by ``Runtime.from_positions`` (128 × 10,000 float32 is
5 MB); a bigger batch runs in chunks of this size, so its memory does not grow with it."""


def parity_gap(expected: np.ndarray, served: np.ndarray) -> float | None:
    """The largest absolute difference if it exceeds float32 rounding (``PARITY_EPSILONS``
    relative), else ``None``. Shapes must match; a mismatch is reported as an infinite gap."""
    expected = np.asarray(expected, dtype=np.float64)
    served = np.asarray(served, dtype=np.float64)
    if expected.shape != served.shape:
        return float("inf")
    allowed = PARITY_EPSILONS * np.finfo(np.float32).eps * np.maximum(np.abs(expected), 1.0)
    if expected.size and np.max(np.abs(served - expected) - allowed) > 0:
        return float(np.max(np.abs(served - expected)))
    if not np.isfinite(served).all():
        return float("inf")
    return None


class Runtime(ABC):
    """A model version's engine, as the kinds use it (see the module docstring)."""

    inputs: tuple[str, ...]
    """The network's input names, in order."""
    description: str
    """What runs it, for the logs: "ONNX Runtime", or the Keras fallback's engine."""

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Named inputs (batch first) → the network's (batch, width) output as float32."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Single-input networks: one forward pass over a batch of rows."""
        return self.run({self.inputs[0]: x})

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The engine's own plain call on dense rows: the kinds' load-time probe compares
        ``from_positions`` (and any fast path) with it."""
        return self(x)

    def from_positions(self, positions: Sequence[np.ndarray], width: int) -> np.ndarray:
        """One forward pass over multi-hot rows of ``width`` given by their 1-positions, built
        ``DENSE_CHUNK`` rows at a time: a batch of 1,000 reviews never holds the whole 40 MB
        matrix, only 5 MB of it."""
        if len(positions) <= DENSE_CHUNK:
            return self(rows_from_positions(positions, width))
        return np.concatenate([self(rows_from_positions(positions[start : start + DENSE_CHUNK], width))
                               for start in range(0, len(positions), DENSE_CHUNK)])  # fmt: skip


class Positional(Protocol):
    """A network that reads multi-hot rows by their 1-positions (``service.engine.network``)."""

    def from_positions(self, positions: Sequence[np.ndarray]) -> np.ndarray: ...


class OnnxRuntime(Runtime):
    """One ``onnxruntime.InferenceSession`` on a version's ``model.onnx``.

    One thread per session, sequential execution: a request's batch is a handful of rows
    through three small Dense layers (tens of microseconds), where ONNX Runtime's thread pool
    costs more in hand-offs than it saves, and a pool per model version per worker would
    oversubscribe the cores. Parallelism comes from the server's workers (one per core) and from
    requests overlapping, never from inside one call.
    """

    def __init__(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: ORT's warnings are about its own choices
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = tuple(i.name for i in self.session.get_inputs())
        self.dtypes = {i.name: _numpy_dtype(i.type) for i in self.session.get_inputs()}
        self.output = self.session.get_outputs()[0].name
        self.network: Positional | None = None
        """The same network in NumPy for multi-hot rows by their positions, when it has been
        checked against this session (``service.engine.open_runtime``); None: dense rows."""

    @property
    def description(self) -> str:  # type: ignore[override]
        return "ONNX Runtime" + (", multi-hot rows as kernel-row sums" if self.network else "")

    def from_positions(self, positions: Sequence[np.ndarray], width: int) -> np.ndarray:
        if self.network is not None:
            return self.network.from_positions(positions)
        return super().from_positions(positions, width)

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = [name for name in self.inputs if name not in feeds]
        if missing:
            raise ValueError(
                f"missing network inputs {missing}; the network reads {list(self.inputs)}"
            )
        arrays = {
            name: np.ascontiguousarray(feeds[name], dtype=self.dtypes[name]) for name in self.inputs
        }
        return self.session.run([self.output], arrays)[0]


_ONNX_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
    "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
}  # fmt: skip


def _numpy_dtype(onnx_type: str) -> Any:
    if onnx_type not in _ONNX_TYPES:
        raise ValueError(f"input type {onnx_type} is not served")
    return _ONNX_TYPES[onnx_type]


# --- Reference rows: the card's compact record of real inputs and their outputs ----------------


def encode_rows(rows: np.ndarray) -> dict[str, Any]:
    """One input's rows for the card, compactly: multi-hot rows as their 1-positions (a review
    is ~150 numbers, not 10,000), anything else as the values themselves."""
    rows = np.asarray(rows)
    if rows.ndim == 2 and rows.shape[1] > 64 and np.isin(rows, (0, 1)).all():
        return {"width": int(rows.shape[1]),
                "positions": [np.flatnonzero(row).tolist() for row in rows]}  # fmt: skip
    return {"values": rows.tolist()}


def decode_rows(encoded: Mapping[str, Any], dtype: Any = np.float32) -> np.ndarray:
    """The inverse of ``encode_rows``."""
    if "positions" in encoded:
        positions = [np.asarray(p, dtype=np.int64) for p in encoded["positions"]]
        return rows_from_positions(positions, int(encoded["width"])).astype(dtype)
    return np.asarray(encoded["values"], dtype=dtype)


def reference_feeds(section: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The card's ``onnx`` section → (named input rows, the outputs recorded at export)."""
    reference = section["reference"]
    dtypes = {spec["name"]: np.dtype(spec["dtype"]) for spec in section["inputs"]}
    feeds = {name: decode_rows(rows, dtypes.get(name, np.float32))
             for name, rows in reference["inputs"].items()}  # fmt: skip
    return feeds, np.asarray(reference["outputs"], dtype=np.float32)
