"""``python -m service``: serve the models with uvicorn, configured by ``Settings``.

Every setting comes from its environment variable or the matching command-line flag
(``python -m service --help``); flags win.
"""

from __future__ import annotations

import os

# One BLAS thread per process, set before NumPy loads: the networks' products are far too small
# to gain from threads, and under concurrent requests the threads only contend for the cores.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

import uvicorn  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from uvicorn.config import STARTUP_FAILURE  # noqa: E402

from service.app import create_app  # noqa: E402
from service.observe.logs import logging_config  # noqa: E402
from service.lifecycle.server import DrainingServer, exit_zero  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.lifecycle.supervisor import Supervisor  # noqa: E402

# The multi-worker contract with the app (set by the supervisor before any worker starts):
RUN_DIR = "KERAS_SERVING_RUN_DIR"  # this run's folder: metrics/ (Prometheus), workers/ (status)
SUPERVISOR = "KERAS_SERVING_SUPERVISOR"  # the supervisor's pid: SIGHUP it to reload every worker
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode; a user's wins


def main() -> None:
    settings = Settings(_cli_parse_args=True)
    # Workers re-read settings from the environment: hand them the flags too.
    os.environ.update(
        {name.upper(): _env_value(value) for name, value in settings if value is not None}
    )
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_config": logging_config(settings.log_level),
        "access_log": False,  # service.api.middleware writes one structured line per request
        "server_header": False,
        "timeout_graceful_shutdown": settings.graceful_timeout,
        "loop": settings.event_loop.value,
    }
    # The server drains on SIGTERM (service.lifecycle.server), then re-raises the signal with the handler
    # it found at start; make that handler a clean exit, so a drained stop exits 0.
    signal.signal(signal.SIGTERM, exit_zero)
    if settings.workers > 1:
        sys.exit(serve_workers(settings.workers, common))
    for variable in (RUN_DIR, SUPERVISOR):  # one process: no run directory, no supervisor
        os.environ.pop(variable, None)
    server = DrainingServer(uvicorn.Config(create_app(settings), **common))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve_workers(workers: int, common: dict[str, Any]) -> int:
    """Run ``workers`` worker processes under ``service.lifecycle.supervisor.Supervisor``; the exit code.

    A fresh run directory (under /tmp, writable in the container) holds what the workers
    share: ``metrics/`` (unless PROMETHEUS_MULTIPROC_DIR is set already) and ``workers/``. It
    is handed to them through the environment, and removed at exit.
    """
    run_dir = tempfile.mkdtemp(prefix="keras-serving-")
    try:
        for folder in ("metrics", "workers"):
            os.mkdir(os.path.join(run_dir, folder))
        if not os.environ.get(METRICS_DIR):
            os.environ[METRICS_DIR] = os.path.join(run_dir, "metrics")
        os.environ[RUN_DIR] = run_dir
        os.environ[SUPERVISOR] = str(os.getpid())
        config = uvicorn.Config("service.app:create_app", factory=True, workers=workers, **common)
        supervisor = Supervisor(config, sockets=[listening_socket(config)])
        supervisor.run()
        return STARTUP_FAILURE if supervisor.failed_to_start else 0
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """uvicorn's shared socket for the workers, with TCP_NODELAY, which Linux gives every
    connection accepted from it. asyncio sets it only on sockets whose ``proto`` is TCP, and
    ``bind_socket`` makes one with proto 0: without this each answer's body waited for the
    client's delayed ACK (p50 44 ms at 16 connections with 2 workers, measured)."""
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(getattr(value, "value", value))


if __name__ == "__main__":
    main()
