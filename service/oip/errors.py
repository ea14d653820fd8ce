"""Errors on the protocol's routes: the protocol's `{"error": "<message>"}` body and its status
codes (400 for a malformed request where the rest of the service answers 422). Every other route
keeps the service's own error shape (`service.errors`). Imports nothing from the project, so the
middleware can use it."""

from __future__ import annotations

from typing import Any, Final

PREFIX: Final = "/v2"


def on_protocol_route(path: str) -> bool:
    """Whether a request path belongs to the protocol (/v2 and below)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def protocol_status(status: int) -> int:
    """The protocol's status for one of the service's: a client's mistake is a 400."""
    return 400 if status == 422 else status


def protocol_error_body(message: str) -> dict[str, Any]:
    return {"error": message}
