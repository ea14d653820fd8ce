"""The training command as a user runs it: a real process, a real ONNX file, exact messages."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from service.contract import CARD_METADATA_KEY
from service.model_card import ModelCard
from training.cli import build_parser, resolve_config
from training.config import build_config, read_config_file
from training.pipeline import run

TINY = [
    "--data.input_dim", "10",
    "--data.train_size", "300",
    "--data.validation_size", "60",
    "--data.test_size", "60",
    "--train.epochs", "3",
    "--export.name", "tiny",
    "--quiet",
]  # fmt: skip


def train_command(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", *arguments],
        capture_output=True,
        text=True,
        timeout=240,
    )


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> subprocess.CompletedProcess:
    """One tiny training, exported into a model repository and (promoted) for Triton."""
    work = tmp_path_factory.mktemp("tiny")
    result = train_command(
        *TINY,
        "--export.models_dir", str(work / "models"),
        "--export.triton_dir", str(work / "triton"),
        "--export.triton_storage_uri", "gs://example-bucket/triton",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def exported_tiny(tiny_run) -> Path:
    models_dir = Path(tiny_run.args[tiny_run.args.index("--export.models_dir") + 1])
    assert tiny_run.stdout.splitlines()[0] == f"exported tiny version 1 to {models_dir}/tiny/1"
    return models_dir / "tiny" / "1"


def test_the_promoted_version_is_also_exported_for_triton_when_asked(tiny_run, exported_tiny):
    triton_dir = exported_tiny.parents[2] / "triton"
    assert tiny_run.stdout.splitlines()[-2:] == [
        f"exported {triton_dir}/tiny/1 for Triton: {triton_dir}/tiny/config.pbtxt runs it on the "
        "GPU; configs/cpu.pbtxt and configs/gpu.pbtxt beside it are chosen with tritonserver "
        "--model-config-name=cpu|gpu",
        f"wrote the KServe InferenceService {triton_dir}/tiny-inferenceservice.yaml (storageUri "
        "gs://example-bucket/triton)",
    ]
    written = sorted(str(path.relative_to(triton_dir)) for path in triton_dir.rglob("*"))
    assert written == [
        "tiny",
        "tiny-inferenceservice.yaml",
        "tiny/.publish.lock",
        "tiny/1",
        "tiny/1/model.json",
        "tiny/1/model.onnx",
        "tiny/config.pbtxt",
        "tiny/configs",
        "tiny/configs/cpu.pbtxt",
        "tiny/configs/gpu.pbtxt",
    ]
    for name in ("model.onnx", "model.json"):
        assert (triton_dir / "tiny/1" / name).read_bytes() == (exported_tiny / name).read_bytes()
    config = (triton_dir / "tiny/config.pbtxt").read_text()
    assert config == (triton_dir / "tiny/configs/gpu.pbtxt").read_text()
    assert 'name: "tiny"\n' in config
    assert "    dims: [ 10 ]\n" in config  # --data.input_dim 10


def test_cli_model_runs_in_onnxruntime_like_the_same_model_in_pytorch(exported_tiny, tmp_path):
    arguments = build_parser().parse_args([*TINY, "--export.models_dir", str(tmp_path)])
    in_process = run(resolve_config(arguments), show_progress=False)
    features = np.random.default_rng(1).normal(size=(33, 10)).astype(np.float32)
    session = onnxruntime.InferenceSession(
        str(exported_tiny / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    predictions, gates = session.run(["predictions", "gates"], {"features": features})
    reference = in_process.graph.reference_outputs(features)
    np.testing.assert_allclose(predictions, reference["predictions"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gates, reference["gates"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gates.sum(-1), 1.0, atol=1e-6)


def test_card_describes_the_model_and_its_file(exported_tiny):
    card = ModelCard.model_validate_json((exported_tiny / "model.json").read_text())
    digest = hashlib.sha256((exported_tiny / "model.onnx").read_bytes()).hexdigest()
    assert card.onnx.sha256 == digest
    assert (card.name, card.version, card.architecture) == ("tiny", 1, "mmoe")
    assert [(t.name, t.type) for t in card.tasks] == [
        ("task_1", "regression"),
        ("task_2", "regression"),
    ]
    assert card.input.dim == 10
    assert card.input.feature_names == [f"x_{i}" for i in range(1, 11)]
    assert (card.experts.count, card.experts.units, card.experts.gates) == (8, 16, 2)
    assert card.onnx.outputs == {"predictions": [None, 2], "gates": [None, 2, 8]}
    assert set(card.metrics["test"]) == {"task_1", "task_2"}
    assert all(metric["mse"] > 0 for metric in card.metrics["test"].values())
    assert card.data["train_size"] == 300
    assert len(card.data["alphas"]) == card.data["num_sinusoids"]
    assert card.training["train"]["epochs"] == 3
    assert card.training["epochs_run"] == len(card.training["history"]) == 3

    embedded = onnx.load(str(exported_tiny / "model.onnx")).metadata_props
    embedded_card = ModelCard.model_validate_json(
        {p.key: p.value for p in embedded}[CARD_METADATA_KEY]
    )
    assert embedded_card == card.embedded()
    assert embedded_card.onnx.sha256 is None


def test_an_existing_version_is_not_overwritten(exported_tiny):
    before = (exported_tiny / "model.onnx").read_bytes()
    models_dir = exported_tiny.parent.parent
    result = train_command(*TINY, "--export.models_dir", str(models_dir), "--export.version", "1")
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        f"mmoe-train: error: {exported_tiny} already exists; choose another version, or pass "
        "--export.overwrite true to replace it"
    )
    assert (exported_tiny / "model.onnx").read_bytes() == before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--data.correlation", "1.5"],
            "mmoe-train: error: invalid config: data.correlation: "
            "Input should be less than or equal to 1 (got '1.5')",
        ),
        (
            ["--model.architecture", "transformer"],
            "mmoe-train: error: invalid config: model.architecture: "
            "Input should be 'mmoe', 'omoe' or 'shared_bottom' (got 'transformer')",
        ),
        (
            ["--train.loss_weights", "[1, 2, 3]"],
            "mmoe-train: error: invalid config: train.loss_weights has 3 values for 2 tasks",
        ),
        (
            ["--train.loss_weights", "1,2"],
            "mmoe-train: error: --train.loss_weights: expected JSON such as [1, 2], got '1,2'",
        ),
        (
            ["--export.name", "Bad Name"],
            "mmoe-train: error: invalid config: export.name: must be 1-64 characters of "
            "lowercase letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(got 'Bad Name')",
        ),
        (["--data.p", "0.5"], "mmoe-train: error: unrecognized arguments: --data.p 0.5"),
        (
            ["--train.loss_weights", "[NaN, 1]"],
            "mmoe-train: error: invalid config: train.loss_weights.0: Input should be a finite "
            "number (got nan)",
        ),
        (
            ["--data.scale", "inf"],
            "mmoe-train: error: invalid config: data.scale: Input should be a finite number "
            "(got 'inf')",
        ),
        (
            ["--export.atol", "inf"],
            "mmoe-train: error: invalid config: export.atol: Input should be a finite number "
            "(got 'inf')",
        ),
        (
            ["--export.atol", "0.5"],
            "mmoe-train: error: invalid config: export.atol: Input should be less than or equal "
            "to 0.1 (got '0.5')",
        ),
        (
            ["--train.seed", "4294967296"],
            "mmoe-train: error: invalid config: train.seed: Input should be less than or equal "
            "to 4294967295 (got '4294967296')",
        ),
        (
            ["--data.train_size", "3000000"],
            "mmoe-train: error: invalid config: data: 3002000 rows of 100 features are 3e+08 "
            "values (2.4 GB), more than the generator holds in memory (2e+08 values); use fewer "
            "rows or features",
        ),
        (
            ["--train.epochs", "3"],
            "mmoe-train: error: choose the model's name with --export.name NAME "
            "(models/NAME/<version>/); `make train` publishes the bundled recipe as "
            "mmoe-synthetic",
        ),
        *[
            (
                ["--export.version", version],
                "mmoe-train: error: invalid config: export.version: a version is a whole number "
                f"from 1 to 2147483647 with no leading zero (got {version!r})",
            )
            for version in ("01", "0", "٣", "2147483648")
        ],
    ],
)
def test_bad_arguments_name_the_field(arguments, message):
    result = train_command(*arguments)
    assert result.returncode == 2
    assert last_line(result.stderr) == message
    assert result.stdout == ""


def test_config_file_with_an_unknown_key_names_it(tmp_path):
    config_file = tmp_path / "run.toml"
    config_file.write_text("[train]\nepochs = 3\nlearning_rte = 0.1\n\n[data]\ncorrelation = 1.5\n")
    result = train_command("--config", str(config_file))
    assert result.returncode == 2
    assert last_line(result.stderr) == (
        "mmoe-train: error: invalid config: data.correlation: Input should be less than or "
        "equal to 1 (got 1.5); train.learning_rte: unknown key (got 0.1)"
    )


@pytest.mark.parametrize(
    ("file_name", "content", "message"),
    [
        ("run.toml", b"[train]\nepochs = true\n", "invalid config: train.epochs: expected a value "
         "of type int, not True (got True)"),
        ("run.toml", b"[train]\nepochs = 3 # \xff\n", "config file {path} is not UTF-8 text "
         "(byte 21); save it as UTF-8"),
        ("run.yaml", b"train:\n  epochs: 3\n", "config file {path}: the format is told by the "
         "suffix, .toml or .json (not '.yaml')"),
    ],
)  # fmt: skip
def test_config_files_of_the_wrong_kind_are_refused_clearly(tmp_path, file_name, content, message):
    path = tmp_path / file_name
    path.write_bytes(content)
    result = train_command("--config", str(path), "--export.name", "x")
    assert result.returncode == 2
    assert last_line(result.stderr) == "mmoe-train: error: " + message.format(path=path)


@pytest.mark.parametrize("problem", ["file", "version"])
def test_the_destination_is_checked_before_training(tmp_path, problem):
    models_dir = tmp_path / "models"
    if problem == "file":
        models_dir.write_text("not a directory")
        expected = f"the model repository {models_dir} is a file, not a directory"
    else:
        (models_dir / "tiny" / "1").mkdir(parents=True)
        expected = (
            f"{models_dir / 'tiny' / '1'} already exists; choose another version, or pass "
            "--export.overwrite true to replace it"
        )
    result = train_command(
        *TINY,
        "--log-level",
        "INFO",
        "--export.models_dir",
        str(models_dir),
        "--export.version",
        "1",
    )
    assert result.returncode == 1
    assert last_line(result.stderr) == f"mmoe-train: error: {expected}"
    assert "epoch 1" not in result.stderr  # refused before the first epoch


def test_a_dry_run_trains_and_evaluates_but_exports_nothing(tmp_path):
    result = train_command(*TINY, "--export.models_dir", str(tmp_path), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dry run: nothing exported"
    assert set(json.loads(lines[1].removeprefix("held-out test metrics: "))) == {
        "task_1",
        "task_2",
    }
    assert list(tmp_path.iterdir()) == []


def test_options_override_the_config_file(tmp_path):
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps({"train": {"epochs": 3}, "data": {"correlation": 0.9}}))
    result = train_command(
        "--config", str(config_file), "--data.correlation", "0.1", "--print-config"
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert resolved["train"]["epochs"] == 3
    assert resolved["data"]["correlation"] == 0.1


def test_help_explains_every_option():
    result = train_command("--help")
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    for option in (
        "--data.correlation VALUE p, the cosine between task weight vectors (default: 0.5)",
        "--train.patience VALUE stop after this many epochs without validation improvement",
        "--export.overwrite VALUE replace an existing version (default: false)",
        "--train.loss_weights JSON per-task loss weights (default: 1 for every task)",
    ):
        assert option in help_text


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "configs").glob("*.toml")))
def test_the_example_configs_load_and_name_their_model(path):
    config = build_config(read_config_file(path))
    assert config.export.name == path.stem
    result = train_command("--config", str(path), "--print-config")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(config.model_dump_json())


def test_json_logs_are_one_object_per_line(tmp_path):
    result = train_command(*TINY, "--dry-run", "--log-format", "json",
                           "--export.models_dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines, "the trainer logged nothing"
    for line in lines:
        assert list(line)[:5] == ["time", "level", "logger", "message", "request_id"]
        assert line["request_id"] is None
    assert any(line["logger"].startswith("training.") for line in lines)
    assert any("epoch" in line["message"] for line in lines)
