"""What Triton and KServe need to serve a model version: Triton's model configuration
(`config.pbtxt`, protobuf text format) and a KServe `InferenceService` for its Triton runtime.

Both are rendered from the version's real graph signature (every input and output onnxruntime
declares, with its datatype and dims), so a model with more inputs (tabular models' `categorical`)
gets them all. Nothing here touches the filesystem: `training.export_triton` writes the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from service.oip.datatypes import of_onnx
from service.runtime import TensorSignature

Device = Literal["cpu", "gpu"]
DEVICES: tuple[Device, ...] = ("gpu", "cpu")
PLATFORM = "onnxruntime_onnx"
KSERVE_API_VERSION = "serving.kserve.io/v1beta1"
KSERVE_TRITON_RUNTIME = "kserve-tritonserver"  # KServe's ClusterServingRuntime for Triton
# Kubernetes names an InferenceService with a DNS-1035 label: its URL host is made from it.
SERVICE_NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_SERVICE_NAME = 63


@dataclass(frozen=True)
class BatchingOptions:
    """How Triton batches requests for the model: at most `max_batch_size` rows per call;
    requests wait up to `max_queue_delay_us` to form one of the `preferred_batch_sizes`."""

    max_batch_size: int = 1024
    preferred_batch_sizes: tuple[int, ...] = (256, 1024)
    max_queue_delay_us: int = 500

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"the max batch size must be at least 1, not {self.max_batch_size}")
        limit = self.max_batch_size
        wrong = [size for size in self.preferred_batch_sizes if not 1 <= size <= limit]
        if wrong:
            raise ValueError(
                f"preferred batch sizes {wrong} are outside 1..{self.max_batch_size} (the max "
                "batch size)"
            )
        if self.max_queue_delay_us < 0:
            raise ValueError(f"the queue delay cannot be negative ({self.max_queue_delay_us} us)")


@dataclass(frozen=True)
class Instances:
    """Model instances (onnxruntime sessions) Triton runs at once: per GPU, or on the CPU."""

    gpu: int = 1
    cpu: int = 2

    def __post_init__(self) -> None:
        if self.gpu < 1 or self.cpu < 1:
            raise ValueError(f"instance counts must be at least 1 (gpu={self.gpu}, cpu={self.cpu})")


def model_config(
    name: str,
    version: int,
    inputs: list[TensorSignature],
    outputs: list[TensorSignature],
    batching: BatchingOptions,
    instances: Instances,
    device: Device,
) -> str:
    """`config.pbtxt` for one model version: Triton serves exactly `version`, on `device`."""
    kind, count = ("KIND_GPU", instances.gpu) if device == "gpu" else ("KIND_CPU", instances.cpu)
    preferred = ", ".join(str(size) for size in sorted(set(batching.preferred_batch_sizes)))
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(PLATFORM)}",
        f"max_batch_size: {batching.max_batch_size}",
        f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}",
        *_tensors("input", inputs),
        *_tensors("output", outputs),
        "dynamic_batching {",
        *([f"  preferred_batch_size: [ {preferred} ]"] if preferred else []),
        f"  max_queue_delay_microseconds: {batching.max_queue_delay_us}",
        "}",
        "instance_group [",
        "  {",
        f"    count: {count}",
        f"    kind: {kind}",
        "  }",
        "]",
    ]
    return "\n".join(lines) + "\n"


def _tensors(field: str, tensors: list[TensorSignature]) -> list[str]:
    """`input [...]` or `output [...]`: dims without the batch axis, which Triton adds."""
    entries = []
    for tensor in tensors:
        if tensor.shape and isinstance(tensor.shape[0], int):
            raise ValueError(
                f"{field} {tensor.name!r} has a fixed first axis {tensor.shape}; Triton batches "
                "along a dynamic first axis"
            )
        dims = ", ".join(str(dim) if isinstance(dim, int) else "-1" for dim in tensor.shape[1:])
        entries.append(
            "\n".join(
                [
                    "  {",
                    f"    name: {_quote(tensor.name)}",
                    f"    data_type: {of_onnx(tensor.type).triton_type}",
                    f"    dims: [ {dims} ]",
                    "  }",
                ]
            )
        )
    return [f"{field} [", ",\n".join(entries), "]"]


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    if not text.isprintable() or not text.isascii():
        raise ValueError(f"{text!r}: only printable ASCII names are written to config.pbtxt")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def service_name(model_name: str) -> str:
    """A valid InferenceService name for a model name: '.' and '_' become '-', and a name that
    starts with a digit gets the prefix 'm-'."""
    name = re.sub(r"[._]", "-", model_name).strip("-")
    if not name[:1].isalpha():
        name = f"m-{name}"
    return name[:MAX_SERVICE_NAME].rstrip("-")


def check_service_name(name: str) -> str:
    if len(name) > MAX_SERVICE_NAME or SERVICE_NAME_PATTERN.match(name) is None:
        raise ValueError(
            f"{name!r} is not a valid InferenceService name: at most {MAX_SERVICE_NAME} lowercase "
            "letters, digits and '-', starting with a letter and not ending with '-'"
        )
    return name


def inference_service(
    service: str, storage_uri: str, device: Device, cpus: int, memory: str
) -> str:
    """A KServe InferenceService (YAML) running Triton over the repository at `storage_uri`.

    The manifest passes Triton `--model-config-name=<device>`, which selects
    `<model>/configs/<device>.pbtxt` (whatever `config.pbtxt`, the default, says), and asks for
    a GPU when the device is one."""
    resources: dict[str, Any] = {
        "requests": {"cpu": str(cpus), "memory": memory},
        "limits": {"cpu": str(cpus), "memory": memory},
    }
    model: dict[str, Any] = {
        "modelFormat": {"name": "onnx"},
        "runtime": KSERVE_TRITON_RUNTIME,
        "protocolVersion": "v2",
        "storageUri": storage_uri,
    }
    if device == "gpu":
        resources["limits"]["nvidia.com/gpu"] = "1"
    model["args"] = [f"--model-config-name={device}"]
    model["resources"] = resources
    manifest = {
        "apiVersion": KSERVE_API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": check_service_name(service)},
        "spec": {"predictor": {"model": model}},
    }
    return yaml.safe_dump(manifest, sort_keys=False)
