"""Request and response shapes as pydantic models, for the OpenAPI schema and /docs only.

Bodies are never validated through these (that would build a Python object per number): /predict
parses its body in `service.payload` and encodes its response in `service.responses`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.contract import MAX_VERSION, Architecture

ADULT_EXAMPLE: dict[str, Any] = {
    "age": 39, "workclass": "State-gov", "fnlwgt": 77516, "education": "Bachelors",
    "education-num": 13, "occupation": "Adm-clerical", "relationship": "Not-in-family",
    "race": "White", "sex": "Male", "capital-gain": 2174, "capital-loss": 0,
    "hours-per-week": 40, "native-country": "United-States",
}  # fmt: skip


class PredictRequest(BaseModel):
    """`instances` as arrays of d numbers in the card's feature order, or as objects of named
    features; every instance in one request takes the same form. A table model (mmoe-adult) takes
    objects of its named raw features: numbers, strings for categorical features, and null for a
    missing value."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"instances": [[0.1] * 100, [-0.2] * 100], "return_gates": True},
                {"instances": [{f"x_{i}": 0.1 for i in range(1, 101)}], "model": "mmoe-synthetic"},
                {"instances": [ADULT_EXAMPLE], "model": "mmoe-adult"},
            ]
        },
    )

    # min_length on each list (not on the union) is what makes the schema say `minItems`.
    instances: (
        Annotated[list[list[float | None]], Field(min_length=1)]
        | Annotated[list[dict[str, float | str | None]], Field(min_length=1)]
    ) = Field(
        description="one instance per row: d finite numbers, or an object of named features "
        "(a table model's categorical features as strings; null for a missing value, where the "
        "model's card says input.accepts_missing)"
    )
    return_gates: bool = Field(True, description="include each task's gate weights over experts")
    model: str | None = Field(None, description="model name (default: the configured default)")
    version: Annotated[int, Field(ge=1, le=MAX_VERSION)] | Literal["latest"] | None = Field(
        None,
        description="model version, or 'latest' for its latest (promoted) version (default: the "
        "default model's configured version, else the latest)",
    )


class ModelReference(BaseModel):
    name: str = Field(examples=["mmoe-synthetic"])
    version: int = Field(examples=[1])
    architecture: Architecture


class TaskOutput(BaseModel):
    predictions: list[float] = Field(
        description="one value per instance, in instance order (a probability for binary tasks)"
    )
    gate_weights: list[list[float]] | None = Field(
        description="per instance, the weights over the E experts (sum to 1): this task's own gate "
        "for MMoE, the one shared gate for OMoE; null for Shared-Bottom or return_gates=false"
    )


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": {"name": "mmoe-synthetic", "version": 1, "architecture": "mmoe"},
                    "tasks": {
                        "task_1": {
                            "predictions": [0.4123],
                            "gate_weights": [[0.1, 0.2, 0.05, 0.15, 0.1, 0.2, 0.1, 0.1]],
                        },
                        "task_2": {
                            "predictions": [-0.0871],
                            "gate_weights": [[0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]],
                        },
                    },
                }
            ]
        }
    )

    model: ModelReference = Field(description="the model version that answered")
    tasks: dict[str, TaskOutput] = Field(description="per task, keyed by task name")


class ErrorInfo(BaseModel):
    code: str = Field(description="stable machine-readable code", examples=["wrong_feature_count"])
    message: str = Field(description="what went wrong and what to do about it")
    details: Any = Field(None, description="structured context, e.g. which instance; or null")
    request_id: str | None = Field(None, description="also in the X-Request-ID response header")


class ErrorResponse(BaseModel):
    """The one shape of every 4xx and 5xx response."""

    error: ErrorInfo


class Liveness(BaseModel):
    status: Literal["live"]


class DefaultModel(BaseModel):
    name: str
    version: int


class VersionRef(BaseModel):
    model: str
    version: int


class LoadFailureInfo(BaseModel):
    model: str
    version: int | None = Field(description="null: the model's promoted.json")
    reason: str = Field(description="why it is not served, as logged")
    failed_at: str = Field(description="ISO 8601, UTC")


class Readiness(BaseModel):
    status: Literal["ready"]
    default_model: DefaultModel
    loaded: dict[str, list[int]] = Field(description="model -> versions served, oldest first")
    failed: list[LoadFailureInfo] = Field(
        description="versions (or promoted.json files) on disk that a reload could not load; "
        "what was served before keeps serving"
    )


class ReloadResult(BaseModel):
    trigger: Literal["poll", "admin"]
    outcome: Literal["unchanged", "changed", "rejected"]
    generation: int = Field(description="counts the changes of the served set, from 1")
    at: str = Field(description="ISO 8601, UTC")
    loaded: list[VersionRef] = Field(description="versions served from now on")
    replaced: list[VersionRef] = Field(description="versions whose files changed, loaded again")
    unloaded: list[VersionRef] = Field(
        description="versions gone from disk: unloaded after their last request"
    )
    failed: list[LoadFailureInfo]
    reason: str | None = Field(description="why a rejected reload was rejected")


class RepositoryInfo(BaseModel):
    generation: int
    polling_interval_s: float = Field(description="0: no polling (MMOE_RELOAD_INTERVAL_S)")
    last_reload: ReloadResult | None


class ModelSummary(BaseModel):
    name: str
    versions: list[int] = Field(description="oldest first")
    latest_version: int = Field(
        description="the promoted version (models/<name>/promoted.json), else the highest: what "
        "`latest` means and what answers requests that name no version"
    )
    candidate_versions: list[int] = Field(
        description="versions newer than the promoted one, served only when a request names them"
    )


class ModelList(BaseModel):
    default_model: DefaultModel
    models: list[ModelSummary]
    failed: list[LoadFailureInfo] = Field(description="what a reload could not load")
    unloading: list[VersionRef] = Field(
        description="versions reloaded away that still answer requests started before"
    )
    repository: RepositoryInfo


class TensorInfo(BaseModel):
    name: str
    type: str = Field(examples=["tensor(float)"])
    shape: list[int | str | None] = Field(description="a string or null marks a dynamic axis")


class Signature(BaseModel):
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


class VersionMetadata(BaseModel):
    name: str
    version: int
    architecture: Architecture
    tasks: list[str]
    input_dim: int
    provider: Literal["cpu", "cuda"] = Field(description="the execution provider in use")
    onnxruntime_providers: list[str] = Field(description="session.get_providers()")
    signature: Signature = Field(description="the graph's real inputs and outputs")
    card: dict[str, Any] = Field(description="the model card (model.json), checked at start-up")


class ModelDetail(ModelSummary):
    latest: VersionMetadata
