"""`python -m training.export_triton models/<name>/<version> OUT`: a Triton model repository and a
KServe InferenceService for one model version, for when one machine is not enough.

Writes

    OUT/<name>/config.pbtxt              Triton's model configuration (instances on --device)
    OUT/<name>/configs/gpu.pbtxt         the same with instances on the GPU  } chosen with
    OUT/<name>/configs/cpu.pbtxt         the same with instances on the CPU  } --model-config-name
    OUT/<name>/<version>/model.onnx      the graph, byte for byte (and model.json, its card)
    OUT/<name>-inferenceservice.yaml     KServe InferenceService on its Triton runtime

The version is loaded and verified first exactly as the service does (card, sha256, embedded card,
graph signature, warm-up inference), so only a servable version is exported. The version
directory is published like training publishes one: staged beside its place and renamed into it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from service.contract import CARD_FILE, MODEL_FILE, VERSION_RULE, is_version
from service.errors import ModelLoadError
from service.model import ServedModel
from service.runtime import RuntimeOptions
from training.publish import PublishError, VersionExistsError, publish_version
from training.triton import (
    DEVICES,
    BatchingOptions,
    Device,
    Instances,
    check_service_name,
    inference_service,
    model_config,
    service_name,
)

CONFIG_FILE = "config.pbtxt"
CONFIGS_DIR = "configs"  # Triton's --model-config-name=X reads <model>/configs/X.pbtxt
MANIFEST_SUFFIX = "-inferenceservice.yaml"
PLACEHOLDER_STORAGE = "s3://REPLACE-WITH-YOUR-BUCKET/{folder}"
MANIFEST_CPUS = 2
MANIFEST_MEMORY = "2Gi"


class TritonExportError(RuntimeError):
    """The version cannot be exported; the message says why and what to do."""


@dataclass(frozen=True)
class TritonExportOptions:
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    instances: Instances = field(default_factory=Instances)
    device: Device = "gpu"  # where config.pbtxt (Triton's default) places the instances
    storage_uri: str | None = None  # where OUT will be uploaded; None: a placeholder to replace
    service_name: str | None = None  # the InferenceService's name; None: from the model's name
    overwrite: bool = False


@dataclass(frozen=True)
class TritonExport:
    model_dir: Path  # OUT/<name>
    version_dir: Path  # OUT/<name>/<version>
    manifest: Path
    storage_uri: str
    placeholder_storage: bool


def export_triton(
    version_dir: Path, out: Path, options: TritonExportOptions | None = None
) -> TritonExport:
    """Verify `version_dir` (models/<name>/<version>) and write it into the Triton repository
    `out`, with its configurations and a KServe manifest."""
    options = options or TritonExportOptions()
    model = _load(version_dir)
    configs = {
        device: model_config(
            model.name,
            model.version,
            model.session.inputs,
            model.session.outputs,
            options.batching,
            options.instances,
            device,
        )
        for device in DEVICES
    }
    isvc_name = check_service_name(options.service_name or service_name(model.name))
    placeholder = options.storage_uri is None
    storage_uri = options.storage_uri or PLACEHOLDER_STORAGE.format(folder=out.resolve().name)
    manifest_text = inference_service(
        isvc_name, storage_uri, options.device, MANIFEST_CPUS, MANIFEST_MEMORY
    )

    def copy_version(directory: Path, version: int) -> None:
        for name in (MODEL_FILE, CARD_FILE):
            shutil.copyfile(model.path / name, directory / name)

    try:
        exported, _ = publish_version(
            out, model.name, model.version, copy_version, options.overwrite
        )
    except VersionExistsError:
        raise TritonExportError(
            f"{out / model.name / str(model.version)} already exists; pass --overwrite to "
            "replace it, or export into another repository"
        ) from None
    except (PublishError, OSError) as error:
        raise TritonExportError(f"cannot write {out / model.name}: {error}") from None
    model_dir = out / model.name
    _write_text(model_dir / CONFIG_FILE, configs[options.device])
    for device, text in configs.items():
        _write_text(model_dir / CONFIGS_DIR / f"{device}.pbtxt", text)
    manifest = out / f"{model.name}{MANIFEST_SUFFIX}"
    _write_text(manifest, manifest_text)
    return TritonExport(model_dir, exported, manifest, storage_uri, placeholder)


def _load(version_dir: Path) -> ServedModel:
    if not version_dir.is_dir():
        raise TritonExportError(
            f"{version_dir} is not a directory; name a model version: models/<name>/<version>"
        )
    if not is_version(version_dir.name):
        raise TritonExportError(
            f"{version_dir} is not a model version directory (models/<name>/<version>): "
            f"{VERSION_RULE}"
        )
    try:
        return ServedModel.load(version_dir, RuntimeOptions(provider="cpu", intra_op_threads=1))
    except ModelLoadError as error:
        raise TritonExportError(
            f"the version cannot be served, so it is not exported: {error}"
        ) from None


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file beside `path`, so a reader sees the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def describe(export: TritonExport, device: Device) -> list[str]:
    """What was written, for the command's output."""
    lines = [
        f"exported {export.version_dir} for Triton: {export.model_dir / CONFIG_FILE} runs it on "
        f"the {device.upper()}; configs/cpu.pbtxt and configs/gpu.pbtxt beside it are chosen "
        "with tritonserver --model-config-name=cpu|gpu",
        f"wrote the KServe InferenceService {export.manifest} (storageUri {export.storage_uri})",
    ]
    if export.placeholder_storage:
        lines.append(
            "note: the storageUri is a placeholder: upload the repository and pass its address "
            "with --storage-uri (s3://, gs://, pvc://, ...)"
        )
    return lines


def build_parser() -> argparse.ArgumentParser:
    defaults = TritonExportOptions()
    parser = argparse.ArgumentParser(
        prog="python -m training.export_triton",
        description=(
            "Export one model version (verified as the service verifies it) into a Triton model "
            "repository: OUT/<name>/config.pbtxt, OUT/<name>/configs/{cpu,gpu}.pbtxt and "
            "OUT/<name>/<version>/model.onnx; and a KServe InferenceService for Triton, "
            "OUT/<name>-inferenceservice.yaml. Triton serves exactly this version."
        ),
        epilog=(
            "Examples:\n"
            "  python -m training.export_triton models/mmoe-synthetic/1 triton-models\n"
            "  python -m training.export_triton models/mmoe-synthetic/1 triton-models \\\n"
            "      --device cpu --storage-uri s3://my-bucket/triton-models\n"
            "  tritonserver --model-repository=triton-models --model-config-name=cpu"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("version_dir", type=Path, metavar="VERSION_DIR", help="models/NAME/N")
    parser.add_argument("out", type=Path, metavar="OUT", help="the Triton model repository")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default=defaults.device,
        help="where config.pbtxt and the InferenceService run the model (default: %(default)s)",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=defaults.batching.max_batch_size,
        help="most rows in one request and one batched call (default: %(default)s)",
    )
    parser.add_argument(
        "--preferred-batch-size",
        type=int,
        action="append",
        metavar="ROWS",
        help="batch sizes Triton's dynamic batcher aims for; repeat for several "
        "(default: 256 and the max batch size)",
    )
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=defaults.batching.max_queue_delay_us,
        help="how long a request may wait for others to batch with (default: %(default)s)",
    )
    parser.add_argument(
        "--gpu-instances",
        type=int,
        default=defaults.instances.gpu,
        help="model instances per GPU (default: %(default)s)",
    )
    parser.add_argument(
        "--cpu-instances",
        type=int,
        default=defaults.instances.cpu,
        help="model instances on the CPU (default: %(default)s)",
    )
    parser.add_argument(
        "--storage-uri",
        help="where OUT will be uploaded, for the InferenceService (default: a placeholder)",
    )
    parser.add_argument(
        "--service-name", help="the InferenceService's name (default: from the model's name)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the version if OUT already has it"
    )
    return parser


def options_from(arguments: argparse.Namespace) -> TritonExportOptions:
    preferred = arguments.preferred_batch_size
    if preferred is None:
        preferred = sorted({min(256, arguments.max_batch_size), arguments.max_batch_size})
    if arguments.service_name is not None:
        check_service_name(arguments.service_name)
    return TritonExportOptions(
        batching=BatchingOptions(
            arguments.max_batch_size, tuple(preferred), arguments.max_queue_delay_us
        ),
        instances=Instances(arguments.gpu_instances, arguments.cpu_instances),
        device=arguments.device,
        storage_uri=arguments.storage_uri,
        service_name=arguments.service_name,
        overwrite=arguments.overwrite,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        options = options_from(arguments)
    except ValueError as error:
        parser.error(str(error))
    try:
        export = export_triton(arguments.version_dir, arguments.out, options)
    except (TritonExportError, ValueError) as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    print("\n".join(describe(export, options.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
