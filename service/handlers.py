"""What the service does, with no HTTP in sight: routes call these and turn results into responses.

`ServiceState` holds the model repository once it is loaded; until then every handler that needs
a model raises `NotReadyError` (503).
"""

from __future__ import annotations

from typing import Any

from service.contract import VERSION_RULE, parse_version
from service.errors import ModelNotFoundError, NotReadyError
from service.inference import InferenceRunner
from service.payload import decode_request
from service.repository import ModelRepository
from service.responses import encode_prediction


class ServiceState:
    """The repository the service answers from; None until the models are loaded and warm."""

    def __init__(self, repository: ModelRepository | None = None) -> None:
        self.repository = repository

    def require_repository(self) -> ModelRepository:
        if self.repository is None:
            raise NotReadyError(
                "the service is starting: models are still loading; retry when GET /health/ready "
                "answers 200"
            )
        return self.repository


class HealthHandler:
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def live(self) -> dict[str, Any]:
        return {"status": "live"}

    def ready(self) -> dict[str, Any]:
        repository = self.state.require_repository()
        default = repository.default
        return {
            "status": "ready",
            "default_model": {"name": default.name, "version": default.version},
        }


class ModelsHandler:
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def list_models(self) -> dict[str, Any]:
        repository = self.state.require_repository()
        return {
            "default_model": {
                "name": repository.default_name,
                "version": repository.default_version,
            },
            "models": [self._summary(repository, name) for name in repository.names()],
        }

    def model(self, name: str) -> dict[str, Any]:
        repository = self.state.require_repository()
        summary = self._summary(repository, name)
        summary["latest"] = repository.get(name, summary["latest_version"]).metadata()
        return summary

    def version(self, name: str, version: str) -> dict[str, Any]:
        repository = self.state.require_repository()
        return repository.get(name, _parse_version(repository, name, version)).metadata()

    @staticmethod
    def _summary(repository: ModelRepository, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "versions": repository.versions(name),
            "latest_version": repository.latest(name),
            "candidate_versions": repository.candidates(name),
        }


class PredictHandler:
    def __init__(self, state: ServiceState, runner: InferenceRunner, max_instances: int) -> None:
        self.state = state
        self.runner = runner
        self.max_instances = max_instances

    async def predict(self, body: bytes) -> bytes:
        """A /predict body -> the encoded response. One onnxruntime run per request."""
        repository = self.state.require_repository()
        request = decode_request(body, self.max_instances)
        model = repository.get(request.model, request.version)
        feeds = model.feeds(request.instances)
        outputs = await self.runner.run(model, feeds, request.return_gates)
        return encode_prediction(model, outputs)


def _parse_version(repository: ModelRepository, name: str, version: str) -> int:
    """A version path segment: `parse_version`'s rule, or 'latest'."""
    if version == "latest":
        return repository.latest(name)
    try:
        return parse_version(version)
    except ValueError:
        available = repository.versions(name)  # an unknown model is reported first
        raise ModelNotFoundError(
            f"model {name!r} has no version {version!r}; {VERSION_RULE}, or 'latest' "
            f"(available versions: {available})",
            {"model": name, "version": version, "available": available},
        ) from None
