"""What the service does, with no HTTP in sight: routes call these and turn results into responses.

`ServiceState` holds the model repository once it is loaded; until then every handler that needs
a model raises `NotReadyError` (503).
"""

from __future__ import annotations

from typing import Any

from service.contract import INPUT_FEATURES, VERSION_RULE, parse_version
from service.echo import shown
from service.errors import ModelNotFoundError, NotReadyError
from service.inference import InferenceRunner
from service.metrics import ServiceMetrics
from service.model import ModelOutputs, ServedModel, require_finite
from service.payload import decode_request
from service.payload_fast import decode_array_body, to_float32
from service.reloading import (
    ReloadReport,
    RepositoryReloader,
    RepositoryStatus,
    versions_with_roles,
)
from service.repository import ModelRepository
from service.responses import encode_prediction


class ServiceState:
    """The repository the service answers from (None until the models are loaded and warm; a
    reload replaces it whole), and what is known about the versions it does not serve."""

    def __init__(
        self, repository: ModelRepository | None = None, status: RepositoryStatus | None = None
    ) -> None:
        self.repository = repository
        self.status = status if status is not None else RepositoryStatus()

    def loaded(self) -> dict[str, list[int]]:
        repository = self.require_repository()
        return {name: repository.versions(name) for name in repository.names()}

    # what the metrics read at scrape time (service.metrics.RepositoryView)
    def versions_in_use(self) -> list[tuple[ServedModel, str]]:
        return [] if self.repository is None else list(versions_with_roles(self.repository))

    def failed_versions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, version in self.status.failures:
            if version is not None:
                counts[name] = counts.get(name, 0) + 1
        return counts

    def unloading_versions(self) -> int:
        return len(self.status.unloading())

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
            "loaded": self.state.loaded(),
            "failed": self.state.status.failure_list(),
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
            "failed": self.state.status.failure_list(),
            "unloading": [
                {"model": name, "version": version}
                for name, version in self.state.status.unloading()
            ],
            "repository": self.state.status.as_dict(),
        }

    def model(self, name: str) -> dict[str, Any]:
        repository = self.state.require_repository()
        summary = self._summary(repository, name)
        summary["latest"] = repository.get(name, summary["latest_version"]).metadata()
        return summary

    def version(self, name: str, version: str) -> dict[str, Any]:
        repository = self.state.require_repository()
        return repository.get(name, version_from_path(repository, name, version)).metadata()

    @staticmethod
    def _summary(repository: ModelRepository, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "versions": repository.versions(name),
            "latest_version": repository.latest(name),
            "candidate_versions": repository.candidates(name),
        }


class AdminHandler:
    def __init__(self, state: ServiceState, reloader: RepositoryReloader) -> None:
        self.state = state
        self.reloader = reloader

    async def reload(self) -> ReloadReport:
        """Reload the repository now, trying every failed version again."""
        self.state.require_repository()
        report = await self.reloader.reload("admin")
        assert report is not None  # only polls skip
        return report


class PredictHandler:
    """/predict: body -> model -> features -> the runner -> the encoded response.

    With `fast_parse`, a body of array instances is read by `payload_fast`; any other body, and
    any body that path cannot vouch for, by the plain path, which owns every error message."""

    def __init__(
        self,
        state: ServiceState,
        runner: InferenceRunner,
        max_instances: int,
        fast_parse: bool = True,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.state = state
        self.runner = runner
        self.max_instances = max_instances
        self.fast_parse = fast_parse
        self.metrics = metrics

    async def predict(self, body: bytes) -> bytes:
        repository = self.state.require_repository()
        feeds = None
        fast = decode_array_body(body, self.max_instances) if self.fast_parse else None
        if fast is not None:
            model = repository.get(fast.model, fast.version)
            return_gates = fast.return_gates
            if model.encoder is None and fast.values.shape[1] == model.input_dim:
                features = to_float32(fast.values)
                feeds = None if features is None else {INPUT_FEATURES: features}
        if feeds is None:
            request = decode_request(body, self.max_instances)
            model = repository.get(request.model, request.version)
            return_gates = request.return_gates
            feeds = model.feeds(request.instances)
        if self.metrics is not None:
            self.metrics.observe_instances(model.name, len(next(iter(feeds.values()))))
        outputs = await self.runner.run(model, feeds)
        require_finite(outputs)
        return encode_prediction(model, ModelOutputs.of(outputs, return_gates))


def version_from_path(repository: ModelRepository, name: str, version: str) -> int:
    """A version path segment: `parse_version`'s rule, or 'latest'."""
    if version == "latest":
        return repository.latest(name)
    try:
        return parse_version(version)
    except ValueError:
        available = repository.versions(name)  # an unknown model is reported first
        raise ModelNotFoundError(
            f"model {name!r} has no version {shown(version)!r}; {VERSION_RULE}, or 'latest' "
            f"(available versions: {available})",
            {"model": name, "version": shown(version), "available": available},
        ) from None
