"""What many tests share: the bundled models (copied, never served from the working tree), free
loopback ports, and an environment without the caller's MMOE_* settings."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MODELS = REPO_ROOT / "models"
# The model versions committed to the repository. `make train` and other local runs add
# versions beside them in models/; tests see only these.
BUNDLED_VERSIONS: dict[str, list[int]] = {"mmoe-synthetic": [1], "mmoe-adult": [1]}


def bundled_version_dir(name: str = "mmoe-synthetic", version: int = 1) -> Path:
    assert version in BUNDLED_VERSIONS[name], f"{name}/{version} is not a bundled version"
    return BUNDLED_MODELS / name / str(version)


def copy_bundled(root: Path) -> Path:
    """Every bundled model version copied into the repository `root`; returns `root`."""
    for name, versions in BUNDLED_VERSIONS.items():
        for version in versions:
            shutil.copytree(bundled_version_dir(name, version), root / name / str(version))
    return root


def free_port() -> int:
    """A TCP port nothing listens on at this moment, on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def environment_without_settings() -> dict[str, str]:
    """This process's environment less every MMOE_* variable, for a child process."""
    return {key: value for key, value in os.environ.items() if not key.startswith("MMOE_")}
