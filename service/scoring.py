"""Scoring tables: feature columns in, per-task prediction (and gate) columns out, with the model
run in this process by onnxruntime (`LocalScorer`) or by a running server (`RemoteScorer`).

Output columns, after any kept input columns:
    <task>                   the task's prediction (a value, or a probability for binary tasks)
    gate_<task>_e<i>         with gates: MMoE's gate of that task, weight of expert i
    gate_shared_e<i>         with gates: OMoE's one gate (Shared-Bottom has none)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa

from service.client import MMoEClient, ModelVersion, Prediction
from service.errors import ModelLoadError
from service.model import ServedModel
from service.repository import scan
from service.runtime import RuntimeOptions
from service.settings import available_cpus

Version = int | Literal["latest"]


class ScoringError(Exception):
    """The input cannot be scored as asked; the message says which row or column and why."""


@dataclass(frozen=True)
class ModelSpec:
    """What scoring needs to know of the model before the first row."""

    model: ModelVersion
    feature_names: list[str]
    task_names: list[str]
    gates: int  # gates the model exports: 0 (Shared-Bottom), 1 (OMoE), one per task (MMoE)
    experts: int
    categorical: list[str]  # a table model's categorical features, after the numeric ones
    records: bool  # a table model: rows go in as records of named features, nulls allowed

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> ModelSpec:
        categorical = card.get("categorical") or {"features": []}
        return cls(
            ModelVersion(card["name"], card["version"], card["architecture"]),
            feature_names=card["input"].get("feature_names") or [],
            task_names=[task["name"] for task in card["tasks"]],
            gates=card["experts"]["gates"],
            experts=card["experts"]["count"],
            categorical=[feature["name"] for feature in categorical["features"]],
            records=bool(card.get("categorical")) or card["input"].get("accepts_missing", False),
        )

    def gate_owners(self) -> list[tuple[str, str]]:
        """(task whose gate weights to take, column label) per gate the model has."""
        if self.gates == 1:
            return [(self.task_names[0], "shared")]
        return [(task, task) for task in self.task_names] if self.gates else []


Inputs = np.ndarray | list[dict[str, Any]]  # float32 [rows, d], or a table model's records


class Scorer(Protocol):
    spec: ModelSpec

    def score(self, inputs: Inputs, return_gates: bool) -> Prediction: ...


class LocalScorer:
    """One model version, loaded and verified as the service loads it, run in this process."""

    def __init__(self, repository: Path, name: str, version: Version, provider: str) -> None:
        versions = dict(scan(repository).get(name, [])) if repository.is_dir() else {}
        if not versions:
            raise ModelLoadError(
                f"no model {name!r} in the model repository {repository} (resolved: "
                f"{repository.resolve()}); choose it with --model-repository and --model"
            )
        chosen = max(versions) if version == "latest" else version
        if chosen not in versions:
            raise ModelLoadError(
                f"model {name!r} has no version {chosen} in {repository}; versions: "
                f"{sorted(versions)}"
            )
        self.served = ServedModel.load(versions[chosen], RuntimeOptions(provider, available_cpus()))
        self.spec = ModelSpec.from_card(self.served.card.model_dump(mode="json"))

    def score(self, inputs: Inputs, return_gates: bool) -> Prediction:
        feeds = self.served.feeds(inputs) if isinstance(inputs, list) else inputs
        outputs = self.served.predict(feeds, return_gates)
        tasks = self.spec.task_names
        predictions = {task: outputs.predictions[:, index] for index, task in enumerate(tasks)}
        gates = None
        if outputs.gates is not None:
            shared = outputs.gates.shape[1] == 1
            gates = {
                task: outputs.gates[:, 0 if shared else index, :]
                for index, task in enumerate(tasks)
            }
        return Prediction(self.spec.model, predictions, gates)


class RemoteScorer:
    """A running server, through `service.client`; the version is pinned before the first row,
    so a server restarted mid-way with a newer version cannot mix two models in one file."""

    def __init__(self, client: MMoEClient, name: str | None, version: Version) -> None:
        self.client = client
        self.spec = ModelSpec.from_card(client.model_metadata(name, version)["card"])

    def score(self, inputs: Inputs, return_gates: bool) -> Prediction:
        model = self.spec.model
        return self.client.predict(
            inputs, return_gates=return_gates, model=model.name, version=model.version
        )


def output_names(spec: ModelSpec, keep: list[str], with_gates: bool) -> list[str]:
    """The output's columns, in order; an error when a kept column would collide."""
    names = list(spec.task_names)
    if with_gates:
        names += [
            f"gate_{label}_e{i}" for _, label in spec.gate_owners() for i in range(spec.experts)
        ]
    clash = sorted(set(keep) & set(names))
    if clash:
        raise ScoringError(f"--keep columns {clash} have the names of output columns; rename them")
    return [*keep, *names]


def feature_columns(spec: ModelSpec, available: list[str], keep: list[str]) -> list[str]:
    """The input columns that feed the model, in its feature order; a clear error for any that
    is missing, and for a kept column the input does not have."""
    model = f"model {spec.model.name!r} version {spec.model.version}"
    wanted = [*spec.feature_names, *spec.categorical]
    if not wanted:
        raise ScoringError(f"{model}: its card names no features to match the input's columns")
    present = set(available)
    missing = [name for name in wanted if name not in present]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ScoringError(
            f"the input lacks {len(missing)} of the {len(wanted)} feature columns "
            f"of {model}: {shown}"
        )
    absent = [name for name in keep if name not in present]
    if absent:
        raise ScoringError(f"--keep names columns the input does not have: {absent}")
    return wanted


def features_of(batch: pa.RecordBatch, names: list[str], first_row: int) -> np.ndarray:
    """float32 [rows, d] from the batch's feature columns, every value a finite number. Rows
    in messages count from 1 at the first data row (`first_row` is this batch's offset)."""
    columns = []
    for name in names:
        column = batch.column(name)
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            raise ScoringError(f"column {name!r} holds {column.type} values; features are numbers")
        if column.null_count:
            row = first_row + int(np.flatnonzero(column.is_null().to_numpy(False))[0]) + 1
            raise ScoringError(
                f"row {row}: column {name!r} has no value (empty, NA, NaN or null); every "
                "feature needs a number"
            )
        columns.append(column.to_numpy(zero_copy_only=False))
    with np.errstate(over="ignore"):
        features = np.column_stack(columns).astype(np.float32)
    finite = np.isfinite(features)
    if not finite.all():
        row_index, column_index = np.argwhere(~finite)[0]
        value = float(columns[column_index][row_index])
        raise ScoringError(
            f"row {first_row + int(row_index) + 1}: column {names[column_index]!r} is {value!r}, "
            "not a finite number within the float32 range"
        )
    return features


def records_of(batch: pa.RecordBatch, spec: ModelSpec, first_row: int) -> list[dict[str, Any]]:
    """A table model's rows as records of named features: numbers (null where missing) for the
    numeric features, strings for the categorical ones (a CSV's digits are read as text there);
    the model's own encoder then checks and codes them as POST /predict does."""
    for name in spec.feature_names:
        column_type = batch.column(name).type
        if not (pa.types.is_floating(column_type) or pa.types.is_integer(column_type)):
            raise ScoringError(f"column {name!r} holds {column_type} values; features are numbers")
    columns = {name: batch.column(name) for name in spec.feature_names}
    for name in spec.categorical:
        column = batch.column(name)
        columns[name] = column if pa.types.is_string(column.type) else column.cast(pa.string())
    records: list[dict[str, Any]] = pa.RecordBatch.from_pydict(columns).to_pylist()
    return records


def output_batch(
    batch: pa.RecordBatch, keep: list[str], spec: ModelSpec, answer: Prediction, gates: bool
) -> pa.RecordBatch:
    """The kept input columns, then the predictions, then (when asked for) the gates: the
    columns `output_names` lists."""
    arrays = [batch.column(name) for name in keep]
    arrays += [pa.array(answer.predictions[task]) for task in spec.task_names]
    if gates and answer.gates is not None:
        for task, _ in spec.gate_owners():
            weights = answer.gates[task]
            arrays += [pa.array(weights[:, expert]) for expert in range(spec.experts)]
    return pa.RecordBatch.from_arrays(arrays, names=output_names(spec, keep, gates))
