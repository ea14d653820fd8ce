"""What many tests share: the bundled models (copied, never served from the working tree), new
versions made from them, free loopback ports, and an environment without the caller's MMOE_*
settings. Standard library at import time: docker/check_service_install.py uses it too."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import uuid
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


def edit_embedded_card(version_dir: Path, **changes: object) -> None:
    """Change the card in model.json and in the ONNX metadata alike, and fix the sha256."""
    import onnx  # here: docker/check_service_install.py imports this module without onnx

    proto = onnx.load(str(version_dir / "model.onnx"))
    [entry] = [prop for prop in proto.metadata_props if prop.key == "model_card"]
    embedded = json.loads(entry.value) | changes
    embedded["onnx"] = embedded["onnx"] | {"sha256": None}  # a file cannot hold its own hash
    entry.value = json.dumps(embedded)
    onnx.save(proto, str(version_dir / "model.onnx"))
    card = json.loads((version_dir / "model.json").read_text()) | changes
    card["onnx"]["sha256"] = hashlib.sha256((version_dir / "model.onnx").read_bytes()).hexdigest()
    (version_dir / "model.json").write_text(json.dumps(card))


def add_version(root: Path, version: int, name: str = "mmoe-synthetic") -> Path:
    """A copy of `name` version 1 stored as `version`, its card (both copies) and sha256
    updated. Written in a hidden staging directory and renamed into place, as training
    publishes, so that a server polling the repository sees no half-written version."""
    staging = root / name / f".staging-test-{uuid.uuid4().hex}"
    shutil.copytree(root / name / "1", staging)
    edit_embedded_card(staging, version=version)
    target = root / name / str(version)
    staging.rename(target)
    return target
