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

import signal  # noqa: E402
import sys  # noqa: E402

import uvicorn  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from service.app import create_app  # noqa: E402
from service.logs import logging_config  # noqa: E402
from service.settings import Settings  # noqa: E402


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
        "access_log": False,  # service.middleware writes one structured line per request
        "server_header": False,
        "timeout_graceful_shutdown": settings.graceful_timeout,
    }
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal with the handler
    # it found at start; make that handler a clean exit, so a drained stop exits 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if settings.workers > 1:
        uvicorn.run("service.app:create_app", factory=True, workers=settings.workers, **common)
    else:
        uvicorn.run(create_app(settings), **common)


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(getattr(value, "value", value))


if __name__ == "__main__":
    main()
