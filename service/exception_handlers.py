"""Map every exception a request can raise onto the one error shape (`service.errors`), or, on the
Open Inference Protocol's routes, onto the protocol's (`service.oip.errors`)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from service.echo import shown
from service.errors import ServiceError, error_body
from service.json_encoding import encode
from service.middleware import request_id_of
from service.oip.errors import on_protocol_route, protocol_error_body, protocol_status
from service.validation_errors import describe_problems, message_of


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: object = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if on_protocol_route(request.url.path):
        body = protocol_error_body(message)
        status = protocol_status(status)
    else:
        body = error_body(code, message, details, request_id_of(request.scope))
    return Response(encode(body), status, headers=headers, media_type="application/json")


async def service_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ServiceError)
    return error_response(
        request, error.status, error.code, error.message, error.details, dict(error.headers)
    )


async def http_error(request: Request, error: Exception) -> Response:
    """Starlette's own errors: unknown routes (404), wrong methods (405), and any other."""
    assert isinstance(error, HTTPException)
    path = shown(request.url.path)
    headers = error.headers
    if error.status_code == 404:
        code = "not_found"
        message = f"no route for {request.method} {path}; the API is described at /docs"
    elif error.status_code == 405:
        # Starlette lists a route's methods in set order, which changes from process to process
        allowed = ", ".join(sorted((error.headers or {}).get("Allow", "").split(", ")))
        headers = {**(error.headers or {}), "Allow": allowed}
        code = "method_not_allowed"
        message = f"{request.method} is not allowed on {path}; allowed: {allowed}"
    else:
        code, message = f"http_{error.status_code}", str(error.detail)
    return error_response(request, error.status_code, code, message, None, headers)


async def validation_error(request: Request, error: Exception) -> Response:
    """FastAPI's parameter validation, in the same shape."""
    assert isinstance(error, RequestValidationError)
    details = [
        {"location": [str(part) for part in item["loc"]], "message": message_of(item)}
        for item in error.errors()
    ]
    message = describe_problems(error.errors())
    return error_response(request, 422, "invalid_request", f"invalid request: {message}", details)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
