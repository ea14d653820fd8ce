"""`benchmarks/soak.py` runs end to end for a few seconds and records what it measured: every
answer expected, results written (speed and memory are the benchmark's to judge, not a smoke
run's on a shared machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT


def test_the_soak_runs_briefly_with_no_unexpected_answer(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable, "benchmarks/soak.py", "--seconds", "3", "--baseline-seconds", "1",
            "--window-seconds", "1", "--concurrency", "16", "--out", str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert (tmp_path / "soak.md").read_text().startswith("# Soak"), completed.stderr
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["unexpected"] == {}
    mix = result["mix"]["overall"]["requests"]
    assert set(mix) == {
        "single", "batch", "v2", "aborted", "invalid: feature count", "invalid: not JSON",
        "invalid: unknown model", "invalid: v2 shape",
    }  # fmt: skip
    assert result["machine"]["load_average_before"] and result["mix"]["windows"]
    assert all(window["rss_mb"] > 0 for window in result["mix"]["windows"])
