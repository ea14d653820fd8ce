"""The app around the handlers: readiness, model metadata, request ids, 500s, OpenAPI."""

from __future__ import annotations

import json
import logging
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from service.app import create_app, load_repository
from service.inference import InferenceRunner, Tensors
from service.settings import Settings

ROW = [0.25] * 100


def settings_for(root: Path) -> Settings:
    return Settings(model_repository=root, provider="cpu", intra_op_threads=1)


def error(code: str, message: str, request_id: str, details: object = None) -> dict:
    return {
        "error": {"code": code, "message": message, "details": details, "request_id": request_id}
    }


def test_not_ready_until_the_models_are_loaded(bundled_copy: Path) -> None:
    app = create_app(settings_for(bundled_copy))
    client = TestClient(app, headers={"X-Request-ID": "r-1"})  # no `with`: no start-up yet
    not_ready = error(
        "not_ready",
        "the service is starting: models are still loading; retry when GET /health/ready "
        "answers 200",
        "r-1",
    )
    assert client.get("/health/live").json() == {"status": "live"}
    for response in [
        client.get("/health/ready"),
        client.post("/predict", json={"instances": [ROW]}),
        client.get("/models"),
    ]:
        assert response.status_code == 503
        assert response.json() == not_ready
    with client:  # start-up loads the repository
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "default_model": {"name": "mmoe-synthetic", "version": 1},
            "loaded": {"mmoe-adult": [1], "mmoe-synthetic": [1]},
            "failed": [],
        }
        assert client.post("/predict", json={"instances": [ROW]}).status_code == 200


def test_model_list_and_metadata(trained_client: TestClient, trained_repository: Path) -> None:
    assert trained_client.get("/models").json() == {
        "default_model": {"name": "mmoe-synthetic", "version": 1},
        "models": [
            {"name": name, "versions": [1], "latest_version": 1, "candidate_versions": []}
            for name in ["mmoe-adult", "mmoe-synthetic", "omoe-tiny", "shared-bottom-tiny"]
        ],
        "failed": [],
        "unloading": [],
        "repository": {"generation": 1, "polling_interval_s": 0.0, "last_reload": None},
    }
    metadata = trained_client.get("/models/shared-bottom-tiny/versions/1").json()
    card = (trained_repository / "shared-bottom-tiny" / "1" / "model.json").read_text()
    assert metadata["card"] == json.loads(card)
    assert {key: value for key, value in metadata.items() if key != "card"} == {
        "name": "shared-bottom-tiny",
        "version": 1,
        "architecture": "shared_bottom",
        "tasks": ["task_1", "task_2"],
        "input_dim": 100,
        "provider": "cpu",
        "onnxruntime_providers": ["CPUExecutionProvider"],
        "signature": {
            "inputs": [{"name": "features", "type": "tensor(float)", "shape": ["batch", 100]}],
            "outputs": [{"name": "predictions", "type": "tensor(float)", "shape": ["batch", 2]}],
        },
    }
    assert trained_client.get("/models/shared-bottom-tiny/versions/latest").json() == metadata
    detail = trained_client.get("/models/shared-bottom-tiny").json()
    assert detail == {
        "name": "shared-bottom-tiny",
        "versions": [1],
        "latest_version": 1,
        "candidate_versions": [],
        "latest": metadata,
    }
    gates = trained_client.get("/models/mmoe-synthetic/versions/1").json()["signature"]
    assert gates["outputs"][1] == {
        "name": "gates",
        "type": "tensor(float)",
        "shape": ["batch", 2, 8],
    }


def test_every_response_carries_a_request_id(trained_client: TestClient) -> None:
    assert trained_client.get("/health/live").headers["x-request-id"] == "test-request-1"
    fresh = trained_client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])


class ExplodingModel:
    def run(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        raise RuntimeError("onnxruntime exploded")


class ExplodingModelRunner(InferenceRunner):
    async def run(self, model: object, inputs: Mapping[str, np.ndarray]) -> Tensors:
        return await super().run(ExplodingModel(), inputs)


@pytest.mark.parametrize("fast_predict", [True, False], ids=["fast", "plain"])
def test_unexpected_errors_are_a_logged_500_with_the_request_id(
    bundled_copy: Path, caplog: pytest.LogCaptureFixture, fast_predict: bool
) -> None:
    settings = settings_for(bundled_copy)
    app = create_app(settings, load_repository(settings), ExplodingModelRunner(), fast_predict)
    with TestClient(app) as client, caplog.at_level(logging.ERROR, logger="service"):
        response = client.post("/predict", json={"instances": [ROW]})
    request_id = response.headers["x-request-id"]
    assert response.status_code == 500
    assert response.json() == error(
        "internal_error",
        f"the server failed to answer this request; it is logged under request id "
        f"{request_id}: quote it when reporting the problem",
        request_id,
    )
    assert "Traceback" not in response.text
    [record] = [r for r in caplog.records if r.name == "service.middleware"]
    assert record.getMessage() == f"unhandled error in POST /predict (request id {request_id})"
    assert record.exc_info is not None and "onnxruntime exploded" in str(record.exc_info[1])


def test_fastapi_validation_and_http_errors_take_the_same_shape(bundled_copy: Path) -> None:
    settings = settings_for(bundled_copy)
    app = create_app(settings, load_repository(settings))

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        raise HTTPException(status_code=418, detail="I am a teapot")

    client = TestClient(app, headers={"X-Request-ID": "r-2"})
    invalid = client.get("/items/abc")
    assert invalid.status_code == 422
    message = "Input should be a valid integer, unable to parse string as an integer"
    assert invalid.json() == error(
        "invalid_request",
        f"invalid request: path.item_id: {message}",
        "r-2",
        [{"location": ["path", "item_id"], "message": message}],
    )
    teapot = client.get("/items/1")
    assert teapot.status_code == 418
    assert teapot.json() == error("http_418", "I am a teapot", "r-2")


def test_openapi_documents_predict_and_docs_are_served(trained_client: TestClient) -> None:
    schema = trained_client.get("/openapi.json").json()
    declared = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert schema["info"]["version"] == declared["project"]["version"]
    predict = schema["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    for branch in body["oneOf"]:  # one per served model
        assert set(branch["properties"]) == {"instances", "return_gates", "model", "version"}
        assert "instances" in branch["required"]
    assert predict["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictResponse"
    }
    for status in ["404", "413", "422", "500", "503"]:
        assert predict["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
    assert {"/health/live", "/health/ready", "/models", "/models/{name}"} <= set(schema["paths"])
    docs = trained_client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
