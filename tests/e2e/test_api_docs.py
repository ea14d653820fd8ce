"""The curl examples in docs/api.md work against a running server, as written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
DOCUMENTED_URL = "http://127.0.0.1:8000"


def predict_examples() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", API_DOC.read_text(), flags=re.DOTALL)
    return [block for block in blocks if f"{DOCUMENTED_URL}/predict" in block]


def test_the_doc_has_predict_examples() -> None:
    assert len(predict_examples()) == 3


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("example", predict_examples())
def test_curl_examples_answer_as_documented(server: Any, example: str) -> None:
    script = example.replace(DOCUMENTED_URL, server.url)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["model"] == {"name": "mmoe-synthetic", "version": 1, "architecture": "mmoe"}
    assert list(body["tasks"]) == ["task_1", "task_2"]
    instances = len(body["tasks"]["task_1"]["predictions"])
    assert instances in (1, 2)
    gates = body["tasks"]["task_1"]["gate_weights"]
    assert gates is None or len(gates) == instances
