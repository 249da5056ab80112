"""Start the real service (``python -m service``, uvicorn, real sockets on 127.0.0.1) for a test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as an orchestrator would, and the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_server(
    log_path: Path,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    command: list[str] | None = None,
) -> Server:
    """Start the service; ``command`` replaces ``python -m service`` (e.g. the Dockerfile's CMD)."""
    port = free_port()
    command = command or [sys.executable, "-m", "service"]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "PORT": str(port)}
    full_env.pop("KERAS_BACKEND", None)  # the service must choose its backend itself
    full_env.update(env or {})
    log = log_path.open("wb")
    process = subprocess.Popen(
        [*command, *(args or [])], cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT
    )
    return Server(process, f"http://127.0.0.1:{full_env['PORT']}", log_path)


def wait_until_ready(server: Server, timeout: float = 60, status: int = 200) -> httpx.Response:
    """Poll ``/readyz`` until it answers ``status`` (or the process dies or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            response = httpx.get(server.url + "/readyz", timeout=2)
            if response.status_code == status:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no /readyz {status} within {timeout} s:\n{server.log()}")


@contextmanager
def running_server(log_path: Path, status: int = 200, **kwargs: object) -> Iterator[Server]:
    """A started server, once ``/readyz`` answers ``status`` (503 for a deliberately broken one)."""
    server = start_server(log_path, **kwargs)  # type: ignore[arg-type]
    try:
        wait_until_ready(server, status=status)
        yield server
    finally:
        server.stop()
