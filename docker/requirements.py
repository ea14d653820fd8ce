"""Print the requirements of one image, one a line, read from pyproject.toml.

The images install their dependencies from this list first (a layer that changes only when
pyproject.toml does), then the project itself with `pip install --no-deps .`, so pyproject.toml
stays the one place that names the dependencies.

    python docker/requirements.py                          # api: the base install, no torch
    python docker/requirements.py --extra train --torch-cpu  # trainer: + torch's CPU build
    python docker/requirements.py --extra gpu              # api-gpu: onnxruntime-gpu instead

Standard library only: it runs in a bare python image before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# onnxruntime-gpu ships the same `onnxruntime` module as onnxruntime; with both installed one
# overwrites the other's files, so the GPU image must not get the CPU package.
REPLACED_BY_EXTRA = {"gpu": {"onnxruntime"}}


def requirement_name(requirement: str) -> str:
    """The normalised project name at the start of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"cannot read a project name from requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def torch_cpu_pin(requirement: str) -> str:
    """`torch==X` -> `torch==X+cpu`: only the CPU wheel index has it, so pip cannot fall back
    to the multi-gigabyte CUDA build from PyPI."""
    match = re.fullmatch(r"\s*torch\s*==\s*([0-9][0-9a-z.]*)\s*", requirement)
    if not match:
        raise ValueError(f"--torch-cpu needs an exact pin like torch==2.13.0, got {requirement!r}")
    return f"torch=={match.group(1)}+cpu"


def image_requirements(
    extras: list[str], torch_cpu: bool, pyproject: Path = PYPROJECT
) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise ValueError(f"unknown extra(s) {unknown}; pyproject.toml has {sorted(optional)}")
    replaced = set().union(*(REPLACED_BY_EXTRA.get(extra, set()) for extra in extras))
    requirements = [
        requirement
        for requirement in project["dependencies"]
        if requirement_name(requirement) not in replaced
    ]
    for extra in extras:
        requirements.extend(optional[extra])
    if torch_cpu:
        torch = [r for r in requirements if requirement_name(r) == "torch"]
        if not torch:
            raise ValueError("--torch-cpu given, but no torch requirement was selected")
        requirements = [
            torch_cpu_pin(r) if requirement_name(r) == "torch" else r for r in requirements
        ]
    return requirements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--extra", action="append", default=[], help="an optional-dependencies group to add"
    )
    parser.add_argument(
        "--torch-cpu", action="store_true", help="pin torch to its CPU build (torch==X+cpu)"
    )
    arguments = parser.parse_args(argv)
    try:
        requirements = image_requirements(arguments.extra, arguments.torch_cpu)
    except ValueError as error:
        parser.exit(2, f"requirements.py: error: {error}\n")
    print("\n".join(requirements))
    return 0


if __name__ == "__main__":
    sys.exit(main())
