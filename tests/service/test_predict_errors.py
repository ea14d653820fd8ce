"""Every way a request can go wrong answers with the one error shape, an exact status and body."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from service.repository import NOT_LOADED_HINT

REQUEST_ID = "test-request-1"  # the trained_client fixture sends it on every request
D = 100
ROW = [0.5] * D
NAMED = {f"x_{i}": 0.5 for i in range(1, D + 1)}
OR_LATEST = ', or "latest" (leave it out for the default version)'


def assert_error(response: Response, status: int, code: str, message: str, details: Any) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == REQUEST_ID
    assert response.json() == {
        "error": {"code": code, "message": message, "details": details, "request_id": REQUEST_ID}
    }


def test_predict_rejects_wrong_feature_count(trained_client: TestClient) -> None:
    response = trained_client.post("/predict", json={"instances": [ROW, ROW[:99], ROW]})
    assert_error(
        response,
        422,
        "wrong_feature_count",
        "instance 1 has 99 features; the model expects 100",
        {"instance": 1, "expected": 100, "received": 99},
    )


def test_predict_rejects_too_many_features(trained_client: TestClient) -> None:
    response = trained_client.post("/predict", json={"instances": [[*ROW, 1.0]]})
    assert_error(
        response,
        422,
        "wrong_feature_count",
        "instance 0 has 101 features; the model expects 100",
        {"instance": 0, "expected": 100, "received": 101},
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [("abc", 'a string ("abc")'), ("1.5", 'a string ("1.5")'), (None, "null"), (True, "true"),
     ([1.0], "an array"), ({"a": 1}, "an object")],
)  # fmt: skip
def test_predict_rejects_non_numeric_values(
    trained_client: TestClient, value: Any, shown: str
) -> None:
    row = [*ROW[:7], value, *ROW[8:]]
    response = trained_client.post("/predict", json={"instances": [ROW, row]})
    assert_error(
        response,
        422,
        "non_numeric_feature",
        f"instance 1, feature 7 (x_8) is {shown}; features must be numbers",
        {"instance": 1, "feature": 7, "feature_name": "x_8"},
    )


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_predict_rejects_nan_and_infinity_tokens(trained_client: TestClient, token: bytes) -> None:
    body = b'{"instances": [[' + b"1.0, " * 99 + token + b"]]}"
    response = trained_client.post("/predict", content=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "non_finite_feature"
    assert error["message"] == (
        "the body holds NaN, Infinity or a number too large for a float; feature values must "
        "be finite numbers (and NaN/Infinity are not valid JSON)"
    )


def test_predict_rejects_values_beyond_float32(trained_client: TestClient) -> None:
    row = [*ROW[:3], 1e39, *ROW[4:]]
    response = trained_client.post("/predict", json={"instances": [row]})
    assert_error(
        response,
        422,
        "non_finite_feature",
        "instance 0, feature 3 (x_4) is 1e+39, outside the float32 range; features must be "
        "finite numbers",
        {"instance": 0, "feature": 3, "feature_name": "x_4"},
    )


def test_predict_rejects_unknown_named_features(trained_client: TestClient) -> None:
    instance = NAMED | {"x_101": 1.0, "colour": 2.0}
    response = trained_client.post("/predict", json={"instances": [NAMED, instance]})
    assert_error(
        response,
        422,
        "unknown_features",
        "instance 1 has unknown features ['x_101', 'colour']; the model's features are "
        "['x_1', 'x_2', ..., 'x_100']",
        {"instance": 1, "unknown": ["x_101", "colour"], "unknown_count": 2},
    )


def test_predict_rejects_missing_named_features(trained_client: TestClient) -> None:
    instance = {name: value for name, value in NAMED.items() if name not in ("x_3", "x_50")}
    response = trained_client.post("/predict", json={"instances": [instance]})
    assert_error(
        response,
        422,
        "missing_features",
        "instance 0 lacks 2 of the model's 100 features: ['x_3', 'x_50']",
        {"instance": 0, "missing": ["x_3", "x_50"]},
    )


def test_predict_rejects_non_numeric_named_feature(trained_client: TestClient) -> None:
    response = trained_client.post("/predict", json={"instances": [NAMED | {"x_2": "high"}]})
    assert_error(
        response,
        422,
        "non_numeric_feature",
        'instance 0, feature 1 (x_2) is a string ("high"); features must be numbers',
        {"instance": 0, "feature": 1, "feature_name": "x_2"},
    )


def test_predict_rejects_instances_mixing_arrays_and_objects(trained_client: TestClient) -> None:
    response = trained_client.post("/predict", json={"instances": [NAMED, ROW]})
    assert_error(
        response,
        422,
        "invalid_instance",
        "the instances mix arrays and objects; send every instance as an array of 100 numbers, "
        "or every one as an object of named features",
        None,
    )


def test_predict_rejects_an_instance_that_is_a_number(trained_client: TestClient) -> None:
    response = trained_client.post("/predict", json={"instances": [1.0, 2.0]})
    assert_error(
        response,
        422,
        "invalid_instance",
        "instance 0 is a number (1.0); each instance must be an array of 100 numbers or an "
        "object of named features",
        {"instance": 0},
    )


def test_predict_rejects_empty_instances(trained_client: TestClient) -> None:
    response = trained_client.post("/predict", json={"instances": []})
    assert_error(
        response, 422, "empty_instances", "'instances' is empty; send at least one instance", None
    )


def test_predict_rejects_malformed_json(trained_client: TestClient) -> None:
    response = trained_client.post("/predict", content=b'{"instances": [[1.0,')
    error = "unexpected end of data: line 1 column 21 (char 20)"
    assert_error(
        response,
        422,
        "invalid_json",
        f"the body is not valid JSON: {error}; send a JSON object such as "
        '{"instances": [[...features...]]} with Content-Type: application/json',
        {"json_error": error},
    )


@pytest.mark.parametrize(
    ("body", "message", "details"),
    [
        ([ROW], "the body is an array; send a JSON object with an 'instances' array", None),
        ({"rows": [ROW]}, "unknown fields ['rows']; a /predict body has the fields "
         "['instances', 'return_gates', 'model', 'version']",
         {"unknown": ["rows"], "allowed": ["instances", "return_gates", "model", "version"]}),
        ({}, "the body has no 'instances'; send {\"instances\": [...]}", None),
        ({"instances": ROW[0]}, "'instances' is a number (0.5); it must be an array of instances",
         None),
        ({"instances": [ROW], "return_gates": "yes"},
         "'return_gates' is a string (\"yes\"); it must be true or false", None),
        ({"instances": [ROW], "model": 7}, "'model' is a number (7); it must be a model name",
         None),
        ({"instances": [ROW], "version": "1"}, "'version' is a string (\"1\"); it must be a "
         f"whole number from 1 to 2147483647{OR_LATEST}", None),
        ({"instances": [ROW], "version": 0}, "'version' is a number (0); it must be a whole "
         f"number from 1 to 2147483647{OR_LATEST}", None),
        ({"instances": [ROW], "version": 2**31}, "'version' is a number (2147483648); it must be "
         f"a whole number from 1 to 2147483647{OR_LATEST}", None),
        ({"instances": [ROW], "version": "newest"}, "'version' is a string (\"newest\"); it must "
         f"be a whole number from 1 to 2147483647{OR_LATEST}", None),
    ],
)  # fmt: skip
def test_predict_rejects_malformed_requests(
    trained_client: TestClient, body: Any, message: str, details: Any
) -> None:
    response = trained_client.post("/predict", json=body)
    assert_error(response, 422, "invalid_request", message, details)


def test_predict_rejects_too_many_instances(trained_client: TestClient) -> None:
    response = trained_client.post("/predict", json={"instances": [ROW] * 9})
    assert_error(
        response,
        413,
        "too_many_instances",
        "9 instances in one request, the limit is 8; split the request into smaller ones "
        "(the server's limit is MMOE_MAX_INSTANCES)",
        {"instances": 9, "max_instances": 8},
    )


def test_predict_rejects_a_body_over_the_byte_limit(trained_client: TestClient) -> None:
    body = b'{"instances": [[' + b" " * 65536 + b"]]}"
    response = trained_client.post("/predict", content=body)
    assert_error(
        response,
        413,
        "payload_too_large",
        f"the request body ({len(body)} bytes) is larger than the limit of 65536 bytes; send "
        "fewer instances per request (the server's limit is MMOE_MAX_BODY_BYTES)",
        {"max_body_bytes": 65536},
    )


def test_predict_rejects_a_chunked_body_over_the_byte_limit(trained_client: TestClient) -> None:
    chunks = [b'{"instances": [[', b" " * 40000, b" " * 40000, b"]]}"]
    response = trained_client.post("/predict", content=iter(chunks))  # no Content-Length
    assert_error(
        response,
        413,
        "payload_too_large",
        "the request body is larger than the limit of 65536 bytes; send fewer instances per "
        "request (the server's limit is MMOE_MAX_BODY_BYTES)",
        {"max_body_bytes": 65536},
    )


def test_predict_rejects_an_unknown_model(trained_client: TestClient) -> None:
    response = trained_client.post("/predict", json={"instances": [ROW], "model": "mmoe-big"})
    models = ["mmoe-adult", "mmoe-synthetic", "omoe-tiny", "shared-bottom-tiny"]
    assert_error(
        response,
        404,
        "model_not_found",
        f"no model named 'mmoe-big'; available models: {models}{NOT_LOADED_HINT}",
        {"model": "mmoe-big", "available": models},
    )


def test_predict_rejects_an_unknown_version(trained_client: TestClient) -> None:
    response = trained_client.post("/predict", json={"instances": [ROW], "version": 3})
    assert_error(
        response,
        404,
        "model_not_found",
        f"model 'mmoe-synthetic' has no version 3; available versions: [1]{NOT_LOADED_HINT}",
        {"model": "mmoe-synthetic", "version": 3, "available": [1]},
    )


@pytest.mark.parametrize(
    ("path", "message", "details"),
    [
        ("/models/nope", "no model named 'nope'; available models: "
         f"['mmoe-adult', 'mmoe-synthetic', 'omoe-tiny', 'shared-bottom-tiny']{NOT_LOADED_HINT}",
         {"model": "nope",
          "available": ["mmoe-adult", "mmoe-synthetic", "omoe-tiny", "shared-bottom-tiny"]}),
        ("/models/omoe-tiny/versions/2", "model 'omoe-tiny' has no version 2; available "
         f"versions: [1]{NOT_LOADED_HINT}", {"model": "omoe-tiny", "version": 2, "available": [1]}),
        ("/models/omoe-tiny/versions/v1", "model 'omoe-tiny' has no version 'v1'; a version is a "
         "whole number from 1 to 2147483647 with no leading zero, or 'latest' (available "
         "versions: [1])", {"model": "omoe-tiny", "version": "v1", "available": [1]}),
        *[(f"/models/omoe-tiny/versions/{segment}", f"model 'omoe-tiny' has no version "
           f"{segment!r}; a version is a whole number from 1 to 2147483647 with no leading zero, "
           "or 'latest' (available versions: [1])",
           {"model": "omoe-tiny", "version": segment, "available": [1]})
          for segment in ("01", "0", "+1", "1.0", "2147483648")],
    ],
)  # fmt: skip
def test_model_routes_reject_unknown_models_and_versions(
    trained_client: TestClient, path: str, message: str, details: Any
) -> None:
    assert_error(trained_client.get(path), 404, "model_not_found", message, details)


def test_unknown_routes_answer_404_in_the_error_shape(trained_client: TestClient) -> None:
    response = trained_client.get("/v1/predict")
    assert_error(
        response,
        404,
        "not_found",
        "no route for GET /v1/predict; the API is described at /docs",
        None,
    )


def test_wrong_methods_answer_405_in_the_error_shape(trained_client: TestClient) -> None:
    response = trained_client.get("/predict")
    assert_error(
        response, 405, "method_not_allowed", "GET is not allowed on /predict; allowed: POST", None
    )
    assert response.headers["allow"] == "POST"
