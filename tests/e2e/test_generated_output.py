"""Generated output lands in ignored folders unless --out points at the committed results."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests.support import REPO_ROOT

BENCHMARK = REPO_ROOT / "benchmarks" / "train_throughput.py"
MACHINE = REPO_ROOT / "benchmarks" / "machine.py"


def test_the_training_benchmark_writes_to_an_ignored_folder_by_default() -> None:
    spec = importlib.util.spec_from_file_location("machine", MACHINE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    default = module.DEFAULT_OUT.relative_to(REPO_ROOT)
    assert default.as_posix() == "out/benchmarks"
    for name in ("train_throughput.json", "train_throughput.md"):
        ignored = subprocess.run(
            ["git", "check-ignore", "--no-index", "--quiet", str(default / name)], cwd=REPO_ROOT
        )
        assert ignored.returncode == 0, f"{default / name} is not ignored by git"
        committed = subprocess.run(
            ["git", "check-ignore", "--no-index", "--quiet", f"benchmarks/results/{name}"],
            cwd=REPO_ROOT,
        )
        assert committed.returncode == 1  # the committed results stay tracked


def test_the_benchmark_help_names_both_folders() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    words = " ".join(result.stdout.split())
    assert "default: out/benchmarks, ignored by git; the committed results: benchmarks/results" in (
        words
    )
