"""Reading a table: block by block gives what a whole-file read gives, in any format, and the split
and the statistics are the ones numpy computes on the same rows."""

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from tests.tables import CATEGORICAL, COLUMNS, NUMERIC, TASKS, table_config, write_slice
from training.config import build_config
from training.tabular.config import TabularDataConfig
from training.tabular.dataset import (
    FittedTable,
    fit_table_streaming,
    load_table,
    resolve_layout,
)
from training.tabular.reader import read_blocks
from training.tabular.schema import quantile_boundaries
from training.tabular.split import TRAIN, assign_splits

ROWS = 4000


@pytest.fixture(scope="module")
def adult_csv(tmp_path_factory) -> Path:
    return write_slice(tmp_path_factory.mktemp("table") / "adult.csv", ROWS)


def config(path: Path, **overrides) -> TabularDataConfig:
    return build_config({"data": table_config([path], **overrides)}).data  # type: ignore[return-value]


def assert_same_fit(first: FittedTable, second: FittedTable) -> None:
    assert first.split_rows == second.split_rows
    assert first.positives == second.positives
    assert first.schema.categorical == second.schema.categorical
    for a, b in zip(first.schema.numeric, second.schema.numeric, strict=True):
        assert (a.name, a.count, a.missing, a.boundaries) == (
            b.name,
            b.count,
            b.missing,
            b.boundaries,
        )
        assert a.mean == pytest.approx(b.mean, rel=1e-12)
        assert a.std == pytest.approx(b.std, rel=1e-12)


def test_streaming_pass_gives_the_in_memory_vocabularies_and_statistics(adult_csv):
    whole = load_table(config(adult_csv)).fitted
    streamed_config = config(adult_csv, block_bytes=8192)
    layout = resolve_layout(streamed_config)
    blocks = list(read_blocks(streamed_config.train_files, streamed_config, layout.columns, False))
    assert len(blocks) > 40 and max(block.num_rows for block in blocks) < 200  # bounded blocks
    assert_same_fit(whole, fit_table_streaming(streamed_config))


def test_a_sample_smaller_than_the_training_rows_is_the_same_sample_either_way(adult_csv):
    whole = load_table(config(adult_csv, quantile_sample_rows=500)).fitted
    streamed = fit_table_streaming(config(adult_csv, quantile_sample_rows=500, block_bytes=8192))
    assert_same_fit(whole, streamed)
    full = load_table(config(adult_csv)).fitted
    gains = [f.boundaries for f in (whole.schema.numeric[2], full.schema.numeric[2])]
    assert gains[0] != gains[1]  # 500 rows are not all of them, and the bins show it


def test_statistics_are_numpys_on_the_training_rows(adult_csv):
    fitted = load_table(config(adult_csv)).fitted
    table = pa_csv.read_csv(
        adult_csv, pa_csv.ReadOptions(column_names=COLUMNS), pa_csv.ParseOptions(delimiter=",")
    ).to_pydict()
    train = assign_splits(0, ROWS, 0, 0.1, 0.2) == TRAIN
    for feature in fitted.schema.numeric:
        values = np.array(table[feature.name], dtype=np.float64)[train]
        assert feature.mean == pytest.approx(values.mean(), rel=1e-12)
        assert feature.std == pytest.approx(values.std(ddof=1), rel=1e-12)
    for feature in fitted.schema.categorical:
        values = [
            str(v).strip() for v, keep in zip(table[feature.name], train, strict=True) if keep
        ]
        counts = Counter(v for v in values if v != "?")
        assert feature.vocabulary == sorted(v for v, n in counts.items() if n >= 2)
        assert feature.missing == values.count("?")
    assert fitted.split_rows == {
        "train": int(train.sum()),
        "validation": int((assign_splits(0, ROWS, 0, 0.1, 0.2) == 1).sum()),
        "test": int((assign_splits(0, ROWS, 0, 0.1, 0.2) == 2).sum()),
    }


def test_parquet_gives_what_csv_gives(adult_csv, tmp_path):
    table = pa_csv.read_csv(adult_csv, pa_csv.ReadOptions(column_names=COLUMNS))
    text = {name: pa.compute.utf8_trim_whitespace(table[name]) for name in CATEGORICAL}
    text |= {
        task["column"]: pa.compute.utf8_trim_whitespace(table[task["column"]]) for task in TASKS
    }
    typed = pa.table({**{name: table[name] for name in NUMERIC}, **text})  # numbers stay numbers
    path = tmp_path / "adult.parquet"
    pq.write_table(typed, path, row_group_size=1000)
    from_csv = load_table(config(adult_csv)).fitted
    parquet = {"header": True, "column_names": None}
    assert_same_fit(from_csv, load_table(config(path, **parquet)).fitted)
    assert_same_fit(from_csv, fit_table_streaming(config(path, **parquet)))


def test_the_split_depends_on_the_row_alone():
    whole = assign_splits(0, 10_000, 7, 0.1, 0.2)
    pieces = np.concatenate(
        [assign_splits(start, 1000, 7, 0.1, 0.2) for start in range(0, 10_000, 1000)]
    )
    np.testing.assert_array_equal(whole, pieces)
    shares = np.bincount(whole) / whole.size
    np.testing.assert_allclose(shares, [0.72, 0.08, 0.2], atol=0.015)
    assert not np.array_equal(whole, assign_splits(0, 10_000, 8, 0.1, 0.2))


def test_a_zero_inflated_column_gets_its_bins_above_zero():
    values = np.concatenate([np.zeros(80), np.arange(1.0, 21.0)])
    smallest_positive = float(np.nextafter(np.float32(0), np.float32(1)))
    assert quantile_boundaries(values, 4) == [smallest_positive, 5.75, 10.5, 15.25]
    assert quantile_boundaries(np.full(50, 3.0), 4) == []
    assert quantile_boundaries(np.arange(8.0), 4) == [1.75, 3.5, 5.25]
