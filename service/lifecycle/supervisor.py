"""The parent process of ``WORKERS > 1``: uvicorn's ``Multiprocess`` with our workers and signals.

What changes from uvicorn's supervisor:

- SIGHUP is forwarded to every worker, which reloads its models in place
  (``service.lifecycle.reload``); uvicorn's own SIGHUP would restart every worker, reloading all models
  from scratch and dropping their connections.
- Workers run ``service.lifecycle.server.DrainingServer``, so a stop loses no request.
- A worker that died is reported to ``prometheus_client`` (``mark_process_dead``), so its live
  gauges leave the multiprocess metrics.
- On SIGTERM the parent closes its copy of the listening socket before stopping the workers, so
  once they have drained the kernel's queue and closed theirs, new connections are refused.
- A worker that fails to start (``STARTUP_FAILURE``) stops the parent, which then exits non-zero.

Kept from uvicorn: the health pings, the replacement of dead or hung workers, SIGTTIN/SIGTTOU.
uvicorn internals relied on: ``Process.server`` (the worker's server, built in the child),
``Process.target`` (runs in the child), ``Multiprocess.processes``, ``.sockets``,
``.should_exit``, ``.processes_num`` and the ``handle_<signal>`` methods.
"""

from __future__ import annotations

import logging
import os
import signal
from socket import socket

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from service.lifecycle.server import DrainingServer, exit_zero
from service.lifecycle.workers import WorkerGroup

logger = logging.getLogger("uvicorn.error")


class Worker(Process):
    """A uvicorn worker process serving with ``DrainingServer``."""

    @property
    def server(self) -> DrainingServer:  # type: ignore[override]
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server  # type: ignore[return-value]

    def start(self) -> None:
        """Start the child with SIGHUP blocked (inherited through fork and exec): a reload
        forwarded while it starts stays pending until its server can take it, instead of
        killing it (SIGHUP's default action)."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def target(self, sockets: list[socket] | None = None) -> None:  # pragma: no cover (child)
        # After a drained stop uvicorn re-raises SIGTERM with the handler it found: exit 0.
        signal.signal(signal.SIGTERM, exit_zero)
        super().target(sockets)


class Supervisor(Multiprocess):
    """uvicorn's multi-process supervisor, with ``Worker``s and SIGHUP forwarded to them."""

    def __init__(self, config: Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self.failed_to_start = False  # a worker exited with STARTUP_FAILURE

    def spawn(self) -> Worker:
        worker = Worker(self.config, self.sockets)
        worker.start()
        return worker

    def init_processes(self) -> None:
        self.processes.extend(self.spawn() for _ in range(self.processes_num))

    def run(self) -> None:
        super().run()
        for process in self.processes:
            mark_process_dead(process.pid)

    def terminate_all(self) -> None:
        for sock in self.sockets:  # the workers keep theirs open until they have drained
            sock.close()
        super().terminate_all()

    def keep_subprocess_alive(self) -> None:
        """uvicorn's, plus ``mark_process_dead`` and ``failed_to_start``."""
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung, or already dead
            process.join()
            mark_process_dead(process.pid)
            if process.exitcode == STARTUP_FAILURE:
                # It would fail the same way on every restart: stop (uvicorn discussion 2440).
                logger.error(
                    f"Child process [{process.pid}] failed to start, stopping the parent process."
                )
                self.failed_to_start = True
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died (exit code {process.exitcode})")
            self.processes[index] = self.spawn()

    def handle_hup(self) -> None:
        if self.should_exit.is_set():
            return
        logger.info("Received SIGHUP, forwarding it to the workers: each reloads its models.")
        group = WorkerGroup.from_environment()
        if group is not None:  # a worker still loading sees it, and loads again before serving
            group.next_generation()
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                try:
                    os.kill(process.pid, signal.SIGHUP)
                except ProcessLookupError:  # died meanwhile; keep_subprocess_alive replaces it
                    pass

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self.spawn())

    def handle_ttou(self) -> None:
        pids = {process.pid for process in self.processes}
        super().handle_ttou()
        for pid in pids - {process.pid for process in self.processes}:
            mark_process_dead(pid)


def mark_process_dead(pid: int | None) -> None:
    """Tell prometheus_client's multiprocess mode a worker is gone (its live gauges go)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if pid is None or not directory:
        return
    from prometheus_client import multiprocess

    try:
        multiprocess.mark_process_dead(pid, directory)
    except OSError as error:  # pragma: no cover (the directory was removed under us)
        logger.warning("mark_process_dead(%d): %s", pid, error)
