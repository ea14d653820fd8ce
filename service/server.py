"""Running the app under uvicorn with the service's limits (`service.connections`), timeouts and
graceful shutdown, in one process or several.

Shutdown (SIGTERM or Ctrl-C) of one process: the listening socket stops accepting, but only after
every connection already waiting in its backlog is taken in (closing a listening socket resets
those); then every request in progress, or arriving within a short grace on a connection that has
none yet, is answered (`service.connections`); after `MMOE_SHUTDOWN_TIMEOUT_S` what is left is
cancelled; then the app's lifespan ends (the inference runner finishes its queue).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
import socket
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from service import connections
from service.settings import Settings

logger = logging.getLogger(__name__)


def connection_limits(settings: Settings) -> connections.ConnectionLimits:
    return connections.ConnectionLimits(
        max_connections=settings.max_connections,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        write_timeout_s=settings.write_timeout_s,
    )


def uvicorn_config(settings: Settings, app: Any) -> uvicorn.Config:
    """`app` (an ASGI app, or the import string of a factory for several workers) with the
    service's settings."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        loop=loop,
        http=connections.configure(connection_limits(settings)),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,  # the service's own (MMOE_ACCESS_LOG) carries the request id
        server_header=False,
    )


def run(config: uvicorn.Config) -> None:
    """Serve until SIGTERM or Ctrl-C, as `uvicorn.run` does: one process with `GracefulServer`,
    or uvicorn's supervisor of several workers (whose servers do not take in the backlog: the
    supervisor holds the listening socket until it exits, see docs/reliability.md)."""
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = GracefulServer(config)

    def stop(signum: int, frame: object) -> None:
        # Before uvicorn takes the signals: stop as soon as it starts. After its shutdown, it
        # raises the signal again into this handler: the stop is complete, the exit status 0.
        server.should_exit = True

    for stopping in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stopping, stop)
    server.run()


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that its shutdown first takes in the listening sockets' backlog."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        waiting = []
        for server in self.servers:
            for listener in server.sockets:
                waiting += _accept_backlog(listener.fileno())
            server.close()  # no await since the backlog was taken: nothing slips in between
        for conn in waiting:
            await loop.connect_accepted_socket(self._protocol, conn)
        if waiting:
            logger.info("took in %d connection(s) waiting at shutdown", len(waiting))
        await super().shutdown(sockets)

    def _protocol(self) -> asyncio.Protocol:
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        return protocol


def _accept_backlog(fileno: int) -> list[socket.socket]:
    """Every connection waiting on the listening socket `fileno`, accepted now."""
    listener = socket.socket(fileno=os.dup(fileno))
    accepted: list[socket.socket] = []
    try:
        listener.setblocking(False)
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            except OSError as error:  # out of file descriptors: leave the rest
                logger.warning("could not take in a waiting connection at shutdown: %s", error)
                return accepted
            conn.setblocking(False)
            accepted.append(conn)
    finally:
        listener.close()
