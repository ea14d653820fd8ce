"""A table's files as blocks of clean columns, read by pyarrow: whole files, or a few MB at a time.

Every block holds the columns the config uses, cleaned the one way whatever the format:
numeric columns (features, and labels that are numbers) as float64 with null for a missing value;
every other column as text with null for a missing value. Text is trimmed when asked, and values
listed in `missing_values` become null. A CSV is read as text, so a value that is not a number in
a numeric column is caught and reported with its file and row instead of failing the whole read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from training.tabular.config import FileSource, TabularDataConfig

PARQUET_BLOCK_ROWS = 65_536
NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"


class DataError(ValueError):
    """The data do not fit the config; the message names the file, the column and the row."""


@dataclass(frozen=True)
class Columns:
    """The columns a run reads, by how they are read."""

    numeric: list[str]  # float64: numeric features and number-valued labels
    text: list[str]  # strings: categorical features and labels derived from values

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.text]


@dataclass(frozen=True)
class NotNumbers:
    """The rows of a numeric column whose text is not a number (they read as missing)."""

    mask: np.ndarray  # (rows,) bool
    text: pa.Array  # the column's text as read


@dataclass(frozen=True)
class Block:
    """Consecutive rows of one file, cleaned."""

    columns: dict[str, pa.Array]
    not_numbers: dict[str, NotNumbers]  # only numeric columns with such rows
    source: Path
    first_row: int  # 1-based data row number (after skipped lines and the header) in its file
    start: int  # index of the first row among all rows of its file set
    num_rows: int


def is_parquet(source: FileSource, config: TabularDataConfig) -> bool:
    if config.format != "auto":
        return config.format == "parquet"
    return source.path.suffix.lower() in (".parquet", ".pq")


def file_columns(source: FileSource, config: TabularDataConfig) -> list[str]:
    """The column names of one file (the configured ones, for a CSV that has them)."""
    if is_parquet(source, config):
        with _reading(source):
            return list(pq.ParquetFile(source.path).schema_arrow.names)
    if config.column_names is not None:
        return list(config.column_names)
    with _reading(source):
        reader = pa_csv.open_csv(
            source.path,
            read_options=_read_options(source, config, block_bytes=1 << 16),
            parse_options=pa_csv.ParseOptions(delimiter=config.delimiter),
        )
        names = list(reader.schema.names)
        reader.close()
    return names


def check_columns(source: FileSource, config: TabularDataConfig, wanted: list[str]) -> None:
    names = file_columns(source, config)
    missing = [column for column in wanted if column not in names]
    if missing:
        raise DataError(
            f"{source.path} has no column {missing[0]!r}"
            + (f" (nor {missing[1:]})" if len(missing) > 1 else "")
            + f"; its columns are {names}"
        )


def read_blocks(
    sources: list[FileSource], config: TabularDataConfig, columns: Columns, whole_files: bool
) -> Iterator[Block]:
    """Blocks of every file in order; `whole_files`: one block per file, else a few MB each."""
    start = 0
    for source in sources:
        if source.skip_rows and is_parquet(source, config):
            raise DataError(f"{source.path}: skip_rows is for CSV files, not Parquet")
        first_row = 1
        for batch in _batches(source, config, columns, whole_files):
            block = _clean(batch, config, columns, source, first_row, start)
            first_row += block.num_rows
            start += block.num_rows
            yield block
        if first_row == 1:
            raise DataError(f"{source.path} has no data rows")


def _batches(
    source: FileSource, config: TabularDataConfig, columns: Columns, whole_files: bool
) -> Iterator[pa.RecordBatch | pa.Table]:
    with _reading(source):
        if is_parquet(source, config):
            if whole_files:
                yield pq.read_table(source.path, columns=columns.all)
            else:
                parquet = pq.ParquetFile(source.path)
                yield from parquet.iter_batches(PARQUET_BLOCK_ROWS, columns=columns.all)
            return
        read_options = _read_options(source, config, config.block_bytes)
        parse_options = pa_csv.ParseOptions(delimiter=config.delimiter)
        convert_options = pa_csv.ConvertOptions(
            include_columns=columns.all,
            column_types=dict.fromkeys(columns.all, pa.string()),
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        if whole_files:
            yield pa_csv.read_csv(source.path, read_options, parse_options, convert_options)
        else:
            yield from pa_csv.open_csv(source.path, read_options, parse_options, convert_options)


def _read_options(
    source: FileSource, config: TabularDataConfig, block_bytes: int
) -> pa_csv.ReadOptions:
    replaced_header = config.header and config.column_names is not None
    return pa_csv.ReadOptions(
        skip_rows=source.skip_rows + int(replaced_header),
        column_names=config.column_names,
        block_size=block_bytes,
    )


@contextmanager
def _reading(source: FileSource) -> Iterator[None]:
    """Turn pyarrow's and the OS's errors about one file into a DataError that names the file."""
    path = source.path
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"cannot read {path}: no such file") from None
    except (IsADirectoryError, PermissionError) as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as error:
        message = str(error)
        if "Empty CSV file" in message:
            raise DataError(f"{path} is empty: it has no header and no rows") from None
        if re.search(r"Expected \d+ columns, got \d+", message):
            message += " (skip_rows skips lines at the top of a file)"
        raise DataError(f"cannot read {path}: {message}") from None


def _clean(
    batch: pa.RecordBatch | pa.Table,
    config: TabularDataConfig,
    columns: Columns,
    source: FileSource,
    first_row: int,
    start: int,
) -> Block:
    cleaned: dict[str, pa.Array] = {}
    not_numbers: dict[str, NotNumbers] = {}
    for name in columns.all:
        column = batch.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if name in columns.numeric and _is_number_type(column.type):
            cleaned[name] = pc.cast(column, pa.float64())
            continue
        text = _clean_text(column, config)
        if name in columns.numeric:
            valid = pc.match_substring_regex(text, NUMBER)
            invalid = pc.invert(pc.fill_null(valid, True))
            if pc.any(invalid).as_py():
                not_numbers[name] = NotNumbers(invalid.to_numpy(zero_copy_only=False), text)
                text = pc.if_else(invalid, pa.scalar(None, pa.string()), text)
            cleaned[name] = pc.cast(text, pa.float64())
        else:
            cleaned[name] = text
    return Block(cleaned, not_numbers, source.path, first_row, start, batch.num_rows)


def _is_number_type(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _clean_text(column: pa.Array, config: TabularDataConfig) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    if config.strip_whitespace:
        text = pc.utf8_trim_whitespace(text)
    if config.missing_values:
        marked = pc.is_in(text, value_set=pa.array(config.missing_values, pa.string()))
        text = pc.if_else(marked, pa.scalar(None, pa.string()), text)
    return text
