"""Load every model version once (at start-up, and again on a reload), check it, warm it, and
hand it to the routes.

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
    METADATA_FILE,
    MODEL_FILE,
    MODEL_NAMES,
    ArtifactError,
    artifact_fingerprint,
    is_version,
    read_verified_metadata,
    read_word_index,
    version_folders,
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
    """A request for a model with no version loaded; the route answers 503 with the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model '{name}' is not available: {reason}")
        self.name = name
        self.reason = reason


class VersionNotServed(Exception):
    """A request for a version this process does not serve; the route answers 404 (or 503 when
    the version is on disk but failed to load, with the reason)."""

    def __init__(self, name: str, version: str, served: list[str], reason: str | None) -> None:
        versions = ", ".join(served) or "none"
        because = f"it failed to load: {reason}" if reason else "there is no such version"
        super().__init__(
            f"version '{version[:20]}' of model '{name}' is not served ({because}); "
            f"served versions: {versions}"
        )
        self.failed = reason is not None


@dataclass(frozen=True)
class ServedModel:
    """One loaded, verified and warmed model version with the preprocessing state it needs."""

    name: str
    version: str
    metadata: dict[str, Any]
    forward: Forward
    network: NumpyNetwork | None = None
    word_index: WordIndex | None = None
    fingerprint: str = ""

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


@dataclass(frozen=True)
class Registry:
    """The model versions this process serves, and the reason for each one it does not.

    Immutable: a reload builds a new ``Registry`` and swaps it in with one assignment
    (``service.reload``). A request reads the registry once and keeps the ``ServedModel`` it
    got, so a whole batch is answered by one version even while a reload swaps them.

    ``failures`` is keyed ``name`` (the model folder itself) or ``name/version``.
    """

    models: dict[str, dict[int, ServedModel]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The requested version, or the highest served one when ``version`` is None."""
        versions = self.models.get(name)
        if not versions:
            raise ModelUnavailable(name, self.reason(name))
        if version is None:
            return versions[max(versions)]
        served = versions.get(int(version)) if is_version(version) else None
        if served is None:
            reason = self.failures.get(f"{name}/{version}")
            raise VersionNotServed(name, version, [str(v) for v in versions], reason)
        return served

    def versions(self, name: str) -> list[ServedModel]:
        """The served versions of one model, lowest first."""
        return list(self.models.get(name, {}).values())

    def problems(self, name: str) -> list[str]:
        """The failures of one model: its folder's, then its versions' (keys ``name[/version]``)."""
        return [reason for key, reason in self.failures.items() if key.split("/")[0] == name]

    def reason(self, name: str) -> str:
        """Why a model has no served version, from its failures (or "not loaded")."""
        return "; ".join(self.problems(name)) or "not loaded"

    @property
    def ready(self) -> bool:
        """Every model has a version to serve; a failed extra version does not make us unready."""
        return all(self.models.get(name) for name in MODEL_NAMES)

    def states(self) -> dict[str, str]:
        return {name: "ready" if self.models.get(name) else self.reason(name) for name in MODEL_NAMES}

    def serving(self) -> dict[str, str]:
        """The default (highest) version of each model with one, as the API names it."""
        return {name: str(max(versions)) for name, versions in self.models.items() if versions}

    @classmethod
    def load(cls, models_dir: Path, previous: Registry | None = None) -> Registry:
        """Load every version of the three models; record, never raise, a failure.

        With ``previous`` (a reload), a version whose artifact is unchanged is reused as it is,
        and nothing that serves is dropped because of a failure: a version that fails to load
        keeps its previously loaded copy, and a model folder that cannot be read keeps all its
        versions. Only a version folder that was removed stops being served.
        """
        previous = previous or cls()
        models: dict[str, dict[int, ServedModel]] = {}
        failures: dict[str, str] = {}
        folder_problem = _folder_problem(models_dir)
        for name in MODEL_NAMES:
            before = previous.models.get(name, {})
            try:
                if folder_problem:
                    raise ArtifactError(folder_problem)
                if not (models_dir / name).is_dir():
                    raise ArtifactError(f"no artifact folder at {models_dir / name}")
                folders = version_folders(models_dir / name)
                if not folders:
                    raise ArtifactError(f"{models_dir / name} holds no version folder (1/, 2/, ...)")
            except (ArtifactError, OSError) as error:
                failures[name] = _kept(str(error), bool(before))
                models[name] = dict(before)
                continue
            models[name] = {}
            for version, folder in folders.items():
                try:
                    models[name][version] = _load_or_reuse(folder, name, version, before.get(version))
                except ArtifactError as error:
                    failures[f"{name}/{version}"] = _kept(str(error), version in before)
                    if version in before:
                        models[name][version] = before[version]
        registry = cls({name: versions for name, versions in models.items() if versions}, failures)
        registry._log(previous)
        return registry

    def _log(self, previous: Registry) -> None:
        for key, reason in self.failures.items():
            logger.error("model %s not served: %s", key, reason)
        for served in (s for versions in self.models.values() for s in versions.values()):
            if previous.models.get(served.name, {}).get(int(served.version)) is not served:
                logger.info(
                    "model %s version %s ready (%s)", served.name, served.version,
                    "NumPy forward pass" if served.network else "Keras call",
                )  # fmt: skip


def _kept(reason: str, kept: bool) -> str:
    return f"{reason} (still serving the copy loaded before)" if kept else reason


def _load_or_reuse(folder: Path, name: str, version: int, loaded: ServedModel | None) -> ServedModel:
    """The loaded copy when its artifact is unchanged on disk, else a fresh, verified load."""
    try:
        fingerprint = artifact_fingerprint(folder)
    except OSError as error:
        raise ArtifactError(f"{folder / METADATA_FILE} cannot be read: {error}") from None
    if loaded is not None and loaded.fingerprint == fingerprint:
        return loaded
    return load_model(folder, name, str(version), fingerprint)


def _folder_problem(models_dir: Path) -> str | None:
    try:
        if not models_dir.is_dir():
            return f"MODELS_DIR {models_dir} is not a folder"
        next(models_dir.iterdir(), None)
    except OSError as error:
        return f"MODELS_DIR {models_dir} cannot be read: {error}"
    return None


def load_model(folder: Path, name: str, version: str = "1", fingerprint: str = "") -> ServedModel:
    """Verify, load (safe mode), pick the forward pass, check it and warm it; or ``ArtifactError``."""
    if not folder.is_dir():
        raise ArtifactError(f"no artifact folder at {folder}")
    metadata = read_verified_metadata(folder)
    if metadata.get("name") != name:
        raise ArtifactError(f"{folder} holds model {metadata.get('name')!r}, expected {name!r}")
    if str(metadata.get("version", version)) != version:
        raise ArtifactError(
            f"{folder} is version {version} by its place but its {METADATA_FILE} says "
            f"{metadata.get('version')!r}: retrain with --version {version} or move the folder"
        )
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
        version=version,
        metadata=metadata,
        forward=network or reference,
        network=network,
        word_index=word_index,
        fingerprint=fingerprint,
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
