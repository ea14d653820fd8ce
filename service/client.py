"""A Python client for the service: per-task predictions and gate weights as numpy arrays.

    from service.client import MMoEClient

    with MMoEClient("http://127.0.0.1:8000") as client:
        result = client.predict(features)          # float [n, d] array, rows, or records
        result.predictions["task_1"]               # float32 [n]
        result.gates["task_1"]                     # float32 [n, E], or result.gates is None

Large inputs are sent in batches under the server's limits, which the client learns from the
server's 413 answers (`too_many_instances` says `max_instances`, `payload_too_large` says
`max_body_bytes`) and then respects for the rest of its life. A 503 (loading, or busy) is retried
with exponential backoff, waiting what `Retry-After` asks for when the server sends it. Every error
the service answers is raised as the service's own exception class (`service.errors`: e.g.
`WrongFeatureCountError`, `ModelNotFoundError`), with `status`, `code`, `message`, `details` and
`request_id`; instance numbers count from the first instance of the whole input.

Depends on httpx and numpy only (`service.errors` imports nothing); it never loads onnxruntime.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx
import numpy as np

from service.errors import ServiceError

DEFAULT_URL = "http://127.0.0.1:8000"
Instances = np.ndarray | Sequence[Sequence[float]] | Sequence[Mapping[str, Any]]


class ClientError(Exception):
    """A problem on the client's side of the wire: bad input, or a server that cannot be used."""


class ServiceUnreachableError(ClientError):
    """No HTTP answer at all: the server is not running, or the URL is wrong."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    architecture: str


@dataclass(frozen=True)
class Prediction:
    """One answer for n instances. `gates` is None for Shared-Bottom or `return_gates=False`;
    for OMoE every task holds the same (shared) gate weights, as in the REST API."""

    model: ModelVersion
    predictions: dict[str, np.ndarray]  # task -> float32 [n]
    gates: dict[str, np.ndarray] | None  # task -> float32 [n, E]

    def __len__(self) -> int:
        return len(next(iter(self.predictions.values())))

    @classmethod
    def concatenate(cls, parts: Sequence[Prediction]) -> Prediction:
        first = parts[0]
        for part in parts[1:]:
            if part.model != first.model:
                raise ClientError(
                    f"the batches were answered by different models ({first.model} and "
                    f"{part.model}): the server's default changed mid-way; name `model` and "
                    "`version` to score with one"
                )
        predictions = {
            task: np.concatenate([part.predictions[task] for part in parts])
            for task in first.predictions
        }
        gates = None
        if first.gates is not None:
            gates = {
                task: np.concatenate([part.gates[task] for part in parts if part.gates])
                for task in first.gates
            }
        return cls(first.model, predictions, gates)


def error_classes() -> dict[str, type[ServiceError]]:
    """Every error code of the service -> its exception class (`service.errors`); where classes
    share a code (a refinement of one error), the most general one."""
    found: dict[str, type[ServiceError]] = {}
    pending: list[type[ServiceError]] = [ServiceError]
    while pending:
        cls = pending.pop(0)
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


ERROR_CLASSES = error_classes()


@dataclass
class ServerLimits:
    """What the client has learned of the server's limits (None: not met yet)."""

    max_instances: int | None = None
    max_body_bytes: int | None = None


@dataclass
class MMoEClient:
    """A client of one server. `batch_size` is the most instances per request it starts with."""

    url: str = DEFAULT_URL
    model: str | None = None
    version: int | Literal["latest"] | None = None
    timeout_s: float = 60.0
    batch_size: int = 1024
    max_retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    http: httpx.Client | None = None  # bring your own (proxies, TLS, auth headers)
    sleep: Callable[[float], None] = time.sleep
    limits: ServerLimits = field(default_factory=ServerLimits)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        self.url = self.url.rstrip("/")
        self._owns_http = self.http is None
        self._http = self.http or httpx.Client(timeout=self.timeout_s)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> MMoEClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def predict(
        self,
        instances: Instances,
        *,
        return_gates: bool = True,
        model: str | None = None,
        version: int | Literal["latest"] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> Prediction:
        """Predictions (and gate weights) for every instance, in order. `instances`: a 2-D
        array or rows of d numbers, or records (mappings of feature name to value). `on_batch`
        is called with the number of instances of each answered batch (e.g. a progress bar)."""
        rows = _as_rows(instances)
        envelope: dict[str, Any] = {"return_gates": return_gates}
        chosen_model = model if model is not None else self.model
        chosen_version = version if version is not None else self.version
        if chosen_model is not None:
            envelope["model"] = chosen_model
        if chosen_version is not None:
            envelope["version"] = chosen_version
        parts = []
        for answer in self._batches(rows, envelope):
            parts.append(answer)
            if on_batch is not None:
                on_batch(len(answer))
        return Prediction.concatenate(parts)

    def _batches(self, rows: list[Any], envelope: dict[str, Any]) -> Iterator[Prediction]:
        start = 0
        size = min(self.batch_size, self.limits.max_instances or self.batch_size)
        while start < len(rows):
            chunk = rows[start : start + size]
            body = json.dumps({"instances": chunk, **envelope}, default=_json_scalar).encode()
            limit = self.limits.max_body_bytes
            if limit is not None and len(body) > limit and len(chunk) > 1:
                size = max(1, min(len(chunk) - 1, int(len(chunk) * limit / len(body) * 0.95)))
                continue
            response = self._post(body)
            if response.status_code == 413 and self._learn_limit(response, len(chunk), len(body)):
                size = min(size, self.limits.max_instances or size)
                continue
            if response.status_code != 200:
                raise _shifted(_service_error(response), start)
            yield _prediction(response.json())
            start += len(chunk)

    def _learn_limit(self, response: httpx.Response, instances: int, body_bytes: int) -> bool:
        """Take the limit a 413 states; True when a smaller batch can then be sent."""
        error = _error_info(response)
        details = error.get("details") or {}
        if error.get("code") == "too_many_instances" and "max_instances" in details:
            self.limits.max_instances = int(details["max_instances"])
            return self.limits.max_instances < instances
        if error.get("code") == "payload_too_large" and "max_body_bytes" in details:
            self.limits.max_body_bytes = int(details["max_body_bytes"])
            return self.limits.max_body_bytes < body_bytes and instances > 1
        return False

    def model_metadata(
        self, name: str | None = None, version: int | Literal["latest"] = "latest"
    ) -> dict[str, Any]:
        """GET /models/{name}/versions/{version}: the card, tasks and signature of a version
        (no name: the server's default model)."""
        if name is None:
            name = str(self._get("/models")["default_model"]["name"])
        return self._get(f"/models/{name}/versions/{version}")

    def _get(self, path: str) -> dict[str, Any]:
        response = self._request("GET", path)
        if response.status_code != 200:
            raise _service_error(response)
        body: dict[str, Any] = response.json()
        return body

    def _post(self, body: bytes) -> httpx.Response:
        return self._request("POST", "/predict", body)

    def _request(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        """One request, retried while the server answers 503, with backoff (Retry-After when
        the server says how long)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.request(
                    method,
                    f"{self.url}{path}",
                    content=body,
                    headers=headers,
                    timeout=self.timeout_s,
                )
            except httpx.TransportError as error:
                raise ServiceUnreachableError(
                    f"cannot reach the service at {self.url}: {error}; is it running "
                    "(make run, mmoe-serve) and is the URL right?"
                ) from error
            if response.status_code != 503 or attempt == self.max_retries:
                return response
            self.sleep(self._wait_s(response, attempt))
        raise AssertionError("unreachable")

    def _wait_s(self, response: httpx.Response, attempt: int) -> float:
        retry_after = retry_after_s(response.headers.get("retry-after"))
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        return float(min(self.backoff_s * 2**attempt, self.max_backoff_s))


def _as_rows(instances: Instances) -> list[Any]:
    if isinstance(instances, np.ndarray):
        if instances.ndim != 2:
            raise ClientError(
                f"instances must be a 2-D array [n, d]; got an array of shape {instances.shape}"
            )
        rows: list[Any] = instances.tolist()
    else:
        rows = [dict(row) if isinstance(row, Mapping) else row for row in instances]
    if not rows:
        raise ClientError("no instances to predict: send at least one")
    return rows


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _prediction(body: dict[str, Any]) -> Prediction:
    model = ModelVersion(**body["model"])
    predictions = {
        task: np.asarray(answer["predictions"], dtype=np.float32)
        for task, answer in body["tasks"].items()
    }
    gates = None
    if all(answer["gate_weights"] is not None for answer in body["tasks"].values()):
        gates = {
            task: np.asarray(answer["gate_weights"], dtype=np.float32)
            for task, answer in body["tasks"].items()
        }
    return Prediction(model, predictions, gates)


def _error_info(response: httpx.Response) -> dict[str, Any]:
    try:
        info = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    return info if isinstance(info, dict) else {}


def _service_error(response: httpx.Response) -> ServiceError:
    """The service's exception for an error answer (ServiceError itself for a code unknown
    here, e.g. a proxy's own error page)."""
    info = _error_info(response)
    code = info.get("code") or f"http_{response.status_code}"
    message = info.get("message") or (
        f"HTTP {response.status_code} from {response.request.url} without the service's error "
        f"body: {response.text[:200]!r}"
    )
    cls = ERROR_CLASSES.get(code, ServiceError)
    error = cls(message, info.get("details"))
    error.status, error.code = response.status_code, code
    error.request_id = info.get("request_id") or response.headers.get("x-request-id")
    return error


def _shifted(error: ServiceError, offset: int) -> ServiceError:
    """Number the instance an error names from the first instance of the whole input."""
    if (
        offset
        and isinstance(error.details, dict)
        and isinstance(error.details.get("instance"), int)
    ):
        local = error.details["instance"]
        error.details["instance"] = local + offset
        error.message = re.sub(rf"^instance {local}\b", f"instance {local + offset}", error.message)
        error.args = (error.message,)
    return error


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date."""
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


__all__ = [
    "DEFAULT_URL",
    "ClientError",
    "MMoEClient",
    "ModelVersion",
    "Prediction",
    "ServerLimits",
    "ServiceError",
    "ServiceUnreachableError",
]
