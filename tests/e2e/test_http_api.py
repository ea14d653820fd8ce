"""The service as a user meets it: a real uvicorn process, a real HTTP client, the bundled model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import pytest

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "mmoe-synthetic" / "1" / "model.onnx"
TASKS = ["task_1", "task_2"]
D = 100


@pytest.fixture(scope="module")
def reference() -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(BUNDLED), providers=["CPUExecutionProvider"])


def rows(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.5, (count, D)).astype(np.float32)


def test_predictions_and_gates_equal_onnxruntime_run_directly(
    server: Any, reference: onnxruntime.InferenceSession
) -> None:
    features = rows(0, 32)
    response = httpx.post(f"{server.url}/predict", json={"instances": features.tolist()})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["model"] == {"name": "mmoe-synthetic", "version": 1, "architecture": "mmoe"}
    assert list(body["tasks"]) == TASKS
    predictions, gates = reference.run(["predictions", "gates"], {"features": features})
    for k, task in enumerate(TASKS):
        answered = body["tasks"][task]
        np.testing.assert_array_equal(
            np.array(answered["predictions"], dtype=np.float32), predictions[:, k]
        )
        gate_weights = np.array(answered["gate_weights"], dtype=np.float32)
        np.testing.assert_array_equal(gate_weights, gates[:, k, :])
        np.testing.assert_allclose(gate_weights.sum(axis=1), 1.0, atol=1e-6)


def test_many_parallel_requests_answer_like_sequential_ones(server: Any) -> None:
    bodies = [{"instances": rows(seed, 1 + seed % 5).tolist()} for seed in range(48)]
    with httpx.Client(base_url=server.url) as client:
        sequential = [client.post("/predict", json=body).json() for body in bodies]

    async def in_parallel() -> list[dict]:
        limits = httpx.Limits(max_connections=48)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            responses = await asyncio.gather(
                *(client.post("/predict", json=body) for body in bodies)
            )
        assert [response.status_code for response in responses] == [200] * len(bodies)
        return [response.json() for response in responses]

    assert asyncio.run(in_parallel()) == sequential


def test_health_and_model_metadata(server: Any) -> None:
    live = httpx.get(f"{server.url}/health/live")
    ready = httpx.get(f"{server.url}/health/ready")
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ready", "default_model": {"name": "mmoe-synthetic", "version": 1}},
    )
    metadata = httpx.get(f"{server.url}/models/mmoe-synthetic/versions/1").json()
    assert (metadata["provider"], metadata["onnxruntime_providers"]) == (
        "cpu",
        ["CPUExecutionProvider"],
    )
    assert metadata["card"]["tasks"] == [
        {"name": "task_1", "type": "regression"},
        {"name": "task_2", "type": "regression"},
    ]


def error(code: str, message: str, details: Any, request_id: str) -> dict:
    return {
        "error": {"code": code, "message": message, "details": details, "request_id": request_id}
    }


def test_errors_over_http_take_the_one_shape(server: Any) -> None:
    headers = {"X-Request-ID": "e2e-1"}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        wrong = client.post("/predict", json={"instances": [[1.0] * 99]})
        assert (wrong.status_code, wrong.headers["x-request-id"]) == (422, "e2e-1")
        assert wrong.json() == error(
            "wrong_feature_count",
            "instance 0 has 99 features; the model expects 100",
            {"instance": 0, "expected": 100, "received": 99},
            "e2e-1",
        )
        malformed = client.post(
            "/predict", content=b"instances=1", headers={"Content-Type": "text/plain"}
        )
        assert malformed.status_code == 422
        assert malformed.json()["error"]["code"] == "invalid_json"
        too_many = client.post("/predict", json={"instances": [[0.0] * D] * 65})
        assert too_many.status_code == 413
        assert too_many.json() == error(
            "too_many_instances",
            "65 instances in one request, the limit is 64; split the request into smaller ones "
            "(the server's limit is MMOE_MAX_INSTANCES)",
            {"instances": 65, "max_instances": 64},
            "e2e-1",
        )
        too_big = client.post("/predict", content=b" " * 262145)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"
        unknown = client.get("/nowhere")
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
        method = client.delete("/models")
        assert (method.status_code, method.json()["error"]["code"]) == (405, "method_not_allowed")
        # the connection survives every error
        assert client.post("/predict", json={"instances": [[0.0] * D]}).status_code == 200
