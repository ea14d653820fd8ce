"""Reading a request body straight from ASGI messages, under two bounds: its size, and the bytes
all requests of this process hold at once.

The second is what keeps many slow or stalled uploads from growing memory without bound: every
body counts against one `BodyBudget` from its first byte until its request is answered, and a
request whose bytes would not fit is refused (503) while the others go on. (The time a body may
take is bounded below the app, by `service.connections`.)
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Receive, Scope

from service.errors import BodiesOverBudgetError, PayloadTooLargeError


class ClientDisconnected(Exception):
    """The client went away before its body was complete: there is nobody to answer."""


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int = 8 * 1024 * 1024
    max_inflight_bytes: int = 64 * 1024 * 1024  # all bodies of this process together


class BodyBudget:
    """The bytes of request bodies this process holds now, against `max_inflight_bytes`.

    body = await bodies.read(scope, receive)  # counted from its first byte
    try:
        ...answer the request...
    finally:
        bodies.release(body)
    """

    def __init__(self, limits: BodyLimits) -> None:
        self.limits = limits
        self.held = 0

    async def read(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, refusing (413) as soon as it is known to exceed the size limit, and
        (503) a chunk that would take the bytes held over the budget. On success the body stays
        counted until `release`; on any error what was counted is released here."""
        limit = self.limits.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    raise too_large(int(value), limit)
                break
        chunks = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected
                chunk = message.get("body", b"")
                if size + len(chunk) > limit:
                    raise too_large(None, limit)
                self._take(len(chunk))
                size += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except BaseException:
            self.held -= size
            raise

    def hold(self, data: bytes) -> None:
        """Count `data` (a body's decompressed copy) until `release`, or refuse it (503)."""
        self._take(len(data))

    def release(self, body: bytes) -> None:
        self.held -= len(body)

    def _take(self, size: int) -> None:
        if self.held + size > self.limits.max_inflight_bytes:
            raise BodiesOverBudgetError(
                "the server is holding as many request bodies as it may at once; retry shortly "
                "(the server's limit is MMOE_MAX_INFLIGHT_BODY_BYTES)",
                {"max_inflight_body_bytes": self.limits.max_inflight_bytes},
            )
        self.held += size


def too_large(size: int | None, limit: int) -> PayloadTooLargeError:
    stated = f" ({size} bytes)" if size is not None else ""
    return PayloadTooLargeError(
        f"the request body{stated} is larger than the limit of {limit} bytes; send fewer "
        "instances per request (the server's limit is MMOE_MAX_BODY_BYTES)",
        {"max_body_bytes": limit},
    )
