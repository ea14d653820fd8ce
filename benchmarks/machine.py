"""What every benchmark records beside its numbers, and where it writes them by default."""

from __future__ import annotations

import argparse
import os
import platform
from datetime import UTC, datetime
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


def describe_torch_run(threads: int, load_before: tuple[float, ...]) -> dict:
    """The date, machine and software of a torch benchmark that has just finished."""
    import numpy
    import torch

    return {
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": threads,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "software": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
        },
    }


def torch_run_line(run: dict, note: str = "") -> str:
    """One Markdown sentence of `describe_torch_run`'s answer; `note` ends its parenthesis."""
    machine = run["machine"]
    return (
        f"{run['date']}; {machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} "
        f"torch thread(s); torch {run['software']['torch']}; 1-minute load average before/after "
        f"{machine['load_average_before'][0]:.2f} / {machine['load_average_after'][0]:.2f} (a "
        f"shared machine: other processes were running{note})."
    )
