"""Settings come from MMOE_* environment variables, with the documented defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings
from tests.support import environment_without_settings

ENV_NAMES = [
    "MMOE_MODEL_REPOSITORY",
    "MMOE_MODEL_NAME",
    "MMOE_MODEL_VERSION",
    "MMOE_HOST",
    "MMOE_PORT",
    "MMOE_PROVIDER",
    "MMOE_INTRA_OP_THREADS",
    "MMOE_MAX_INSTANCES",
    "MMOE_MAX_BODY_BYTES",
    "MMOE_LOG_LEVEL",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in os.environ:
        if name.startswith("MMOE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    described = Settings().describe()
    assert described.pop("MMOE_INTRA_OP_THREADS") >= 1  # the next test pins the CPUs to check it
    assert described == {
        "MMOE_MODEL_REPOSITORY": "models",
        "MMOE_MODEL_NAME": "mmoe-synthetic",
        "MMOE_MODEL_VERSION": None,
        "MMOE_HOST": "127.0.0.1",
        "MMOE_PORT": 8000,
        "MMOE_PROVIDER": "auto",
        "MMOE_MAX_INSTANCES": 1024,
        "MMOE_MAX_BODY_BYTES": 8388608,
        "MMOE_LOG_LEVEL": "info",
    }


def test_intra_op_threads_default_to_the_cpus_the_process_may_use() -> None:
    """A process confined to one CPU (as by taskset or a cpuset) gets one thread."""
    script = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from service.settings import Settings; print(Settings().intra_op_threads)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=environment_without_settings(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, "1\n"), result.stderr


def test_every_setting_is_read_from_its_environment_variable(
    clean_env: pytest.MonkeyPatch,
) -> None:
    values = ["/srv/models", "omoe-tiny", "3", "0.0.0.0", "9000", "CPU", "3", "16", "4096", "DEBUG"]
    for name, value in zip(ENV_NAMES, values, strict=True):
        clean_env.setenv(name, value)
    settings = Settings()
    assert list(settings.describe()) == ENV_NAMES
    assert settings.model_dump() == {
        "model_repository": Path("/srv/models"),
        "model_name": "omoe-tiny",
        "model_version": 3,
        "host": "0.0.0.0",
        "port": 9000,
        "provider": "cpu",
        "intra_op_threads": 3,
        "max_instances": 16,
        "max_body_bytes": 4096,
        "log_level": "debug",
    }


@pytest.mark.parametrize("value", ["", "latest"])
def test_an_empty_or_latest_version_means_the_latest(
    clean_env: pytest.MonkeyPatch, value: str
) -> None:
    clean_env.setenv("MMOE_MODEL_VERSION", value)
    assert Settings().model_version is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MMOE_PROVIDER", "tpu"),
        ("MMOE_PORT", "http"),
        ("MMOE_INTRA_OP_THREADS", "0"),
        *[("MMOE_MODEL_VERSION", version) for version in ("01", "0", "٣", "2147483648")],
    ],
)
def test_invalid_values_are_rejected(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
