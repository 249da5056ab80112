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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.contract.artifacts import (
    METADATA_FILE,
    MODEL_FILE,
    RESERVED_NAMES,
    ArtifactError,
    is_version,
    read_verified_metadata,
)
from service.engine import open_runtime
from service.engine.runtime import PARITY_EPSILONS, parity_gap
from service.kinds import Kind, kind_class, kind_names, kind_of
from service.serving.errors import ModelUnavailable, NoCanary, UnknownModel, VersionNotServed
from service.serving.rollout import LABELS, ROLLOUT_FILE, Rollout, settle
from service.serving.store import FolderStore, ModelStore, StoreError

logger = logging.getLogger("service.registry")


@dataclass(frozen=True)
class ServedModel:
    """One loaded, verified and warmed model version: its card and its kind, ready to answer."""

    name: str
    version: str
    card: dict[str, Any]
    kind: Kind
    fingerprint: str = ""


@dataclass(frozen=True)
class Resolved:
    """The version that answers one request, and the shadow version to run beside it, if any."""

    served: ServedModel
    shadow: ServedModel | None = None


@dataclass(frozen=True)
class ServedVersions:
    """One model as a request finds it: its served versions and the rollout in force."""

    name: str
    versions: Mapping[int, ServedModel]
    rollout: Rollout
    failures: Mapping[str, str]

    @property
    def default(self) -> ServedModel:
        """The rollout's stable version: what answers a request that names none, but for the
        canary's share."""
        return self.versions[int(self.rollout.stable)]

    def get(self, version: str | None = None) -> ServedModel:
        """A version by number or by the rollout's label (``stable``, ``canary``); None: stable."""
        if version is None or version in LABELS:
            label = self.rollout.label(version or "stable")
            if label is None:
                raise NoCanary(self.name, self.rollout.stable)
            version = label
        served = self.versions.get(int(version)) if is_version(version) else None
        if served is None:
            reason = self.failures.get(f"{self.name}/{version}")
            raise VersionNotServed(self.name, version, [str(v) for v in self.versions], reason)
        return served

    def resolve(self, version: str | None, key: str | None = None) -> Resolved:
        """The version a request asked for (none named: the rollout's choice for the routing
        ``key``, stable or the canary), and the shadow to run when stable answers a request that
        named no version or ``stable``."""
        if version is None:
            served = self.versions[int(self.rollout.choose(self.name, key))]
        else:
            served = self.get(version)
        rollout, shadow = self.rollout, None
        if rollout.shadow and version in (None, "stable") and served.version == rollout.stable:
            shadow = self.versions.get(int(rollout.shadow))
        return Resolved(served, shadow)


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
    served: dict[str, ServedVersions] = field(init=False, repr=False, compare=False)
    """Each served model as requests find it, built once."""

    def __post_init__(self) -> None:
        served = {name: ServedVersions(name, versions, self.rollout(name), self.failures)
                  for name, versions in self.models.items() if versions}  # fmt: skip
        object.__setattr__(self, "served", served)

    def model(self, name: str) -> ServedVersions:
        """One model's served versions and rollout: the one lookup a request makes."""
        model = self.served.get(name)
        if model is None:
            if name not in self.names:
                raise UnknownModel(name, self.names)
            raise ModelUnavailable(name, self.reason(name))
        return model

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The requested version (a number, ``stable`` or ``canary``), or the rollout's stable
        one (without a rollout: the highest served) when ``version`` is None."""
        return self.model(name).get(version)

    def rollout(self, name: str) -> Rollout:
        """The rollout in force for a served model (the highest version's when none was read)."""
        return self.rollouts.get(name) or Rollout.of(None, self.models[name], "")

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
        return {name: model.rollout.stable for name, model in self.served.items()}

    @classmethod
    def load(
        cls, store: ModelStore | Path, previous: Registry | None = None, expected: Iterable[str] = ()
    ) -> Registry:
        """Load every version of every model of the store (a folder: ``MODELS_DIR``), and look
        for the ``expected`` ones; record, never raise, a failure.

        With ``previous`` (a reload), a version whose artifact is unchanged is reused as it is,
        and nothing that serves is dropped because of a failure: a version that fails to load
        keeps its previously loaded copy, and a model folder that cannot be read keeps all its
        versions. Only a version folder that was removed stops being served.
        """
        store = store if isinstance(store, ModelStore) else FolderStore(store)
        previous = previous or cls()
        store_problem, found = _scan(store)
        names = tuple(dict.fromkeys([*expected, *found]))
        models: dict[str, dict[int, ServedModel]] = {}
        failures: dict[str, str] = {}
        for name in names:
            before = previous.models.get(name, {})
            try:
                versions = _versions(store, name, store_problem)
            except (ArtifactError, OSError) as error:
                failures[name] = _kept(str(error), bool(before))
                models[name] = dict(before)
                continue
            models[name] = {}
            for version in versions:
                try:
                    models[name][version] = _load_or_reuse(store, name, version, before.get(version))
                except ArtifactError as error:
                    failures[f"{name}/{version}"] = _kept(str(error), version in before)
                    if version in before:
                        models[name][version] = before[version]
        rollouts: dict[str, Rollout] = {}
        for name in names:  # after the versions: a rollout may only name served ones
            before_rollout = previous.rollouts.get(name)
            rollout, problem = settle(store.model_folder(name), models.get(name, {}), before_rollout)
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


def _scan(store: ModelStore) -> tuple[str | None, list[str]]:
    """What is wrong with the store itself, if anything, and the models in it."""
    try:
        return None, store.model_names()
    except StoreError as error:
        return str(error), []


def _versions(store: ModelStore, name: str, store_problem: str | None) -> list[int]:
    if store_problem:
        raise ArtifactError(store_problem)
    if name in RESERVED_NAMES:
        raise ArtifactError(f"{store.model_folder(name)}: '{name}' is a path of the service "
                            f"itself; rename the folder")  # fmt: skip
    return store.versions(name)


def _kept(reason: str, kept: bool) -> str:
    return f"{reason} (still serving the copy loaded before)" if kept else reason


def _load_or_reuse(
    store: ModelStore, name: str, version: int, loaded: ServedModel | None
) -> ServedModel:
    """The loaded copy when its artifact is unchanged in the store, else a fresh, verified load."""
    try:
        fingerprint = store.fingerprint(name, version)
    except OSError as error:
        folder = store.fetch(name, version)
        raise ArtifactError(f"{folder / METADATA_FILE} cannot be read: {error}") from None
    if loaded is not None and loaded.fingerprint == fingerprint:
        return loaded
    return load_model(store.fetch(name, version), name, str(version), fingerprint)


def load_model(folder: Path, name: str, version: str = "1", fingerprint: str = "") -> ServedModel:
    """Verify the files, open the engine, build the card's kind, check the served path against
    the engine's plain call and warm it; or ``ArtifactError`` with the reason."""
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
    kind_type = kind_class(card)
    if kind_type is None:
        raise ArtifactError(
            f"{folder / METADATA_FILE} declares kind {kind_of(card)!r}; this server serves "
            f"{', '.join(repr(k) for k in kind_names())}"
        )
    kind = kind_type.load(name, card, folder, open_runtime(folder, card))
    verify(kind, folder)
    return ServedModel(name=name, version=version, card=card, kind=kind, fingerprint=fingerprint)


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
