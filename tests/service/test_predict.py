"""/predict answers what onnxruntime answers, per task, for every architecture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from fastapi.testclient import TestClient

D = 100


def direct(repository: Path, name: str, features: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime on the model file, without the service."""
    session = onnxruntime.InferenceSession(
        str(repository / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {"features": features}), strict=True))


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.random.default_rng(7).normal(0.0, 2.0, (5, D)).astype(np.float32)


def test_mmoe_returns_each_tasks_own_gate(
    trained_client: TestClient, trained_repository: Path, features: np.ndarray
) -> None:
    response = trained_client.post("/predict", json={"instances": features.tolist()})
    assert response.status_code == 200
    body = response.json()
    expected = direct(trained_repository, "mmoe-synthetic", features)
    assert body["model"] == {"name": "mmoe-synthetic", "version": 1, "architecture": "mmoe"}
    assert list(body["tasks"]) == ["task_1", "task_2"]
    for k, task in enumerate(["task_1", "task_2"]):
        output = body["tasks"][task]
        predictions = np.array(output["predictions"], dtype=np.float32)
        gate_weights = np.array(output["gate_weights"], dtype=np.float32)
        np.testing.assert_array_equal(predictions, expected["predictions"][:, k])
        np.testing.assert_array_equal(gate_weights, expected["gates"][:, k, :])
        np.testing.assert_allclose(gate_weights.sum(axis=1), 1.0, atol=1e-6)
    assert body["tasks"]["task_1"]["gate_weights"] != body["tasks"]["task_2"]["gate_weights"]


def test_omoe_returns_the_one_shared_gate_for_every_task(
    trained_client: TestClient, trained_repository: Path, features: np.ndarray
) -> None:
    body = trained_client.post(
        "/predict", json={"instances": features.tolist(), "model": "omoe-tiny"}
    ).json()
    expected = direct(trained_repository, "omoe-tiny", features)
    assert expected["gates"].shape == (5, 1, 8)
    assert body["model"] == {"name": "omoe-tiny", "version": 1, "architecture": "omoe"}
    for k, task in enumerate(["task_1", "task_2"]):
        output = body["tasks"][task]
        np.testing.assert_array_equal(
            np.array(output["predictions"], dtype=np.float32), expected["predictions"][:, k]
        )
        np.testing.assert_array_equal(
            np.array(output["gate_weights"], dtype=np.float32), expected["gates"][:, 0, :]
        )


def test_shared_bottom_returns_no_gates(
    trained_client: TestClient, trained_repository: Path, features: np.ndarray
) -> None:
    body = trained_client.post(
        "/predict", json={"instances": features.tolist(), "model": "shared-bottom-tiny"}
    ).json()
    expected = direct(trained_repository, "shared-bottom-tiny", features)
    assert set(expected) == {"predictions"}
    assert body["model"] == {
        "name": "shared-bottom-tiny",
        "version": 1,
        "architecture": "shared_bottom",
    }
    for k, task in enumerate(["task_1", "task_2"]):
        assert body["tasks"][task]["gate_weights"] is None
        np.testing.assert_array_equal(
            np.array(body["tasks"][task]["predictions"], dtype=np.float32),
            expected["predictions"][:, k],
        )


def test_return_gates_false_leaves_gates_out(
    trained_client: TestClient, features: np.ndarray
) -> None:
    with_gates = trained_client.post("/predict", json={"instances": features.tolist()}).json()
    body = trained_client.post(
        "/predict", json={"instances": features.tolist(), "return_gates": False}
    ).json()
    for task in ["task_1", "task_2"]:
        assert body["tasks"][task] == {
            "predictions": with_gates["tasks"][task]["predictions"],
            "gate_weights": None,
        }


def test_named_features_in_any_order_equal_arrays(
    trained_client: TestClient, features: np.ndarray
) -> None:
    names = [f"x_{i}" for i in range(1, D + 1)]
    named = [dict(reversed(list(zip(names, row, strict=True)))) for row in features.tolist()]
    by_name = trained_client.post("/predict", json={"instances": named}).json()
    by_position = trained_client.post("/predict", json={"instances": features.tolist()}).json()
    assert by_name == by_position


def test_integers_are_numbers(trained_client: TestClient) -> None:
    as_ints = trained_client.post("/predict", json={"instances": [[1] * D]}).json()
    as_floats = trained_client.post("/predict", json={"instances": [[1.0] * D]}).json()
    assert as_ints == as_floats


def test_explicit_model_and_version_select_the_same_default(
    trained_client: TestClient, features: np.ndarray
) -> None:
    rows = features.tolist()
    default = trained_client.post("/predict", json={"instances": rows}).json()
    named = trained_client.post(
        "/predict", json={"instances": rows, "model": "mmoe-synthetic", "version": 1}
    ).json()
    assert named == default


def test_one_instance_gives_one_value_per_task(trained_client: TestClient) -> None:
    body = trained_client.post("/predict", json={"instances": [[0.0] * D]}).json()
    assert [len(body["tasks"][task]["predictions"]) for task in body["tasks"]] == [1, 1]
    assert [len(body["tasks"][task]["gate_weights"][0]) for task in body["tasks"]] == [8, 8]
