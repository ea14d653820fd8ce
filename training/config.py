"""Training configuration as data: validated once, loadable from a file, overridable per field.

Defaults document the paper's setting (Ma et al., KDD 2018) where it gives one. Every model is
strict: an unknown key or an out-of-range value is an error that names the field.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from service.contract import MAX_VERSION, MODEL_NAME_PATTERN, Architecture, TaskType, parse_version
from service.validation_errors import describe_problems
from training.config_base import MAX_SEED, ConfigError
from training.config_base import StrictConfig as _Strict
from training.tabular.config import TabularDataConfig

__all__ = ["MAX_SEED", "ConfigError", "RunConfig", "TabularDataConfig"]

# Rows × features the synthetic generator may hold in memory (float64): 2e8 values are 1.6 GB.
MAX_SYNTHETIC_VALUES = 200_000_000


class SyntheticDataConfig(_Strict):
    kind: Literal["synthetic"] = Field("synthetic", description="data source")
    input_dim: int = Field(100, ge=2, le=100_000, description="d, the number of input features")
    num_tasks: int = Field(2, ge=2, le=64, description="T, tasks; every pair has correlation p")
    correlation: float = Field(
        0.5, ge=-1.0, le=1.0, description="p, the cosine between task weight vectors"
    )
    scale: float = Field(
        3.0,
        gt=0.0,
        description="c, the norm of each task weight vector; how nonlinear the tasks are "
        "depends on c, α and β (with the default draw a linear fit explains all but 0.6 %% of "
        "the label variance; the experiments use nonlinear settings, see docs/results)",
    )
    num_sinusoids: int = Field(5, ge=0, le=1000, description="m, the number of sine terms")
    alphas: list[float] | None = Field(
        None, description="α_1..α_m (default: drawn from N(0,1) with sinusoid_seed)"
    )
    betas: list[float] | None = Field(
        None, description="β_1..β_m (default: drawn from N(0,1) with sinusoid_seed)"
    )
    sinusoid_seed: int = Field(0, ge=0, le=MAX_SEED, description="seed for α and β when not given")
    noise_std: float = Field(0.1, ge=0.0, description="std of ε_k (paper: variance 0.01)")
    train_size: int = Field(10_000, ge=1, description="training rows")
    validation_size: int = Field(1_000, ge=1, description="validation rows (early stopping)")
    test_size: int = Field(1_000, ge=1, description="held-out test rows (card metrics)")
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="seed for weight vectors, features and noise"
    )

    @model_validator(mode="after")
    def _check_shapes(self) -> SyntheticDataConfig:
        for name in ("alphas", "betas"):
            values = getattr(self, name)
            if values is not None and len(values) != self.num_sinusoids:
                raise ValueError(
                    f"{name} has {len(values)} values but num_sinusoids is {self.num_sinusoids}"
                )
        if self.input_dim < self.num_tasks:
            raise ValueError(f"input_dim ({self.input_dim}) must be >= num_tasks")
        rows = self.train_size + self.validation_size + self.test_size
        if rows * self.input_dim > MAX_SYNTHETIC_VALUES:
            raise ValueError(
                f"{rows} rows of {self.input_dim} features are {rows * self.input_dim:.3g} values "
                f"({rows * self.input_dim * 8 / 1e9:.1f} GB), more than the generator holds in "
                f"memory ({MAX_SYNTHETIC_VALUES:.0e} values); use fewer rows or features"
            )
        if self.correlation < -1.0 / (self.num_tasks - 1):
            raise ValueError(
                f"correlation {self.correlation} is impossible for {self.num_tasks} tasks "
                f"(every pair needs p >= {-1.0 / (self.num_tasks - 1):.4g})"
            )
        return self

    @property
    def task_names(self) -> list[str]:
        return [f"task_{k + 1}" for k in range(self.num_tasks)]

    @property
    def task_types(self) -> list[TaskType]:
        return ["regression"] * self.num_tasks


DATA_KINDS = ("synthetic", "tabular")


def _data_kind(value: Any) -> str:
    """The `kind` that picks the data section's model; synthetic when not given."""
    return value.get("kind", "synthetic") if isinstance(value, dict) else value.kind


DataConfig = Annotated[
    Annotated[SyntheticDataConfig, Tag("synthetic")] | Annotated[TabularDataConfig, Tag("tabular")],
    Discriminator(_data_kind),
]


class ModelConfig(_Strict):
    architecture: Architecture = Field(
        "mmoe", description="mmoe (one gate per task), omoe (one shared gate), shared_bottom"
    )
    num_experts: int = Field(8, ge=1, le=1024, description="experts (MMoE/OMoE)")
    expert_units: int = Field(16, ge=1, description="hidden units of each expert")
    tower_units: int = Field(8, ge=1, description="hidden units of each task tower")
    bottom_units: int = Field(
        113, ge=1, description="Shared-Bottom hidden units (113 matches MMoE's parameter count)"
    )
    embedding_dim: int = Field(
        4, ge=1, le=1024, description="tables: size of each category's and bucket's embedding"
    )


class TrainConfig(_Strict):
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0, description="Adam learning rate")
    batch_size: int = Field(128, ge=1, description="rows per gradient step")
    epochs: int = Field(100, ge=1, description="maximum epochs")
    patience: int = Field(
        10, ge=1, description="stop after this many epochs without validation improvement"
    )
    min_delta: float = Field(0.0, ge=0.0, description="smallest validation-loss gain that counts")
    loss_weights: list[float] | None = Field(
        None, description="per-task loss weights (default: 1 for every task)"
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed for initialisation and batch order")
    early_stopping_metric: str = Field(
        "loss",
        description="what early stopping watches on validation: loss (the weighted loss), auc "
        "(mean over binary tasks), or <task>.<metric> with metric auc, log_loss, mse or mae",
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="intra-op CPU threads of each process (default: torch's, one per core); "
        "small models train fastest on 1, above all on a busy machine",
    )
    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="where to train (cuda: one GPU per process, NCCL under torchrun)"
    )

    @field_validator("loss_weights")
    @classmethod
    def _non_negative(cls, weights: list[float] | None) -> list[float] | None:
        if weights is not None and any(w < 0 for w in weights):
            raise ValueError("loss weights must be >= 0")
        return weights


Promotion = Literal["always", "if-better", "never"]


class ExportConfig(_Strict):
    name: str | None = Field(
        None,
        description="model name: models/<name>/<version>/ (required; `make train` publishes the "
        "bundled recipe as mmoe-synthetic)",
    )
    version: int | None = Field(
        None, ge=1, le=MAX_VERSION, description="version (default: latest + 1)"
    )
    models_dir: Path = Field(Path("models"), description="model repository root")
    overwrite: bool = Field(False, description="replace an existing version")
    promote: Promotion = Field(
        "if-better",
        description="make the new version the one served by default: always, never, or "
        "if-better (its held-out metrics are not worse than the promoted version's beyond "
        "promote_tolerance); a version not promoted stays as a candidate",
    )
    promote_tolerance: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="if-better: how much worse, relatively, each task's metric may be",
    )
    triton_dir: Path | None = Field(
        None,
        description="also export the version, when it is promoted, into this Triton model "
        "repository with a KServe InferenceService (python -m training.export_triton)",
    )
    triton_device: Literal["gpu", "cpu"] = Field(
        "gpu", description="Triton export: where config.pbtxt and the InferenceService run it"
    )
    triton_storage_uri: str | None = Field(
        None,
        description="Triton export: where the repository will be uploaded, for the "
        "InferenceService's storageUri (default: a placeholder to replace)",
    )
    rtol: float = Field(1e-4, gt=0.0, le=0.1, description="validation: relative tolerance")
    atol: float = Field(1e-5, gt=0.0, le=0.1, description="validation: absolute tolerance")

    @field_validator("version", mode="before")
    @classmethod
    def _one_version_rule(cls, value: Any) -> Any:
        return parse_version(value) if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str | None) -> str | None:
        if name is not None and not MODEL_NAME_PATTERN.match(name):
            raise ValueError(
                "must be 1-64 characters of lowercase letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return name


class RunConfig(_Strict):
    data: DataConfig = Field(default_factory=SyntheticDataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @model_validator(mode="after")
    def _per_task_settings_fit_the_tasks(self) -> RunConfig:
        num_tasks = len(self.data.task_names)
        weights = self.train.loss_weights
        if weights is not None and len(weights) != num_tasks:
            raise ValueError(f"train.loss_weights has {len(weights)} values for {num_tasks} tasks")
        check_stopping_metric(
            self.train.early_stopping_metric, self.data.task_names, self.data.task_types
        )
        return self


STOPPING_METRICS = {"auc": "max", "log_loss": "min", "mse": "min", "mae": "min"}


def check_stopping_metric(metric: str, task_names: list[str], task_types: list[TaskType]) -> None:
    """`loss`, `auc`, or `<task>.<metric>` where the task has that metric; else a clear error."""
    binary = [name for name, kind in zip(task_names, task_types, strict=True) if kind == "binary"]
    if metric == "loss":
        return
    if metric == "auc":
        if not binary:
            raise ValueError("train.early_stopping_metric auc needs a binary task; there is none")
        return
    task, _, name = metric.rpartition(".")
    if task not in task_names or name not in STOPPING_METRICS:
        raise ValueError(
            f"train.early_stopping_metric {metric!r} is not loss, auc or <task>.<metric> with a "
            f"task of {task_names} and a metric of {list(STOPPING_METRICS)}"
        )
    has = ("auc", "log_loss") if task in binary else ("mse", "mae")
    if name not in has:
        raise ValueError(
            f"train.early_stopping_metric {metric!r}: task {task!r} has the metrics {list(has)}"
        )


def describe_validation_error(error: ValidationError) -> str:
    """Each problem: the dotted field name, what is wrong, and the value given."""
    return "invalid config: " + describe_problems(
        [_without_data_kind(problem) for problem in error.errors()], show_input=True
    )


def _without_data_kind(problem: Any) -> Any:
    """`data.tabular.tasks` -> `data.tasks`: the union's tag is no part of the user's config."""
    location = tuple(part for part in problem["loc"] if part not in DATA_KINDS)
    if problem["type"] == "union_tag_invalid":
        return problem | {
            "loc": (*location, "kind"),
            "type": "value_error",
            "msg": f"must be one of {list(DATA_KINDS)}",
            "input": problem["ctx"]["tag"],
        }
    return problem | {"loc": location}


def build_config(raw: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """A JSON or TOML file holding (part of) a RunConfig."""
    if path.suffix not in (".toml", ".json"):
        raise ConfigError(
            f"config file {path}: the format is told by the suffix, .toml or .json "
            f"(not {path.suffix or 'none'!r})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {error.start}); save it as UTF-8"
        ) from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(
            f"config file {path} is not valid {path.suffix[1:].upper()}: {error}"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold an object at the top level")
    return raw


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base`."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
