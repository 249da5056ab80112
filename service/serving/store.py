"""Where model versions are kept: the one interface through which the registry, the poller and
the rollouts reach a model's files.

A store lists models and their versions, says cheaply whether one changed (``fingerprint``,
``signature``), and hands back a *local folder* per version (``fetch``) and per model (for its
``rollout.json``). Everything after that (checking each file's sha256 against the card, loading
the network, reading a kind's side files) reads the local folder, as KServe's storage layer and
MLServer's repository hand their servers a local path.

``FolderStore`` is ``MODELS_DIR`` on a local file system, where the folders already are local.
A store that fetches from elsewhere (object storage) into a local cache is one more subclass:
its ``fetch`` copies a version to the cache, and the registry verifies it there as it does here.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Hashable
from pathlib import Path

from service.contract.artifacts import (
    ArtifactError,
    artifact_fingerprint,
    model_folders,
    version_folders,
)


class StoreError(Exception):
    """The store itself cannot be listed (missing, not a folder, unreadable); the reason."""


class ModelStore(ABC):
    """The models of ``MODELS_DIR``, as the registry and the poller see them."""

    location: str
    """Where the store is, as messages name it."""

    @abstractmethod
    def model_names(self) -> list[str]:
        """Every model in the store by name, sorted; ``StoreError`` with the reason if the store
        cannot be listed."""

    @abstractmethod
    def versions(self, name: str) -> list[int]:
        """One model's versions, lowest first; ``ArtifactError`` naming the problem when it has
        none, cannot be read, or is ambiguous."""

    @abstractmethod
    def fingerprint(self, name: str, version: int) -> str:
        """What changes whenever the version's files do (the sha256 of its card, which lists
        the sha256 of every other file); ``OSError`` when it cannot be read."""

    @abstractmethod
    def fetch(self, name: str, version: int) -> Path:
        """A local folder holding the version's files, ready to be verified and loaded."""

    @abstractmethod
    def model_folder(self, name: str) -> Path:
        """A local folder holding the model's ``rollout.json``, when it has one."""

    @abstractmethod
    def signature(self, name: str, version: int | None = None) -> Hashable:
        """A cheap marker of a model's (or one version's) entries that changes while a copy into
        it is still going on, so the poller retries a failed load only once its files change."""


class FolderStore(ModelStore):
    """``MODELS_DIR`` as a local folder: ``NAME/VERSION/`` (``service.contract.artifacts``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def model_names(self) -> list[str]:
        try:
            if not self.root.is_dir():
                raise StoreError(f"MODELS_DIR {self.root} is not a folder")
            return model_folders(self.root)
        except OSError as error:
            raise StoreError(f"MODELS_DIR {self.root} cannot be read: {error}") from None

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            raise ArtifactError(f"no artifact folder at {folder}")
        versions = list(self._folders(name))
        if not versions:
            raise ArtifactError(f"{folder} holds no version folder (1/, 2/, ...)")
        return versions

    def _folders(self, name: str) -> dict[int, Path]:
        return version_folders(self.root / name)

    def fingerprint(self, name: str, version: int) -> str:
        return artifact_fingerprint(self.fetch(name, version))

    def fetch(self, name: str, version: int) -> Path:
        """The version's own folder (a model folder holding its files directly is version 1)."""
        folder = self.root / name / str(version)
        if version == 1 and not folder.is_dir() and (self.root / name).is_dir():
            return self._folders(name).get(1, folder)
        return folder

    def model_folder(self, name: str) -> Path:
        return self.root / name

    def signature(self, name: str, version: int | None = None) -> Hashable:
        """The folder's entries as (name, size, mtime_ns)."""
        folder = self.root / name if version is None else self.fetch(name, version)
        try:
            entries = [(e.name, e.stat()) for e in os.scandir(folder)]
        except OSError:
            return ()
        return tuple(sorted((entry, stat.st_size, stat.st_mtime_ns) for entry, stat in entries))
