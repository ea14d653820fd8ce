"""The model card: what a model version says about itself, written by training, read by the service.

It lives twice: as `model.json` beside the ONNX file, and as JSON in the ONNX metadata under
`CARD_METADATA_KEY`. The embedded copy has `onnx.sha256 = None`, since a file cannot hold its own
hash; `model.json` carries the real one. Everything else in the two copies is identical.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.contract import MAX_VERSION, Architecture, TaskType, gate_count


class _CardPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSpec(_CardPart):
    name: str
    type: TaskType


class InputSpec(_CardPart):
    name: str
    dim: int = Field(ge=1)
    feature_names: list[str] | None = None

    @model_validator(mode="after")
    def _names_match_dim(self) -> InputSpec:
        names = self.feature_names
        if names is not None:
            if len(names) != self.dim:
                raise ValueError(f"{len(names)} feature names for {self.dim} features")
            if len(set(names)) != len(names):
                raise ValueError("feature names must be unique")
        return self


class ExpertSpec(_CardPart):
    count: int = Field(ge=0)  # 0 for Shared-Bottom
    units: int = Field(ge=1)
    gates: int = Field(ge=0)  # G: rows of the `gates` output


class OnnxSpec(_CardPart):
    file: str
    opset: int
    sha256: str | None = None
    outputs: dict[str, list[int | None]]  # name -> shape, None for the dynamic batch axis


class ModelCard(_CardPart):
    name: str
    version: int = Field(ge=1, le=MAX_VERSION)
    architecture: Architecture
    tasks: list[TaskSpec] = Field(min_length=1)
    input: InputSpec
    experts: ExpertSpec
    onnx: OnnxSpec
    parameters: int = Field(ge=0)
    metrics: dict[str, dict[str, dict[str, float | None]]]  # split -> task -> metric -> value
    data: dict[str, Any]
    training: dict[str, Any]
    software: dict[str, str]
    created_at: datetime

    @model_validator(mode="after")
    def _gates_match_architecture(self) -> ModelCard:
        expected = gate_count(self.architecture, len(self.tasks))
        if self.experts.gates != expected:
            raise ValueError(
                f"{self.architecture} with {len(self.tasks)} tasks has {expected} gates, "
                f"card says {self.experts.gates}"
            )
        return self

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def embedded(self) -> ModelCard:
        """The copy stored inside the ONNX file: identical but for the file's own hash."""
        return self.model_copy(update={"onnx": self.onnx.model_copy(update={"sha256": None})})
