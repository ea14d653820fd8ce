"""schemathesis against a real server: every operation of the OpenAPI schema, every check
(server errors, status codes, content types, response schemas, schema-valid requests accepted,
schema-violating ones refused, methods the schema does not list), derandomised and bounded; the
admin routes with the API key. On /v2's infer, a schema-valid request need not fit the model (the
protocol's schema is one for all models): that one check is off there (schemathesis.toml)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, serving_bundled

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES_PER_OPERATION = 30  # ~2,000 requests: about 25 s on 2 cores
API_KEY = "schemathesis-key-0123456789"


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The bundled models, at most 8 instances per request (the schema's `maxItems`, so that
    generated bodies stay small), and an API key for the admin routes."""
    settings = {"MMOE_MAX_INSTANCES": "8", "MMOE_API_KEY": API_KEY}
    with serving_bundled(tmp_path_factory.mktemp("schemathesis"), settings) as process:
        yield process


def test_every_check_passes_on_every_operation(small_server: ServerProcess, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [
            str(st), "--config-file", str(CONFIG), "--no-color", "run",
            f"{small_server.url}/openapi.json",
            "--max-examples", str(EXAMPLES_PER_OPERATION),
            "--generation-deterministic",
            "--workers", "1",
            "--request-timeout", "10",
            "--header", f"Authorization: Bearer {API_KEY}",
            "--report", "junit", "--report-dir", str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = re.search(r"(\d+) generated, (\d+) passed", output)
    assert summary is not None, output
    generated, passed = map(int, summary.groups())
    assert generated == passed > 1000
    operations = re.search(r"Tested: (\d+)", output)
    # GET and HEAD: /health/live, /health/ready, /models, /models/{name}, its versions, /metrics,
    # and /v2's seven; POST: /predict, /admin/reload, /v2's two infer
    assert operations is not None and int(operations.group(1)) == 30
    assert "Traceback" not in small_server.log() and " ERROR " not in small_server.log()
