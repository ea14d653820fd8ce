"""The Adult example end to end, on a slice: train and export with the real command, serve with a
real server, send the test rows as named raw features, and score what comes back."""

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from tests.support import REPO_ROOT
from tests.tables import COLUMNS, adult_lines, table_config, write_slice
from training.metrics import roc_auc

NUMBERS = {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}


def raw_rows(lines: list[str], features: list[str]) -> list[dict]:
    """Test rows as a client holds them: numbers, strings, and null where Adult has '?'."""
    rows = []
    for line in lines:
        record = dict(zip(COLUMNS, (value.strip() for value in line.split(",")), strict=True))
        rows.append(
            {
                name: None
                if record[name] == "?"
                else (int(record[name]) if name in NUMBERS else record[name])
                for name in features
            }
        )
    return rows


def test_adult_trained_exported_and_served_by_named_raw_features(tmp_path, start_server) -> None:
    train = write_slice(tmp_path / "train.csv", 3000)
    test = write_slice(tmp_path / "test.csv", 800, name="adult.test")
    config = tmp_path / "adult.json"
    config.write_text(
        json.dumps(
            {
                "data": table_config([train], test_files=[str(test)]),
                "train": {"epochs": 6, "batch_size": 128, "learning_rate": 0.003, "threads": 1},
                "export": {"name": "adult-slice"},
            }
        )
    )
    models = tmp_path / "models"
    trained = subprocess.run(
        [sys.executable, "-m", "training", "--config", str(config), "--quiet",
         "--export.models_dir", str(models)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    card = json.loads((models / "adult-slice" / "1" / "model.json").read_text())
    features = card["input"]["feature_names"] + [f["name"] for f in card["categorical"]["features"]]

    server = start_server(
        {
            "MMOE_MODEL_REPOSITORY": str(models),
            "MMOE_MODEL_NAME": "adult-slice",
            "MMOE_PROVIDER": "cpu",
        }
    )
    lines = adult_lines("adult.test", 800, skip=1)
    rows = raw_rows(lines, features)
    assert any(None in row.values() for row in rows)  # missing values travel as null
    answers = [
        httpx.post(f"{server.url}/predict", json={"instances": rows[i : i + 200]}, timeout=30)
        for i in range(0, len(rows), 200)
    ]
    assert [answer.status_code for answer in answers] == [200] * 4
    labels = {
        "income": np.array([line.rstrip(".").endswith(">50K") for line in lines], float),
        "never_married": np.array(
            [
                line.split(", ")[COLUMNS.index("marital-status")] == "Never-married"
                for line in lines
            ],
            float,
        ),
    }
    for task, truth in labels.items():
        served = np.concatenate([a.json()["tasks"][task]["predictions"] for a in answers])
        auc = roc_auc(truth, served)
        assert auc is not None and auc > 0.8  # chance is 0.5
        # the server's strings-to-codes is the training's encoding: the card's own test AUC, up to
        # onnxruntime's last float32 digit reordering a near tie
        assert auc == pytest.approx(card["metrics"]["test"][task]["auc"], abs=1e-3)
