"""CSV and Parquet files read and written in batches of rows, with pyarrow (the `score` extra).

`TableReader` streams a file as record batches of exactly `batch_size` rows (the last one
shorter) without holding the file in memory, and reports progress in rows (Parquet) or in bytes
read (CSV, whose row count is unknown until the end). `TableWriter` writes to a hidden temporary
file beside the output and renames it into place only when every batch is written, so a failed
run leaves no partial output.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

Format = Literal["csv", "parquet"]
FORMATS: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class TableError(Exception):
    """The file cannot be read or written as asked; the message names the file and the fix."""


def table_format(path: Path) -> Format:
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise TableError(
            f"{path}: unknown file type {path.suffix or '(none)'!r}; use a .csv or .parquet file"
        )
    return found


class _CountingFile:
    """A read-only binary file that counts the bytes handed out (CSV progress)."""

    def __init__(self, raw: BinaryIO, on_read: Callable[[int], object]) -> None:
        self.raw, self.on_read, self.closed = raw, on_read, False

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.on_read(len(data))
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self.raw.close()


class TableReader:
    """The columns of one CSV or Parquet file, in batches. `columns()` lists the file's columns;
    `batches(names, numeric)` reads only `names`, the `numeric` ones as float64."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = table_format(path)
        if not path.is_file():
            raise TableError(f"{path}: no such file")
        if self.format == "parquet":
            try:
                self._parquet: pq.ParquetFile | None = pq.ParquetFile(path)
            except (pa.ArrowInvalid, OSError) as error:
                raise TableError(f"{path}: not a readable Parquet file: {error}") from None
        else:
            self._parquet = None

    @property
    def progress_unit(self) -> Literal["rows", "bytes"]:
        return "rows" if self._parquet is not None else "bytes"

    @property
    def progress_total(self) -> int:
        """Rows in a Parquet file; bytes in a CSV file."""
        if self._parquet is not None:
            return int(self._parquet.metadata.num_rows)
        return self.path.stat().st_size

    def columns(self) -> list[str]:
        if self._parquet is not None:
            return list(self._parquet.schema_arrow.names)
        with self.path.open(newline="", encoding="utf-8") as text:
            header = next(csv.reader(text), None)
        if not header:
            raise TableError(f"{self.path}: the file is empty; a CSV file starts with a header")
        return header

    def batches(
        self,
        names: list[str],
        numeric: list[str],
        batch_size: int,
        on_progress: Callable[[int], object] = lambda _: None,
        text: list[str] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of exactly `batch_size` rows (the last may be shorter); a CSV's
        `numeric` columns are read as numbers, its `text` columns as strings."""
        if self._parquet is not None:
            source = self._parquet.iter_batches(batch_size=batch_size, columns=names)
            for batch in rebatch(source, batch_size):
                on_progress(batch.num_rows)
                yield batch
            return
        options = pa_csv.ConvertOptions(
            include_columns=names,
            column_types={name: pa.float64() for name in numeric}
            | {name: pa.string() for name in text or []},
            strings_can_be_null=True,  # an empty text cell is a missing category, as in numbers
        )
        with self.path.open("rb") as raw:
            counting = _CountingFile(raw, on_progress)
            try:
                reader = pa_csv.open_csv(counting, convert_options=options)
                yield from rebatch(reader, batch_size)
            except pa.ArrowInvalid as error:
                raise TableError(f"{self.path}: {self._csv_problem(error)}") from None

    def _csv_problem(self, error: pa.ArrowInvalid) -> str:
        """pyarrow's message, with the column named when it gives only its position."""
        message = str(error)
        found = CSV_NOT_A_NUMBER.search(message)
        if found is None:
            return message
        header = self.columns()
        position = int(found.group(1))
        column = header[position] if position < len(header) else f"#{position}"
        return (
            f"column {column!r} holds a value that is not a number ({found.group(2)}); feature "
            "columns must hold numbers"
        )


CSV_NOT_A_NUMBER = re.compile(
    r"CSV column #(\d+): CSV conversion error to double: invalid value (.*)$"
)


def rebatch(source: Any, size: int) -> Iterator[pa.RecordBatch]:
    """Record batches of any sizes -> batches of exactly `size` rows (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in source:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size).combine_chunks().to_batches()[0]
            rest = table.slice(size).combine_chunks()
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        table = pa.Table.from_batches(pending).combine_chunks()
        yield table.to_batches()[0]


class TableWriter:
    """Writes batches to `path` (CSV or Parquet by its extension) through a temporary file."""

    def __init__(self, path: Path, overwrite: bool) -> None:
        self.path = path
        self.format = table_format(path)
        if path.exists() and not overwrite:
            raise TableError(f"{path} exists; choose another --out, or pass --overwrite")
        if not path.parent.is_dir():
            raise TableError(f"{path}: the folder {path.parent} does not exist")
        self.partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            if self.format == "parquet":
                self._writer = pq.ParquetWriter(self.partial, batch.schema)
            else:
                self._writer = pa_csv.CSVWriter(self.partial, batch.schema)
        self._writer.write_batch(batch)

    def commit(self) -> None:
        """Close the file and move it into place."""
        if self._writer is None:
            raise TableError(f"nothing to write to {self.path}: the input has no rows")
        self._writer.close()
        self.partial.replace(self.path)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.partial.unlink(missing_ok=True)
