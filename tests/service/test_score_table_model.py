"""`mmoe-score` with a table model (the bundled mmoe-adult: numeric and categorical features, a
graph that imputes missing numbers): each row is coded from the card's vocabularies, as POST
/predict codes a record, and the scores equal a direct onnxruntime call on codes computed here."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import onnxruntime
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from service.score_cli import main
from tests.support import REPO_ROOT, copy_bundled

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "label",
]  # fmt: skip
NUMERIC = {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}
BATCH = 50


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return copy_bundled(tmp_path / "models")


def adult_rows(count: int) -> list[dict[str, object]]:
    """The first rows of the UCI test split ("?" read as missing, its label column kept as
    `label`), plus the cases the coding must handle."""
    rows: list[dict[str, object]] = []
    with gzip.open(REPO_ROOT / "data" / "adult" / "adult.test.gz", "rt") as lines:
        for line in lines:
            values = [value.strip() for value in line.split(",")]
            if len(values) != len(ADULT_COLUMNS):
                continue
            row = dict(zip(ADULT_COLUMNS, values, strict=True))
            rows.append(
                {k: None if v == "?" else int(v) if k in NUMERIC else v for k, v in row.items()}
            )
            if len(rows) == count:
                break
    rows[3]["workclass"] = "Atlantis"  # a category the vocabulary does not hold
    rows[4]["hours-per-week"] = None  # a missing number, which the graph imputes
    rows[5]["occupation"] = None
    return rows


def direct(card: dict, model: Path, rows: list[dict[str, object]]) -> np.ndarray:
    numeric = card["input"]["feature_names"]
    coding = card["categorical"]
    features = np.array(
        [[math.nan if row[name] is None else float(row[name]) for name in numeric] for row in rows],
        dtype=np.float32,
    )
    vocabularies = [feature["vocabulary"] for feature in coding["features"]]
    categorical = np.array(
        [
            [
                coding["missing_code"]
                if row[feature["name"]] is None
                else coding["first_code"] + vocabulary.index(row[feature["name"]])
                if row[feature["name"]] in vocabulary
                else coding["oov_code"]
                for feature, vocabulary in zip(coding["features"], vocabularies, strict=True)
            ]
            for row in rows
        ],
        dtype=np.int64,
    )
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    runs = [
        session.run(
            ["predictions"],
            {
                "features": features[start : start + BATCH],
                "categorical": categorical[start : start + BATCH],
            },
        )[0]
        for start in range(0, len(rows), BATCH)
    ]
    return np.concatenate(runs)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_table_model_scores_named_columns_as_predict_codes_them(
    repository: Path, tmp_path: Path, suffix: str
) -> None:
    rows = adult_rows(120)
    table = pa.Table.from_pylist(rows)
    source = tmp_path / f"adult.{suffix}"
    if suffix == "csv":
        pa_csv.write_csv(table, source)
    else:
        pq.write_table(table, source)
    out = tmp_path / "scored.csv"
    status = main(
        [str(source), "--out", str(out), "--model-repository", str(repository),
         "--model", "mmoe-adult", "--keep", "label", "--batch-size", str(BATCH), "--quiet"]
    )  # fmt: skip
    assert status == 0
    version = repository / "mmoe-adult" / "1"
    card = json.loads((version / "model.json").read_text())
    tasks = [task["name"] for task in card["tasks"]]
    scored = pa_csv.read_csv(out)
    assert scored.column_names == ["label", *tasks]
    assert scored.column("label").to_pylist() == [row["label"] for row in rows]
    expected = direct(card, version / "model.onnx", rows)
    for index, task in enumerate(tasks):
        got = scored.column(task).to_numpy().astype(np.float32)
        assert np.array_equal(got, expected[:, index])


def test_a_bad_value_names_its_rows_and_leaves_no_output(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = adult_rows(70)
    rows[62]["age"] = math.inf
    source = tmp_path / "adult.parquet"
    pq.write_table(pa.Table.from_pylist(rows), source)
    out = tmp_path / "scored.parquet"
    status = main(
        [str(source), "--out", str(out), "--model-repository", str(repository),
         "--model", "mmoe-adult", "--batch-size", str(BATCH), "--quiet"]
    )  # fmt: skip
    assert status == 2
    assert capsys.readouterr().err == (
        "mmoe-score: error: rows 51-70: instance 12, feature 'age' is inf, outside the float32 "
        "range; features must be finite numbers (instance i is row 51 + i)\n"
    )
    assert not out.exists()
