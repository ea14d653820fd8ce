"""A table made ready to train on: columns resolved, one checking and fitting pass, encoded splits.

`open_table` resolves the columns against the first file and checks every file has them. One pass
over all rows then checks every value and label (a problem is reported once, with its count and
first row), splits the rows, and fits the FeatureSchema on the training rows. In memory
(`data.streaming = false`) the files are read whole once and kept as encoded arrays; streamed,
the pass reads blocks and every later scan reads them again, holding one block at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from training.tabular.config import TabularDataConfig
from training.tabular.labels import RowProblems, derive_labels
from training.tabular.reader import (
    Block,
    Columns,
    DataError,
    check_columns,
    file_columns,
    read_blocks,
)
from training.tabular.schema import FeatureSchema, SchemaFit, encode_categorical, encode_numeric
from training.tabular.split import (
    SPLIT_NAMES,
    TEST,
    TRAIN,
    VALIDATION,
    assign_splits,
    sample_priorities,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedRows:
    """Rows as the model takes them."""

    numeric: np.ndarray  # (n, d) float32, NaN for missing
    categorical: np.ndarray  # (n, C) int64 codes
    labels: np.ndarray  # (n, T) float32

    @property
    def num_rows(self) -> int:
        return self.labels.shape[0]

    @staticmethod
    def concatenate(parts: list[EncodedRows]) -> EncodedRows:
        return EncodedRows(
            np.concatenate([part.numeric for part in parts]),
            np.concatenate([part.categorical for part in parts]),
            np.concatenate([part.labels for part in parts]),
        )


@dataclass(frozen=True)
class TableLayout:
    """Which columns are features, and which the reader reads."""

    numeric: list[str]
    categorical: list[str]
    bucketised: list[str]
    columns: Columns


@dataclass(frozen=True)
class FittedTable:
    config: TabularDataConfig
    layout: TableLayout
    schema: FeatureSchema
    split_rows: dict[str, int]  # rows per split
    positives: dict[str, int]  # binary task -> positive training rows


def resolve_layout(config: TabularDataConfig) -> TableLayout:
    """The feature columns (numeric ones inferred when not listed), checked in every file."""
    sources = {task.column for task in config.tasks}
    numeric = config.numeric
    first_file_columns = file_columns(config.train_files[0], config)
    if numeric is None:
        skip = sources | set(config.categorical) | set(config.drop)
        numeric = [column for column in first_file_columns if column not in skip]
        if not numeric:
            raise DataError(
                f"{config.train_files[0].path} has no column left for a numeric feature once "
                "the categorical, dropped and task columns are set aside"
            )
    else:
        unused = [
            column
            for column in first_file_columns
            if column not in {*numeric, *config.categorical, *config.drop, *sources}
        ]
        if unused:
            logger.warning("ignoring columns %s (list them in data.drop to say so)", unused)
    bucketised = config.bucket_columns if config.bucket_columns is not None else list(numeric)
    strangers = [column for column in bucketised if column not in numeric]
    if strangers:
        raise DataError(f"data.bucket_columns {strangers} are not numeric features")
    numeric_labels = [
        task.column for task in config.tasks if task.type == "regression" or not task.positive
    ]
    text_labels = [task.column for task in config.tasks if task.column not in numeric_labels]
    columns = Columns(
        numeric=list(dict.fromkeys([*numeric, *numeric_labels])),
        text=list(dict.fromkeys([*config.categorical, *text_labels])),
    )
    for source in [*config.train_files, *config.test_files]:
        check_columns(source, config, columns.all)
    return TableLayout(list(numeric), list(config.categorical), bucketised, columns)


class _FitPass:
    """The one pass over every row: checks, split sizes, class counts and the schema fit."""

    def __init__(self, config: TabularDataConfig, layout: TableLayout) -> None:
        self.config = config
        self.layout = layout
        self.problems = RowProblems()
        self.fit = SchemaFit(
            numeric=layout.numeric,
            categorical=layout.categorical,
            bucketised=layout.bucketised if config.buckets else [],
            buckets=config.buckets,
            min_category_count=config.min_category_count,
            sample_rows=config.quantile_sample_rows,
        )
        self.split_rows = dict.fromkeys(SPLIT_NAMES.values(), 0)
        self.positives = [0] * len(config.tasks)

    def add(self, block: Block, splits: np.ndarray) -> np.ndarray:
        labels = derive_labels(block, self.config.tasks, self.problems)
        for name in self.layout.numeric:
            not_numbers = block.not_numbers.get(name)
            if not_numbers is not None:
                self.problems.note("not_a_number", name, not_numbers.mask, not_numbers.text, block)
        for split, name in SPLIT_NAMES.items():
            self.split_rows[name] += int((splits == split).sum())
        train_rows = np.flatnonzero(splits == TRAIN)
        for k, task in enumerate(self.config.tasks):
            if task.type == "binary":
                self.positives[k] += int(np.nansum(labels[train_rows, k] == 1.0))
        priorities = sample_priorities(block.start, block.num_rows, self.config.split_seed)
        self.fit.update(block.columns, train_rows, priorities)
        return labels

    def finish(self) -> FittedTable:
        config = self.config
        self.problems.raise_first(config.tasks)
        for name, rows in self.split_rows.items():
            if rows == 0:
                share = "validation_fraction" if name == "validation" else "test_fraction"
                hint = "" if name == "train" else f"; raise data.{share} or give more rows"
                raise DataError(f"the {name} split has no rows{hint}")
        train_rows = self.split_rows["train"]
        for k, task in enumerate(config.tasks):
            if task.type == "binary" and self.positives[k] in (0, train_rows):
                only = 1 if self.positives[k] else 0
                raise DataError(
                    f"task {task.name!r} has one class only: all {train_rows} training labels are "
                    f"{only} (column {task.column!r}, positive values {task.positive}); a binary "
                    "task needs both"
                )
        schema = self.fit.finish()
        for numeric in schema.numeric:
            if numeric.count == 0:
                raise DataError(
                    f"numeric column {numeric.name!r} has no values in the training rows: all "
                    f"{numeric.missing} are missing"
                )
        for categorical in schema.categorical:
            if not categorical.vocabulary:
                raise DataError(
                    f"categorical column {categorical.name!r} has no usable values in the "
                    f"training rows: {categorical.missing} are missing and no value occurs "
                    f"data.min_category_count ({config.min_category_count}) times"
                )
        positives = {
            task.name: self.positives[k]
            for k, task in enumerate(config.tasks)
            if task.type == "binary"
        }
        return FittedTable(config, self.layout, schema, self.split_rows, positives)


def block_splits(block: Block, config: TabularDataConfig, test_file: bool) -> np.ndarray:
    if test_file:
        return np.full(block.num_rows, TEST, dtype=np.int8)
    test_fraction = None if config.test_files else config.test_fraction
    return assign_splits(
        block.start, block.num_rows, config.split_seed, config.validation_fraction, test_fraction
    )


def _labelled_blocks(
    config: TabularDataConfig, layout: TableLayout, whole_files: bool, split: int | None = None
) -> Iterator[tuple[Block, np.ndarray]]:
    """Blocks with each row's split; given `split`, only the files that can hold its rows."""
    for test_file, sources in ((False, config.train_files), (True, config.test_files)):
        if split is not None and test_file != (split == TEST and bool(config.test_files)):
            continue
        for block in read_blocks(sources, config, layout.columns, whole_files):
            yield block, block_splits(block, config, test_file)


@dataclass(frozen=True)
class TableInMemory:
    """A table read once, checked, fitted and encoded: one EncodedRows per split."""

    fitted: FittedTable
    splits: dict[str, EncodedRows]


def load_table(config: TabularDataConfig) -> TableInMemory:
    layout = resolve_layout(config)
    fit_pass = _FitPass(config, layout)
    kept: list[tuple[Block, np.ndarray, np.ndarray]] = []
    for block, splits in _labelled_blocks(config, layout, whole_files=True):
        kept.append((block, splits, fit_pass.add(block, splits)))
    fitted = fit_pass.finish()
    parts: dict[str, list[EncodedRows]] = {name: [] for name in SPLIT_NAMES.values()}
    for block, splits, labels in kept:
        rows = _encode(block, fitted.schema, labels)
        for split, name in SPLIT_NAMES.items():
            chosen = splits == split
            if chosen.any():
                parts[name].append(_take(rows, chosen))
    return TableInMemory(fitted, {name: EncodedRows.concatenate(p) for name, p in parts.items()})


def fit_table_streaming(config: TabularDataConfig) -> FittedTable:
    """The checking and fitting pass over blocks of `config.block_bytes`, keeping none of them."""
    layout = resolve_layout(config)
    fit_pass = _FitPass(config, layout)
    for block, splits in _labelled_blocks(config, layout, whole_files=False):
        fit_pass.add(block, splits)
    return fit_pass.finish()


def scan(fitted: FittedTable, split: int) -> Iterator[EncodedRows]:
    """The encoded rows of one split, a block at a time, in file order."""
    config = fitted.config
    for block, splits in _labelled_blocks(config, fitted.layout, False, split):
        chosen = splits == split
        if not chosen.any():
            continue
        labels = derive_labels(block, config.tasks, RowProblems())
        yield _take(_encode(block, fitted.schema, labels), chosen)


def _encode(block: Block, schema: FeatureSchema, labels: np.ndarray) -> EncodedRows:
    return EncodedRows(
        encode_numeric(block.columns, schema), encode_categorical(block.columns, schema), labels
    )


def _take(rows: EncodedRows, chosen: np.ndarray) -> EncodedRows:
    return EncodedRows(rows.numeric[chosen], rows.categorical[chosen], rows.labels[chosen])


__all__ = ["TEST", "TRAIN", "VALIDATION", "EncodedRows", "FittedTable", "load_table", "scan"]
