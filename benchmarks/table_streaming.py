"""Training on a CSV bigger than it needs to be: streamed in blocks vs read whole into memory.

Generates a CSV of ROWS rows (10 numeric columns with 2 % missing values, 10 categorical columns
of 5 to 5,000 Zipf-distributed values, two binary labels from a logistic model of the features),
then trains MMoE on it twice with the same recipe, each in a fresh process: `data.streaming =
true` (the pass and every epoch read 8 MB blocks) and, as the baseline in the same run, `false`
(the whole file in memory). It records each run's wall time and peak resident memory (the
process's own ru_maxrss) in <out>/table_streaming.{json,md}: by default out/benchmarks/
(ignored by git); point --out at benchmarks/results to record a new result.

    python benchmarks/table_streaming.py                 # 1,000,000 rows, 2 epochs
    python benchmarks/table_streaming.py --out benchmarks/results   # update the committed result
    python benchmarks/table_streaming.py --quick         # 20,000 rows, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import torch
from machine import add_out_argument, cpu_model

REPO_ROOT = Path(__file__).resolve().parents[1]
NUMERIC, CATEGORICAL = 10, 10
CHUNK_ROWS = 100_000

# Runs one training command in this fresh interpreter and reports its own peak memory.
MEASURED = """
import json, resource, sys, time
from training.cli import main
started = time.perf_counter()
code = main(sys.argv[1:])
print("MEASURED " + json.dumps({
    "exit": code,
    "seconds": time.perf_counter() - started,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """The CSV, written CHUNK_ROWS at a time; labels depend on the features, so there is signal."""
    rng = np.random.default_rng(seed)
    cardinalities = np.geomspace(5, 5000, CATEGORICAL).astype(int)
    weights = rng.normal(size=(2, NUMERIC))
    category_effects = [rng.normal(size=(2, k)) for k in cardinalities]
    with pa_csv.CSVWriter(path, schema(cardinalities)) as writer:
        for start in range(0, rows, CHUNK_ROWS):
            count = min(CHUNK_ROWS, rows - start)
            numbers = rng.normal(size=(count, NUMERIC)) * np.arange(1, NUMERIC + 1)
            codes = [np.minimum(rng.zipf(1.5, count) - 1, k - 1) for k in cardinalities]
            logits = (numbers / np.arange(1, NUMERIC + 1)) @ weights.T
            logits += sum(effect[:, c].T for effect, c in zip(category_effects, codes, strict=True))
            labels = rng.random((count, 2)) < 1 / (1 + np.exp(-logits))
            columns: dict[str, pa.Array] = {}
            for j in range(NUMERIC):
                values = pa.array(np.round(numbers[:, j], 4).astype(str))
                missing = pa.array(rng.random(count) < 0.02)
                columns[f"n{j}"] = pc.if_else(missing, "", values)
            for j, c in enumerate(codes):
                columns[f"c{j}"] = pa.array(np.char.add("v", c.astype(str)))
            for k in range(2):
                columns[f"y{k}"] = pa.array(np.where(labels[:, k], "yes", "no"))
            writer.write_table(pa.table(columns))


def schema(cardinalities: np.ndarray) -> pa.Schema:
    names = [f"n{j}" for j in range(NUMERIC)] + [f"c{j}" for j in range(CATEGORICAL)]
    return pa.schema([(name, pa.string()) for name in [*names, "y0", "y1"]])


def config(path: Path, streaming: bool, epochs: int) -> dict:
    return {
        "data": {
            "kind": "tabular",
            "train_files": [str(path)],
            "numeric": [f"n{j}" for j in range(NUMERIC)],
            "categorical": [f"c{j}" for j in range(CATEGORICAL)],
            "tasks": [{"name": f"y{k}", "column": f"y{k}", "positive": ["yes"]} for k in range(2)],
            "buckets": 16,
            "streaming": streaming,
        },
        "train": {"epochs": epochs, "batch_size": 1024, "threads": 1, "patience": 5},
        "export": {"name": "bench-stream" if streaming else "bench-memory"},
    }


def measure(path: Path, models: Path, streaming: bool, epochs: int) -> dict:
    config_file = models / f"{'streaming' if streaming else 'memory'}.json"
    config_file.write_text(json.dumps(config(path, streaming, epochs)))
    command = [
        sys.executable, "-c", MEASURED,
        "--config", str(config_file), "--export.models_dir", str(models), "--quiet",
        "--log-level", "WARNING",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("MEASURED ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(
            f"the {'streaming' if streaming else 'in-memory'} run failed:\n{result.stderr}"
        )
    measured = json.loads(lines[-1].removeprefix("MEASURED "))
    name = "bench-stream" if streaming else "bench-memory"
    card = json.loads((models / name / "1" / "model.json").read_text())
    measured["test_auc"] = {task: card["metrics"]["test"][task]["auc"] for task in ("y0", "y1")}
    measured["rows"] = card["data"]["rows"]
    measured["epochs_run"] = card["training"]["epochs_run"]
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 1 epoch")
    add_out_argument(parser)
    arguments = parser.parse_args()
    rows, epochs = (20_000, 1) if arguments.quick else (arguments.rows, arguments.epochs)

    with tempfile.TemporaryDirectory(prefix="table-bench-") as folder:
        path = Path(folder) / "table.csv"
        started = time.perf_counter()
        generate(path, rows)
        generated = time.perf_counter() - started
        csv_mb = path.stat().st_size / 2**20
        load_before = os.getloadavg()
        streaming = measure(path, Path(folder), streaming=True, epochs=epochs)
        in_memory = measure(path, Path(folder), streaming=False, epochs=epochs)
        load_after = os.getloadavg()

    record = {
        "benchmark": "table_streaming",
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pyarrow": pa.__version__,
            "numpy": np.__version__,
        },
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "rows": rows,
        "columns": {"numeric": NUMERIC, "categorical": CATEGORICAL, "labels": 2},
        "csv_mb": round(csv_mb, 1),
        "generation_seconds": round(generated, 1),
        "epochs": epochs,
        "streaming": streaming,
        "in_memory": in_memory,
        "peak_rss_ratio": round(streaming["peak_rss_mb"] / in_memory["peak_rss_mb"], 3),
    }
    arguments.out.mkdir(parents=True, exist_ok=True)
    (arguments.out / "table_streaming.json").write_text(json.dumps(record, indent=2) + "\n")
    (arguments.out / "table_streaming.md").write_text(markdown(record))
    print(markdown(record))
    return 0


def markdown(record: dict) -> str:
    rows = []
    for name, run in (
        ("streamed (8 MB blocks)", "streaming"),
        ("in memory (baseline)", "in_memory"),
    ):
        measured = record[run]
        auc = ", ".join(f"{task} {value:.4f}" for task, value in measured["test_auc"].items())
        rows.append(
            f"| {name} | {measured['seconds']:.1f} | {measured['peak_rss_mb']:.0f} | "
            f"{measured['epochs_run']} | {auc} |"
        )
    return "\n".join(
        [
            "# Training on a large CSV: streamed vs in memory",
            "",
            'Generated by `make bench-table ARGS="--out benchmarks/results"` '
            "(`benchmarks/table_streaming.py`); do not edit by hand.",
            "",
            f"{record['rows']:,} rows ({record['csv_mb']} MB of CSV): "
            f"{record['columns']['numeric']} numeric columns (2 % missing), "
            f"{record['columns']['categorical']} categorical columns (5 to 5,000 values), 2 "
            "binary tasks; MMoE (8 experts of 16 units, "
            "embeddings of 4, 16 quantile bins per number), batch 1024, 1 torch thread, "
            f"{record['epochs']} epochs; validation and test metrics every epoch (each a pass "
            "over the file when streamed). Each run is a fresh `mmoe-train` process; time is its "
            "whole run (reading, the checking pass, training, evaluation, ONNX export); peak RSS "
            "is its own `ru_maxrss`.",
            "",
            "| run | seconds | peak RSS (MB) | epochs | test AUC |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Peak RSS streamed / in memory: {record['peak_rss_ratio']}. Rows per split: "
            f"{record['streaming']['rows']}.",
            "",
            f"Machine: {record['machine']}; Python {record['versions']['python']}, torch "
            f"{record['versions']['torch']}, pyarrow {record['versions']['pyarrow']}; "
            f"{record['date']}. Load average (1, 5, 15 min) {record['load_average_before']} "
            f"before and {record['load_average_after']} after: other work shared the cores.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
