"""The table benchmark and the Adult study run end to end on small inputs (no speed asserted), and
write where they say."""

import csv
import json
import subprocess
import sys
import tomllib

from tests.support import REPO_ROOT
from tests.tables import ADULT_CONFIG, write_slice


def test_the_table_benchmark_runs_quick_and_records_both_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/table_streaming.py", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "table_streaming.json").read_text())
    assert record["rows"] == 20_000
    assert record["columns"] == {"numeric": 10, "categorical": 10, "labels": 2}
    for run in ("streaming", "in_memory"):
        assert record[run]["exit"] == 0
        assert record[run]["peak_rss_mb"] > 0 and record[run]["seconds"] > 0
        assert sum(record[run]["rows"].values()) == 20_000
        assert all(0.5 < auc <= 1.0 for auc in record[run]["test_auc"].values())
    assert "| streamed (8 MB blocks) |" in (tmp_path / "table_streaming.md").read_text()
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "--quiet", "out/benchmarks/table_streaming.json"],
        cwd=REPO_ROOT,
    )
    assert ignored.returncode == 0


def test_the_adult_study_trains_each_model_and_both_baselines(tmp_path):
    recipe = tomllib.loads(ADULT_CONFIG.read_text())
    train = write_slice(tmp_path / "train.csv", 2000)
    test = write_slice(tmp_path / "test.csv", 500, name="adult.test")
    recipe["data"] |= {"train_files": [str(train)], "test_files": [str(test)]}
    config = tmp_path / "adult.json"
    config.write_text(json.dumps(recipe))
    result = subprocess.run(
        [sys.executable, "-m", "training.experiments.adult", "--config", str(config),
         "--seeds", "2", "--epochs", "1", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with (tmp_path / "out" / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    models = ["mmoe", "omoe", "shared_bottom", "logistic_regression", "gradient_boosting"]
    assert sorted(run["model"] for run in runs) == sorted(models * 2)
    assert all(0.0 < float(run["income_auc"]) <= 1.0 for run in runs)  # 1 epoch: any AUC
    baselines = [run for run in runs if run["model"] in models[3:]]
    assert all(float(run["income_auc"]) > 0.8 for run in baselines)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["summary"]
    assert list(summary) == models and summary["mmoe"]["runs"] == 2
    readme = (tmp_path / "out" / "README.md").read_text()
    assert f"| MMoE | {summary['mmoe']['parameters']} | 2 |" in readme
    assert "| gradient boosting | — | 2 |" in readme
