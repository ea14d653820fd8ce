"""What every benchmark records beside its numbers, and where it writes them by default."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "out" / "benchmarks"  # ignored by git
COMMITTED_RESULTS = REPO_ROOT / "benchmarks" / "results"


def add_out_argument(parser: argparse.ArgumentParser) -> None:
    """--out: generated results never overwrite the committed ones unless asked to."""
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="results folder (default: out/benchmarks, ignored by git; the committed results: "
        "benchmarks/results)",
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
