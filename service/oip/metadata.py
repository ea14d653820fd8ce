"""The protocol's server and model metadata, built from the running service and the models' real
graph signatures."""

from __future__ import annotations

from importlib import metadata
from typing import Any, Final

from service.model import ServedModel
from service.oip.signature import inputs_of, outputs_of

SERVER_NAME: Final = "mmoe-service"
EXTENSIONS: Final = ("binary_tensor_data",)
PLATFORM: Final = "onnxruntime_onnx"  # Triton's name for what runs the models


def server_metadata() -> dict[str, Any]:
    return {
        "name": SERVER_NAME,
        "version": metadata.version("mmoe-service"),
        "extensions": list(EXTENSIONS),
    }


def model_metadata(model: ServedModel, versions: list[int]) -> dict[str, Any]:
    """`model`'s metadata; `versions`: every version of it the server holds."""
    return {
        "name": model.name,
        "versions": [str(version) for version in versions],
        "platform": PLATFORM,
        "inputs": [spec.as_dict() for spec in inputs_of(model)],
        "outputs": [spec.as_dict() for spec in outputs_of(model)],
    }
