"""`python -m service` refuses to start, with one clear message, when it cannot serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest

from service.settings import Settings
from tests.support import REPO_ROOT, environment_without_settings


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = environment_without_settings()
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=REPO_ROOT,
        env=clean | {"MMOE_PORT": "1"} | env,  # port 1: it must fail before it ever binds
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(),
    reason="this onnxruntime has CUDA",
)
def test_cuda_without_cuda_fails_at_start_up_with_the_fix(bundled_copy: Path) -> None:
    result = serve({"MMOE_PROVIDER": "cuda", "MMOE_MODEL_REPOSITORY": str(bundled_copy)})
    assert result.returncode == 1
    assert "ERROR service: cannot start: MMOE_PROVIDER=cuda, but this onnxruntime build" in (
        result.stderr
    )
    assert "pip install 'mmoe-service[gpu]', which brings onnxruntime-gpu" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_model_fails_at_start_up(bundled_copy: Path) -> None:
    card = bundled_copy / "mmoe-synthetic" / "1" / "model.json"
    card.write_text(json.dumps(json.loads(card.read_text()) | {"version": 0}))
    result = serve({"MMOE_MODEL_REPOSITORY": str(bundled_copy)})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(
        f"ERROR service: cannot start: {card}: invalid model card: version: Input should be "
        "greater than or equal to 1"
    )


def test_invalid_settings_fail_before_anything_loads() -> None:
    result = serve({"MMOE_PORT": "http", "MMOE_PROVIDER": "tpu"})
    assert result.returncode == 2
    assert result.stderr == (
        "mmoe-serve: invalid settings: MMOE_PORT: Input should be a valid integer, unable to "
        "parse string as an integer; MMOE_PROVIDER: Input should be 'auto', 'cpu' or 'cuda'\n"
    )


def test_the_settings_are_printed_at_start_up(bundled_copy: Path) -> None:
    result = serve({"MMOE_MODEL_REPOSITORY": str(bundled_copy), "MMOE_MODEL_NAME": "absent"})
    assert result.returncode == 1
    settings_line = next(line for line in result.stderr.splitlines() if "settings: " in line)
    settings = json.loads(settings_line.split("settings: ", 1)[1])
    assert settings["MMOE_MODEL_REPOSITORY"] == str(bundled_copy)
    assert settings["MMOE_MODEL_NAME"] == "absent"
    assert settings["MMOE_PORT"] == 1


def documented_settings() -> list[str]:
    """The variables in docs/api.md's settings table, in its order."""
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    return re.findall(r"^\| `(MMOE_[A-Z_]+)` +\|", text, flags=re.MULTILINE)


def test_help_lists_every_environment_variable_the_docs_list() -> None:
    result = serve({}, "--help")
    assert result.returncode == 0
    listed = re.findall(r"^  (MMOE_[A-Z_]+) +(\S.*\(default: .+\))$", result.stdout, re.MULTILINE)
    assert [name for name, _ in listed] == documented_settings()
    assert len(documented_settings()) == len(Settings.model_fields)


def test_serving_a_request_never_imports_torch(bundled_copy: Path) -> None:
    script = """
import sys
from fastapi.testclient import TestClient
import service.cli
from service.app import create_app, load_repository
from service.settings import Settings

settings = Settings(provider="cpu", model_repository=REPOSITORY)
with TestClient(create_app(settings, load_repository(settings))) as client:
    response = client.post("/predict", json={"instances": [[0.0] * 100]})
    assert response.status_code == 200, response.text
    assert client.get("/models/mmoe-synthetic").status_code == 200
print(sorted(name for name in sys.modules if name.split(".")[0] == "torch"))
""".replace("REPOSITORY", repr(str(bundled_copy)))
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=environment_without_settings(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
