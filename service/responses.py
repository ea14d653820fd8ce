"""The /predict response, encoded by orjson straight from the output arrays (no per-value objects).

    {"model": {"name": ..., "version": ..., "architecture": ...},
     "tasks": {"<task>": {"predictions": [n floats], "gate_weights": [[E floats] * n] | null}}}

For MMoE each task carries its own gate; for OMoE every task carries the one shared gate; for
Shared-Bottom (or when `return_gates` is false) `gate_weights` is null.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.json_encoding import encode
from service.model import ModelOutputs, ServedModel


def model_reference(model: ServedModel) -> dict[str, Any]:
    return {"name": model.name, "version": model.version, "architecture": model.card.architecture}


def encode_prediction(model: ServedModel, outputs: ModelOutputs) -> bytes:
    per_task = np.ascontiguousarray(outputs.predictions.T)  # (T, n): one contiguous row per task
    gates = None
    if outputs.gates is not None:
        gates = np.ascontiguousarray(outputs.gates.transpose(1, 0, 2))  # (G, n, E)
    tasks = {}
    for index, task in enumerate(model.task_names):
        gate_weights = None if gates is None else gates[index if len(gates) > 1 else 0]
        tasks[task] = {"predictions": per_task[index], "gate_weights": gate_weights}
    return encode({"model": model_reference(model), "tasks": tasks})
