"""Hot reload: rescan ``MODELS_DIR``, load and verify new versions off the event loop, swap; with
several workers, in every worker (``service.lifecycle.workers``).

Triggered by ``SIGHUP``, ``POST /admin/reload`` (``service.api.admin``) and, with
``MODEL_POLL_SECONDS``, by a change on disk (``service.lifecycle.poll``). The new ``Registry`` is built in
a worker thread while the old one keeps answering; the swap is one assignment to
``app.state.registry``. A request reads the registry once, so it is answered wholly by the
versions that were current when it arrived, never by a mixture.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from service.api.schemas import ReloadReport
from service.lifecycle.memory import release_free_memory
from service.serving.registry import Registry
from service.lifecycle.workers import GROUP_RELOAD_TIMEOUT, WorkerGroup

logger = logging.getLogger("service.reload")


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
    """One reload at a time per process; a reload asked for during another waits for it."""

    def __init__(
        self, app: FastAPI, group: WorkerGroup | None = None, timeout: float = GROUP_RELOAD_TIMEOUT
    ) -> None:
        self.app = app
        self.lock = asyncio.Lock()
        self.group = group
        self.timeout = timeout

    def generation(self) -> int:
        """Read before a (re)scan: the state written after it says the scan saw at least this."""
        return self.group.generation() if self.group else 0

    def record(self, generation: int, registry: Registry) -> None:
        if self.group:
            self.group.record(generation, registry)

    def leave(self) -> None:
        if self.group:
            self.group.leave()

    async def reload(self) -> ReloadReport:
        """Reload this process only (what a SIGHUP does in each worker)."""
        async with self.lock:
            started = time.perf_counter()
            generation = self.generation()
            state = self.app.state
            old: Registry = state.registry
            settings = state.settings
            new = await run_in_threadpool(
                Registry.load, settings.models_dir, old, settings.expected_models
            )
            state.registry = new  # the swap: requests from now on read the new registry
            self.app.openapi_schema = None  # /docs lists the models served now
            self.record(generation, new)
            report = compare(old, new)
            report.seconds = round(time.perf_counter() - started, 3)
            report.workers = {str(os.getpid()): report.serving}
            state.metrics.record_registry(new)
            state.metrics.reloads.labels("failed" if new.failures else "ok").inc()
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
        old: Registry = self.app.state.registry
        generation = self.group.next_generation()
        self.group.signal_all()
        states = await self.group.applied(generation, self.timeout)
        report = compare(old, self.app.state.registry)
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
        self.app.state.reload_tasks.add(task)
        task.add_done_callback(self.app.state.reload_tasks.discard)
