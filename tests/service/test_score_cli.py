"""`mmoe-score` in this process: the bundled model's scores of a CSV or Parquet file equal a direct
onnxruntime call exactly, in the batches it reads; bad input is one clear line and no output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from service.score_cli import main
from tests.support import REPO_ROOT, copy_bundled, environment_without_settings

D = 100
FEATURES = [f"x_{i}" for i in range(1, D + 1)]
NO_VALUE = "has no value (empty, NA, NaN or null); every feature needs a number"


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A copy of the bundled models in tmp_path/models; the tests' files go beside it."""
    return copy_bundled(tmp_path / "models")


def input_table(rows: int, seed: int = 3) -> tuple[pa.Table, np.ndarray]:
    features = np.random.default_rng(seed).normal(size=(rows, D)).astype(np.float32)
    columns = {"id": pa.array([f"row-{i}" for i in range(rows)])}
    columns |= {name: features[:, index] for index, name in enumerate(FEATURES)}
    return pa.table(columns), features


def write(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def read(path: Path) -> pa.Table:
    return pa_csv.read_csv(path) if path.suffix == ".csv" else pq.read_table(path)


def direct(model: Path, features: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    runs = [
        session.run(["predictions", "gates"], {"features": features[start : start + batch]})
        for start in range(0, len(features), batch)
    ]
    return np.concatenate([run[0] for run in runs]), np.concatenate([run[1] for run in runs])


def column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy().astype(np.float32)


@pytest.mark.parametrize(("source", "target"), [("csv", "parquet"), ("parquet", "csv")])
def test_scores_equal_onnxruntime_exactly(
    repository: Path, tmp_path: Path, source: str, target: str
) -> None:
    table, features = input_table(300)
    rows = write(table, tmp_path / f"rows.{source}")
    out = tmp_path / f"scored.{target}"
    status = main(
        [str(rows), "--out", str(out), "--model-repository", str(repository), "--gates",
         "--keep", "id", "--batch-size", "128", "--provider", "cpu", "--quiet"]
    )  # fmt: skip
    assert status == 0
    scored = read(out)
    gate_columns = [f"gate_task_{t}_e{e}" for t in (1, 2) for e in range(8)]
    assert scored.column_names == ["id", "task_1", "task_2", *gate_columns]
    assert scored.column("id").to_pylist() == table.column("id").to_pylist()
    predictions, gates = direct(repository / "mmoe-synthetic" / "1" / "model.onnx", features, 128)
    for task in range(2):
        assert np.array_equal(column(scored, f"task_{task + 1}"), predictions[:, task])
        for expert in range(8):
            weights = column(scored, f"gate_task_{task + 1}_e{expert}")
            assert np.array_equal(weights, gates[:, task, expert])


def test_omoe_writes_its_one_gate_and_shared_bottom_none(
    trained_repository: Path, tmp_path: Path
) -> None:
    rows = write(input_table(5)[0], tmp_path / "rows.parquet")
    for model, gates in [
        ("omoe-tiny", [f"gate_shared_e{e}" for e in range(8)]),
        ("shared-bottom-tiny", []),
    ]:
        out = tmp_path / f"{model}.parquet"
        arguments = [str(rows), "--out", str(out), "--model", model, "--gates", "--quiet"]
        assert main([*arguments, "--model-repository", str(trained_repository)]) == 0
        assert read(out).column_names == ["task_1", "task_2", *gates]


def error_of(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str]:
    status = main([*arguments, "--quiet"])
    return status, capsys.readouterr().err


def test_a_missing_feature_column_is_named(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = input_table(4)[0].drop_columns(["x_7", "x_42"])
    rows = write(table, tmp_path / "rows.csv")
    out = tmp_path / "out.csv"
    status, error = error_of(
        capsys, str(rows), "--out", str(out), "--model-repository", str(repository)
    )
    assert status == 2
    assert error == (
        "mmoe-score: error: the input lacks 2 of the 100 feature columns of model "
        "'mmoe-synthetic' version 1: x_7, x_42\n"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", f"row 3: column 'x_5' {NO_VALUE}"),
        ("abc", "{rows}: column 'x_5' holds a value that is not a number ('abc'); feature "
         "columns must hold numbers"),
        ("1e39", "row 3: column 'x_5' is 1e+39, not a finite number within the float32 range"),
        ("nan", f"row 3: column 'x_5' {NO_VALUE}"),
        ("inf", "row 3: column 'x_5' is inf, not a finite number within the float32 range"),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_with_its_row_and_column_and_no_output(
    repository: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    value: str,
    message: str,
) -> None:
    rows = write(input_table(5)[0], tmp_path / "rows.csv")
    lines = rows.read_text().splitlines()
    cells = lines[3].split(",")
    cells[5] = value  # data row 3, column x_5 (column 0 is the id)
    lines[3] = ",".join(cells)
    rows.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.parquet"
    arguments = [str(rows), "--out", str(out), "--model-repository", str(repository)]
    status, error = error_of(capsys, *arguments, "--batch-size", "2")
    assert (status, error) == (2, f"mmoe-score: error: {message.format(rows=rows)}\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["models", "rows.csv"]


def test_file_and_model_mistakes_are_one_line_each(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = write(input_table(2)[0], tmp_path / "rows.parquet")
    existing = tmp_path / "done.csv"
    existing.write_text("kept\n")
    models = ["--model-repository", str(repository)]
    cases = [
        ([str(tmp_path / "rows.txt"), "--out", str(tmp_path / "o.csv")], 2,
         f"{tmp_path / 'rows.txt'}: unknown file type '.txt'; use a .csv or .parquet file"),
        ([str(tmp_path / "none.csv"), "--out", str(tmp_path / "o.csv")], 2,
         f"{tmp_path / 'none.csv'}: no such file"),
        ([str(rows), "--out", str(existing), *models], 2,
         f"{existing} exists; choose another --out, or pass --overwrite"),
        ([str(rows), "--out", str(tmp_path / "kept.csv"), "--keep", "x_1", *models], 0,
         None),  # a feature may be kept: it is not an output name
        ([str(rows), "--out", str(tmp_path / "p.csv"), "--keep", "user", *models], 2,
         "--keep names columns the input does not have: ['user']"),
        ([str(rows), "--out", str(tmp_path / "v.csv"), "--version", "2", *models], 1,
         f"model 'mmoe-synthetic' has no version 2 in {repository}; versions: [1]"),
    ]  # fmt: skip
    for arguments, expected_status, message in cases:
        if message is None:
            assert main([*arguments, "--quiet"]) == 0
            continue
        status, error = error_of(capsys, *arguments)
        assert (status, error) == (expected_status, f"mmoe-score: error: {message}\n")
    assert existing.read_text() == "kept\n"


def test_help_explains_the_columns_and_the_exit_statuses() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.score_cli", "--help"],
        cwd=REPO_ROOT,
        env=environment_without_settings(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    words = " ".join(result.stdout.split())
    assert "gate_<task>_e<i> (MMoE) or gate_shared_e<i> (OMoE)" in words
    assert "exit status: 0 scored; 1 the model cannot be loaded" in words
    assert "--batch-size BATCH_SIZE rows read and scored at a time (default: 4096)" in words
