"""What a connection may hold, enforced below the app: uvicorn's httptools protocol with a limit
on open connections, a header timeout, a write timeout, its own errors in the service's JSON
error shape, and a shutdown that answers requests already on their way.

uvicorn alone closes an idle keep-alive connection (`timeout_keep_alive`), but a connection that
sends nothing, or trickles its headers, stays open for ever, and enough of them exhaust the file
descriptors; a client that never reads its answer holds its connection the same way. Here:

- a connection beyond `max_connections` is answered 503 and closed;
- a request's headers must arrive within `header_timeout_s` of its first byte (of the connection's
  opening, for its first request), else 408 and the connection closes, and be at most
  MAX_HEADER_BYTES long, else 431; its body must arrive within `body_timeout_s` of its headers,
  else 408 (the app's `receive()` then says the client is gone, and its answer is this one);
- an answer the client leaves unread for `write_timeout_s` drops the connection;
- uvicorn's own answers to what is not HTTP (400) take the JSON error shape;
- at shutdown a request in progress is answered (with `Connection: close`), and so is a request
  whose first bytes have arrived or arrive within `SHUTDOWN_GRACE_S` on a connection with no
  request yet; idle keep-alive connections close at once.

Answers made here carry the request's id (a fresh one before the headers), logged with the
reason. The deadlines are checked by one sweep per server every SWEEP_INTERVAL_S at most (a timer
per request would cost more than the rest of this layer together): a deadline holds to within
that interval.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import RETRY_AFTER_SECONDS, error_body
from service.json_encoding import encode
from service.middleware import new_request_id
from service.oip.errors import on_protocol_route, protocol_error_body

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024  # a request line and headers longer than this: 431
SWEEP_INTERVAL_S = 0.5  # at most; a quarter of the shortest timeout when that is less
SHUTDOWN_GRACE_S = 1.0  # how long a shutdown waits for a request on a connection with none yet
LINGER_S = 1.0  # how long a refused connection reads (and drops) what its client still sends
REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    write_timeout_s: float = 30.0

    @property
    def sweep_interval_s(self) -> float:
        return min(SWEEP_INTERVAL_S, self.header_timeout_s / 4, self.body_timeout_s / 4)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under `limits` (set once per process by `configure`)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_due: float | None = None  # loop time by which the headers must be in
        self._body_due: float | None = None  # ... and the body, once the headers are
        self._write_timer: asyncio.TimerHandle | None = None
        self._closing_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # received since the current request's headers were awaited
        self._answered = False  # this layer answered and closes: read and drop the rest
        self._shutting_down = False

    # Connections
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        open_connections = len(self.connections)
        if open_connections > 2 * self.limits.max_connections:
            transport.abort()  # a flood: no answer, not even a lingering one
        elif open_connections > self.limits.max_connections:
            self._answer_and_close(
                503,
                "too_many_connections",
                f"the server has {self.limits.max_connections} connections open, its limit; "
                "retry shortly, and reuse connections (the server's limit is "
                "MMOE_MAX_CONNECTIONS)",
                {"max_connections": self.limits.max_connections},
                retry_after=True,
            )
        else:
            self._await_headers()
            _Sweep.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._write_timer, self._closing_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        if self._headers_due is None and self._between_requests():
            self._await_headers()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self._headers_due is not None and not self._answered:  # headers still incomplete
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._answer_and_close(
                    431,
                    "headers_too_large",
                    f"the request line and headers are longer than {MAX_HEADER_BYTES} bytes; "
                    "send shorter headers",
                    {"max_header_bytes": MAX_HEADER_BYTES},
                )

    def on_headers_complete(self) -> None:
        self._headers_due = None
        super().on_headers_complete()
        if self.cycle is not None:
            self._body_due = self.loop.time() + self.limits.body_timeout_s
            self.cycle.transport = _ClosesLingering(self, self.cycle)  # type: ignore[assignment]
            if self._shutting_down:
                self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._body_due = None

    # Timeouts
    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _await_headers(self) -> None:
        self._header_bytes = 0
        self._headers_due = self.loop.time() + self.limits.header_timeout_s

    def check_deadlines(self, now: float) -> None:
        """Answer 408 if the headers or the body are late (the sweep calls this)."""
        if self._answered or self.transport.is_closing():
            return
        if self._headers_due is not None and now >= self._headers_due:
            self._headers_due = None
            if self._between_requests():
                self._headers_too_slow()
        elif self._body_due is not None and now >= self._body_due:
            self._body_due = None
            if self.cycle is not None and self.cycle.more_body and not self._between_requests():
                self._body_too_slow()

    def _body_too_slow(self) -> None:
        cycle = self.cycle
        state = cycle.scope.setdefault("state", {})
        state["body_timed_out"] = True  # the app's "client disconnected" is this 408: no log line
        cycle.disconnected = True  # the app's receive() answers http.disconnect, its send nothing
        cycle.message_event.set()
        if cycle.response_started:
            self.close_lingering()  # the app answered already (before the body ended)
            return
        timeout = self.limits.body_timeout_s
        self._answer_and_close(
            408,
            "request_timeout",
            f"the request body did not arrive within {timeout:g} s; send it at once (the "
            "server's limit is MMOE_BODY_TIMEOUT_S)",
            {"body_timeout_s": timeout},
            request_id=state.get("request_id"),
            path=cycle.scope["path"],
        )

    def _headers_too_slow(self) -> None:
        timeout = self.limits.header_timeout_s
        self._answer_and_close(
            408,
            "request_timeout",
            f"the request's headers did not arrive within {timeout:g} s; send the whole request "
            "at once (the server's limit is MMOE_HEADER_TIMEOUT_S)",
            {"header_timeout_s": timeout},
        )

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(
                self.limits.write_timeout_s, self._client_not_reading
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _client_not_reading(self) -> None:
        self._write_timer = None
        logger.info(
            "dropping the connection of %s: it left its answer unread for %g s "
            "(MMOE_WRITE_TIMEOUT_S)",
            _peer(self.client),
            self.limits.write_timeout_s,
        )
        self.transport.abort()

    # uvicorn's own answers
    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(
            400,
            "invalid_http",
            "the request is not valid HTTP/1.1 and could not be read; check its request line "
            "and headers",
        )

    def _answer_and_close(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        retry_after: bool = False,
        request_id: str | None = None,
        path: str | None = None,
    ) -> None:
        """Write a complete JSON error answer (in the Open Inference Protocol's shape when `path`,
        the request's, is one of its), then close: half-close first and read (dropping it) what
        the client still sends for LINGER_S, so that the answer is not lost to a reset."""
        request_id = request_id or new_request_id()
        logger.info("%d %s for %s (request id %s)", status, code, _peer(self.client), request_id)
        if path is not None and on_protocol_route(path):
            body = encode(protocol_error_body(message))
        else:
            body = encode(error_body(code, message, details, request_id))
        head = [
            b"HTTP/1.1 %d %s" % (status, REASONS[status]),
            b"content-type: application/json",
            b"content-length: %d" % len(body),
            b"x-request-id: " + request_id.encode(),
            b"connection: close",
        ]
        if retry_after:
            head.append(b"retry-after: %d" % RETRY_AFTER_SECONDS)
        self._headers_due = self._body_due = None
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.close_lingering()

    def close_lingering(self) -> None:
        """Close once the answer is out: send FIN, then read and drop what the client still
        sends for LINGER_S. Closing at once with its data unread would reset the connection, and
        a reset makes the client drop the answer it has not read yet."""
        self._answered = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._closing_timer = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    # Shutdown
    def shutdown(self) -> None:
        self._shutting_down = True
        if self._answered:
            return  # closes by itself
        if not self._between_requests():
            self.cycle.keep_alive = False  # answer it, then close
        elif self._headers_due is not None:
            # A connection with no request yet, or the start of one: give it SHUTDOWN_GRACE_S
            # to complete its headers (it is then answered); the header timeout still holds.
            self._closing_timer = self.loop.call_later(SHUTDOWN_GRACE_S, self._close_if_idle)
        else:
            self.transport.close()  # an idle kept-alive connection

    def _close_if_idle(self) -> None:
        self._closing_timer = None
        if self._between_requests() and not self.transport.is_closing():
            self.transport.close()


class _ClosesLingering:
    """A request's view of the transport: closing it after an answer made before the body was
    read to its end (413, 408, 503) lingers (`close_lingering`) instead of resetting."""

    def __init__(self, protocol: GuardedHttpToolsProtocol, cycle: Any) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self._transport = protocol.transport
        self.write = self._transport.write  # the per-answer calls, without __getattr__
        self.is_closing = self._transport.is_closing

    def close(self) -> None:
        if self._cycle.more_body and not self._transport.is_closing():
            self._protocol.close_lingering()
        else:
            self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Sweep:
    """Every SWEEP_INTERVAL_S, each connection of one server checks its deadlines."""

    def __init__(self, protocol: GuardedHttpToolsProtocol) -> None:
        self.connections = protocol.connections
        self.loop = protocol.loop
        self.interval = protocol.limits.sweep_interval_s
        self.loop.call_later(self.interval, self.run)

    @classmethod
    def watch(cls, protocol: GuardedHttpToolsProtocol) -> None:
        """Start the sweep of `protocol`'s server, unless it runs already."""
        state = protocol.server_state
        if getattr(state, "guard_sweep", None) is None:
            state.guard_sweep = cls(protocol)  # type: ignore[attr-defined]

    def run(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            if isinstance(connection, GuardedHttpToolsProtocol):
                connection.check_deadlines(now)
        self.loop.call_later(self.interval, self.run)


def configure(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """Set this process's limits; the protocol class for uvicorn's `http` setting."""
    GuardedHttpToolsProtocol.limits = limits
    return GuardedHttpToolsProtocol


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"
