"""Logging as one JSON object per line, so log pipelines can parse every field."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any, TextIO

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


_formatted: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def timestamp(created: float) -> str:
    """``2026-11-30T01:27:13.352Z``: UTC, to the millisecond (each second formatted once:
    ``strftime`` was most of the cost of an access-log line)."""
    global _formatted
    second, text = _formatted
    if second != int(created):
        second = int(created)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _formatted = (second, text)  # one assignment: other threads see the old pair or the new
    return f"{text}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the service and uvicorn: JSON lines on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {
            "service": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


class Bursts:
    """Lines gathered for up to ``INTERVAL`` and written together: one write per burst instead of
    one per line (measured under load, a write per access-log line cost about 5% of a request's
    CPU). ``flush`` writes what waits, at once; the access log and the payload log run at
    shutdown. Subclasses say where a burst goes (``emit``)."""

    INTERVAL = 0.05

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.pending: asyncio.TimerHandle | None = None

    def add(self, line: str) -> None:
        self.lines.append(line)
        if self.pending is None:
            self.pending = asyncio.get_running_loop().call_later(self.INTERVAL, self.flush)

    def flush(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.lines:
            burst = "\n".join(self.lines) + "\n"
            self.lines.clear()
            self.emit(burst)

    def emit(self, burst: str) -> None:
        raise NotImplementedError


class AccessLog(Bursts):
    """The one line per request, as ``JsonFormatter`` writes it for the ``service.access`` logger,
    without ``logging``'s per-record work, and written in bursts (``Bursts``): a line waits at
    most 50 ms. ``LOG_LEVEL`` above ``info`` turns it off, as it does the logger's.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.enabled: bool | None = None  # read at the first request, once logging is configured

    def request(self, method: str, path: str, status: int, latency_ms: float, request_id: str) -> None:
        if self.enabled is None:
            self.enabled = logging.getLogger("service.access").isEnabledFor(logging.INFO)
        if not self.enabled:
            return
        # The line json.dumps would write for these fields, in one f-string (a third of its cost):
        # method and request id are tokens (uvicorn's parser, service.api.middleware), the path
        # is escaped as json.dumps escapes it.
        self.add(
            f'{{"time": "{timestamp(time.time())}", "level": "info", "logger": "service.access", '
            f'"message": "request", "method": "{method}", "path": {json.dumps(path)}, '
            f'"status": {status}, "latency_ms": {latency_ms!r}, "request_id": "{request_id}"}}'
        )

    def emit(self, burst: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(burst)
        stream.flush()
