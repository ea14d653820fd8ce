"""Every error the service answers with: an exception class carrying its HTTP status and code.

One JSON shape for all of them, built by `error_body`:

    {"error": {"code": "...", "message": "...", "details": {...} | null, "request_id": "..."}}

Handlers raise these; they know nothing of HTTP beyond the status number they carry.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base class: an error with a status, a stable machine-readable code and a human message."""

    status: int = 500
    code: str = "internal_error"
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers, e.g. Retry-After

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.request_id: str | None = None  # set where an error is read back from a response


class InvalidRequestError(ServiceError):
    """The request as a whole is wrong: not JSON, not an object, a field of the wrong type."""

    status = 422
    code = "invalid_request"


class InvalidJsonError(InvalidRequestError):
    code = "invalid_json"


class EmptyInstancesError(InvalidRequestError):
    code = "empty_instances"


class InvalidInstanceError(InvalidRequestError):
    """One instance is wrong; subclasses say how and `details` say which instance."""

    code = "invalid_instance"


class WrongFeatureCountError(InvalidInstanceError):
    code = "wrong_feature_count"


class NonNumericFeatureError(InvalidInstanceError):
    code = "non_numeric_feature"


class NonFiniteFeatureError(InvalidInstanceError):
    code = "non_finite_feature"


class InvalidCategoryError(InvalidInstanceError):
    """A categorical feature's value is not a string (nor null)."""

    code = "invalid_category"


class FeatureOutOfRangeError(InvalidInstanceError):
    """A finite feature value beyond the contract's MAX_FEATURE_MAGNITUDE."""

    code = "feature_out_of_range"


class NonFiniteOutputError(InvalidInstanceError):
    """The model's outputs for an instance overflowed: never answered as a success."""

    code = "non_finite_output"


class UnknownFeaturesError(InvalidInstanceError):
    code = "unknown_features"


class MissingFeaturesError(InvalidInstanceError):
    code = "missing_features"


class InvalidInferenceRequestError(InvalidRequestError):
    """A malformed Open Inference Protocol request, or one that does not fit the model (400 on
    the protocol's routes, which answer 400 where the rest of the service answers 422)."""

    code = "invalid_inference_request"


class TooManyInstancesError(ServiceError):
    status = 413
    code = "too_many_instances"


# Said with every refusal made before the body was read to its end: the rest of it would be read
# as the next request, so the connection closes after the answer.
CLOSE = ("Connection", "close")


class PayloadTooLargeError(ServiceError):
    status = 413
    code = "payload_too_large"
    headers: tuple[tuple[str, str], ...] = (CLOSE,)


class RequestTimeoutError(ServiceError):
    """The body did not arrive in time (a slow or stalled client)."""

    status = 408
    code = "request_timeout"
    headers: tuple[tuple[str, str], ...] = (CLOSE,)


class ModelNotFoundError(ServiceError):
    status = 404
    code = "model_not_found"


class NotReadyError(ServiceError):
    status = 503
    code = "not_ready"


RETRY_AFTER_SECONDS = 1


class OverloadedError(ServiceError):
    """Every inference slot is busy and the queue is full: come back shortly."""

    status = 503
    code = "overloaded"
    headers: tuple[tuple[str, str], ...] = (("Retry-After", str(RETRY_AFTER_SECONDS)),)


class BodiesOverBudgetError(OverloadedError):
    """The bodies being received by this process would exceed MMOE_MAX_INFLIGHT_BODY_BYTES."""

    headers = (*OverloadedError.headers, CLOSE)


class ShuttingDownError(ServiceError):
    status = 503
    code = "shutting_down"
    headers = (("Retry-After", str(RETRY_AFTER_SECONDS)),)


class ReloadFailedError(ServiceError):
    """An admin reload left some version on disk unserved, or was rejected as a whole."""

    status = 409
    code = "reload_failed"


class ModelLoadError(RuntimeError):
    """A model version cannot be served: the start-up fails with this message."""


class ProviderUnavailableError(ModelLoadError):
    """The execution provider asked for is not available in this onnxruntime build."""


def error_body(
    code: str, message: str, details: Any = None, request_id: str | None = None
) -> dict[str, Any]:
    """The one JSON shape of every 4xx and 5xx response."""
    return {
        "error": {"code": code, "message": message, "details": details, "request_id": request_id}
    }
