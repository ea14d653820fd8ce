"""Labels from source columns, and a tally of the rows whose label or value cannot be read.

A binary task's label is 1 where the column holds one of its `positive` values and 0 where it holds
a `negative` one (or any other value, when no negatives are listed); without `positive` values the
column holds the numbers 0 and 1. A regression task's label is the column's number. A row without
a label is not skipped: it is counted, and the whole pass reports how many there were, with the
first one's file, row and value, so the user can fix the data or the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.tabular.config import TabularTask
from training.tabular.reader import Block, DataError


@dataclass
class _Tally:
    count: int
    value: object
    source: Path
    row: int


class RowProblems:
    """Rows with a problem, by kind: how many over the whole pass, and the first one seen."""

    def __init__(self) -> None:
        self._tallies: dict[tuple[str, str], _Tally] = {}

    def note(self, kind: str, name: str, mask: np.ndarray, values: pa.Array, block: Block) -> None:
        count = int(mask.sum())
        if count == 0:
            return
        tally = self._tallies.get((kind, name))
        if tally is None:
            first = int(np.argmax(mask))
            value = values[first].as_py()
            self._tallies[kind, name] = _Tally(count, value, block.source, block.first_row + first)
        else:
            tally.count += count

    def raise_first(self, tasks: list[TabularTask]) -> None:
        """Raise a DataError for the first kind of problem noted, if any."""
        by_name = {task.name: task for task in tasks}
        for (kind, name), tally in self._tallies.items():
            where = f"data row {tally.row} of {tally.source}"
            rows = f"{tally.count} row{'s' if tally.count > 1 else ''}"
            if kind == "not_a_number":
                raise DataError(
                    f"numeric column {name!r} holds text that is not a number in {rows}, e.g. "
                    f"{tally.value!r} at {where}; list it in data.missing_values if it marks a "
                    f"missing value, or make {name!r} categorical"
                )
            task = by_name[name]
            raise DataError(
                f"task {name!r}: the label cannot be derived for {rows}: {_why(task, tally)} "
                f"at {where}"
            )


def _why(task: TabularTask, tally: _Tally) -> str:
    column = repr(task.column)
    if tally.value is None:
        return f"column {column} has no value (missing)"
    if task.type == "regression":
        return f"column {column} holds {tally.value!r}, not a number"
    if task.positive is None:
        return f"column {column} holds {tally.value!r}, not 0 or 1 (or list positive values)"
    return (
        f"column {column} holds {tally.value!r}, which is neither positive {task.positive} nor "
        f"negative {task.negative}"
    )


def derive_labels(block: Block, tasks: list[TabularTask], problems: RowProblems) -> np.ndarray:
    """(rows, T) float32 labels of one block; rows without a label are noted (their label: NaN)."""
    labels = np.empty((block.num_rows, len(tasks)), dtype=np.float32)
    for k, task in enumerate(tasks):
        column = block.columns[task.column]
        if task.type == "binary" and task.positive is not None:
            positive = pc.is_in(column, value_set=pa.array(task.positive, pa.string()))
            known = pc.is_valid(column)
            if task.negative is not None:
                negative = pc.is_in(column, value_set=pa.array(task.negative, pa.string()))
                known = pc.or_(positive, negative)
            label = positive.to_numpy(zero_copy_only=False).astype(np.float32)
            bad = ~pc.fill_null(known, False).to_numpy(zero_copy_only=False)
            shown = column
        else:
            label = pc.fill_null(column, np.nan).to_numpy(zero_copy_only=False).astype(np.float32)
            bad = np.isnan(label)
            if task.type == "binary":
                bad |= ~np.isin(label, (0.0, 1.0))
            not_numbers = block.not_numbers.get(task.column)
            shown = not_numbers.text if not_numbers is not None else column
        label[bad] = np.nan
        labels[:, k] = label
        problems.note("label", task.name, bad, shown, block)
    return labels
