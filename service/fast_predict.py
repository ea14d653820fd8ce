"""POST /predict as a small pure-ASGI endpoint, and the app that sends the route to it first.

The route FastAPI declares (`service.routes`) documents /predict in the OpenAPI schema and is the
plain path; this endpoint answers the same requests with the same handler, bodies, headers and
errors, without the framework's per-request machinery (telemetry checks, middleware layers,
routing, request, exception and response objects), which costs more than parsing and inference
of a small request. Every other request goes to FastAPI unchanged.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError, error_body
from service.handlers import PredictHandler
from service.json_encoding import encode
from service.middleware import (
    assign_request_id,
    internal_error_body,
    log_disconnect,
    request_id_of,
)
from service.request_body import BodyBudget, ClientDisconnected

JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class ServiceApp(FastAPI):
    """FastAPI, except that POST /predict goes straight to `fast_predict` when one is set: the
    endpoint behind the same request, CORS and API key layers as FastAPI's routes
    (`service.app.edge_layers`)."""

    fast_predict: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.fast_predict
        if (
            endpoint is not None
            and scope["type"] == "http"
            and scope["path"] == "/predict"
            and scope["method"] == "POST"
        ):
            await endpoint(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


class FastPredictEndpoint:
    def __init__(self, handler: PredictHandler, bodies: BodyBudget) -> None:
        self.handler = handler
        self.bodies = bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = request_id_of(scope) or assign_request_id(scope)
        headers = [JSON_CONTENT_TYPE]
        try:
            body = await self.bodies.read(scope, receive)
            try:
                payload = await self.handler.predict(body)
            finally:
                self.bodies.release(body)
            status = 200
        except ServiceError as error:
            status = error.status
            payload = encode(error_body(error.code, error.message, error.details, request_id))
            headers += [(name.lower().encode(), value.encode()) for name, value in error.headers]
        except ClientDisconnected:
            log_disconnect(scope, request_id)
            return
        except Exception:
            status = 500
            payload = internal_error_body(scope, request_id)
        headers += [
            (b"content-length", b"%d" % len(payload)),
            (b"x-request-id", request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
