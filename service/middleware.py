"""The outermost layer of every HTTP request: its id, its log context, its access log line and
metrics, and the last line of defence against unexpected exceptions.

Every response carries `X-Request-ID` (the client's own, when it sent a sane one), and every log
line written while the request is served carries the id (`service.logs`). An exception that
escapes a route is logged with its traceback and request id, and the client gets the one error
shape with that id: a 500 never shows a traceback. When the request is done, its method, route
template, status and duration go to the metrics and (with `MMOE_ACCESS_LOG`) to one log line.
A client that goes away before its request is read is no server error: one info line. A path in
a text log line is escaped (`service.echo.loggable`): a `%0a` in it cannot forge a line.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterator

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.echo import loggable
from service.errors import error_body
from service.json_encoding import encode
from service.logs import current_request_id
from service.oip.errors import on_protocol_route, protocol_error_body
from service.request_body import ClientDisconnected

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("service.access")

REQUEST_ID_HEADER = "X-Request-ID"
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Fresh ids: 64 random bits per process, then a counter (32 hex digits; cheaper than uuid4).
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(int.from_bytes(os.urandom(4), "big"))
UNMATCHED_ROUTE = "unmatched"  # the route label of a path no route serves: bounded cardinality
CLIENT_GONE = 499  # the status recorded when the client left before a response started

RequestObserver = Callable[[str, str, int, float], None]  # method, route, status, seconds


def request_id_of(scope: Scope) -> str | None:
    request_id: str | None = scope.get("state", {}).get("request_id")
    return request_id


def assign_request_id(scope: Scope) -> str:
    """The client's X-Request-ID when it is sane, else a fresh one; kept in the scope's state."""
    incoming: str = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    request_id = incoming if SAFE_REQUEST_ID.match(incoming) else new_request_id()
    scope.setdefault("state", {})["request_id"] = request_id
    return request_id


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def internal_error_body(scope: Scope, request_id: str) -> bytes:
    """Log the exception being handled with its request id; the client's 500 body (in the Open
    Inference Protocol's shape on its routes)."""
    logger.exception(
        "unhandled error in %s %s (request id %s)",
        scope["method"],
        loggable(scope["path"]),
        request_id,
    )
    message = (
        f"the server failed to answer this request; it is logged under request id "
        f"{request_id}: quote it when reporting the problem"
    )
    if on_protocol_route(scope["path"]):
        return encode(protocol_error_body(message))
    return encode(error_body("internal_error", message, None, request_id))


def log_disconnect(scope: Scope, request_id: str) -> None:
    if scope.get("state", {}).get("body_timed_out"):
        return  # not gone: its body was late, and the connection layer answered 408 and logged
    logger.info(
        "client disconnected before sending its whole request: %s %s (request id %s)",
        scope["method"],
        loggable(scope["path"]),
        request_id,
    )


def route_template(scope: Scope, routes: list[BaseRoute]) -> str:
    """The template of the route that served (or would serve) the request: `/models/{name}`,
    never the raw path, so that metrics have one series per route."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path or "/"
    for candidate in _flat(routes):  # not routed: refused before routing, e.g. a 401
        match, _ = candidate.matches(scope)
        if match is not Match.NONE:
            return str(getattr(candidate, "path", UNMATCHED_ROUTE))
    return UNMATCHED_ROUTE


def _flat(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too (FastAPI keeps an included router whole)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat(included.routes)
        else:
            yield route


class RequestMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware), outermost in the app.

    `route`, when given, is the route label of every request (the fast /predict endpoint's
    chain), and `inner_sets_request_id` says that the app adds X-Request-ID itself, so that
    this layer only reads the status of the response, never rewrites its headers."""

    def __init__(
        self,
        app: ASGIApp,
        routes: list[BaseRoute] | None = None,
        observe: RequestObserver | None = None,
        access_log: bool = False,
        route: str | None = None,
        inner_sets_request_id: bool = False,
    ) -> None:
        self.app = app
        self.routes = routes if routes is not None else []
        self.observe = observe
        self.access_log = access_log
        self.route = route
        self.inner_sets_request_id = inner_sets_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = assign_request_id(scope)
        context = current_request_id.set(request_id)
        status = CLIENT_GONE
        add_header = not self.inner_sets_request_id

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if add_header:
                    MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except (ClientDisconnected, ClientDisconnect):  # ours, and Starlette's request.body()
            log_disconnect(scope, request_id)
        except Exception:
            body = internal_error_body(scope, request_id)
            if status != CLIENT_GONE:  # the response has started: nothing more can be sent
                raise
            response = Response(
                body,
                status_code=500,
                media_type="application/json",
                headers={REQUEST_ID_HEADER: request_id},
            )
            await response(scope, receive, send)
            status = 500
        finally:
            self._done(scope, status, time.perf_counter() - started)
            current_request_id.reset(context)

    def _done(self, scope: Scope, status: int, seconds: float) -> None:
        if self.observe is None and not self.access_log:
            return
        method = scope["method"]
        route = self.route or route_template(scope, self.routes)
        if self.observe is not None:
            self.observe(method, route, status, seconds)
        if self.access_log:
            duration_ms = round(seconds * 1000, 3)
            access_logger.info(
                "%s %s %d %.3f ms",
                method,
                loggable(scope["path"]),
                status,
                duration_ms,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )
