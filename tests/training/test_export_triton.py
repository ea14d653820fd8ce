"""The Triton and KServe export as a user runs it: a real process over a copy of the bundled model;
config.pbtxt read back by Triton's own ModelConfig protobuf (from tritonclient[grpc]) and the
InferenceService by a YAML parser, checked for what KServe requires."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from google.protobuf import text_format

from service.runtime import TensorSignature
from tests.support import REPO_ROOT, copy_bundled
from training.triton import BatchingOptions, Instances, model_config, service_name


def triton_model_config() -> ModuleType:
    """Triton's model_config_pb2 from tritonclient[grpc], loaded alone: the package's __init__
    also registers Triton's gRPC service protos, whose names (inference.ServerLiveRequest, ...)
    clash in protobuf's global pool with the same protocol's protos that KServe's client
    registers (the e2e tests import it in the same pytest process)."""
    package = importlib.util.find_spec("tritonclient")
    assert package is not None and package.origin is not None
    path = Path(package.origin).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


model_config_pb2 = triton_model_config()
ModelConfig = model_config_pb2.ModelConfig
DataType = model_config_pb2.DataType
Kind = model_config_pb2.ModelInstanceGroup.Kind


def export_command(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training.export_triton", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_config(path: Path) -> ModelConfig:
    return text_format.Parse(path.read_text(), ModelConfig())


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(the model repository, the Triton repository, the command's output)."""
    work = tmp_path_factory.mktemp("triton")
    models = copy_bundled(work / "models")
    out = work / "triton-models"
    result = export_command(models / "mmoe-synthetic" / "1", out)
    assert result.returncode == 0, result.stderr
    return models, out, result.stdout


def test_the_config_parses_as_tritons_model_config_with_the_graphs_tensors(exported):
    _, out, _ = exported
    config = read_config(out / "mmoe-synthetic" / "config.pbtxt")
    assert config.name == "mmoe-synthetic"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 1024
    assert list(config.version_policy.specific.versions) == [1]
    tensors = [
        (tensor.name, DataType.Name(tensor.data_type), list(tensor.dims))
        for tensor in [*config.input, *config.output]
    ]
    assert tensors == [
        ("features", "TYPE_FP32", [100]),
        ("predictions", "TYPE_FP32", [2]),
        ("gates", "TYPE_FP32", [2, 8]),
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == [256, 1024]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    groups = [(Kind.Name(group.kind), group.count) for group in config.instance_group]
    assert groups == [("KIND_GPU", 1)]


def test_cpu_and_gpu_configs_differ_only_in_their_instance_group(exported):
    _, out, _ = exported
    by_device = {
        device: read_config(out / "mmoe-synthetic" / "configs" / f"{device}.pbtxt")
        for device in ("cpu", "gpu")
    }
    groups = {
        device: [(Kind.Name(group.kind), group.count) for group in config.instance_group]
        for device, config in by_device.items()
    }
    assert groups == {"cpu": [("KIND_CPU", 2)], "gpu": [("KIND_GPU", 1)]}
    for config in by_device.values():
        del config.instance_group[:]
    assert by_device["cpu"] == by_device["gpu"]


def test_the_version_is_copied_byte_for_byte_with_its_card(exported):
    models, out, _ = exported
    exported_onnx = (out / "mmoe-synthetic" / "1" / "model.onnx").read_bytes()
    card = json.loads((out / "mmoe-synthetic" / "1" / "model.json").read_text())
    assert hashlib.sha256(exported_onnx).hexdigest() == card["onnx"]["sha256"]
    assert exported_onnx == (models / "mmoe-synthetic" / "1" / "model.onnx").read_bytes()


def test_the_inference_service_has_what_kserve_requires(exported):
    _, out, stdout = exported
    manifest = yaml.safe_load((out / "mmoe-synthetic-inferenceservice.yaml").read_text())
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    name = manifest["metadata"]["name"]
    assert name == "mmoe-synthetic"
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63  # DNS-1035
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "onnx"}
    assert model["runtime"] == "kserve-tritonserver"
    assert model["protocolVersion"] == "v2"
    assert model["storageUri"] == "s3://REPLACE-WITH-YOUR-BUCKET/triton-models"
    assert model["args"] == ["--model-config-name=gpu"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert stdout.splitlines()[-1] == (
        "note: the storageUri is a placeholder: upload the repository and pass its address with "
        "--storage-uri (s3://, gs://, pvc://, ...)"
    )


def test_options_choose_the_device_batching_and_storage(tmp_path):
    models = copy_bundled(tmp_path / "models")
    out = tmp_path / "out"
    result = export_command(
        models / "mmoe-synthetic" / "1", out,
        "--device", "cpu", "--cpu-instances", "4", "--max-batch-size", "64",
        "--preferred-batch-size", "16", "--preferred-batch-size", "64",
        "--max-queue-delay-us", "2000", "--storage-uri", "gs://bucket/models",
        "--service-name", "ranker",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = read_config(out / "mmoe-synthetic" / "config.pbtxt")
    assert config.max_batch_size == 64
    assert list(config.dynamic_batching.preferred_batch_size) == [16, 64]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(Kind.Name(g.kind), g.count) for g in config.instance_group] == [("KIND_CPU", 4)]
    manifest = yaml.safe_load((out / "mmoe-synthetic-inferenceservice.yaml").read_text())
    model = manifest["spec"]["predictor"]["model"]
    assert manifest["metadata"]["name"] == "ranker"
    assert model["storageUri"] == "gs://bucket/models"
    assert model["args"] == ["--model-config-name=cpu"]
    assert "nvidia.com/gpu" not in model["resources"]["limits"]
    assert "placeholder" not in result.stdout


def test_a_table_models_categorical_input_is_configured(tmp_path):
    models = copy_bundled(tmp_path / "models")
    result = export_command(models / "mmoe-adult" / "1", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    config = read_config(tmp_path / "out" / "mmoe-adult" / "config.pbtxt")
    tensors = [
        (tensor.name, DataType.Name(tensor.data_type), list(tensor.dims))
        for tensor in [*config.input, *config.output]
    ]
    assert tensors == [
        ("features", "TYPE_FP32", [6]),
        ("categorical", "TYPE_INT64", [7]),
        ("predictions", "TYPE_FP32", [2]),
        ("gates", "TYPE_FP32", [2, 8]),
    ]


def test_every_input_and_output_of_the_graph_is_configured_whatever_its_type():
    """A tabular model's second input (int64 categorical codes) and a Shared-Bottom model's
    lone output come from the signature, not from a fixed list."""
    text = model_config(
        "adult",
        3,
        [
            TensorSignature("features", "tensor(float)", ["batch", 6]),
            TensorSignature("categorical", "tensor(int64)", ["batch", 8]),
        ],
        [TensorSignature("predictions", "tensor(float)", ["batch", 2])],
        BatchingOptions(),
        Instances(),
        "cpu",
    )
    config = text_format.Parse(text, ModelConfig())
    tensors = [
        (tensor.name, DataType.Name(tensor.data_type), list(tensor.dims))
        for tensor in [*config.input, *config.output]
    ]
    assert tensors == [
        ("features", "TYPE_FP32", [6]),
        ("categorical", "TYPE_INT64", [8]),
        ("predictions", "TYPE_FP32", [2]),
    ]


def test_a_graph_without_a_dynamic_batch_axis_cannot_be_batched_by_triton():
    with pytest.raises(ValueError, match="input 'features' has a fixed first axis"):
        model_config(
            "fixed",
            1,
            [TensorSignature("features", "tensor(float)", [1, 6])],
            [],
            BatchingOptions(),
            Instances(),
            "cpu",
        )


@pytest.mark.parametrize(
    ("model_name", "service"),
    [("mmoe-synthetic", "mmoe-synthetic"), ("omoe_p0.9", "omoe-p0-9"), ("2024-ctr", "m-2024-ctr")],
)
def test_inference_service_names_follow_kubernetes_rules(model_name, service):
    assert service_name(model_name) == service


def test_an_existing_version_is_not_replaced_without_overwrite(exported):
    models, out, _ = exported
    result = export_command(models / "mmoe-synthetic" / "1", out)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"python -m training.export_triton: error: {out}/mmoe-synthetic/1 already exists; pass "
        "--overwrite to replace it, or export into another repository"
    )


def test_a_version_that_fails_verification_is_not_exported(tmp_path):
    models = copy_bundled(tmp_path / "models")
    model_file = models / "mmoe-synthetic" / "1" / "model.onnx"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    result = export_command(models / "mmoe-synthetic" / "1", tmp_path / "out")
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(
        "python -m training.export_triton: error: the version cannot be served, so it is not "
        f"exported: {model_file}: sha256 of the ONNX file is "
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--max-batch-size", "0"], "the max batch size must be at least 1, not 0"),
        (
            ["--max-batch-size", "64", "--preferred-batch-size", "128"],
            "preferred batch sizes [128] are outside 1..64 (the max batch size)",
        ),
        (["--service-name", "My_Model"], "'My_Model' is not a valid InferenceService name"),
        (["--device", "tpu"], "--device: invalid choice: 'tpu' (choose from 'gpu', 'cpu')"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(tmp_path, arguments, message):
    models = copy_bundled(tmp_path / "models")
    result = export_command(models / "mmoe-synthetic" / "1", tmp_path / "out", *arguments)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_directory_that_is_not_a_version_is_refused(tmp_path):
    models = copy_bundled(tmp_path / "models")
    result = export_command(models / "mmoe-synthetic", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"python -m training.export_triton: error: {models}/mmoe-synthetic is not a model version "
        "directory (models/<name>/<version>): a version is a whole number from 1 to 2147483647 "
        "with no leading zero"
    )


def deploy_section() -> str:
    text = (REPO_ROOT / "docs" / "deploy.md").read_text()
    start = text.index("## Moving to Triton / KServe")
    return text[start : text.index("\n## ", start + 1)]


def test_the_deploy_docs_export_command_writes_the_config_they_show(tmp_path):
    section = deploy_section()
    command = re.search(r"^ {4}(python -m training\.export_triton .*?)\n\n", section, re.S | re.M)
    assert command is not None
    arguments = shlex.split(command.group(1).replace("\\\n", " "))
    assert arguments[:3] == ["python", "-m", "training.export_triton"]
    copy_bundled(tmp_path / "models")
    result = subprocess.run(
        [sys.executable, *arguments[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    shown = section.split("```\n")[1]
    written = tmp_path / "triton-models" / "mmoe-synthetic" / "config.pbtxt"
    assert written.read_text() == shown
    manifest = yaml.safe_load(
        (written.parents[1] / "mmoe-synthetic-inferenceservice.yaml").read_text()
    )
    assert manifest["spec"]["predictor"]["model"]["storageUri"] in section
    listed = re.findall(r"^ {4}(triton-models/\S+)", section, re.M)
    assert sorted(listed) == sorted(
        str(path.relative_to(tmp_path))
        for path in (tmp_path / "triton-models").rglob("*")
        if path.is_file() and path.name not in (".publish.lock", "model.json")
    )
