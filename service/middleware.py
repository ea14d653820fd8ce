"""Request ids, and the last line of defence against unexpected exceptions.

Every response carries `X-Request-ID` (the client's own, when it sent a sane one). An exception
that escapes a route is logged with its traceback and request id, and the client gets the one
error shape with that id: a 500 never shows a traceback.
"""

from __future__ import annotations

import itertools
import logging
import os
import re

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_body
from service.json_encoding import encode

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Fresh ids: 64 random bits per process, then a counter (32 hex digits; cheaper than uuid4).
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


def request_id_of(scope: Scope) -> str | None:
    request_id: str | None = scope.get("state", {}).get("request_id")
    return request_id


def assign_request_id(scope: Scope) -> str:
    """The client's X-Request-ID when it is sane, else a fresh one; kept in the scope's state."""
    incoming: str = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    if SAFE_REQUEST_ID.match(incoming):
        request_id = incoming
    else:
        request_id = f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"
    scope.setdefault("state", {})["request_id"] = request_id
    return request_id


def internal_error_body(scope: Scope, request_id: str) -> bytes:
    """Log the exception being handled with its request id; the client's 500 body."""
    logger.exception(
        "unhandled error in %s %s (request id %s)", scope["method"], scope["path"], request_id
    )
    body = error_body(
        "internal_error",
        f"the server failed to answer this request; it is logged under request id "
        f"{request_id}: quote it when reporting the problem",
        None,
        request_id,
    )
    return encode(body)


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): assigns the id and turns crashes into a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = assign_request_id(scope)
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            body = internal_error_body(scope, request_id)
            if response_started:
                raise
            response = Response(
                body,
                status_code=500,
                media_type="application/json",
                headers={REQUEST_ID_HEADER: request_id},
            )
            await response(scope, receive, send)
