"""Several worker processes, one truth: the run folder they share, and the group reload.

With ``WORKERS`` > 1 each worker process has its own registry, and a reload must reach them all.
The supervisor (``service.lifecycle.supervisor``) forwards ``SIGHUP`` to every worker and gives them a run
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
import time
from dataclasses import dataclass
from pathlib import Path

from service.serving.registry import Registry

logger = logging.getLogger("service.workers")

RUN_DIR = "KERAS_SERVING_RUN_DIR"
SUPERVISOR = "KERAS_SERVING_SUPERVISOR"

GROUP_RELOAD_TIMEOUT = 30.0
"""How long a group reload waits for every worker: a reload takes well under a second, but a
worker busy with a batch of 1,000 reviews, or a slow disk, must not turn into a false alarm."""

STATE_POLL_SECONDS = 0.02


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

    def worker_pids(self) -> set[int]:
        """The supervisor's worker processes, started or still starting (a starting worker has
        no state yet, and must not be forgotten by a reload asked for meanwhile). Read from
        ``/proc``; empty where there is none, and then the state files alone count."""
        try:
            children = Path(f"/proc/{self.supervisor}/task/{self.supervisor}/children").read_text()
        except OSError:
            return set()
        return {int(pid) for pid in children.split() if _is_spawned_worker(int(pid))}

    async def applied(self, generation: int, timeout: float) -> dict[int, WorkerState]:
        """Every live worker's state once all show ``generation``, or ``WorkersDidNotApply``."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.live_states()
            expected = set(states) | {pid for pid in self.worker_pids() if is_alive(pid)}
            behind = sorted(
                pid for pid in expected if pid not in states or states[pid].generation < generation
            )
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


def _is_spawned_worker(pid: int) -> bool:
    """A worker started by multiprocessing's spawn (not its resource tracker, also a child)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in command and b"resource_tracker" not in command
