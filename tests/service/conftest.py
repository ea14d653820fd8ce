"""Model repositories for the service tests: the bundled model, and tiny trained OMoE and
Shared-Bottom models (trained once per session by the real training CLI)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app, load_repository
from service.settings import Settings
from tests.support import REPO_ROOT, copy_bundled

REQUEST_ID = "test-request-1"

TINY_MODELS = {"omoe-tiny": "omoe", "shared-bottom-tiny": "shared_bottom"}


@pytest.fixture(scope="session")
def trained_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the bundled MMoE and freshly trained omoe-tiny and shared-bottom-tiny."""
    root = tmp_path_factory.mktemp("models")
    copy_bundled(root)
    runs = [
        subprocess.Popen(
            [
                sys.executable, "-m", "training", "--quiet", "--log-level", "WARNING",
                "--model.architecture", architecture,
                "--data.train_size", "300", "--data.validation_size", "100",
                "--data.test_size", "100", "--train.epochs", "2",
                "--export.models_dir", str(root), "--export.name", name,
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name, architecture in TINY_MODELS.items()
    ]  # fmt: skip
    for run in runs:
        output, _ = run.communicate(timeout=180)
        assert run.returncode == 0, output.decode()
    return root


def settings_for(root: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"model_repository": root, "provider": "cpu", "intra_op_threads": 1}
    return Settings(**(values | overrides))


@pytest.fixture(scope="session", params=["fast", "plain"])
def trained_client(
    request: pytest.FixtureRequest, trained_repository: Path
) -> Iterator[TestClient]:
    """The real app, in process, over the trained repository: once with /predict's fast path
    (pure-ASGI endpoint, simdjson for array bodies) and once with the plain path (FastAPI's
    route, orjson): every test that uses it holds both to the same answers."""
    settings = settings_for(trained_repository, max_instances=8, max_body_bytes=65536)
    app = create_app(settings, load_repository(settings), fast_predict=request.param == "fast")
    with TestClient(app, headers={"X-Request-ID": REQUEST_ID}) as client:
        yield client


@pytest.fixture
def bundled_copy(tmp_path: Path) -> Path:
    """A fresh copy of the bundled repository to break in a test; returns the repository root."""
    return copy_bundled(tmp_path)
