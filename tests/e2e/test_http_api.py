"""The service as a user meets it: a real uvicorn process, a real HTTP client, the bundled model."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import pytest

from tests.e2e.conftest import ServerProcess
from tests.support import copy_bundled

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


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Micro-batching with a 20 ms window, so that concurrent requests surely share calls, and
    debug logs, which say how many requests each onnxruntime call served."""
    work = tmp_path_factory.mktemp("batching")
    settings = {
        "MMOE_MODEL_REPOSITORY": str(copy_bundled(work / "models")),
        "MMOE_PROVIDER": "cpu",
        "MMOE_BATCHING": "true",
        "MMOE_MAX_BATCH_DELAY_US": "20000",
        "MMOE_LOG_LEVEL": "debug",
    }
    process = ServerProcess(settings, work / "server.log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_64_concurrent_clients_each_get_their_own_rows_and_options(
    batching_server: ServerProcess, reference: onnxruntime.InferenceSession
) -> None:
    generator = np.random.default_rng(64)
    requests = [(rows(seed, 1 + seed % 5), bool(generator.integers(2))) for seed in range(64)]

    async def in_parallel() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(
            base_url=batching_server.url, limits=limits, timeout=30
        ) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/predict",
                        json={"instances": features.tolist(), "return_gates": gates},
                    )
                    for features, gates in requests
                )
            )

    responses = asyncio.run(in_parallel())
    assert [response.status_code for response in responses] == [200] * len(requests)
    for (features, gates), response in zip(requests, responses, strict=True):
        # the same rows run alone; batched rows may differ in the last float32 digit
        predictions, gate_weights = reference.run(["predictions", "gates"], {"features": features})
        for k, task in enumerate(TASKS):
            answered = response.json()["tasks"][task]
            np.testing.assert_allclose(
                np.array(answered["predictions"], dtype=np.float32),
                predictions[:, k],
                rtol=1e-6,
                atol=1e-6,
            )
            if gates:
                np.testing.assert_allclose(
                    np.array(answered["gate_weights"], dtype=np.float32),
                    gate_weights[:, k, :],
                    rtol=1e-6,
                    atol=1e-6,
                )
            else:
                assert answered["gate_weights"] is None
    calls = [
        int(match) for match in re.findall(r"one call: (\d+) request\(s\)", batching_server.log())
    ]
    assert sum(calls) == len(requests)
    assert max(calls) > 1  # requests did share calls


def test_health_and_model_metadata(server: Any) -> None:
    live = httpx.get(f"{server.url}/health/live")
    ready = httpx.get(f"{server.url}/health/ready")
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    assert (ready.status_code, ready.json()) == (
        200,
        {
            "status": "ready",
            "default_model": {"name": "mmoe-synthetic", "version": 1},
            "loaded": {"mmoe-adult": [1], "mmoe-synthetic": [1]},
            "failed": [],
        },
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


def test_several_worker_processes_serve_the_same_answers(
    tmp_path: Path, reference: onnxruntime.InferenceSession
) -> None:
    settings = {
        "MMOE_MODEL_REPOSITORY": str(copy_bundled(tmp_path / "models")),
        "MMOE_PROVIDER": "cpu",
        "MMOE_WORKERS": "2",
        "MMOE_INTRA_OP_THREADS": "1",
    }
    process = ServerProcess(settings, tmp_path / "server.log")
    try:
        process.wait_ready()  # one worker is ready; on a busy machine the other may still load
        deadline = time.monotonic() + 60
        while process.log().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, process.log()
            time.sleep(0.05)  # polling the log, not synchronisation
        features = rows(5, 3)
        with httpx.Client(base_url=process.url) as client:
            responses = [
                client.post("/predict", json={"instances": features.tolist()}) for _ in range(8)
            ]
        log = process.log()
    finally:
        process.stop()
    assert [response.status_code for response in responses] == [200] * 8
    predictions, _ = reference.run(["predictions", "gates"], {"features": features})
    for response in responses:
        answered = response.json()["tasks"]["task_2"]["predictions"]
        np.testing.assert_array_equal(np.array(answered, dtype=np.float32), predictions[:, 1])
    assert log.count("Started server process") == 2
    assert "2 worker(s)" in log
