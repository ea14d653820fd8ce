"""Settings come from MMOE_* environment variables, with the documented defaults."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from service import settings as settings_module
from service.settings import DEPLOYMENT_VARIABLES, Settings, available_cpus, unknown_variables
from tests.support import REPO_ROOT

ENV_NAMES = [
    "MMOE_MODEL_REPOSITORY",
    "MMOE_MODEL_NAME",
    "MMOE_MODEL_VERSION",
    "MMOE_HOST",
    "MMOE_PORT",
    "MMOE_PROVIDER",
    "MMOE_INTRA_OP_THREADS",
    "MMOE_BATCHING",
    "MMOE_MAX_BATCH_SIZE",
    "MMOE_MAX_BATCH_DELAY_US",
    "MMOE_INFERENCE_CONCURRENCY",
    "MMOE_MAX_QUEUED_REQUESTS",
    "MMOE_INLINE_MAX_ROWS",
    "MMOE_WORKERS",
    "MMOE_FAST_PATH",
    "MMOE_MAX_INSTANCES",
    "MMOE_MAX_BODY_BYTES",
    "MMOE_LOG_LEVEL",
    "MMOE_LOG_FORMAT",
    "MMOE_ACCESS_LOG",
    "MMOE_API_KEY",
    "MMOE_INFERENCE_NEEDS_KEY",
    "MMOE_CORS_ORIGINS",
    "MMOE_RELOAD_INTERVAL_S",
    "MMOE_METRICS",
    "MMOE_GATE_COLLAPSE_THRESHOLD",
    "MMOE_MAX_CONNECTIONS",
    "MMOE_HEADER_TIMEOUT_S",
    "MMOE_BODY_TIMEOUT_S",
    "MMOE_KEEP_ALIVE_TIMEOUT_S",
    "MMOE_WRITE_TIMEOUT_S",
    "MMOE_MAX_INFLIGHT_BODY_BYTES",
    "MMOE_SHUTDOWN_TIMEOUT_S",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in os.environ:
        if name.startswith("MMOE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().describe() == {
        "MMOE_MODEL_REPOSITORY": "models",
        "MMOE_MODEL_NAME": "mmoe-synthetic",
        "MMOE_MODEL_VERSION": None,
        "MMOE_HOST": "127.0.0.1",
        "MMOE_PORT": 8000,
        "MMOE_PROVIDER": "auto",
        "MMOE_INTRA_OP_THREADS": 1,
        "MMOE_BATCHING": True,
        "MMOE_MAX_BATCH_SIZE": 256,
        "MMOE_MAX_BATCH_DELAY_US": 0,
        "MMOE_INFERENCE_CONCURRENCY": 1,
        "MMOE_MAX_QUEUED_REQUESTS": 256,
        "MMOE_INLINE_MAX_ROWS": 16,
        "MMOE_WORKERS": 1,
        "MMOE_FAST_PATH": True,
        "MMOE_MAX_INSTANCES": 1024,
        "MMOE_MAX_BODY_BYTES": 8388608,
        "MMOE_LOG_LEVEL": "info",
        "MMOE_LOG_FORMAT": "text",
        "MMOE_ACCESS_LOG": False,
        "MMOE_API_KEY": None,
        "MMOE_INFERENCE_NEEDS_KEY": False,
        "MMOE_CORS_ORIGINS": [],
        "MMOE_RELOAD_INTERVAL_S": 0.0,
        "MMOE_METRICS": True,
        "MMOE_GATE_COLLAPSE_THRESHOLD": 0.01,
        "MMOE_MAX_CONNECTIONS": 1000,
        "MMOE_HEADER_TIMEOUT_S": 10.0,
        "MMOE_BODY_TIMEOUT_S": 60.0,
        "MMOE_KEEP_ALIVE_TIMEOUT_S": 5,
        "MMOE_WRITE_TIMEOUT_S": 30.0,
        "MMOE_MAX_INFLIGHT_BODY_BYTES": 67108864,
        "MMOE_SHUTDOWN_TIMEOUT_S": 30,
    }


def test_every_setting_is_read_from_its_environment_variable(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setattr(settings_module, "available_cpus", lambda: 8)
    values = ["/srv/models", "omoe-tiny", "3", "0.0.0.0", "9000", "CPU", "3", "false", "64",
              "500", "2", "32", "8", "4", "0", "16", "4096", "DEBUG",
              "JSON", "true", "a-key-of-twenty-chars", "true",
              "https://a.example, https://b.example", "2.5", "false", "0.05",
              "50", "2.5", "7", "3",
              "9", "8192", "12"]  # fmt: skip
    for name, value in zip(ENV_NAMES, values, strict=True):
        clean_env.setenv(name, value)
    settings = Settings()
    assert list(settings.describe()) == ENV_NAMES
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "a-key-of-twenty-chars"
    assert settings.model_dump(exclude={"api_key"}) == {
        "model_repository": Path("/srv/models"),
        "model_name": "omoe-tiny",
        "model_version": 3,
        "host": "0.0.0.0",
        "port": 9000,
        "provider": "cpu",
        "intra_op_threads": 3,
        "batching": False,
        "max_batch_size": 64,
        "max_batch_delay_us": 500,
        "inference_concurrency": 2,
        "max_queued_requests": 32,
        "inline_max_rows": 8,
        "workers": 4,
        "fast_path": False,
        "max_instances": 16,
        "max_body_bytes": 4096,
        "log_level": "debug",
        "log_format": "json",
        "access_log": True,
        "inference_needs_key": True,
        "cors_origins": ["https://a.example", "https://b.example"],
        "reload_interval_s": 2.5,
        "metrics": False,
        "gate_collapse_threshold": 0.05,
        "max_connections": 50,
        "header_timeout_s": 2.5,
        "body_timeout_s": 7.0,
        "keep_alive_timeout_s": 3,
        "write_timeout_s": 9.0,
        "max_inflight_body_bytes": 8192,
        "shutdown_timeout_s": 12,
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
        ("MMOE_MAX_BATCH_SIZE", "0"),
        ("MMOE_MAX_BATCH_DELAY_US", "-1"),
        ("MMOE_INFERENCE_CONCURRENCY", "0"),
        ("MMOE_MAX_QUEUED_REQUESTS", "0"),
        ("MMOE_INLINE_MAX_ROWS", "-1"),
        ("MMOE_WORKERS", "0"),
        ("MMOE_BATCHING", "maybe"),
        ("MMOE_LOG_FORMAT", "xml"),
        ("MMOE_RELOAD_INTERVAL_S", "-1"),
        ("MMOE_GATE_COLLAPSE_THRESHOLD", "1"),
        ("MMOE_API_KEY", "too-short"),
        *[("MMOE_MODEL_VERSION", version) for version in ("01", "0", "٣", "2147483648")],
    ],
)
def test_invalid_values_are_rejected(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    "name", ["MMOE_INTRA_OP_THREADS", "MMOE_INFERENCE_CONCURRENCY", "MMOE_WORKERS"]
)
def test_threads_and_processes_are_bounded_by_the_cpus(
    clean_env: pytest.MonkeyPatch, name: str
) -> None:
    clean_env.setenv(name, "100000")  # once accepted: onnxruntime's start-up hung
    with pytest.raises(ValidationError) as error:
        Settings()
    assert error.value.errors()[0]["msg"] == (
        f"Value error, must be at most {available_cpus()}, the CPUs this process may run on "
        "(more would only queue threads or processes for the same CPUs)"
    )
    clean_env.setenv(name, str(available_cpus()))
    assert getattr(Settings(), name.removeprefix("MMOE_").lower()) == available_cpus()


def test_the_body_budget_holds_at_least_one_largest_body(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MMOE_MAX_BODY_BYTES", "1000")
    clean_env.setenv("MMOE_MAX_INFLIGHT_BODY_BYTES", "999")
    with pytest.raises(ValidationError, match="no body of the largest size could ever be"):
        Settings()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "3601"])
def test_timeouts_are_positive_and_finite(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("MMOE_HEADER_TIMEOUT_S", value)
    with pytest.raises(ValidationError):
        Settings()


def test_unknown_mmoe_variables_are_named_with_the_setting_meant() -> None:
    environ = {"MMOE_PORTT": "1", "MMOE_API_PORT": "8010", "MMOE_PORT": "1", "HOME": "/root"}
    assert unknown_variables(environ) == [
        "MMOE_PORTT is not a setting and is ignored; did you mean MMOE_PORT?"
    ]


def test_the_deployment_variables_are_those_docker_compose_reads() -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    settings = {"MMOE_" + name.upper() for name in Settings.model_fields}
    assert set(re.findall(r"\$\{(MMOE_[A-Z_]+)", text)) - settings == DEPLOYMENT_VARIABLES
