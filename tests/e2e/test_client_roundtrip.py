"""The Python client against a real server: the bundled model's answers, batched under the
server's limits (64 instances, 256 KiB bodies here), equal a direct onnxruntime call exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest

from service.client import MMoEClient, Prediction, ServerLimits, ServiceUnreachableError
from service.errors import ModelNotFoundError, WrongFeatureCountError
from tests.support import bundled_version_dir, free_port

SERVER_MAX_INSTANCES = 64  # the e2e server fixture's MMOE_MAX_INSTANCES
TASKS = ["task_1", "task_2"]


def bundled_model(server: Any) -> Path:
    """The file the server serves a copy of."""
    return bundled_version_dir("mmoe-synthetic", 1) / "model.onnx"


def direct(model: Path, features: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """onnxruntime on the model file, in the batches the client sends: predictions [n, T] and
    gates [n, T, E]."""
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    runs = [
        session.run(["predictions", "gates"], {"features": features[start : start + batch]})
        for start in range(0, len(features), batch)
    ]
    return np.concatenate([run[0] for run in runs]), np.concatenate([run[1] for run in runs])


def assert_equals_direct(answer: Prediction, predictions: np.ndarray, gates: np.ndarray) -> None:
    assert list(answer.predictions) == TASKS
    assert answer.gates is not None
    for index, task in enumerate(TASKS):
        assert answer.predictions[task].dtype == np.float32
        assert np.array_equal(answer.predictions[task], predictions[:, index])
        assert np.array_equal(answer.gates[task], gates[:, index, :])


def test_the_client_batches_under_the_limits_and_matches_onnxruntime_exactly(
    server: Any,
) -> None:
    features = np.random.default_rng(7).normal(size=(300, 100)).astype(np.float32)
    batches: list[int] = []
    with MMoEClient(server.url) as client:
        answer = client.predict(features, on_batch=batches.append)
        # 1024 rows do not fit 256 KiB, and 64 rows at most per request: learned from the 413s
        assert client.limits == ServerLimits(max_instances=64, max_body_bytes=262144)
    assert batches == [64, 64, 64, 64, 44]
    assert answer.model.name == "mmoe-synthetic" and answer.model.version == 1
    assert len(answer) == 300
    assert_equals_direct(answer, *direct(bundled_model(server), features, SERVER_MAX_INSTANCES))


def test_records_and_rows_give_the_same_answer(server: Any) -> None:
    features = np.random.default_rng(8).normal(size=(5, 100)).astype(np.float32)
    records = [{f"x_{i + 1}": value for i, value in enumerate(row)} for row in features]
    with MMoEClient(server.url, version="latest") as client:
        by_name = client.predict(records)
        by_rows = client.predict(features.tolist())
        without_gates = client.predict(features, return_gates=False)
    assert_equals_direct(by_name, *direct(bundled_model(server), features, 5))
    assert_equals_direct(by_rows, *direct(bundled_model(server), features, 5))
    assert without_gates.gates is None


def test_errors_are_the_services_exceptions_numbered_in_the_whole_input(server: Any) -> None:
    rows = np.zeros((100, 100), dtype=np.float32).tolist()
    rows[70] = rows[70][:99]  # in the second batch of 64
    with MMoEClient(server.url) as client:
        with pytest.raises(WrongFeatureCountError) as wrong:
            client.predict(rows)
        with pytest.raises(ModelNotFoundError) as missing:
            client.predict(rows[:1], model="mmoe-big")
    assert (wrong.value.status, wrong.value.code) == (422, "wrong_feature_count")
    assert str(wrong.value) == "instance 70 has 99 features; the model expects 100"
    assert wrong.value.details == {"instance": 70, "expected": 100, "received": 99}
    assert wrong.value.request_id
    assert missing.value.status == 404
    assert missing.value.details == {
        "model": "mmoe-big",
        "available": ["mmoe-adult", "mmoe-synthetic"],
    }


def test_no_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with MMoEClient(url) as client, pytest.raises(ServiceUnreachableError) as error:
        client.predict(np.zeros((1, 100)))
    assert str(error.value).startswith(f"cannot reach the service at {url}: ")
