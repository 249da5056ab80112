"""Which model versions this process serves: find them, load, verify and warm each one, swap.

Every folder of ``MODELS_DIR`` named like a model (``imdb``, ``spam-sms``) is a model; each of its
version folders (``1/``, ``2/``...) is loaded by the kind its card declares (``service.kinds``).
Nothing here knows a model by name or a kind's internals.

Loading follows KServe's split of ``load`` from ``predict``: everything that can fail (a missing
folder, a file whose sha256 changed, a Lambda layer that safe mode refuses, a card the kind
cannot serve, a ``model.onnx`` that disagrees with its card's reference rows) fails here, once, with the reason recorded.
A broken model never takes the healthy ones down: it is listed as unavailable, its endpoint
answers 503 with the reason, and ``/readyz`` says which one and why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.contract.artifacts import (
    METADATA_FILE,
    MODEL_FILE,
    RESERVED_NAMES,
    ArtifactError,
    artifact_fingerprint,
    is_version,
    model_folders,
    read_verified_metadata,
    version_folders,
)
from service.kinds import KINDS, Kind, kind_of
from service.serving.rollout import LABELS, ROLLOUT_FILE, Rollout, settle
from service.engine.runtime import (
    ONNX_FILE,
    PARITY_EPSILONS,
    OnnxRuntime,
    Runtime,
    parity_gap,
    reference_feeds,
)

logger = logging.getLogger("service.registry")


class ModelUnavailable(Exception):
    """A request for a model with no version loaded; the route answers 503 with the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model '{name}' is not available: {reason}")
        self.name = name
        self.reason = reason


class UnknownModel(Exception):
    """A request for a model this process has never heard of: 404, listing the ones it has."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name, self.known = name[:40], ", ".join(known) or "none"
        super().__init__(f"no model named {self.name!r}; models: {self.known}")


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


class NoCanary(VersionNotServed):
    """``"version": "canary"`` for a model whose rollout has no canary: 404, saying so."""

    def __init__(self, name: str, rollout: Rollout) -> None:
        Exception.__init__(
            self, f"model '{name}' has no canary (its rollout: stable {rollout.stable}); "
            f"name a version or 'stable'",
        )  # fmt: skip
        self.failed = False


@dataclass(frozen=True)
class ServedModel:
    """One loaded, verified and warmed model version: its card and its kind, ready to answer."""

    name: str
    version: str
    card: dict[str, Any]
    kind: Kind
    fingerprint: str = ""


@dataclass(frozen=True)
class Registry:
    """The model versions this process serves, and the reason for each one it does not.

    Immutable: a reload builds a new ``Registry`` and swaps it in with one assignment
    (``service.lifecycle.reload``). A request reads the registry once and keeps the ``ServedModel`` it
    got, so a whole batch is answered by one version even while a reload swaps them.

    ``names`` are the models known: the expected ones (``EXPECTED_MODELS``) first, then every
    other model folder found. ``failures`` is keyed ``name`` (the model folder itself) or
    ``name/version``.
    """

    models: dict[str, dict[int, ServedModel]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    rollouts: dict[str, Rollout] = field(default_factory=dict)
    """Each served model's rollout in force (``service.serving.rollout``)."""

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The requested version (a number, ``stable`` or ``canary``), or the rollout's stable
        one (without a rollout: the highest served) when ``version`` is None."""
        versions = self.models.get(name)
        if not versions:
            if name not in self.names:
                raise UnknownModel(name, self.names)
            raise ModelUnavailable(name, self.reason(name))
        if version is None or version in LABELS:
            rollout = self.rollout(name)
            version = rollout.label(version or "stable")
            if version is None:
                raise NoCanary(name, rollout)
        served = versions.get(int(version)) if is_version(version) else None
        if served is None:
            reason = self.failures.get(f"{name}/{version}")
            raise VersionNotServed(name, version, [str(v) for v in versions], reason)
        return served

    def rollout(self, name: str) -> Rollout:
        """The rollout in force for a served model (the highest version's when none was read)."""
        return self.rollouts.get(name) or Rollout.of(None, self.models[name], "")

    def route(self, name: str, key: str | None) -> ServedModel:
        """The version for a request that names none: stable or, in its share, the canary."""
        if not self.models.get(name):
            return self.get(name)  # raises the reason
        return self.models[name][int(self.rollout(name).choose(name, key))]

    def shadow(self, served: ServedModel) -> ServedModel | None:
        """The shadow version to run beside ``served``, when it is the stable one."""
        rollout = self.rollouts.get(served.name)
        if rollout is None or rollout.shadow is None or served.version != rollout.stable:
            return None
        return self.models.get(served.name, {}).get(int(rollout.shadow))

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
        """Some model is known and every known one has a version to serve; a failed extra
        version does not make us unready."""
        return bool(self.names) and all(self.models.get(name) for name in self.names)

    def states(self) -> dict[str, str]:
        return {name: "ready" if self.models.get(name) else self.reason(name) for name in self.names}

    def serving(self) -> dict[str, str]:
        """The default version of each model with one (its rollout's stable), as the API names it."""
        return {name: self.rollout(name).stable for name, served in self.models.items() if served}

    @classmethod
    def load(
        cls, models_dir: Path, previous: Registry | None = None, expected: Iterable[str] = ()
    ) -> Registry:
        """Load every version of every model folder (and look for the ``expected`` ones); record,
        never raise, a failure.

        With ``previous`` (a reload), a version whose artifact is unchanged is reused as it is,
        and nothing that serves is dropped because of a failure: a version that fails to load
        keeps its previously loaded copy, and a model folder that cannot be read keeps all its
        versions. Only a version folder that was removed stops being served.
        """
        previous = previous or cls()
        folder_problem, found = _scan(models_dir)
        names = tuple(dict.fromkeys([*expected, *found]))
        models: dict[str, dict[int, ServedModel]] = {}
        failures: dict[str, str] = {}
        for name in names:
            before = previous.models.get(name, {})
            try:
                folders = _version_folders(models_dir, name, folder_problem)
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
        rollouts: dict[str, Rollout] = {}
        for name in names:  # after the versions: a rollout may only name served ones
            before_rollout = previous.rollouts.get(name)
            rollout, problem = settle(models_dir / name, models.get(name, {}), before_rollout)
            if rollout is not None:
                rollouts[name] = rollout
            if problem is not None:
                failures[f"{name}/{ROLLOUT_FILE}"] = problem
        served = {n: versions for n, versions in models.items() if versions}
        registry = cls(served, failures, names, rollouts)
        registry._log(previous)
        return registry

    def _log(self, previous: Registry) -> None:
        for key, reason in self.failures.items():
            logger.error("model %s not served: %s", key, reason)
        for served in (s for versions in self.models.values() for s in versions.values()):
            if previous.models.get(served.name, {}).get(int(served.version)) is not served:
                logger.info(
                    "model %s version %s ready (%s, %s)", served.name, served.version,
                    served.kind.kind, served.kind.runtime.description,
                )  # fmt: skip


def _scan(models_dir: Path) -> tuple[str | None, list[str]]:
    """What is wrong with ``MODELS_DIR`` itself, if anything, and the model folders in it."""
    try:
        if not models_dir.is_dir():
            return f"MODELS_DIR {models_dir} is not a folder", []
        return None, model_folders(models_dir)
    except OSError as error:
        return f"MODELS_DIR {models_dir} cannot be read: {error}", []


def _version_folders(models_dir: Path, name: str, folder_problem: str | None) -> dict[int, Path]:
    if folder_problem:
        raise ArtifactError(folder_problem)
    if name in RESERVED_NAMES:
        raise ArtifactError(f"{models_dir / name}: '{name}' is a path of the service itself; "
                            f"rename the folder")  # fmt: skip
    if not (models_dir / name).is_dir():
        raise ArtifactError(f"no artifact folder at {models_dir / name}")
    folders = version_folders(models_dir / name)
    if not folders:
        raise ArtifactError(f"{models_dir / name} holds no version folder (1/, 2/, ...)")
    return folders


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


def load_model(folder: Path, name: str, version: str = "1", fingerprint: str = "") -> ServedModel:
    """Verify the files, load the network (safe mode), build the card's kind, check the served
    path against Keras and warm it; or ``ArtifactError`` with the reason."""
    if not folder.is_dir():
        raise ArtifactError(f"no artifact folder at {folder}")
    card = read_verified_metadata(folder)
    if card.get("name") != name:
        raise ArtifactError(f"{folder} holds model {card.get('name')!r}, expected {name!r}")
    if str(card.get("version", version)) != version:
        raise ArtifactError(
            f"{folder} is version {version} by its place but its {METADATA_FILE} says "
            f"{card.get('version')!r}: retrain with --version {version} or move the folder"
        )
    kind_name = kind_of(card)
    if kind_name not in KINDS:
        raise ArtifactError(
            f"{folder / METADATA_FILE} declares kind {kind_name!r}; this server serves "
            f"{', '.join(repr(k) for k in KINDS)}"
        )
    kind = KINDS[kind_name].load(name, card, folder, open_runtime(folder, card))
    verify(kind, folder)
    return ServedModel(name=name, version=version, card=card, kind=kind, fingerprint=fingerprint)


def open_runtime(folder: Path, card: dict[str, Any]) -> Runtime:
    """The version's engine: an ONNX Runtime session on ``model.onnx`` that reproduces the card's
    reference rows; without ``model.onnx``, the Keras fallback if Keras is installed; else
    ``ArtifactError`` naming both fixes."""
    path = folder / ONNX_FILE
    if not path.exists():
        return _keras_runtime(folder)
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


def _keras_runtime(folder: Path) -> Runtime:
    """A folder written before ONNX export: Keras (``pip install ".[keras]"``) loads its
    ``model.keras`` in safe mode, or the reason it cannot and the two ways out."""
    try:
        from service.engine.backend import load_keras
        from service.engine.forward import KerasRuntime

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


def verify(kind: Kind, folder: Path) -> None:
    """Run the kind's probe batch through the served path and through the engine's plain call
    (Keras' ``model(x)`` on the fallback): the output width must be the card's and the two must
    agree to float32 precision."""
    expected, served = kind.probe()
    if expected.ndim != 2 or expected.shape[1] != kind.output_width:
        raise ArtifactError(
            f"{folder / MODEL_FILE} outputs shape {expected.shape[1:]}, but its card makes it a "
            f"{kind.kind} with ({kind.output_width},)"
        )
    gap = parity_gap(expected, served)
    if gap is not None:
        raise ArtifactError(
            f"the served forward pass differs from {kind.runtime.description} by {gap:.3g} on "
            f"{kind.name}, more than float32 rounding explains ({PARITY_EPSILONS} epsilons relative)"
        )
