"""Every way a table and its config can disagree: one exact message naming the column or file."""

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tables import ADULT, COLUMNS, TASKS, adult_lines, table_config, write_slice
from training.config import ConfigError, build_config
from training.tabular.dataset import load_table
from training.tabular.reader import DataError


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write_slice(tmp_path / "base.csv", 300)


def with_lines(path: Path, changes: dict[int, str]) -> Path:
    """The 300-row slice with some lines replaced."""
    lines = adult_lines("adult.data", 300)
    for index, line in changes.items():
        lines[index] = line
    path.write_text("\n".join(lines) + "\n")
    return path


def with_field(line: str, column: str, value: str) -> str:
    fields = line.split(", ")
    fields[COLUMNS.index(column)] = value
    return ", ".join(fields)


def data_error(data: dict) -> str:
    with pytest.raises(DataError) as error:
        load_table(build_config({"data": data}).data)
    return str(error.value)


def config_error(data: dict) -> str:
    with pytest.raises(ConfigError) as error:
        build_config({"data": data})
    return str(error.value)


def test_a_feature_that_is_a_tasks_source(base):
    assert config_error(table_config([base], categorical=["workclass", "marital-status"])) == (
        "invalid config: data: column 'marital-status' is the source of task 'never_married', "
        "so it cannot also be a feature: remove it from categorical"
    )


def test_no_header_and_no_column_names(base):
    assert config_error(table_config([base], column_names=None)) == (
        "invalid config: data: column_names are required when header is false"
    )


def test_a_regression_task_with_positive_values(base):
    task = {"name": "hours", "column": "hours-per-week", "type": "regression", "positive": ["40"]}
    assert config_error(table_config([base], tasks=[task], bucket_columns=[])) == (
        "invalid config: data.tasks.0: task 'hours' is a regression task: its label is the "
        "number in column 'hours-per-week'; positive and negative are for binary tasks"
    )


def test_an_unknown_data_kind():
    assert config_error({"kind": "excel"}) == (
        "invalid config: data.kind: must be one of ['synthetic', 'tabular'] (got 'excel')"
    )


def test_a_missing_column(tmp_path):
    with_header = tmp_path / "header.csv"
    with_header.write_text("age,workclass,income,marital-status\n39,Private,<=50K,Divorced\n")
    data = table_config([with_header], header=True, column_names=None, numeric=["age", "hours"])
    data |= {"categorical": ["workclass"], "bucket_columns": []}
    assert data_error(data) == (
        f"{with_header} has no column 'hours'; its columns are "
        "['age', 'workclass', 'income', 'marital-status']"
    )


def test_a_label_that_cannot_be_derived_counts_the_rows_and_shows_one(tmp_path):
    lines = adult_lines("adult.data", 300)
    path = with_lines(
        tmp_path / "labels.csv",
        {5: with_field(lines[5], "income", "unknown"), 9: with_field(lines[9], "income", "?")},
    )
    tasks = [{**TASKS[0], "negative": ["<=50K", "<=50K."]}, TASKS[1]]
    assert data_error(table_config([path], tasks=tasks)) == (
        "task 'income': the label cannot be derived for 2 rows: column 'income' holds "
        "'unknown', which is neither positive ['>50K', '>50K.'] nor negative ['<=50K', "
        f"'<=50K.'] at data row 6 of {path}"
    )


def test_a_missing_label(tmp_path):
    lines = adult_lines("adult.data", 300)
    path = with_lines(tmp_path / "labels.csv", {7: with_field(lines[7], "marital-status", "?")})
    assert data_error(table_config([path])) == (
        "task 'never_married': the label cannot be derived for 1 row: column 'marital-status' "
        f"has no value (missing) at data row 8 of {path}"
    )


def test_a_binary_task_with_one_class(base):
    tasks = [TASKS[0], {"name": "widowed", "column": "marital-status", "positive": ["Widower"]}]
    message = data_error(table_config([base], tasks=tasks))
    assert message.startswith("task 'widowed' has one class only: all ")
    assert message.endswith(
        " training labels are 0 (column 'marital-status', positive values ['Widower']); a "
        "binary task needs both"
    )


def test_an_empty_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert data_error(table_config([empty])) == f"{empty} is empty: it has no header and no rows"


def test_a_file_with_a_header_and_no_rows(tmp_path):
    only_header = tmp_path / "header.csv"
    only_header.write_text(",".join(COLUMNS) + "\n")
    data = table_config([only_header], header=True, column_names=None)
    assert data_error(data) == f"{only_header} has no data rows"


def test_a_categorical_column_with_no_usable_values(base):
    assert data_error(table_config([base], min_category_count=1000)) == (
        "categorical column 'workclass' has no usable values in the training rows: 12 are "
        "missing and no value occurs data.min_category_count (1000) times"
    )


def test_text_in_a_numeric_column(tmp_path):
    lines = adult_lines("adult.data", 300)
    path = with_lines(
        tmp_path / "ages.csv",
        {3: with_field(lines[3], "age", "thirty"), 4: with_field(lines[4], "age", "n/a")},
    )
    assert data_error(table_config([path])) == (
        "numeric column 'age' holds text that is not a number in 2 rows, e.g. 'thirty' at data "
        f"row 4 of {path}; list it in data.missing_values if it marks a missing value, or make "
        "'age' categorical"
    )


def test_a_file_that_is_not_there(tmp_path):
    assert data_error(table_config([tmp_path / "nope.csv"])) == (
        f"cannot read {tmp_path / 'nope.csv'}: no such file"
    )


def test_the_adult_test_files_first_line_needs_skip_rows(tmp_path, base):
    raw = tmp_path / "adult.test.csv"
    raw.write_text(
        "|1x3 Cross validator\n" + "\n".join(adult_lines("adult.test", 200, skip=1)) + "\n"
    )
    assert data_error(table_config([base], test_files=[str(raw)])) == (
        f"cannot read {raw}: CSV parse error: Expected 15 columns, got 1: |1x3 Cross validator "
        "(skip_rows skips lines at the top of a file)"
    )
    loaded = load_table(
        build_config(
            {"data": table_config([base], test_files=[{"path": str(raw), "skip_rows": 1}])}
        ).data
    )
    assert loaded.fitted.split_rows["test"] == 200


def test_a_split_with_no_rows(tmp_path):
    tiny = write_slice(tmp_path / "tiny.csv", 4)
    assert data_error(table_config([tiny])) == (
        "the validation split has no rows; raise data.validation_fraction or give more rows"
    )


def test_the_command_reports_a_data_error_in_one_line_and_exits_1(tmp_path):
    config = tmp_path / "run.json"
    missing = tmp_path / "missing.csv"
    config.write_text(json.dumps({"data": table_config([missing]), "export": {"name": "x"}}))
    result = subprocess.run(
        [sys.executable, "-m", "training", "--config", str(config), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"mmoe-train: error: cannot read {missing}: no such file"
    )
    assert result.stdout == ""


def test_the_bundled_adult_files_are_the_originals():
    digests = {}
    for name in ("adult.data", "adult.test"):
        with gzip.open(ADULT / f"{name}.gz") as handle:
            digests[name] = hashlib.md5(handle.read()).hexdigest()
    assert digests == {
        "adult.data": "5d7c39d7b8804f071cdd1f2a7c460872",
        "adult.test": "35238206dfdf7f1fe215bbb874adecdc",
    }
