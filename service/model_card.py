"""The model card: what a model version says about itself, written by training, read by the service.

It lives twice: as `model.json` beside the ONNX file, and as JSON in the ONNX metadata under
`CARD_METADATA_KEY`. The embedded copy has `onnx.sha256 = None`, since a file cannot hold its own
hash; `model.json` carries the real one. Everything else in the two copies is identical.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.contract import (
    FIRST_CATEGORY_CODE,
    INPUT_CATEGORICAL,
    MAX_VERSION,
    MISSING_CODE,
    OOV_CODE,
    Architecture,
    TaskType,
    gate_count,
)


class _CardPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSpec(_CardPart):
    name: str
    type: TaskType


class InputSpec(_CardPart):
    name: str
    dim: int = Field(ge=1)
    feature_names: list[str] | None = None
    accepts_missing: bool = False  # the graph imputes a missing (NaN) value: clients send null

    @model_validator(mode="after")
    def _names_match_dim(self) -> InputSpec:
        names = self.feature_names
        if names is not None:
            if len(names) != self.dim:
                raise ValueError(f"{len(names)} feature names for {self.dim} features")
            if len(set(names)) != len(names):
                raise ValueError("feature names must be unique")
        return self


class CategoricalFeatureSpec(_CardPart):
    name: str
    vocabulary: list[str]  # vocabulary[i] has code first_code + i

    @model_validator(mode="after")
    def _unique_values(self) -> CategoricalFeatureSpec:
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError(f"the vocabulary of {self.name!r} repeats a value")
        return self


class CategoricalInputSpec(_CardPart):
    """The `categorical` input: one int64 code per feature, from the vocabularies here."""

    name: str = INPUT_CATEGORICAL
    features: list[CategoricalFeatureSpec] = Field(min_length=1)
    oov_code: int = OOV_CODE  # an unseen value, or one too rare in training to keep
    missing_code: int = MISSING_CODE
    first_code: int = FIRST_CATEGORY_CODE
    min_count: int = Field(1, ge=1)  # training values seen fewer times map to oov_code

    @model_validator(mode="after")
    def _the_contracts_codes(self) -> CategoricalInputSpec:
        codes = (self.oov_code, self.missing_code, self.first_code)
        if codes != (OOV_CODE, MISSING_CODE, FIRST_CATEGORY_CODE):
            raise ValueError(
                f"codes (oov, missing, first) are {codes}; this service reads "
                f"{(OOV_CODE, MISSING_CODE, FIRST_CATEGORY_CODE)}"
            )
        names = [feature.name for feature in self.features]
        if len(set(names)) != len(names):
            raise ValueError("categorical feature names must be unique")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]


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
    categorical: CategoricalInputSpec | None = None  # tables with categorical features only
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

    @model_validator(mode="after")
    def _feature_names_unique_across_inputs(self) -> ModelCard:
        if self.categorical is not None:
            shared = set(self.input.feature_names or []) & set(self.categorical.feature_names)
            if shared:
                raise ValueError(f"features {sorted(shared)} are both numeric and categorical")
        return self

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def embedded(self) -> ModelCard:
        """The copy stored inside the ONNX file: identical but for the file's own hash."""
        return self.model_copy(update={"onnx": self.onnx.model_copy(update={"sha256": None})})
