"""`mmoe-score --url` through a real server: the same exact numbers as a direct onnxruntime call
on the batches the server ran (at most its 64 instances each)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pyarrow as pa
import pyarrow.csv as pa_csv

from tests.support import bundled_version_dir, environment_without_settings

SERVER_MAX_INSTANCES = 64


def test_scoring_through_the_server_equals_onnxruntime_exactly(server: Any, tmp_path: Path) -> None:
    features = np.random.default_rng(11).normal(size=(200, 100)).astype(np.float32)
    table = pa.table({f"x_{i + 1}": features[:, i] for i in range(100)})
    rows, out = tmp_path / "rows.csv", tmp_path / "scored.csv"
    pa_csv.write_csv(table, rows)
    result = subprocess.run(
        [sys.executable, "-m", "service.score_cli", str(rows), "--out", str(out),
         "--url", server.url, "--gates", "--batch-size", str(SERVER_MAX_INSTANCES)],
        cwd=tmp_path,
        env=environment_without_settings(),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"mmoe-score: 200 rows scored by mmoe-synthetic version 1 ({server.url}) -> {out}"
    )
    session = onnxruntime.InferenceSession(
        str(bundled_version_dir() / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    runs = [
        session.run(None, {"features": features[start : start + SERVER_MAX_INSTANCES]})
        for start in range(0, 200, SERVER_MAX_INSTANCES)
    ]
    predictions = np.concatenate([run[0] for run in runs])
    gates = np.concatenate([run[1] for run in runs])
    scored = pa_csv.read_csv(out)
    for task in range(2):
        values = scored.column(f"task_{task + 1}").to_numpy().astype(np.float32)
        assert np.array_equal(values, predictions[:, task])
        for expert in range(8):
            weights = scored.column(f"gate_task_{task + 1}_e{expert}").to_numpy()
            assert np.array_equal(weights.astype(np.float32), gates[:, task, expert])
