"""`benchmarks/serve.py --quick` runs end to end and records what it measured (speed is never
asserted: a smoke run on a shared machine says nothing about it).

It needs wrk (`make test` installs Debian's when it runs as root, as in CI). Without it the smoke
run skips on a developer's machine and fails in CI (CI=true)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = [
    "1 instance, concurrency 1",
    "1 instance, concurrency 32",
    "256 instances, concurrency 1",
    "256 instances, concurrency 8",
]


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        message = "wrk is not installed: apt-get install wrk (make test installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_the_serving_benchmark_runs_quick_and_writes_its_results(tmp_path: Path) -> None:
    require_wrk()
    completed = subprocess.run(
        [sys.executable, "benchmarks/serve.py", "--quick", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads((tmp_path / "serve.json").read_text())
    assert record["quick"] is True
    assert {"cpu", "cores", "load_average_before", "load_average_after"} <= set(record["machine"])
    assert {"python", "onnxruntime", "fastapi", "uvicorn", "torch", "wrk"} <= set(
        record["software"]
    )
    for server in ("floor", "naive", "service"):
        points = record["results"][server]["points"]
        assert [point["workload"] for point in points] == WORKLOADS
        for point in points:
            assert point["errors"] == 0
            assert point["requests_per_s"] > 0 and point["rss_mb"] > 0
            seconds = point["wrk"]["duration_us"] / 1e6
            expected_rows = point["wrk"]["requests"] * point["instances"] / seconds
            assert point["rows_per_s"] == pytest.approx(expected_rows, abs=0.1)
    assert record["results"]["service"]["soak"]["requests"] > 0
    for row in record["comparisons"]:
        assert row["service_to_floor"] > 0 and row["service_to_naive"] > 0
    markdown = (tmp_path / "serve.md").read_text()
    protocol = record["results"]["service"]["protocol"]
    assert [(p["instances"], p["form"], p["concurrency"]) for p in protocol["points"]] == [
        (rows, form, concurrency)
        for rows in (256, 1024)
        for concurrency in (1, 4)
        for form in ("json", "binary")
    ]
    for point in protocol["points"]:
        assert point["errors"] == 0
        baseline = point["onnxruntime_in_process"]
        assert point["to_onnxruntime"] == pytest.approx(
            point["rows_per_s"] / baseline["rows_per_s"], abs=1e-3
        )
        assert baseline["cpu_us_per_call"] > 0 and point["cpu_to_onnxruntime"] > 0
    assert len(record["targets"]) == 8  # 6 for /predict, the binary 1024-row points for /v2
    assert "| 1024 | 4 |" in markdown  # binary / JSON rows/s
    assert "| 1 instance, concurrency 32 |" in markdown
    assert "--quick: a smoke run, not a measurement" in markdown


def test_the_serving_benchmark_says_how_to_install_wrk(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}  # nothing on it: no wrk (nor taskset)
    completed = subprocess.run(
        [sys.executable, "benchmarks/serve.py", "--quick", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "wrk is not installed. Install it with `sudo apt-get install wrk`" in completed.stderr
    assert not (tmp_path / "serve.json").exists()


def test_the_metrics_overhead_benchmark_runs_quick_and_writes_its_results(tmp_path: Path) -> None:
    require_wrk()
    completed = subprocess.run(
        [sys.executable, "benchmarks/metrics_overhead.py", "--quick", "--out", str(tmp_path),
         "--env", "MMOE_BATCHING=true"],  # a serve.py option (make bench-serve's ARGS): named
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "metrics_overhead.py: not used here: --env MMOE_BATCHING=true" in completed.stderr
    record = json.loads((tmp_path / "metrics_overhead.json").read_text())
    assert (record["benchmark"], record["quick"]) == ("metrics_overhead", True)
    assert [row["workload"] for row in record["results"]] == WORKLOADS
    for row in record["results"]:
        for server in ("with metrics", "without metrics"):
            assert row[server]["requests_per_s"] > 0 and row[server]["cpu_us_per_request"] > 0
        with_metrics, without = row["with metrics"], row["without metrics"]
        ratio = with_metrics["requests_per_s"] / without["requests_per_s"]
        assert row["requests_per_s_ratio"] == pytest.approx(ratio, abs=0.001)
    counted = record["counted"]
    assert counted["http_requests"] > 0 and counted["onnxruntime_calls"] > 0
    assert counted["gate_rows"] > 0
    markdown = (tmp_path / "metrics_overhead.md").read_text()
    assert "| 1 instance, concurrency 32 |" in markdown
    assert "--quick: a smoke run, not a measurement" in markdown
