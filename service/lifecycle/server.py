"""A uvicorn ``Server`` whose stop loses no request that reached the process.

Plain uvicorn, on SIGTERM, closes the listening socket at once (the kernel resets every
connection still waiting in its accept queue) and closes every connection whose request it has
not parsed yet (``HttpToolsProtocol.shutdown`` closes a connection whose ``cycle`` is None): with
40 large batches in flight, 21 clients saw their connection closed with no answer (issue 13).

``DrainingServer`` stops in three steps instead:

1. **Lame duck** (``SHUTDOWN_DELAY`` seconds): ``app.state.draining`` turns on at once, so
   ``/readyz`` answers 503 and a load balancer stops sending, while every request is still served.
2. **Stop listening without dropping the queue**: stop the asyncio server from accepting, accept
   every connection already waiting in the kernel's queue ourselves and hand it to uvicorn's
   protocol, then close the listening socket (new connections are refused from then on).
3. **Let requests in transit arrive**: wait until each connection has a request cycle or nothing
   unread, and the whole server has been quiet briefly; then uvicorn's own shutdown runs (close
   idle connections, finish in-flight requests within ``GRACEFUL_TIMEOUT``).

uvicorn internals relied on (as of uvicorn 0.54): ``Server.servers`` (the asyncio servers),
``Server.server_state.connections`` (the protocol of every open connection), ``Server.lifespan``,
``Server._captured_signals`` (re-raised after ``serve``), the protocol constructor
``config.http_protocol_class(config=, server_state=, app_state=, _loop=)`` (as in
``Server.startup``'s ``create_protocol``), and on ``HttpToolsProtocol`` the attributes
``transport``, ``cycle`` (``RequestResponseCycle`` with ``scope`` and ``response_complete``) and
``scope`` (a new dict at each ``on_message_begin``).
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import math
import os
import signal
import socket
import struct
import sys
import termios
import threading
import time
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

logger = logging.getLogger("uvicorn.error")

QUIET_SECONDS = 0.3  # no request in transit for this long: the remaining connections are idle
POLL_SECONDS = 0.05


def exit_zero(*_: object) -> None:
    """SIGTERM handler for after a drained stop (uvicorn re-raises the signal): exit 0, fast.

    ``gc.freeze`` first: the interpreter's final collection would otherwise walk every object
    of the loaded models and vocabularies, which took seconds on a busy machine.
    """
    gc.freeze()
    sys.exit(0)


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` with a lame duck, an accept-queue drain and no dropped request."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.lame_duck_until: float | None = None  # monotonic time the lame duck ends

    # ---- signals ----

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve; a SIGHUP during start-up waits for the app's own handler instead of killing us.

        The supervisor forwards SIGHUP (reload) to every worker, including one being restarted
        and still loading its models, where SIGHUP's default action would terminate it. The
        supervisor starts workers with SIGHUP blocked (``service.lifecycle.supervisor``); here it is
        caught, then unblocked, and re-raised once start-up is done (``startup``).
        """
        self._sighup_during_startup = False
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._defer_sighup)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        await super().serve(sockets)

    def _defer_sighup(self, sig: int, frame: FrameType | None) -> None:
        self._sighup_during_startup = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # The app's lifespan has installed its SIGHUP handler (service.lifecycle.reload) by now.
        if self._sighup_during_startup and signal.getsignal(signal.SIGHUP) != self._defer_sighup:
            os.kill(os.getpid(), signal.SIGHUP)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First SIGTERM/SIGINT: mark the app draining, and start the lame duck if there is one.

        A second signal, or one before the server has started, is uvicorn's usual handling
        (stop now; a second SIGINT forces the exit).
        """
        self._mark_draining()
        if self.should_exit or self.lame_duck_until is not None or not self.started:
            super().handle_exit(sig, frame)
            return
        delay = self._shutdown_delay()
        self._captured_signals.append(sig)  # re-raised by uvicorn after serve, as it would be
        if delay > 0:
            self.lame_duck_until = time.monotonic() + delay
            logger.info("Draining: /readyz answers 503; still serving for %.1f s", delay)
        else:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.lame_duck_until is not None and time.monotonic() >= self.lame_duck_until:
            self.should_exit = True
        return await super().on_tick(counter)

    def app(self) -> Starlette | None:
        """The FastAPI app behind uvicorn's middleware (each wrapper keeps the next in ``.app``)."""
        app: Any = self.config.loaded_app if self.config.loaded else None
        for _ in range(32):
            if app is None or isinstance(app, Starlette):
                return app
            app = getattr(app, "app", None)
        return None

    def _mark_draining(self) -> None:
        app = self.app()
        if app is not None:
            app.state.draining = True

    def _shutdown_delay(self) -> float:
        app = self.app()
        settings = getattr(app.state, "settings", None) if app is not None else None
        return float(getattr(settings, "shutdown_delay", 0.0))

    # ---- shutdown ----

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Take the queued connections, let requests in transit arrive, then uvicorn's shutdown.

        The whole stop stays within ``timeout_graceful_shutdown``: what the first two steps use
        is taken off the time uvicorn then gives in-flight requests.
        """
        loop = asyncio.get_running_loop()
        timeout = self.config.timeout_graceful_shutdown
        deadline = loop.time() + (math.inf if timeout is None else timeout)
        await self._accept_waiting_connections(sockets)
        await self._wait_for_requests_in_transit(deadline)
        if timeout is not None:
            self.config.timeout_graceful_shutdown = max(0.0, deadline - loop.time())  # type: ignore[assignment]
        await super().shutdown(sockets)

    async def _accept_waiting_connections(self, sockets: list[socket.socket] | None) -> None:
        """Stop accepting through asyncio, then accept the kernel's queue ourselves and close.

        A duplicate of each listening descriptor keeps the socket listening while the asyncio
        servers close theirs (uvloop closes the very descriptor it was given), so no queued
        connection is reset between the two. Workers share one listening socket: each takes
        what it finds, and the socket closes when the last holder closes it.
        """
        loop = asyncio.get_running_loop()
        listeners = [
            socket.socket(fileno=os.dup(sock.fileno()))
            for server in self.servers
            for sock in server.sockets or ()
        ]
        for server in self.servers:
            server.close()
        taken = 0
        for listener in listeners:
            with listener:
                listener.setblocking(False)
                while True:
                    try:
                        connection, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except ConnectionAbortedError:  # reset by the client while queued
                        continue
                    try:
                        await loop.connect_accepted_socket(
                            self._protocol, connection, ssl=self.config.ssl
                        )
                        taken += 1
                    except OSError:  # gone meanwhile
                        connection.close()
        for sock in sockets or ():
            sock.close()
        if taken:
            logger.info("Accepted %d queued connection(s) before closing the socket", taken)

    def _protocol(self) -> asyncio.Protocol:
        """A connection's protocol, built as ``Server.startup``'s ``create_protocol`` does."""
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            _loop=asyncio.get_running_loop(),
        )

    async def _wait_for_requests_in_transit(self, deadline: float) -> None:
        """Until no connection has received a request it has not parsed, for ``QUIET_SECONDS``.

        uvicorn's shutdown closes a connection without a request cycle; one whose request
        is still in the kernel's buffer or half parsed must get its cycle first.
        """
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while loop.time() < deadline:
            if any(_request_in_transit(c) for c in list(self.server_state.connections)):
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= QUIET_SECONDS:
                return
            await asyncio.sleep(POLL_SECONDS)


def _request_in_transit(protocol: Any) -> bool:
    """Whether a request has reached this connection but has no request cycle yet."""
    transport = getattr(protocol, "transport", None)
    if transport is None or transport.is_closing():
        return False
    cycle = getattr(protocol, "cycle", None)
    if cycle is not None and not cycle.response_complete:
        return False  # uvicorn answers it, then closes the connection
    scope = getattr(protocol, "scope", None)
    if scope is not None and (cycle is None or cycle.scope is not scope):
        return True  # httptools has begun a request whose headers are not complete
    return _unread_bytes(transport) > 0


def _unread_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes in the kernel's receive queue of the connection (FIONREAD)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        answer = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return struct.unpack("i", answer)[0]
