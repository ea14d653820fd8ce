"""What the protocol's routes do, with no HTTP in sight: health, metadata and inference.

Inference decodes the body (`codec`), checks it against the model's graph (`signature`), runs it
through the service's inference runner, the same one as /predict, and encodes the outputs asked
for. A model named without a version is answered by the version /predict would use: the
configured default version for the default model, the promoted (latest) version for any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from service.handlers import ServiceState, version_from_path
from service.model import ServedModel, require_finite
from service.oip import codec, metadata, signature


class TensorRunner(Protocol):
    """Runs one model on named input arrays (batch axis first) and returns every output."""

    async def run(
        self, model: ServedModel, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]: ...


class InferenceProtocolHandler:
    def __init__(self, state: ServiceState, runner: TensorRunner, max_instances: int) -> None:
        self.state = state
        self.runner = runner
        self.max_instances = max_instances

    def server_metadata(self) -> dict[str, Any]:
        return metadata.server_metadata()

    def live(self) -> dict[str, Any]:
        return {"live": True}

    def ready(self) -> dict[str, Any]:
        self.state.require_repository()
        return {"ready": True}

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self.model(name, version)
        return metadata.model_metadata(model, self.state.require_repository().versions(name))

    def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        self.model(name, version)  # loaded models are ready: each passed its warm-up inference
        return {"name": name, "ready": True}

    async def infer(
        self,
        name: str,
        version: str | None,
        body: bytes,
        header_length: str | None,
    ) -> codec.EncodedResponse:
        """`body` as sent, once decompressed (`codec.decompress`)."""
        model = self.model(name, version)
        request = codec.decode_request(body, header_length)
        feeds = signature.check_inputs(model, request.inputs, self.max_instances)
        chosen = signature.chosen_outputs(model, request)
        outputs = await self.runner.run(model, feeds)
        require_finite(outputs)  # an overflow is the client's 400 naming the rows, never a success
        return codec.encode_response(
            model.name,
            model.version,
            request,
            [(output, outputs[output], binary) for output, binary in chosen],
        )

    def model(self, name: str, version: str | None) -> ServedModel:
        repository = self.state.require_repository()
        if version is None:
            return repository.get(name)
        return repository.get(name, version_from_path(repository, name, version))
