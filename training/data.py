"""What a run trains on, whatever the source: rows, tasks, the graph's inputs and the initial model.

`prepare_synthetic` wraps the paper's generator; `training.tabular.prepare.prepare_table` a user's
table. The pipeline takes a `PreparedData` and needs to know nothing else about where rows came
from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from service.contract import INPUT_FEATURES, TaskType
from service.model_card import CategoricalInputSpec, InputSpec
from training import synthetic
from training.batches import BatchSource, EvaluationRows, TensorSplit
from training.config import ModelConfig, SyntheticDataConfig
from training.models import MultiTaskModel
from training.trainer import initial_model

VALIDATION_RANDOM_ROWS = 256


@dataclass(frozen=True)
class PreparedData:
    task_names: list[str]
    task_types: list[TaskType]
    train: TensorSplit | BatchSource
    validation: EvaluationRows
    test: EvaluationRows
    input: InputSpec
    categorical: CategoricalInputSpec | None
    export_checks: Mapping[str, Mapping[str, np.ndarray]]  # name -> feeds the export must match
    description: dict[str, Any]  # the card's `data`
    initial_model: Callable[[ModelConfig, int], MultiTaskModel]  # (config, seed) -> the model


def prepare_synthetic(config: SyntheticDataConfig, seed: int) -> PreparedData:
    data = synthetic.generate(config)
    train_features = torch.from_numpy(data.train.features)
    num_tasks = len(config.task_names)
    random_rows = (
        np.random.default_rng(seed)
        .normal(0.0, 3.0, (VALIDATION_RANDOM_ROWS, config.input_dim))
        .astype(np.float32)
    )
    return PreparedData(
        task_names=config.task_names,
        task_types=config.task_types,
        train=TensorSplit.from_numpy(data.train.features, data.train.labels),
        validation=TensorSplit.from_numpy(data.validation.features, data.validation.labels),
        test=TensorSplit.from_numpy(data.test.features, data.test.labels),
        input=InputSpec(
            name=INPUT_FEATURES,
            dim=config.input_dim,
            feature_names=[f"x_{i + 1}" for i in range(config.input_dim)],
        ),
        categorical=None,
        export_checks={
            "held-out": {INPUT_FEATURES: data.test.features},
            "random": {INPUT_FEATURES: random_rows},
            "single-row": {INPUT_FEATURES: data.test.features[:1]},
        },
        description=data.description(),
        initial_model=lambda model, seed: initial_model(model, train_features, num_tasks, seed),
    )
