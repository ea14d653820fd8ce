"""The protocol's REST routes: thin adapters from requests to `InferenceProtocolHandler` and from
its results to responses. Errors raised here are answered in the protocol's shape by the
service's exception handlers (`service.oip.errors`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.json_encoding import encode
from service.oip import types
from service.oip.codec import HEADER_LENGTH, EncodedResponse, decompress
from service.oip.handlers import InferenceProtocolHandler
from service.oip.openapi import REQUEST_SCHEMA_REF
from service.request_body import BodyBudget

JSON = "application/json"
BINARY = "application/octet-stream"
TAGS: list[str | Any] = ["open inference protocol (v2)"]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": types.ProtocolErrorResponse} for status in statuses}


def _json(content: Any) -> Response:
    return Response(encode(content), media_type=JSON)


def _inference_response(encoded: EncodedResponse) -> Response:
    if encoded.header_length is None:
        return Response(encoded.body, media_type=JSON)
    return Response(
        encoded.body,
        media_type=BINARY,
        headers={HEADER_LENGTH: str(encoded.header_length)},
    )


INFER_DOC = """Run the model on input tensors; the response holds the output tensors.

JSON tensors carry their values in `data`. With Triton's binary tensor data extension, the
body is the JSON object followed by the tensors' bytes (little-endian, row-major): the header
`Inference-Header-Content-Length` gives the JSON object's length, each binary input its size in
its `binary_data_size` parameter, and outputs come back as binary data when the request's
`binary_data_output` parameter or an output's `binary_data` parameter is true (then the
response is `application/octet-stream` with the same header). `tritonclient.http` and KServe's
`InferenceRESTClient` speak both forms. Concurrent requests for one model may run as one
onnxruntime call. Errors: 400 for a malformed request or one that does not fit the model (the
message names the tensor), 404 for an unknown model or version, 413 over the row or byte limit,
503 while loading or at capacity (with Retry-After)."""


def build_protocol_router(handler: InferenceProtocolHandler, bodies: BodyBudget) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=TAGS)

    @router.get("", response_model=types.ServerMetadata)
    async def server_metadata() -> Response:
        """The server's name, version and protocol extensions."""
        return _json(handler.server_metadata())

    @router.get("/health/live", response_model=types.ServerLive)
    async def live() -> Response:
        """The process is up and answering."""
        return _json(handler.live())

    @router.get("/health/ready", response_model=types.ServerReady, responses=_errors(503))
    async def ready() -> Response:
        """200 once every model is loaded and passed its warm-up inference; 503 before."""
        return _json(handler.ready())

    @router.get("/models/{name}", response_model=types.ModelMetadata, responses=_errors(404, 503))
    async def model_metadata(name: str) -> Response:
        """The model's versions and every input and output tensor of its graph (the version
        /predict would use)."""
        return _json(handler.model_metadata(name, None))

    @router.get(
        "/models/{name}/versions/{version}",
        response_model=types.ModelMetadata,
        responses=_errors(404, 503),
    )
    async def version_metadata(name: str, version: str) -> Response:
        """The version's input and output tensors. `version` is a number or `latest`."""
        return _json(handler.model_metadata(name, version))

    @router.get(
        "/models/{name}/ready", response_model=types.ModelReady, responses=_errors(404, 503)
    )
    async def model_ready(name: str) -> Response:
        """200 when the model is loaded and warm; 404 for a model the server does not have."""
        return _json(handler.model_ready(name, None))

    @router.get(
        "/models/{name}/versions/{version}/ready",
        response_model=types.ModelReady,
        responses=_errors(404, 503),
    )
    async def version_ready(name: str, version: str) -> Response:
        """200 when the version is loaded and warm; 404 for one the server does not have."""
        return _json(handler.model_ready(name, version))

    infer_spec: dict[str, Any] = {
        "response_model": types.InferenceResponse,
        "responses": _errors(400, 404, 413, 500, 503),
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"$ref": REQUEST_SCHEMA_REF}}},
            }
        },
        "description": INFER_DOC,
    }

    @router.post("/models/{name}/infer", **infer_spec)
    async def infer(name: str, request: Request) -> Response:
        return await _infer(request, name, None)

    @router.post("/models/{name}/versions/{version}/infer", **infer_spec)
    async def infer_version(name: str, version: str, request: Request) -> Response:
        return await _infer(request, name, version)

    async def _infer(request: Request, name: str, version: str | None) -> Response:
        body = await bodies.read(request.scope, request.receive)
        try:
            encoding = request.headers.get("content-encoding")
            plain = decompress(body, encoding, bodies.limits.max_bytes)
            if plain is not body:
                bodies.hold(plain)  # the decompressed copy counts against the budget too
            try:
                encoded = await handler.infer(
                    name, version, plain, request.headers.get(HEADER_LENGTH)
                )
            finally:
                if plain is not body:
                    bodies.release(plain)
        finally:
            bodies.release(body)
        return _inference_response(encoded)

    return router
