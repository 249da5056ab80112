"""Hot reload: rescan ``MODELS_DIR``, load and verify new versions off the event loop, swap.

Triggered by ``SIGHUP`` or ``POST /admin/reload`` (``service.api.admin``). The new ``Registry`` is
built in a worker thread while the old one keeps answering; the swap is one assignment to
``app.state.registry``. A request reads the registry once, so it is answered wholly by the
versions that were current when it arrived, never by a mixture.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from service.api.schemas import ReloadReport
from service.memory import release_free_memory
from service.registry import Registry

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

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.lock = asyncio.Lock()

    async def reload(self) -> ReloadReport:
        async with self.lock:
            started = time.perf_counter()
            state = self.app.state
            old: Registry = state.registry
            settings = state.settings
            new = await run_in_threadpool(
                Registry.load, settings.models_dir, old, settings.expected_models
            )
            state.registry = new  # the swap: requests from now on read the new registry
            self.app.openapi_schema = None  # /docs lists the models served now
            report = compare(old, new)
            report.seconds = round(time.perf_counter() - started, 3)
            state.metrics.record_registry(new)
            state.metrics.reloads.labels("failed" if new.failures else "ok").inc()
            release_free_memory()
            logger.info(
                "reload: loaded %s, unloaded %s, failed %s; serving %s (%.2f s)",
                report.loaded or "none", report.unloaded or "none", list(report.failed) or "none",
                report.serving, report.seconds,
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
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def _on_sighup(self) -> None:
        logger.info("SIGHUP: reloading models")
        task = asyncio.get_running_loop().create_task(self.reload())
        # Keep a reference until it is done, so the task is not garbage collected mid-reload.
        self.app.state.reload_tasks.add(task)
        task.add_done_callback(self.app.state.reload_tasks.discard)
