"""The OpenAPI schema as the service really answers: every error response in the one error shape,
each with examples of real bodies (on the Open Inference Protocol's routes, the protocol's shape:
`service.oip.openapi`); the /predict body exactly as the served models take it; and HEAD beside
every GET.

FastAPI declares a 422 with its own `HTTPValidationError` body for every operation that has
parameters, but the service answers every error as `{"error": {...}}` (`service.errors`). That
declaration is rewritten: dropped where it cannot happen (an operation whose only parameters are
string path segments: any string is accepted, an unknown model or version is a 404), pointed at
`ErrorResponse` elsewhere. Once the models are loaded, the /predict request body is the schema
`service.request_schema` derives from them (rebuilt when the repository changes).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from service.auth import ADMIN_DISABLED, MISSING_KEY, WRONG_KEY, access_class
from service.errors import error_body
from service.oip.openapi import document_protocol
from service.repository import NOT_LOADED_HINT, ModelRepository
from service.request_schema import predict_request_schema

ERROR_SCHEMA_REF = "#/components/schemas/ErrorResponse"
FASTAPI_VALIDATION_REF = "#/components/schemas/HTTPValidationError"
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
REQUEST_ID = "5f0c2a8e9d3b4c71a2e6f0b9c8d7e6a5"


def _example(summary: str, code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"summary": summary, "value": error_body(code, message, details, REQUEST_ID)}


MODEL_NOT_FOUND = _example(
    "unknown model",
    "model_not_found",
    "no model named 'mmoe-synthetic-v2'; available models: ['mmoe-adult', 'mmoe-synthetic']"
    f"{NOT_LOADED_HINT}",
    {"model": "mmoe-synthetic-v2", "available": ["mmoe-adult", "mmoe-synthetic"]},
)
VERSION_NOT_FOUND = _example(
    "unknown version",
    "model_not_found",
    f"model 'mmoe-synthetic' has no version 7; available versions: [1]{NOT_LOADED_HINT}",
    {"model": "mmoe-synthetic", "version": 7, "available": [1]},
)
NOT_READY = _example(
    "models still loading",
    "not_ready",
    "the service is starting: models are still loading; retry when GET /health/ready answers 200",
)
INTERNAL_ERROR = _example(
    "unexpected failure",
    "internal_error",
    f"the server failed to answer this request; it is logged under request id {REQUEST_ID}: "
    "quote it when reporting the problem",
)
PARAMETER_ERROR = _example(
    "invalid parameter",
    "invalid_request",
    "invalid request: query.limit: Input should be a valid integer, unable to parse string as "
    "an integer",
    [
        {
            "location": ["query", "limit"],
            "message": "Input should be a valid integer, unable to parse string as an integer",
        }
    ],
)

NO_KEY = _example("no API key", "unauthorized", MISSING_KEY)
BAD_KEY = _example("wrong API key", "unauthorized", WRONG_KEY)
NO_ADMIN = _example("admin routes off", "admin_disabled", ADMIN_DISABLED)
RELOAD_FAILED = _example(
    "a new version failed",
    "reload_failed",
    "1 version(s) or promotion(s) on disk are not served: mmoe-synthetic 2: "
    "models/mmoe-synthetic/2/model.onnx: sha256 of the ONNX file is 5e1f..., the model card "
    "says 944b...; the file and its card do not belong together (re-export the model, or "
    "restore the matching model.onnx); every other change was applied, and what was served "
    "before keeps serving",
    {"outcome": "changed", "failed": [{"model": "mmoe-synthetic", "version": 2}], "...": "..."},
)
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "the server's MMOE_API_KEY"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
WITH_KEY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]

# Examples by status, for every operation, unless the operation's path has its own below.
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "401": [NO_KEY, BAD_KEY],
    "403": [NO_ADMIN],
    "409": [RELOAD_FAILED],
    "404": [MODEL_NOT_FOUND, VERSION_NOT_FOUND],
    "422": [PARAMETER_ERROR],
    "500": [INTERNAL_ERROR],
    "503": [NOT_READY],
}
PREDICT_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "404": [MODEL_NOT_FOUND, VERSION_NOT_FOUND],
    "413": [
        _example(
            "too many instances",
            "too_many_instances",
            "1025 instances in one request, the limit is 1024; split the request into smaller "
            "ones (the server's limit is MMOE_MAX_INSTANCES)",
            {"instances": 1025, "max_instances": 1024},
        ),
        _example(
            "body too large",
            "payload_too_large",
            "the request body (9000000 bytes) is larger than the limit of 8388608 bytes; send "
            "fewer instances per request (the server's limit is MMOE_MAX_BODY_BYTES)",
            {"max_body_bytes": 8388608},
        ),
    ],
    "422": [
        _example(
            "wrong number of features",
            "wrong_feature_count",
            "instance 1 has 99 features; the model expects 100",
            {"instance": 1, "expected": 100, "received": 99},
        ),
        _example(
            "unknown field",
            "invalid_request",
            "unknown fields ['instance']; a /predict body has the fields ['instances', "
            "'return_gates', 'model', 'version']",
            {"unknown": ["instance"], "allowed": ["instances", "return_gates", "model", "version"]},
        ),
    ],
}

PATH_EXAMPLES = {"/predict": PREDICT_EXAMPLES, "/models/{name}": {"404": [MODEL_NOT_FOUND]}}


def install(
    app: FastAPI,
    repository: Callable[[], ModelRepository | None] = lambda: None,
    max_instances: int = 1024,
) -> None:
    """Make `app.openapi()` (and /openapi.json) return the rewritten schema, with the /predict
    body of the models `repository()` serves now."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    base: dict[str, Any] = {}
    described: list[ModelRepository | None] = [None]

    def schema() -> dict[str, Any]:
        if not base:
            with warnings.catch_warnings():  # GET and HEAD share one operation id until
                warnings.filterwarnings("ignore", "Duplicate Operation ID")  # document_head
                base.update(document_head(document_protocol(document_errors(generate()))))
        current = repository()
        if app.openapi_schema is None or described[0] is not current:
            document = copy.deepcopy(base)
            if current is not None:
                body = document["paths"]["/predict"]["post"]["requestBody"]["content"]
                body["application/json"]["schema"] = predict_request_schema(current, max_instances)
            app.openapi_schema, described[0] = document, current
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]


def document_head(schema: dict[str, Any]) -> dict[str, Any]:
    """HEAD operations as what they are: the GET's answer without a body, with their own ids."""
    for operations in schema.get("paths", {}).values():
        head, get = operations.get("head"), operations.get("get")
        if head is None or get is None:
            continue
        head = operations["head"] = copy.deepcopy(head)
        # FastAPI names both after whichever method its set yields first: name each its own
        stem = get["operationId"].removesuffix("_get").removesuffix("_head")
        get["operationId"], head["operationId"] = f"{stem}_get", f"{stem}_head"
        head["summary"] = f"{get.get('summary', '')} (headers only)".strip()
        head["description"] = "The GET's status and headers, without its body."
        for response in head.get("responses", {}).values():
            response.pop("content", None)
    return schema


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite FastAPI's validation responses, say which operations need the API key, and add
    error examples, in place."""
    document_security(schema)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if _schema_ref(responses.get("422")) == FASTAPI_VALIDATION_REF:
                if _cannot_fail_validation(operation):
                    del responses["422"]
                else:
                    responses["422"] = {
                        "description": "Invalid request",
                        "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}},
                    }
            for status, response in responses.items():
                if _schema_ref(response) != ERROR_SCHEMA_REF:
                    continue
                examples = PATH_EXAMPLES.get(path, {}).get(status) or EXAMPLES.get(status, [])
                response["content"]["application/json"]["examples"] = {
                    example["summary"].replace(" ", "_"): example for example in examples
                }
    components = schema.get("components", {}).get("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        components.pop(name, None)
    return schema


def document_security(schema: dict[str, Any]) -> None:
    """The API key as the auth middleware asks for it (`service.auth.access_class`): always on
    /admin routes, optional elsewhere (needed when MMOE_INFERENCE_NEEDS_KEY=true)."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES

    def error(description: str) -> dict[str, Any]:
        content = {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}}
        return {"description": description, "content": content}

    for path, operations in schema.get("paths", {}).items():
        needed = access_class(path)
        if needed == "open":
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if needed == "admin":
                operation["security"] = WITH_KEY
                responses["401"] = error("No API key, or a wrong one")
                responses["403"] = error("The server has no API key")
            else:
                operation["security"] = [{}, *WITH_KEY]
                responses["401"] = error("No API key, or a wrong one (MMOE_INFERENCE_NEEDS_KEY)")


def _schema_ref(response: dict[str, Any] | None) -> str | None:
    if response is None:
        return None
    ref: str | None = (
        response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    )
    return ref


def _cannot_fail_validation(operation: dict[str, Any]) -> bool:
    parameters = operation.get("parameters", [])
    return "requestBody" not in operation and all(
        parameter.get("in") == "path" and parameter.get("schema", {}).get("type") == "string"
        for parameter in parameters
    )
