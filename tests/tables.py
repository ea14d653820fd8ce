"""Small slices of the bundled UCI Adult files, and configs that read them, for the table tests."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
ADULT = REPO_ROOT / "data" / "adult"
ADULT_CONFIG = REPO_ROOT / "configs" / "mmoe-adult.toml"
COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
]  # fmt: skip
NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "education", "occupation", "relationship", "sex", "native-country"]
TASKS = [
    {"name": "income", "column": "income", "positive": [">50K", ">50K."]},
    {"name": "never_married", "column": "marital-status", "positive": ["Never-married"]},
]


def adult_lines(name: str, rows: int, skip: int = 0) -> list[str]:
    """The first `rows` data lines of data/adult/<name>.gz, after `skip` lines."""
    with gzip.open(ADULT / f"{name}.gz", "rt") as handle:
        lines = handle.read().splitlines()
    return [line for line in lines[skip:] if line.strip()][:rows]


def write_slice(path: Path, rows: int, name: str = "adult.data", header: bool = False) -> Path:
    lines = adult_lines(name, rows, skip=1 if name == "adult.test" else 0)
    text = ("" if not header else ", ".join(COLUMNS) + "\n") + "\n".join(lines) + "\n"
    path.write_text(text)
    return path


def table_config(train_files: list[Any], **overrides: Any) -> dict[str, Any]:
    """The `data` section for Adult-like files without a header."""
    data = {
        "kind": "tabular",
        "train_files": [str(f) if isinstance(f, Path) else f for f in train_files],
        "header": False,
        "column_names": COLUMNS,
        "missing_values": ["?"],
        "numeric": NUMERIC,
        "categorical": CATEGORICAL,
        "min_category_count": 2,
        "buckets": 8,
        "bucket_columns": ["capital-gain", "capital-loss"],
        "tasks": TASKS,
    }
    return data | overrides
