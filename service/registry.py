"""Load every model artifact once at start-up, check it, warm it, and hand it to the routes.

Loading follows KServe's split of ``load`` from ``predict``: everything that can fail (a missing
folder, a file whose sha256 changed, a Lambda layer that safe mode refuses, a fast path that
disagrees with Keras) fails here, once, with the reason recorded. A broken model never takes the
healthy ones down: it is listed as unavailable, its endpoint answers 503 with the reason, and
``/readyz`` says which one and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.artifacts import (
    MODEL_FILE,
    MODEL_NAMES,
    ArtifactError,
    read_verified_metadata,
    read_word_index,
)
from service.backend import load_keras
from service.forward import Forward, NumpyNetwork, keras_forward, numpy_network
from service.vectorize import WordIndex, hot_positions, multi_hot, rows_from_positions

logger = logging.getLogger("service.registry")

PARITY_TOLERANCE = 1e-6
"""Largest difference allowed between the NumPy fast path and ``model(x)`` at load time."""

EXPECTED_OUTPUTS = {"imdb": 1, "reuters": 46, "boston": 1}
"""Output width each endpoint's contract relies on."""


class ModelUnavailable(Exception):
    """A request for a model that is not loaded; the route answers 503 with the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model '{name}' is not available: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class ServedModel:
    """One loaded, verified and warmed model with the preprocessing state it needs."""

    name: str
    version: str
    metadata: dict[str, Any]
    forward: Forward
    network: NumpyNetwork | None = None
    word_index: WordIndex | None = None

    @property
    def labels(self) -> list[str]:
        return self.metadata.get("labels", [])

    @property
    def features(self) -> list[dict[str, Any]]:
        return self.metadata.get("features", [])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One forward pass over a batch of model inputs (multi-hot rows or 13 raw features)."""
        return self.forward(np.ascontiguousarray(x, dtype=np.float32))

    def predict_texts(self, texts: list[str]) -> np.ndarray:
        """Raw texts → word ids (the shared ``service.vectorize``) → one forward pass."""
        assert self.word_index is not None, f"{self.name} does not read text"
        encode, num_words = self.word_index.encode, self.word_index.num_words
        # One text's ids at a time: a batch of 1,000 reviews never holds all its token lists.
        return self.predict_positions([hot_positions(encode(text), num_words) for text in texts])

    def predict_sequences(self, sequences: list[list[int]]) -> np.ndarray:
        """Keras word-id sequences → their multi-hot rows → one forward pass over the batch."""
        assert self.word_index is not None, f"{self.name} does not read word ids"
        num_words = self.word_index.num_words
        return self.predict_positions([hot_positions(s, num_words) for s in sequences])

    def predict_positions(self, positions: list[np.ndarray]) -> np.ndarray:
        """Multi-hot rows given by their 1-positions (``hot_positions``) → one forward pass."""
        num_words = self.word_index.num_words  # type: ignore[union-attr]
        if self.network is not None and self.network.reads_positions:
            return self.network.from_positions(positions)
        return self.predict(rows_from_positions(positions, num_words))


@dataclass
class Registry:
    """The models this process serves, and the reason for each one it does not."""

    models: dict[str, ServedModel] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> ServedModel:
        try:
            return self.models[name]
        except KeyError:
            raise ModelUnavailable(name, self.failures.get(name, "not loaded")) from None

    @property
    def ready(self) -> bool:
        return not self.failures and bool(self.models)

    def states(self) -> dict[str, str]:
        return {name: "ready" if name in self.models else self.failures[name] for name in MODEL_NAMES}

    @classmethod
    def load(cls, models_dir: Path) -> Registry:
        """Load each of the three models from ``models_dir``; record, never raise, a failure."""
        registry = cls()
        folder_problem = _folder_problem(models_dir)
        for name in MODEL_NAMES:
            if folder_problem:
                registry.failures[name] = folder_problem
                continue
            try:
                registry.models[name] = load_model(models_dir / name, name)
            except ArtifactError as error:
                registry.failures[name] = str(error)
        for name, reason in registry.failures.items():
            logger.error("model %s not served: %s", name, reason)
        for served in registry.models.values():
            logger.info(
                "model %s version %s ready (%s)",
                served.name,
                served.version,
                "NumPy forward pass" if served.network else "Keras call",
            )
        return registry


def _folder_problem(models_dir: Path) -> str | None:
    try:
        if not models_dir.is_dir():
            return f"MODELS_DIR {models_dir} is not a folder"
        next(models_dir.iterdir(), None)
    except OSError as error:
        return f"MODELS_DIR {models_dir} cannot be read: {error}"
    return None


def load_model(folder: Path, name: str) -> ServedModel:
    """Verify, load (safe mode), pick the forward pass, check it and warm it; or ``ArtifactError``."""
    if not folder.is_dir():
        raise ArtifactError(f"no artifact folder at {folder}")
    metadata = read_verified_metadata(folder)
    if metadata.get("name") != name:
        raise ArtifactError(f"{folder} holds model {metadata.get('name')!r}, expected {name!r}")
    keras = load_keras()
    try:
        model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, TypeError, OSError... for a bad file
        raise ArtifactError(f"{folder / MODEL_FILE} cannot be loaded safely: {error}") from None

    word_index = None
    if "num_words" in metadata.get("preprocessing", {}):
        word_index = WordIndex(read_word_index(folder), metadata["preprocessing"]["num_words"])
    reference = keras_forward(model)
    network = numpy_network(model)
    served = ServedModel(
        name=name,
        version=str(metadata.get("version", "1")),
        metadata=metadata,
        forward=network or reference,
        network=network,
        word_index=word_index,
    )
    _check_and_warm(served, reference, folder)
    return served


def _check_and_warm(served: ServedModel, reference: Forward, folder: Path) -> None:
    """Run the served path on a probe batch and compare it with the Keras model's own call."""
    name = served.name
    labels = served.metadata.get("labels")
    if name == "reuters" and not (
        isinstance(labels, list) and len(labels) == 46 and all(isinstance(x, str) for x in labels)
    ):
        raise ArtifactError(f"{folder} metadata.json needs 'labels': the 46 topic names in order")
    if served.word_index is not None:
        sequences = _probe_sequences(served.word_index.num_words)
        expected = reference(multi_hot(sequences, served.word_index.num_words))
        served_output = served.predict_sequences(sequences)
    else:
        rows = _probe_rows(served.features)
        expected = reference(rows)
        served_output = served.predict(rows)
    if expected.shape != (len(expected), EXPECTED_OUTPUTS[name]):
        raise ArtifactError(
            f"{folder / MODEL_FILE} outputs shape {expected.shape[1:]}, "
            f"the {name} endpoint needs ({EXPECTED_OUTPUTS[name]},)"
        )
    gap = float(np.max(np.abs(served_output - expected)))
    if gap > PARITY_TOLERANCE:
        raise ArtifactError(f"the NumPy forward pass differs from Keras by {gap:.3g} on {name}")


def _probe_sequences(num_words: int) -> list[list[int]]:
    """Deterministic word-id sequences that touch every input weight: a check and a warm-up."""
    rng = np.random.default_rng(0)
    return [[1], list(range(num_words))] + [
        rng.integers(1, num_words, size=size).tolist() for size in (10, 100, 1000)
    ]


def _probe_rows(features: list[dict[str, Any]]) -> np.ndarray:
    """Boston rows at the training minimum, maximum, mean and random points between."""
    if not features:
        raise ArtifactError("metadata.json has neither a word index nor 'features' to read")
    rng = np.random.default_rng(0)
    lows = np.array([f["train_min"] for f in features], dtype=np.float32)
    highs = np.array([f["train_max"] for f in features], dtype=np.float32)
    means = np.array([f["train_mean"] for f in features], dtype=np.float32)
    random_rows = lows + (highs - lows) * rng.random((5, len(features)), dtype=np.float32)
    return np.vstack([lows, highs, means, random_rows]).astype(np.float32)
