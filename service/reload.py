"""Hot reload: rescan ``MODELS_DIR``, load and verify new versions off the event loop, swap; with
several workers, in every worker.

Triggered by ``SIGHUP``, ``POST /admin/reload`` (``service.api.admin``) and, with
``MODEL_POLL_SECONDS``, by a change on disk (``Poller``). The new ``Registry`` is built in a
worker thread while the old one keeps answering; the swap is one assignment to
``app.state.registry``. A request reads the registry once, so it is answered wholly by the
versions that were current when it arrived, never by a mixture.

With ``WORKERS`` > 1 each worker process has its own registry, and a reload must reach them all.
The supervisor (``service.supervisor``) forwards ``SIGHUP`` to every worker and gives them a run
folder (``WorkerGroup``) holding ``generation``, a counter, and ``workers/<pid>.json``, each
worker's state after its start and after every reload: the generation it read *before* it
rescanned, the versions it serves, its failures. A group reload bumps the generation, sends
``SIGHUP`` to the supervisor and waits until every live worker's state shows that generation;
each has then rescanned the folder as it was when the reload was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from service.api.schemas import ReloadReport
from service.artifacts import ArtifactError, artifact_fingerprint, model_folders, version_folders
from service.memory import release_free_memory
from service.registry import Registry

logger = logging.getLogger("service.reload")

RUN_DIR = "KERAS_SERVING_RUN_DIR"
SUPERVISOR = "KERAS_SERVING_SUPERVISOR"

GROUP_RELOAD_TIMEOUT = 30.0
"""How long a group reload waits for every worker: a reload takes well under a second, but a
worker busy with a batch of 1,000 reviews, or a slow disk, must not turn into a false alarm."""

STATE_POLL_SECONDS = 0.02


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


class SupervisorGone(RuntimeError):
    """The supervisor cannot be signalled, so the other workers would never hear of a reload."""


class WorkersDidNotApply(RuntimeError):
    """A group reload that some live workers had not applied when time ran out."""

    def __init__(self, generation: int, behind: list[int], timeout: float) -> None:
        pids = ", ".join(map(str, behind))
        super().__init__(
            f"reload {generation} was not applied by worker(s) {pids} within {timeout:g} s; "
            f"the others serve the new versions"
        )
        self.behind = behind


@dataclass(frozen=True)
class WorkerState:
    """What one worker wrote after its last reload (or its start)."""

    pid: int
    generation: int
    serving: dict[str, str]
    failures: dict[str, str]


@dataclass(frozen=True)
class WorkerGroup:
    """The workers of one supervisor, seen through the files of its run folder."""

    run_dir: Path
    supervisor: int

    @classmethod
    def from_environment(cls) -> WorkerGroup | None:
        """The group this process belongs to, or None for a single process (the variables are
        set by the supervisor only when ``WORKERS`` > 1)."""
        run_dir, supervisor = os.environ.get(RUN_DIR), os.environ.get(SUPERVISOR)
        if not run_dir or not supervisor:
            return None
        return cls(Path(run_dir), int(supervisor))

    @property
    def states_dir(self) -> Path:
        return self.run_dir / "workers"

    def generation(self) -> int:
        """The latest generation asked for (0 before the first group reload)."""
        try:
            return int((self.run_dir / "generation").read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def next_generation(self) -> int:
        """Bump the generation under an exclusive lock, so two reloads asked for at once on two
        workers get two generations and neither waits on a state the other wrote."""
        with (self.run_dir / "generation.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            generation = self.generation() + 1
            write_atomically(self.run_dir / "generation", str(generation))
        return generation

    def record(self, generation: int, registry: Registry) -> None:
        """Publish this worker's state; readers see the old file or the new one, never half."""
        state = WorkerState(os.getpid(), generation, registry.serving(), dict(registry.failures))
        self.states_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.states_dir / f"{state.pid}.json", json.dumps(state.__dict__))

    def leave(self) -> None:
        """At shutdown: a group reload no longer waits for this worker."""
        with contextlib.suppress(OSError):
            (self.states_dir / f"{os.getpid()}.json").unlink()

    def live_states(self) -> dict[int, WorkerState]:
        """The state of every worker still running; files of dead workers are ignored."""
        states: dict[int, WorkerState] = {}
        for path in self.states_dir.glob("*.json"):
            try:
                state = WorkerState(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # removed by a worker that stopped as we listed it
            if is_alive(state.pid):
                states[state.pid] = state
        return states

    def signal_all(self) -> None:
        """SIGHUP to the supervisor, which forwards it to every worker (this one included)."""
        try:
            os.kill(self.supervisor, signal.SIGHUP)
        except ProcessLookupError:
            raise SupervisorGone(f"the supervisor (pid {self.supervisor}) is gone") from None

    async def applied(self, generation: int, timeout: float) -> dict[int, WorkerState]:
        """Every live worker's state once all show ``generation``, or ``WorkersDidNotApply``."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.live_states()
            behind = sorted(pid for pid, state in states.items() if state.generation < generation)
            if states and not behind:
                return states
            if time.monotonic() >= deadline:
                raise WorkersDidNotApply(generation, behind, timeout)
            await asyncio.sleep(STATE_POLL_SECONDS)


def write_atomically(path: Path, text: str) -> None:
    """Write beside ``path``, then rename over it: a reader never sees a half-written file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def is_alive(pid: int) -> bool:
    """A running process; a zombie (exited, not yet reaped by the supervisor) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust the signal
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


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


Signature = tuple[tuple[str, int, int], ...]
"""A folder's entries as (name, size, mtime_ns): it changes while a copy into it goes on."""


@dataclass(frozen=True)
class DiskScan:
    """What ``MODELS_DIR`` holds, read cheaply: no model file is opened, only stat'ed.

    ``versions`` is None for a model folder that cannot be listed (ambiguous or unreadable),
    whose comparison is then left to its failure's ``signatures``."""

    models: dict[str, dict[int, str] | None]  # name → version → sha256 of metadata.json
    signatures: dict[str, Signature]  # "name" and "name/version" → the folder's entries


def scan_disk(models_dir: Path) -> DiskScan:
    models: dict[str, dict[int, str] | None] = {}
    signatures: dict[str, Signature] = {}
    for name in model_folders(models_dir):
        signatures[name] = folder_signature(models_dir / name)
        try:
            folders = version_folders(models_dir / name)
            models[name] = {version: _fingerprint(folder) for version, folder in folders.items()}
        except (ArtifactError, OSError):
            models[name] = None
            continue
        for version, folder in folders.items():
            signatures[f"{name}/{version}"] = folder_signature(folder)
    return DiskScan(models, signatures)


def _fingerprint(folder: Path) -> str:
    try:
        return artifact_fingerprint(folder)
    except OSError:
        return ""  # no readable metadata.json yet: a load would fail, and say why


def folder_signature(folder: Path) -> Signature:
    try:
        entries = [(e.name, e.stat()) for e in os.scandir(folder)]
    except OSError:
        return ()
    return tuple(sorted((name, stat.st_size, stat.st_mtime_ns) for name, stat in entries))


def what_changed(
    registry: Registry, expected: list[str], disk: DiskScan, seen: dict[str, Signature]
) -> str | None:
    """Why a reload is due, or None when the disk matches what is served and failed.

    New, changed (their metadata.json's sha256) and removed versions are due. A version or model
    folder that failed is retried once its files changed since the last scan, not every scan:
    a half-copied folder loads once the copy completes, a broken one is not reloaded forever."""
    if set(registry.names) != {*expected, *disk.models}:
        return "model folders added or removed"
    for key in registry.failures:
        name, _, version = key.partition("/")
        if name not in disk.models:
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
    """``MODEL_POLL_SECONDS``: rescan ``MODELS_DIR`` every so often and reload on a change.

    With several workers one of them polls (the holder of ``<run>/poller.lock``; another takes
    over if it dies) and its reload is a group reload, so every worker switches together."""

    def __init__(self, app: FastAPI, reloader: Reloader, interval: float) -> None:
        self.app = app
        self.reloader = reloader
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
                logger.exception("poll: rescanning %s failed", self.app.state.settings.models_dir)

    async def poll(self) -> None:
        settings = self.app.state.settings
        try:
            disk = await asyncio.to_thread(scan_disk, settings.models_dir)
        except OSError as error:  # a reload would keep everything serving: nothing to do
            if str(error) != self.problem:
                logger.warning("poll: MODELS_DIR cannot be scanned: %s", error)
            self.problem = str(error)
            return
        self.problem = ""
        reason = what_changed(self.app.state.registry, settings.expected_models, disk, self.seen)
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
        logger.info("poll: this worker rescans %s every %g s", self.app.state.settings.models_dir,
                    self.interval)  # fmt: skip
        return True
