"""The `data` section for a user's table: files, columns, tasks, the split and the encoding.

Everything that can be checked without opening a file is checked here, with a message naming the
field and the column; what needs the data (a column missing from a file, a label that cannot be
derived) is checked while reading, with the file and row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from service.contract import TaskType
from training.config_base import MAX_SEED, StrictConfig


class FileSource(StrictConfig):
    path: Path = Field(description="a .csv, .csv.gz (any CSV, gzip-compressed or not) or .parquet")
    skip_rows: int = Field(0, ge=0, description="lines to skip at the top, before any header")


class TabularTask(StrictConfig):
    name: str = Field(min_length=1, max_length=64, description="the task's name in the card")
    column: str = Field(description="the source column the label comes from")
    type: TaskType = Field("binary", description="binary (a probability) or regression (a value)")
    positive: list[str] | None = Field(
        None,
        description="binary: the values that mean 1 (without: the column holds 0 and 1)",
    )
    negative: list[str] | None = Field(
        None,
        description="binary: the values that mean 0 (without: every value not positive); a "
        "value in neither list is an error",
    )

    @model_validator(mode="after")
    def _label_rule(self) -> TabularTask:
        if self.type == "regression" and (self.positive or self.negative):
            raise ValueError(
                f"task {self.name!r} is a regression task: its label is the number in column "
                f"{self.column!r}; positive and negative are for binary tasks"
            )
        if self.positive is not None and not self.positive:
            raise ValueError(f"task {self.name!r}: positive lists no values")
        if self.negative is not None and self.positive is None:
            raise ValueError(f"task {self.name!r}: negative needs positive values beside it")
        both = sorted(set(self.positive or []) & set(self.negative or []))
        if both:
            raise ValueError(f"task {self.name!r}: {both} are both positive and negative")
        return self


class TabularDataConfig(StrictConfig):
    kind: Literal["tabular"] = Field("tabular", description="data source")
    train_files: list[FileSource] = Field(
        min_length=1,
        description="files of training rows, in order: paths, or {path, skip_rows} objects",
    )
    test_files: list[FileSource] = Field(
        default_factory=list,
        description="files of test rows (without: test_fraction of the training files' rows)",
    )
    format: Literal["auto", "csv", "parquet"] = Field(
        "auto", description="file format (auto: .parquet is Parquet, anything else CSV)"
    )
    header: bool = Field(
        True, description="CSV: the first line (after skip_rows) names the columns"
    )
    column_names: list[str] | None = Field(
        None, description="CSV: the columns' names; required without a header, else replace it"
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV: field separator")
    strip_whitespace: bool = Field(True, description="trim spaces around every text value")
    missing_values: list[str] = Field(
        default_factory=lambda: [""], description='values that mean missing, e.g. ["", "?"]'
    )
    numeric: list[str] | None = Field(
        None,
        description="numeric feature columns (without: every column that is not categorical, "
        "dropped or a task's source)",
    )
    categorical: list[str] = Field(default_factory=list, description="categorical feature columns")
    drop: list[str] = Field(default_factory=list, description="columns that are not features")
    tasks: list[TabularTask] = Field(min_length=1, description="tasks, each from one source column")
    validation_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="share of the training rows held out for early stopping"
    )
    test_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="share of the rows held out for testing (no test_files)"
    )
    split_seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the row-by-row split")
    min_category_count: int = Field(
        5, ge=1, description="rarer training values share the out-of-vocabulary code"
    )
    buckets: int = Field(
        0, ge=0, le=1024, description="quantile bins per bucketised numeric column (0: none)"
    )
    bucket_columns: list[str] | None = Field(
        None, description="numeric columns to bucketise (without: all of them)"
    )
    quantile_sample_rows: int = Field(
        100_000, ge=1, description="bins come from at most this many training rows (a fixed sample)"
    )
    streaming: bool = Field(
        False, description="read the files in blocks every epoch instead of holding them in memory"
    )
    block_bytes: int = Field(
        8 << 20, ge=1 << 12, description="bytes of CSV read at a time (Parquet: 65,536 rows)"
    )
    shuffle_buffer_rows: int = Field(
        65_536, ge=1, description="streaming: training rows shuffled together"
    )

    @field_validator("train_files", "test_files", mode="before")
    @classmethod
    def _paths_as_sources(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": item} if isinstance(item, str | Path) else item for item in value]
        return value

    @model_validator(mode="after")
    def _columns_are_consistent(self) -> TabularDataConfig:
        if not self.header and self.column_names is None:
            raise ValueError("column_names are required when header is false")
        for field in ("column_names", "numeric", "categorical", "drop", "bucket_columns"):
            _no_duplicates(field, getattr(self, field) or [])
        _no_duplicates("task names", [task.name for task in self.tasks])
        sources = {task.column: task.name for task in self.tasks}
        features = {"numeric": self.numeric or [], "categorical": self.categorical}
        for field, columns in features.items():
            for column in columns:
                if column in sources:
                    raise ValueError(
                        f"column {column!r} is the source of task {sources[column]!r}, so it "
                        f"cannot also be a feature: remove it from {field}"
                    )
                if column in self.drop:
                    raise ValueError(f"column {column!r} is both in {field} and in drop")
        both = sorted(set(self.numeric or []) & set(self.categorical))
        if both:
            raise ValueError(f"columns {both} are both numeric and categorical")
        if self.numeric is not None and not self.numeric:
            raise ValueError("numeric lists no columns; a model needs at least one numeric feature")
        if self.numeric is not None and self.bucket_columns is not None:
            strangers = [c for c in self.bucket_columns if c not in self.numeric]
            if strangers:
                raise ValueError(f"bucket_columns {strangers} are not numeric features")
        if self.column_names is not None:
            named = set(self.column_names)
            for column in [*self.referenced_columns(), *self.drop]:
                if column not in named:
                    raise ValueError(f"column {column!r} is not among column_names")
        return self

    def referenced_columns(self) -> list[str]:
        """Every column the config names as a feature or a task source, without repeats."""
        named = [*(self.numeric or []), *self.categorical, *(task.column for task in self.tasks)]
        return list(dict.fromkeys(named))

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    @property
    def task_types(self) -> list[TaskType]:
        return [task.type for task in self.tasks]


def _no_duplicates(field: str, names: list[str]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{field} repeat {repeated}")
