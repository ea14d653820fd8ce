"""The experiments' files: runs.csv, curves.csv.gz and label_correlation.csv, written and read back.

Everything a figure or a table shows is regenerated from these files alone (`--replot`).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from training.experiments.runner import CURVE_FIELDS

TEXT_FIELDS = {"setting", "study", "model", "split"}
INTEGER_FIELDS = {"m", "seed", "sinusoid_seed", "best_epoch", "epochs_run", "step"}


def _typed(row: dict[str, str]) -> dict:
    typed: dict = {}
    for key, value in row.items():
        if key in TEXT_FIELDS:
            typed[key] = value
        elif key in INTEGER_FIELDS:
            typed[key] = int(value)
        else:
            typed[key] = float(value)
    return typed


def write_records(records: Sequence[dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def read_records(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return [_typed(row) for row in csv.DictReader(handle)]


def write_curves(rows: Iterable[tuple], path: Path) -> None:
    """Gzipped CSV with a fixed timestamp, so the same curves give the same bytes."""
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
        text = io.TextIOWrapper(packed, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(CURVE_FIELDS)
        writer.writerows(rows)
        text.flush()
        text.detach()


def read_curves(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return [_typed(row) for row in csv.DictReader(handle)]
