"""Service settings: environment variables with the prefix `MMOE_`, validated once at start-up."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.contract import MAX_VERSION, parse_version
from service.logs import LogFormat

ENV_PREFIX = "MMOE_"
MIN_API_KEY_LENGTH = 16
MASKED = "********"
MAKE_A_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
# MMOE_* variables that docker-compose.yml reads for itself (ports, limits, tags): not settings.
DEPLOYMENT_VARIABLES = frozenset(
    {
        "MMOE_API_CPUS", "MMOE_API_MEMORY", "MMOE_API_PORT", "MMOE_GPU_API_CPUS",
        "MMOE_GPU_API_MEMORY", "MMOE_GPU_API_PORT", "MMOE_GPU_COUNT", "MMOE_GPU_PROVIDER",
        "MMOE_IMAGE_TAG", "MMOE_PROXY_CPUS", "MMOE_PROXY_MEMORY", "MMOE_PROXY_PORT",
        "MMOE_TRAINER_CPUS", "MMOE_TRAINER_MEMORY",
    }
)  # fmt: skip


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a cpuset), not the host's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Everything the service can be told. Each field `x` is read from `MMOE_X`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        protected_namespaces=(),
        hide_input_in_errors=True,  # an error about MMOE_API_KEY must not print the key
    )

    model_repository: Path = Field(
        Path("models"), description="model repository root: <root>/<name>/<version>/model.onnx"
    )
    model_name: str = Field(
        "mmoe-synthetic", min_length=1, description="model that answers requests naming none"
    )
    model_version: int | None = Field(
        None,
        ge=1,
        le=MAX_VERSION,
        description="version of the default model (unset: its latest version)",
    )
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in a container)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on")
    provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="onnxruntime execution provider: auto takes CUDA when offered"
    )
    intra_op_threads: int = Field(
        1,
        ge=1,
        description="onnxruntime intra-op threads per model and worker (1: measured best on 2 "
        "cores, where the event loop needs the other; see docs/deploy.md to tune)",
    )
    batching: bool = Field(
        True, description="run concurrent requests for one model as one onnxruntime call"
    )
    max_batch_size: int = Field(
        256, ge=1, description="most rows in one batched call (a larger request runs alone)"
    )
    max_batch_delay_us: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="microseconds a batch waits for more requests when an inference slot is free",
    )
    inference_concurrency: int = Field(
        1, ge=1, description="onnxruntime calls running at once (each in its own thread)"
    )
    max_queued_requests: int = Field(
        256, ge=1, description="requests waiting for an inference slot; beyond it 503"
    )
    inline_max_rows: int = Field(
        16,
        ge=0,
        description="batches of at most this many rows run on the event loop (0: none)",
    )
    workers: int = Field(1, ge=1, description="uvicorn worker processes, each with every model")
    fast_path: bool = Field(
        True,
        description="serve /predict by its pure-ASGI endpoint and read array bodies with "
        "simdjson (false: FastAPI's route and orjson: the same answers, slower)",
    )
    max_instances: int = Field(1024, ge=1, description="most instances in one /predict request")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1, description="largest accepted request body in bytes"
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="log level of the service and uvicorn"
    )
    log_format: LogFormat = Field(
        "text", description="text, or json: one object per line with the request id"
    )
    access_log: bool = Field(
        False, description="log one line per request: route, status, duration, request id"
    )
    api_key: SecretStr | None = Field(
        None,
        description="secret for Authorization: Bearer <key> or X-API-Key; /admin routes need it "
        "(unset: they are off); never logged",
    )
    inference_needs_key: bool = Field(
        False,
        description="require the API key on every route but health, docs and /ui too "
        "(/predict, /models, /metrics, ...)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins browsers may call from, comma-separated, or * (unset: CORS off)",
    )
    reload_interval_s: float = Field(
        0.0,
        ge=0,
        description="seconds between checks of the model repository for changes (0: off; "
        "POST /admin/reload reloads on demand)",
    )
    metrics: bool = Field(True, description="count requests, batches and gate weights (/metrics)")
    gate_collapse_threshold: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="an expert whose mean gate weight is below this counts as collapsed",
    )
    # What a client may hold: connections, time, and body bytes (docs/reliability.md).
    max_connections: int = Field(
        1000, ge=1, description="open connections per worker; one more is answered 503 and closed"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="seconds a connection may take to send a request's headers"
    )
    body_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="seconds a request may take to send its whole body"
    )
    keep_alive_timeout_s: int = Field(
        5, ge=1, le=3600, description="seconds an idle connection stays open between requests"
    )
    write_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="seconds a client may leave its answer unread"
    )
    max_inflight_body_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1,
        description="request body bytes one worker holds at once; beyond it 503",
    )
    shutdown_timeout_s: int = Field(
        30, ge=1, le=3600, description="seconds a shutdown waits for requests in progress"
    )

    @field_validator("model_version", mode="before")
    @classmethod
    def _latest_is_unset(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.strip().lower() in ("", "latest"):
            return None
        return parse_version(value)

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None  # MMOE_API_KEY= (as compose passes an unset variable): no key
        return value

    @field_validator("api_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(
                f"the API key must be at least {MIN_API_KEY_LENGTH} characters long; make one "
                f"with {MAKE_A_KEY}"
            )
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _inference_key_needs_a_key(self) -> Settings:
        if self.inference_needs_key and self.api_key is None:
            raise ValueError(
                "MMOE_INFERENCE_NEEDS_KEY=true needs an API key: set MMOE_API_KEY (at least "
                f"{MIN_API_KEY_LENGTH} characters; make one with {MAKE_A_KEY})"
            )
        return self

    @field_validator("intra_op_threads", "inference_concurrency", "workers")
    @classmethod
    def _at_most_the_cpus(cls, value: int) -> int:
        cpus = available_cpus()
        if value > cpus:
            raise ValueError(
                f"must be at most {cpus}, the CPUs this process may run on (more would only "
                "queue threads or processes for the same CPUs)"
            )
        return value

    @model_validator(mode="after")
    def _one_body_fits_the_budget(self) -> Settings:
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_inflight_body_bytes ({self.max_inflight_body_bytes}) is smaller than "
                f"max_body_bytes ({self.max_body_bytes}): no body of the largest size could ever "
                "be accepted; raise MMOE_MAX_INFLIGHT_BODY_BYTES"
            )
        return self

    @field_validator("provider", "log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def describe(self) -> dict[str, Any]:
        """The settings as environment variable -> value, for the start-up log; the API key
        masked."""
        values = self.model_dump(mode="json")
        values["api_key"] = None if self.api_key is None else MASKED
        return {f"{ENV_PREFIX}{name.upper()}": value for name, value in values.items()}


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per `MMOE_*` variable in `environ` that is no setting (a typo is otherwise
    silently ignored), with the setting it most likely meant."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    lines = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in known | DEPLOYMENT_VARIABLES:
            continue
        close = difflib.get_close_matches(variable, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{variable} is not a setting and is ignored{hint}")
    return lines
