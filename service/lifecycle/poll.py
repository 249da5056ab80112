"""Automatic version discovery (``MODEL_POLL_SECONDS``), as TensorFlow Serving's file-system
polling does: a cheap rescan of the model store (``MODELS_DIR``) that asks for a reload when
something changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from service.contract.artifacts import ArtifactError
from service.lifecycle.reload import Reloader
from service.lifecycle.workers import SupervisorGone, WorkersDidNotApply
from service.serving.registry import Registry
from service.serving.rollout import ROLLOUT_FILE, file_digest
from service.serving.store import FolderStore, ModelStore, StoreError

logger = logging.getLogger("service.poll")

Signature = Hashable
"""A model's or version's entries in the store (``ModelStore.signature``): it changes while a
copy into it goes on."""


@dataclass(frozen=True)
class DiskScan:
    """What the store holds, read cheaply: no model file is opened but each card, to hash it.

    ``versions`` is None for a model folder that cannot be listed (ambiguous or unreadable),
    whose comparison is then left to its failure's ``signatures``."""

    models: dict[str, dict[int, str] | None]  # name → version → sha256 of metadata.json
    signatures: dict[str, Signature]  # "name" and "name/version" → the folder's entries
    rollouts: dict[str, str] = field(default_factory=dict)  # name → rollout.json's sha256 ("": none)


def scan_disk(store: ModelStore | Path) -> DiskScan:
    """The store's models, versions, card fingerprints, signatures and rollout files;
    ``StoreError`` (or ``OSError``) when the store cannot be listed."""
    store = store if isinstance(store, ModelStore) else FolderStore(store)
    models: dict[str, dict[int, str] | None] = {}
    signatures: dict[str, Signature] = {}
    rollouts: dict[str, str] = {}
    for name in store.model_names():
        signatures[name] = store.signature(name)
        rollouts[name] = file_digest(store.model_folder(name) / ROLLOUT_FILE)
        try:
            versions = store.versions(name)
            models[name] = {version: _fingerprint(store, name, version) for version in versions}
        except (ArtifactError, OSError):
            models[name] = None
            continue
        for version in versions:
            signatures[f"{name}/{version}"] = store.signature(name, version)
    return DiskScan(models, signatures, rollouts)


def _fingerprint(store: ModelStore, name: str, version: int) -> str:
    try:
        return store.fingerprint(name, version)
    except OSError:
        return ""  # no readable metadata.json yet: a load would fail, and say why


def what_changed(
    registry: Registry, expected: list[str], disk: DiskScan, seen: dict[str, Signature]
) -> str | None:
    """Why a reload is due, or None when the disk matches what is served and failed.

    New, changed (their metadata.json's sha256) and removed versions are due, and so is a
    ``rollout.json`` whose sha256 differs from the one last read (valid or not). A version or model
    folder that failed is retried once its files changed since the last scan, not every scan:
    a half-copied folder loads once the copy completes, a broken one is not reloaded forever."""
    if set(registry.names) != {*expected, *disk.models}:
        return "model folders added or removed"
    for key in registry.failures:
        name, _, version = key.partition("/")
        if name not in disk.models or version == ROLLOUT_FILE:  # rollouts: compared below
            continue  # a model folder still missing
        if version and disk.models[name] is not None and key not in disk.signatures:
            return f"{key} failed and was removed"
        if disk.signatures.get(key) != seen.get(key):
            return f"{key} changed since it failed"
    for name in registry.names:
        on_disk = disk.models.get(name)
        if on_disk is None:  # folder gone or unreadable: a reload keeps its versions
            continue
        served = registry.models.get(name, {})
        rollout = registry.rollouts.get(name)
        if rollout is not None and rollout.digest != disk.rollouts.get(name, ""):
            return f"{name}/{ROLLOUT_FILE} changed"
        for version in served.keys() - on_disk.keys():
            return f"{name}/{version} was removed"
        for version, fingerprint in on_disk.items():
            key = f"{name}/{version}"
            if key in registry.failures:
                continue  # retried above when its files change
            if version not in served:
                return f"{key} is new"
            if served[version].fingerprint != fingerprint:
                return f"{key} changed"
    return None


class Poller:
    """``MODEL_POLL_SECONDS``: rescan the store every so often and reload on a change.

    With several workers one of them polls (the holder of ``<run>/poller.lock``; another takes
    over if it dies) and its reload is a group reload, so every worker switches together."""

    def __init__(self, reloader: Reloader, interval: float) -> None:
        self.reloader = reloader
        self.store = reloader.store
        self.interval = interval
        self.seen: dict[str, Signature] = {}
        self.problem = ""  # why MODELS_DIR could not be scanned, logged once, not every scan
        self.leadership: IO[str] | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.leadership is not None:
            self.leadership.close()  # releases the lock for a worker that keeps running

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if self.leading():
                    await self.poll()
            except (SupervisorGone, WorkersDidNotApply) as error:
                logger.error("poll: %s", error)
            except Exception:  # polling must outlive any one bad scan
                logger.exception("poll: rescanning %s failed", self.store.location)

    async def poll(self) -> None:
        try:
            disk = await asyncio.to_thread(scan_disk, self.store)
        except (StoreError, OSError) as error:  # a reload would keep everything serving
            if str(error) != self.problem:
                logger.warning("poll: MODELS_DIR cannot be scanned: %s", error)
            self.problem = str(error)
            return
        self.problem = ""
        reason = what_changed(self.reloader.plane.registry, self.reloader.expected, disk, self.seen)
        self.seen = disk.signatures  # before the reload: a change during it shows at the next scan
        if reason is not None:
            logger.info("poll: %s; reloading", reason)
            await self.reloader.reload_everywhere()

    def leading(self) -> bool:
        """One poller per group: hold an exclusive lock for as long as the worker lives."""
        group = self.reloader.group
        if group is None or self.leadership is not None:
            return True
        lock = (group.run_dir / "poller.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return False
        self.leadership = lock
        logger.info("poll: this worker rescans %s every %g s", self.store.location,
                    self.interval)  # fmt: skip
        return True
