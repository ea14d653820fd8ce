"""The protocol's routes in the OpenAPI schema: the inference request's schema among the
components, both body forms (JSON, and JSON followed by binary tensor data), and examples of real
error bodies in the protocol's `{"error": "..."}` shape."""

from __future__ import annotations

from typing import Any, Final

from service.auth import MISSING_KEY, WRONG_KEY
from service.oip.errors import on_protocol_route
from service.oip.types import InferenceRequest
from service.repository import NOT_LOADED_HINT

REQUEST_SCHEMA_REF: Final = "#/components/schemas/InferenceRequest"
ERROR_SCHEMA_REF: Final = "#/components/schemas/ProtocolErrorResponse"
SERVICE_ERROR_REF: Final = "#/components/schemas/ErrorResponse"  # what the rest of the API has
BINARY_BODY: Final = {
    "schema": {"type": "string", "format": "binary"},
    "description": "the JSON inference request followed by binary tensor data; the header "
    "Inference-Header-Content-Length gives the JSON part's length",
}
NOT_LOADED: Final = NOT_LOADED_HINT


def _example(summary: str, message: str) -> dict[str, Any]:
    return {"summary": summary, "value": {"error": message}}


UNKNOWN_MODEL: Final = _example(
    "unknown model",
    "no model named 'mmoe-synthetic-v2'; available models: ['mmoe-adult', 'mmoe-synthetic']"
    + NOT_LOADED,
)
UNKNOWN_VERSION: Final = _example(
    "unknown version",
    f"model 'mmoe-synthetic' has no version 7; available versions: [1]{NOT_LOADED}",
)
NOT_READY: Final = _example(
    "models still loading",
    "the service is starting: models are still loading; retry when GET /health/ready answers 200",
)
EXAMPLES: Final[dict[str, list[dict[str, Any]]]] = {
    "400": [
        _example(
            "binary tensor shorter than its shape",
            "input 'features': binary_data_size is 400 bytes, but only 396 bytes of binary data "
            "are left in the body; the body is shorter than its tensors",
        ),
        _example(
            "wrong shape",
            "input 'features' has shape [1, 99], but model 'mmoe-synthetic' version 1 takes "
            "shape [-1, 100] (-1: any number of rows)",
        ),
        _example(
            "missing input",
            "missing input 'features': model 'mmoe-synthetic' version 1 takes features (FP32 "
            "[-1, 100])",
        ),
        _example(
            "unknown datatype",
            "input 'features' has the unknown datatype 'FLOAT32'; the protocol's datatypes are "
            "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, "
            "BYTES",
        ),
    ],
    "401": [_example("no API key", MISSING_KEY), _example("wrong API key", WRONG_KEY)],
    "404": [UNKNOWN_MODEL, UNKNOWN_VERSION],
    "413": [
        _example(
            "too many rows",
            "1025 rows in one request, the limit is 1024; split the request into smaller ones "
            "(the server's limit is MMOE_MAX_INSTANCES)",
        )
    ],
    "500": [
        _example(
            "unexpected failure",
            "the server failed to answer this request; it is logged under request id "
            "5f0c2a8e9d3b4c71a2e6f0b9c8d7e6a5: quote it when reporting the problem",
        )
    ],
    "503": [
        NOT_READY,
        _example(
            "at capacity",
            "the server is at capacity: 256 requests are already waiting for an inference; retry "
            "shortly (the server's limit is MMOE_MAX_QUEUED_REQUESTS)",
        ),
    ],
}


def document_protocol(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the request schema and the error examples to the protocol's operations, in place,
    every error response in the protocol's shape (the API key's 401 included); FastAPI's 422
    goes: these routes never validate with FastAPI (their path segments are any string, and
    the codec reads the body)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    request_schema = InferenceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(request_schema.pop("$defs", {}))
    components["InferenceRequest"] = request_schema
    for path, operations in schema.get("paths", {}).items():
        if not on_protocol_route(path):
            continue
        for operation in operations.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            body = operation.get("requestBody", {}).get("content")
            if body is not None:
                body["application/json"] = {"schema": {"$ref": REQUEST_SCHEMA_REF}}
                body["application/octet-stream"] = BINARY_BODY
            for status, response in responses.items():
                content = response.get("content", {}).get("application/json", {})
                if content.get("schema", {}).get("$ref") == SERVICE_ERROR_REF:
                    content["schema"] = {"$ref": ERROR_SCHEMA_REF}  # e.g. the API key's 401
                if content.get("schema", {}).get("$ref") == ERROR_SCHEMA_REF:
                    content["examples"] = {
                        example["summary"].replace(" ", "_"): example
                        for example in _examples_for(path, status)
                    }
    return schema


def _examples_for(path: str, status: str) -> list[dict[str, Any]]:
    if status == "404" and "/versions/" not in path:
        return [UNKNOWN_MODEL]
    if status == "503" and not path.endswith("/infer"):
        return [NOT_READY]  # only inference waits in the queue
    return EXAMPLES.get(status, [])
