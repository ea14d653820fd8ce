"""A user's table as a run's PreparedData: rows (in memory or streamed), card specs, checks."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from service.contract import (
    FIRST_CATEGORY_CODE,
    INPUT_CATEGORICAL,
    INPUT_FEATURES,
    MISSING_CODE,
)
from service.model_card import CategoricalFeatureSpec, CategoricalInputSpec, InputSpec
from training.batches import BatchSource, EvaluationRows, Shard, TensorSplit
from training.config import ModelConfig, TrainConfig
from training.data import VALIDATION_RANDOM_ROWS, PreparedData
from training.models import MultiTaskModel, build_model
from training.tabular.config import TabularDataConfig
from training.tabular.dataset import (
    TEST,
    TRAIN,
    VALIDATION,
    EncodedRows,
    FittedTable,
    fit_table_streaming,
    load_table,
    scan,
)
from training.tabular.inputs import TabularInputs
from training.tabular.schema import FeatureSchema
from training.tabular.stream import StreamedBatches, StreamedRows, as_tensors
from training.trainer import seed_everything

logger = logging.getLogger(__name__)

EXPORT_CHECK_ROWS = 2048


def prepare_table(config: TabularDataConfig, train: TrainConfig, shard: Shard) -> PreparedData:
    train_rows: TensorSplit | BatchSource
    validation: EvaluationRows
    test: EvaluationRows
    if config.streaming:
        fitted = fit_table_streaming(config)
        held_out = next(scan(fitted, TEST))
        train_rows = StreamedBatches(
            fitted, TRAIN, train.batch_size, config.shuffle_buffer_rows, train.seed, shard
        )
        validation, test = StreamedRows(fitted, VALIDATION), StreamedRows(fitted, TEST)
    else:
        table = load_table(config)
        fitted = table.fitted
        held_out = table.splits["test"]
        train_rows, validation, test = (
            as_tensors(table.splits[name]) for name in ("train", "validation", "test")
        )
    logger.info(
        "table: %s rows; %d numeric and %d categorical features",
        fitted.split_rows,
        len(fitted.schema.numeric),
        len(fitted.schema.categorical),
    )
    schema = fitted.schema

    def initial_model(model: ModelConfig, seed: int) -> MultiTaskModel:
        seed_everything(seed)
        return build_model(model, TabularInputs(schema, model.embedding_dim), len(config.tasks))

    return PreparedData(
        task_names=config.task_names,
        task_types=config.task_types,
        train=train_rows,
        validation=validation,
        test=test,
        input=InputSpec(
            name=INPUT_FEATURES,
            dim=len(schema.numeric),
            feature_names=schema.numeric_names,
            accepts_missing=True,
        ),
        categorical=categorical_spec(schema),
        export_checks=export_checks(held_out, schema, train.seed),
        description=describe(fitted),
        initial_model=initial_model,
    )


def categorical_spec(schema: FeatureSchema) -> CategoricalInputSpec | None:
    if not schema.categorical:
        return None
    return CategoricalInputSpec(
        name=INPUT_CATEGORICAL,
        features=[
            CategoricalFeatureSpec(name=f.name, vocabulary=f.vocabulary) for f in schema.categorical
        ],
        min_count=schema.min_category_count,
    )


def feeds(numeric: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
    named = {INPUT_FEATURES: numeric}
    if categorical.shape[1]:
        named[INPUT_CATEGORICAL] = categorical
    return named


def export_checks(
    held_out: EncodedRows, schema: FeatureSchema, seed: int
) -> Mapping[str, Mapping[str, np.ndarray]]:
    """Held-out rows; random rows with missing values, unseen codes and values far out; one row."""
    rows = min(held_out.num_rows, EXPORT_CHECK_ROWS)
    rng = np.random.default_rng(seed)
    mean = np.array([f.mean for f in schema.numeric])
    std = np.array([f.std for f in schema.numeric])
    numeric = rng.normal(mean, 3.0 * std, (VALIDATION_RANDOM_ROWS, len(mean)))
    numeric[rng.random(numeric.shape) < 0.1] = np.nan
    sizes = np.array([FIRST_CATEGORY_CODE + len(f.vocabulary) for f in schema.categorical])
    categorical = rng.integers(0, sizes + 2, (VALIDATION_RANDOM_ROWS, len(sizes)))  # some too big
    categorical[rng.random(categorical.shape) < 0.1] = MISSING_CODE
    return {
        "held-out": feeds(held_out.numeric[:rows], held_out.categorical[:rows]),
        "random": feeds(numeric.astype(np.float32), categorical.astype(np.int64)),
        "single-row": feeds(held_out.numeric[:1], held_out.categorical[:1]),
    }


def describe(fitted: FittedTable) -> dict:
    """The card's `data`: where the rows came from, how they were split and encoded."""
    config = fitted.config
    return {
        "kind": "tabular",
        "train_files": [str(source.path) for source in config.train_files],
        "test_files": [str(source.path) for source in config.test_files],
        "rows": fitted.split_rows,
        "positive_training_rows": fitted.positives,
        "tasks": [task.model_dump() for task in config.tasks],
        "split": {
            "validation_fraction": config.validation_fraction,
            "test_fraction": None if config.test_files else config.test_fraction,
            "split_seed": config.split_seed,
        },
        "missing_values": config.missing_values,
        **fitted.schema.describe(),
    }
