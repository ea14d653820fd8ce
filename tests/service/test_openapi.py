"""The OpenAPI schema says what the service really answers: arrays with `minItems`, `version`
accepting 'latest', every error in the one shape, and error examples that are real bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs  # schemathesis' validator
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import openapi
from service.app import create_app, load_repository
from service.model import ModelOutputs, ServedModel
from service.schemas import ErrorResponse
from service.settings import Settings
from tests.support import copy_bundled

ROW = [0.5] * 100
HEADERS = {"X-Request-ID": openapi.REQUEST_ID}


def nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a schema, depth first."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from nodes(child)


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(model_repository=copy_bundled(tmp_path_factory.mktemp("m")))
    with TestClient(create_app(settings)) as client:
        document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def predict_branches(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    return {branch["title"]: branch for branch in body["schema"]["oneOf"]}


def test_arrays_are_bounded_with_min_items_never_min_length(schema: dict[str, Any]) -> None:
    arrays = [node for node in nodes(schema) if node.get("type") == "array"]
    assert arrays and not [node for node in arrays if "minLength" in node]
    synthetic = predict_branches(schema)["mmoe-synthetic"]["properties"]["instances"]["anyOf"]
    assert [(form["minItems"], form["maxItems"]) for form in synthetic] == [(1, 1024)] * 2
    objects, arrays_of_numbers = (form["items"] for form in synthetic)
    assert (arrays_of_numbers["minItems"], arrays_of_numbers["maxItems"]) == (100, 100)
    assert objects["required"] == [f"x_{i}" for i in range(1, 101)]
    assert objects["additionalProperties"] is False


def test_a_schema_valid_predict_body_is_one_the_server_takes(schema: dict[str, Any]) -> None:
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    valid = jsonschema_rs.validator_for(body["schema"]).is_valid
    assert not valid({"instances": [{"x-any": 0}]})  # once schema-valid, and refused with 422
    assert not valid({"instances": [[0.5] * 99]})
    assert not valid({"instances": [[0.5] * 100], "model": "mmoe-adult"})
    assert valid({"instances": [[0.5] * 100]})
    assert valid({"instances": [{f"x_{i}": 0.5 for i in range(1, 101)}], "version": "latest"})


def test_predict_version_accepts_latest(schema: dict[str, Any]) -> None:
    for branch in predict_branches(schema).values():
        assert branch["properties"]["version"] == {"enum": [1, "latest", None]}


def test_the_predict_body_has_one_branch_per_served_model(schema: dict[str, Any]) -> None:
    branches = predict_branches(schema)
    assert list(branches) == ["mmoe-adult", "mmoe-synthetic"]
    assert branches["mmoe-synthetic"]["required"] == ["instances"]  # the default model
    assert branches["mmoe-adult"]["required"] == ["instances", "model"]
    assert branches["mmoe-adult"]["properties"]["model"] == {"const": "mmoe-adult"}
    adult = branches["mmoe-adult"]["properties"]["instances"]["items"]  # objects only
    assert adult["properties"]["age"] == {
        "anyOf": [{"type": "number", "minimum": -1e12, "maximum": 1e12}, {"type": "null"}]
    }
    assert {"type": "string"} in adult["properties"]["workclass"]["anyOf"]


def test_head_is_documented_beside_every_get_without_a_body(schema: dict[str, Any]) -> None:
    for path, operations in schema["paths"].items():
        assert ("get" in operations) == ("head" in operations), path
        if "head" in operations:
            head = operations["head"]
            assert operations["get"]["operationId"].endswith("_get")
            assert head["operationId"] == operations["get"]["operationId"][:-4] + "_head"
            assert all("content" not in response for response in head["responses"].values())


def test_every_error_response_has_the_real_shape_and_examples(schema: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in json.dumps(schema)
    assert "ValidationError" not in schema["components"]["schemas"]
    declared = []
    for path, operations in schema["paths"].items():
        if path == "/v2" or path.startswith("/v2/"):
            continue  # the protocol's own error shape: tests/service/test_oip_routes.py
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith("2") or method == "head":
                    continue
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
                assert content["examples"], f"{method} {path} {status} has no example"
                for example in content["examples"].values():
                    ErrorResponse.model_validate(example["value"])
                    declared.append((path, status, example["value"]["error"]["code"]))
    assert ("/models/{name}", "422") not in {(path, status) for path, status, _ in declared}
    assert ("/predict", "422", "wrong_feature_count") in declared


class ExplodingRunner:
    async def run(self, model: ServedModel, features: np.ndarray, gates: bool) -> ModelOutputs:
        raise RuntimeError("boom")


def examples_of(schema: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    content = schema["paths"][path][method]["responses"][status]["content"]["application/json"]
    return {name: example["value"] for name, example in content["examples"].items()}


def test_the_error_examples_are_the_bodies_the_service_answers(
    bundled_copy: Path, schema: dict[str, Any]
) -> None:
    settings = Settings(model_repository=bundled_copy, provider="cpu", intra_op_threads=1)
    repository = load_repository(settings)
    client = TestClient(create_app(settings, repository), headers=HEADERS)
    predict_404 = examples_of(schema, "/predict", "post", "404")
    predict_413 = examples_of(schema, "/predict", "post", "413")
    predict_422 = examples_of(schema, "/predict", "post", "422")
    answers = {
        "unknown model": client.post(
            "/predict", json={"instances": [ROW], "model": "mmoe-synthetic-v2"}
        ),
        "unknown version": client.post("/predict", json={"instances": [ROW], "version": 7}),
        "too many instances": client.post("/predict", json={"instances": [ROW] * 1025}),
        "body too large": client.post("/predict", content=b" " * 9_000_000),
        "wrong number of features": client.post("/predict", json={"instances": [ROW, ROW[:99]]}),
        "unknown field": client.post("/predict", json={"instance": [ROW]}),
    }
    expected = {
        "unknown model": predict_404["unknown_model"],
        "unknown version": predict_404["unknown_version"],
        "too many instances": predict_413["too_many_instances"],
        "body too large": predict_413["body_too_large"],
        "wrong number of features": predict_422["wrong_number_of_features"],
        "unknown field": predict_422["unknown_field"],
    }
    for name, response in answers.items():
        assert response.json() == expected[name], name
    model_404 = examples_of(schema, "/models/{name}", "get", "404")
    assert client.get("/models/mmoe-synthetic-v2").json() == model_404["unknown_model"]

    starting = TestClient(create_app(settings), headers=HEADERS)  # no start-up: not ready
    ready_503 = examples_of(schema, "/health/ready", "get", "503")
    assert starting.get("/health/ready").json() == ready_503["models_still_loading"]

    exploding = TestClient(create_app(settings, repository, ExplodingRunner()), headers=HEADERS)
    predict_500 = examples_of(schema, "/predict", "post", "500")
    assert (
        exploding.post("/predict", json={"instances": [ROW]}).json()
        == (predict_500["unexpected_failure"])
    )


def test_a_parameter_that_can_fail_validation_declares_the_real_422(bundled_copy: Path) -> None:
    settings = Settings(model_repository=bundled_copy, provider="cpu", intra_op_threads=1)
    app = create_app(settings, load_repository(settings))

    @app.get("/page")
    async def page(limit: int) -> dict[str, int]:
        return {"limit": limit}

    client = TestClient(app, headers=HEADERS)
    declared = examples_of(client.get("/openapi.json").json(), "/page", "get", "422")
    assert client.get("/page", params={"limit": "ten"}).json() == declared["invalid_parameter"]
