"""The API key: which routes need it, and the pure-ASGI middleware that asks for it.

Routes fall in three classes by path, so a route added later (the Open Inference Protocol's
/v2/..., say) is protected without being listed anywhere:

- open: health probes, the API docs and the /ui page (its own calls to the API carry the key);
- admin (`/admin/...`): always need the key; with no key configured they are off (403);
- everything else (inference, model metadata, /metrics): need the key when
  `MMOE_INFERENCE_NEEDS_KEY` is true.

The key arrives as `Authorization: Bearer <key>` or `X-API-Key: <key>`. It is compared in
constant time (the sha256 digests of both, so not even the length leaks), never logged and
never echoed. A missing or wrong key is a 401 in the one error shape (the protocol's
`{"error": ...}` on /v2) with `WWW-Authenticate`.
Preflight requests (OPTIONS with Access-Control-Request-Method) never reach this middleware when
CORS is on: the CORS middleware sits outside it and answers them.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_body
from service.json_encoding import encode
from service.middleware import request_id_of
from service.oip.errors import on_protocol_route, protocol_error_body

AccessClass = Literal["open", "protected", "admin"]

OPEN_PATHS: Final = frozenset(
    {
        "/health/live",
        "/health/ready",
        "/v2/health/live",  # the Open Inference Protocol's probes
        "/v2/health/ready",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/ui",
    }
)
OPEN_PREFIXES: Final = ("/docs-assets/", "/ui/")
ADMIN_PREFIX: Final = "/admin/"
REALM: Final = "mmoe-service"
HOW_TO_SEND = "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
MISSING_KEY = f"this route needs the API key: {HOW_TO_SEND}"
WRONG_KEY = f"the API key sent is not the server's key (MMOE_API_KEY); {HOW_TO_SEND}"
ADMIN_DISABLED = (
    "the admin routes are off because the server has no API key: set MMOE_API_KEY (at least 16 "
    f"characters) on the server, then {HOW_TO_SEND}"
)


def access_class(path: str) -> AccessClass:
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return "open"
    if path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/"):
        return "admin"
    return "protected"


def _digest(secret: str | bytes) -> bytes:
    data = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(data).digest()


class ApiKeyMiddleware:
    """Ask for the key where `access_class` says so; pass every other request through."""

    def __init__(self, app: ASGIApp, api_key: str | None, inference_needs_key: bool) -> None:
        self.app = app
        self._key_digest = None if api_key is None else _digest(api_key)
        self.inference_needs_key = inference_needs_key

    def presented_key(self, scope: Scope) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer" and credentials.strip():
                    return bytes(credentials.strip())
            elif name == b"x-api-key" and value:
                return bytes(value)
        return None

    def key_is_valid(self, presented: bytes | None) -> bool:
        if presented is None or self._key_digest is None:
            return False
        return hmac.compare_digest(_digest(presented), self._key_digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = access_class(scope["path"])
        if needed == "open" or (needed == "protected" and not self.inference_needs_key):
            await self.app(scope, receive, send)
            return
        if self._key_digest is None:  # an admin route, and no key configured
            await _refuse(scope, send, 403, "admin_disabled", ADMIN_DISABLED, {})
            return
        presented = self.presented_key(scope)
        if self.key_is_valid(presented):
            await self.app(scope, receive, send)
            return
        if presented is None:
            message = MISSING_KEY
            challenge = f'Bearer realm="{REALM}"'
        else:
            message = WRONG_KEY
            challenge = f'Bearer realm="{REALM}", error="invalid_token"'
        await _refuse(scope, send, 401, "unauthorized", message, {"WWW-Authenticate": challenge})


async def _refuse(
    scope: Scope, send: Send, status: int, code: str, message: str, headers: dict[str, str]
) -> None:
    request_id = request_id_of(scope)
    if on_protocol_route(scope["path"]):  # the Open Inference Protocol's own error shape
        body = encode(protocol_error_body(message))
    else:
        body = encode(error_body(code, message, None, request_id))
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ] + [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    if request_id is not None:  # (the fast /predict chain's request layer adds no header)
        raw_headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
