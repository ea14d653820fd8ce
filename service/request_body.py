"""Reading a request body under a byte limit, straight from ASGI messages."""

from __future__ import annotations

from starlette.types import Receive, Scope

from service.errors import PayloadTooLargeError


class ClientDisconnected(Exception):
    """The client went away before its body was complete: there is nobody to answer."""


async def receive_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed `limit` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise too_large(int(value), limit)
            break
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(None, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(size: int | None, limit: int) -> PayloadTooLargeError:
    stated = f" ({size} bytes)" if size is not None else ""
    return PayloadTooLargeError(
        f"the request body{stated} is larger than the limit of {limit} bytes; send fewer "
        "instances per request (the server's limit is MMOE_MAX_BODY_BYTES)",
        {"max_body_bytes": limit},
    )
