"""Hot reload: rescan ``MODELS_DIR``, load and verify new versions off the event loop, swap; with
several workers, in every worker (``service.lifecycle.workers``).

Triggered by ``SIGHUP``, ``POST /admin/reload`` (``service.api.admin``) and, with
``MODEL_POLL_SECONDS``, by a change in the store (``service.lifecycle.poll``). The new
``Registry`` is built in a worker thread while the old one keeps answering; the swap is one
assignment to the data plane's ``registry``. A request reads the registry once, so it is answered
wholly by the versions that were current when it arrived, never by a mixture.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from service.lifecycle.memory import release_free_memory
from service.lifecycle.workers import GROUP_RELOAD_TIMEOUT, WorkerGroup
from service.serving.dataplane import DataPlane
from service.serving.registry import Registry
from service.serving.store import ModelStore

logger = logging.getLogger("service.reload")


class ReloadReport(BaseModel):
    """What one reload changed. Versions are named ``model/version``."""

    loaded: list[str] = Field(default_factory=list, description="Versions loaded, verified and now served.")
    unloaded: list[str] = Field(default_factory=list, description="Versions whose folder is gone.")
    unchanged: list[str] = Field(default_factory=list, description="Versions reused as they were.")
    failed: dict[str, str] = Field(
        default_factory=dict,
        description="What failed to load and why; a version loaded before keeps serving.",
    )
    serving: dict[str, str] = Field(
        default_factory=dict, description="Each model's default version after the reload."
    )
    seconds: float = Field(0.0, description="Time the reload took.")
    workers: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Every worker process (by pid) that applied this reload, with each model's "
        "default version it serves now. With WORKERS > 1 the answer waits until every live worker "
        "has rescanned MODELS_DIR; one entry with one process.",
    )


def compare(old: Registry, new: Registry) -> ReloadReport:
    """The versions a swap from ``old`` to ``new`` brings in, takes out and keeps."""
    report = ReloadReport(failed=dict(new.failures), serving=new.serving())
    for name in dict.fromkeys([*old.names, *new.names]):
        before, after = old.models.get(name, {}), new.models.get(name, {})
        for version in sorted(before.keys() | after.keys()):
            key = f"{name}/{version}"
            if version not in after:
                report.unloaded.append(key)
            elif before.get(version) is after[version]:
                report.unchanged.append(key)
            else:
                report.loaded.append(key)
    return report


class Reloader:
    """Loads the store into the data plane: at start-up, then at each reload, one at a time per
    process (a reload asked for during another waits for it). ``swapped`` is called after each
    swap (the app rebuilds its /docs from the new registry)."""

    def __init__(
        self, plane: DataPlane, store: ModelStore, expected: list[str],
        group: WorkerGroup | None = None, swapped: Callable[[Registry], None] = lambda _: None,
        timeout: float = GROUP_RELOAD_TIMEOUT,
    ) -> None:  # fmt: skip
        self.plane = plane
        self.store = store
        self.expected = expected
        self.lock = asyncio.Lock()
        self.group = group
        self.swapped = swapped
        self.timeout = timeout
        self.tasks: set[asyncio.Task[ReloadReport]] = set()

    def generation(self) -> int:
        """Read before a (re)scan: the state written after it says the scan saw at least this."""
        return self.group.generation() if self.group else 0

    def record(self, generation: int, registry: Registry) -> None:
        if self.group:
            self.group.record(generation, registry)

    def first_load(self) -> Registry:
        """Start-up: load the store into the data plane. A reload asked for meanwhile (another
        worker's) is applied before this worker serves, so it serves nothing older than the rest."""
        generation = self.generation()  # read before the scan, as a reload does
        registry = Registry.load(self.store, expected=self.expected)
        while self.generation() != generation:
            generation = self.generation()
            registry = Registry.load(self.store, registry, self.expected)
        self.swap(registry, generation)
        return registry

    def swap(self, registry: Registry, generation: int) -> None:
        """Requests from now on read ``registry``; the gauges and the group hear of it."""
        self.plane.registry = registry
        self.plane.metrics.record_serving(registry.names, registry.serving(), len(registry.failures))
        self.record(generation, registry)
        self.swapped(registry)

    def leave(self) -> None:
        if self.group:
            self.group.leave()

    async def reload(self) -> ReloadReport:
        """Reload this process only (what a SIGHUP does in each worker)."""
        async with self.lock:
            started = time.perf_counter()
            generation = self.generation()
            old = self.plane.registry
            new = await run_in_threadpool(Registry.load, self.store, old, self.expected)
            self.swap(new, generation)
            report = compare(old, new)
            report.seconds = round(time.perf_counter() - started, 3)
            report.workers = {str(os.getpid()): report.serving}
            self.plane.metrics.reloads.labels("failed" if new.failures else "ok").inc()
            release_free_memory()
            logger.info(
                "reload: loaded %s, unloaded %s, failed %s; serving %s (%.2f s)",
                report.loaded or "none", report.unloaded or "none", list(report.failed) or "none",
                report.serving, report.seconds,
            )  # fmt: skip
            return report

    async def reload_everywhere(self) -> ReloadReport:
        """``POST /admin/reload`` and the poller: with one process, ``reload``; with several
        workers, a group reload that every live worker has applied when it returns. The report
        says what changed in this worker and what every worker serves."""
        if self.group is None:
            return await self.reload()
        started = time.perf_counter()
        old = self.plane.registry
        generation = self.group.next_generation()
        self.group.signal_all()
        states = await self.group.applied(generation, self.timeout)
        report = compare(old, self.plane.registry)
        report.seconds = round(time.perf_counter() - started, 3)
        report.workers = {str(pid): states[pid].serving for pid in sorted(states)}
        logger.info(
            "group reload %d applied by workers %s (%.2f s)", generation, list(report.workers),
            report.seconds,
        )  # fmt: skip
        return report

    def install_sighup(self) -> None:
        """``kill -HUP <pid>`` reloads. Only where a signal can be caught: the main thread of a
        process on a POSIX system (not in an in-process test client's thread)."""
        if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "SIGHUP"
        ):
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def uninstall_sighup(self) -> None:
        """After the lifespan a SIGHUP (a reload forwarded to a stopping worker) is ignored: the
        default action would kill the process mid-drain with a non-zero exit."""
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _on_sighup(self) -> None:
        logger.info("SIGHUP: reloading models")
        task = asyncio.get_running_loop().create_task(self.reload())
        # Keep a reference until it is done, so the task is not garbage collected mid-reload.
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
