"""The curl examples in docs/api.md work against a running server, and answer what it documents."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
DOCUMENTED_URL = "http://127.0.0.1:8000"
# Each example, in the doc's order: how many instances it sends (every one is 100 values of 0.5,
# by position or by name) and whether it asks for gate weights.
EXAMPLES = [(2, True), (1, False), (1, True)]


def predict_examples(model: str = "mmoe-synthetic") -> list[str]:
    """The doc's curl examples for /predict that ask `model` (by name, or as the default)."""
    blocks = re.findall(r"```bash\n(.*?)```", API_DOC.read_text(), flags=re.DOTALL)
    examples = [block for block in blocks if f"{DOCUMENTED_URL}/predict" in block]
    table = [block for block in examples if '"model": "mmoe-adult"' in block]
    return table if model == "mmoe-adult" else [block for block in examples if block not in table]


def documented_response(marker: str = "answer to one instance of 100 values of `0.5`:") -> Any:
    """The JSON block after `marker` in the doc (by default the bundled model's answer)."""
    section = API_DOC.read_text().split(marker, 1)[1]
    block = re.search(r"```json\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None
    return json.loads(block.group(1))


def test_the_doc_has_predict_examples() -> None:
    assert len(predict_examples()) == len(EXAMPLES)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(
    ("example", "expected"), list(zip(predict_examples(), EXAMPLES, strict=False))
)
def test_curl_examples_answer_as_documented(
    server: Any, example: str, expected: tuple[int, bool]
) -> None:
    instances, with_gates = expected
    script = example.replace(DOCUMENTED_URL, server.url)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    documented = documented_response()
    assert body["model"] == documented["model"]
    assert list(body["tasks"]) == list(documented["tasks"])
    for task, answer in body["tasks"].items():
        one = documented["tasks"][task]
        assert_float32_equal(answer["predictions"], one["predictions"] * instances)
        if with_gates:
            assert_float32_equal(answer["gate_weights"], one["gate_weights"] * instances)
        else:
            assert answer["gate_weights"] is None


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_table_model_example_answers_as_documented(server: Any) -> None:
    [example] = predict_examples("mmoe-adult")
    script = example.replace(DOCUMENTED_URL, server.url)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    documented = documented_response("`mmoe-adult`'s answer to that instance:")
    assert body["model"] == documented["model"]
    assert list(body["tasks"]) == list(documented["tasks"]) == ["income", "never_married"]
    for task, answer in body["tasks"].items():
        assert_float32_equal(answer["predictions"], documented["tasks"][task]["predictions"])
        assert_float32_equal(answer["gate_weights"], documented["tasks"][task]["gate_weights"])


def assert_float32_equal(served: list[Any], documented: list[Any]) -> None:
    """Equal as float32 (the doc prints the shortest decimal that reads back as the float32).
    onnxruntime's kernels may round the last bit differently for a batch of 2 than for 1 row
    (docs/architecture.md), so a batch of rows is held to 2e-7 of the single-row answer."""
    served_array, documented_array = np.float32(served), np.float32(documented)
    if len(served) == 1:
        assert np.array_equal(served_array, documented_array)
    else:
        np.testing.assert_allclose(served_array, documented_array, rtol=0, atol=2e-7)
