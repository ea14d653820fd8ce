"""What a hostile probe sent, answered as a client's mistake: bounded work, bounded echoes, no
500, no null predictions, no redirect built from the Host header, and log lines that stay one
line."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app, load_repository
from service.middleware import internal_error_body
from service.settings import Settings
from tests.onnx_edits import amplify_predictions

ROW = [0.5] * 100
SMALL_ANSWER = 2048  # bytes: every refusal below fits, whatever the request's size


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from tests.support import copy_bundled

    root = copy_bundled(tmp_path_factory.mktemp("models"))
    settings = Settings(model_repository=root, provider="cpu", intra_op_threads=1)
    with TestClient(create_app(settings, load_repository(settings))) as http:
        yield http


def error(response: object) -> dict[str, object]:
    body: dict[str, object] = response.json()["error"]  # type: ignore[attr-defined]
    return body


# Item 2: versions beyond any integer type, and every echoed value bounded.


@pytest.mark.parametrize("version", [str(2**64), str(2**64 + 1), "9" * 4301, "9" * 60_000])
def test_a_huge_version_is_a_small_404(client: TestClient, version: str) -> None:
    response = client.get(f"/models/mmoe-synthetic/versions/{version}")
    assert response.status_code == 404
    assert len(response.content) < SMALL_ANSWER
    assert error(response)["details"] == {
        "model": "mmoe-synthetic",
        "version": version
        if len(version) <= 64
        else f"{version[:64]}... ({len(version) - 64} more characters)",
        "available": [1],
    }


def test_a_4_mb_model_name_is_a_small_404(client: TestClient) -> None:
    name = "m" * 4_000_000
    response = client.post("/predict", json={"instances": [ROW], "model": name})
    assert response.status_code == 404
    assert len(response.content) < SMALL_ANSWER
    assert error(response)["details"] == {
        "model": "m" * 64 + "... (3999936 more characters)",
        "available": ["mmoe-adult", "mmoe-synthetic"],
    }


def test_an_unknown_route_quotes_a_long_path_cut_short(client: TestClient) -> None:
    response = client.get("/" + "p" * 60_000)
    assert response.status_code == 404
    assert len(response.content) < SMALL_ANSWER


def test_a_newline_in_a_logged_path_cannot_forge_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = {"method": "GET", "path": "/models/x\nCRITICAL forged line/versions/1"}
    with caplog.at_level(logging.ERROR):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            internal_error_body(scope, "log-1")
    [record] = caplog.records
    assert record.getMessage() == (
        "unhandled error in GET /models/x\\nCRITICAL forged line/versions/1 (request id log-1)"
    )


# Item 7: an object of 500,000 unknown keys: linear work, and an answer of a few hundred bytes.


def test_half_a_million_unknown_keys_are_counted_not_echoed(client: TestClient) -> None:
    instance = {f"k{i}": 0 for i in range(500_000)}
    response = client.post("/predict", content=json.dumps({"instances": [instance]}))
    assert response.status_code == 422
    assert len(response.content) < SMALL_ANSWER
    assert error(response)["details"] == {
        "instance": 0,
        "unknown": [f"k{i}" for i in range(10)],
        "unknown_count": 500_000,
    }
    assert error(response)["message"].startswith(  # type: ignore[union-attr]
        "instance 0 has unknown features ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'k8', "
        "'k9'] and 499990 more; the model's features are"
    )


def test_many_unknown_fields_in_the_body_are_quoted_ten_at_most(client: TestClient) -> None:
    body = {"instances": [ROW]} | {f"field{i:06d}": 1 for i in range(100_000)}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert len(response.content) < SMALL_ANSWER
    assert error(response)["details"] == {
        "unknown": [f"field{i:06d}" for i in range(10)],
        "allowed": ["instances", "return_gates", "model", "version"],
    }


# Item 3: a value float32 holds, but that overflows inside the graph, is never a 200 of nulls.


def test_values_beyond_the_feature_magnitude_bound_are_refused(client: TestClient) -> None:
    row = [3.4e38] * 10 + [0.0] * 90  # once: 200 with a null prediction
    response = client.post("/predict", json={"instances": [ROW, row]})
    assert response.status_code == 422
    assert error(response)["code"] == "feature_out_of_range"
    assert error(response)["message"] == (
        "instance 1, feature 0 (x_1) is 3.4e+38, beyond the largest magnitude a feature may have "
        "(1e+12); send values in the units the model was trained on"
    )


def test_outputs_that_overflow_are_a_422_naming_the_instances(bundled_copy: Path) -> None:
    amplify_predictions(bundled_copy / "mmoe-synthetic" / "1")  # outputs times 1e30
    settings = Settings(model_repository=bundled_copy, provider="cpu", intra_op_threads=1)
    with TestClient(create_app(settings, load_repository(settings))) as http:
        extreme = [1e12] * 100  # allowed, and the graph's outputs overflow float32
        response = http.post("/predict", json={"instances": [ROW, extreme, ROW, extreme]})
        assert response.status_code == 422
        assert error(response)["code"] == "non_finite_output"
        assert error(response)["details"] == {
            "instance": 1,
            "instances": [1, 3],
            "instance_count": 2,
        }
        assert "null" not in response.text
        assert http.post("/predict", json={"instances": [ROW]}).status_code == 200


# Item 10: no redirect, so nothing taken from the Host header.


@pytest.mark.parametrize("path", ["/predict/", "/models/", "/health/live/"])
def test_a_trailing_slash_is_a_404_never_a_redirect(client: TestClient, path: str) -> None:
    headers = {"Host": "evil.example.com"}
    response = client.request("POST" if "predict" in path else "GET", path, headers=headers)
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil" not in response.text


# Item 9: HEAD wherever GET is.


@pytest.mark.parametrize(
    "path", ["/health/live", "/health/ready", "/models", "/models/mmoe-synthetic",
             "/models/mmoe-synthetic/versions/1", "/models/nope", "/openapi.json", "/docs",
             "/ui"],
)  # fmt: skip
def test_head_answers_what_get_answers_without_the_body(client: TestClient, path: str) -> None:
    get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_on_the_metrics_answers_200_without_a_body(client: TestClient) -> None:
    head = client.head("/metrics")  # (its length changes with every request counted)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"].startswith("text/plain")


# The Open Inference Protocol's routes (/v2) hold to the same bounds, in the protocol's
# {"error": "<message>"} shape.

FEATURES = {"name": "features", "datatype": "FP32", "shape": [1, 100], "data": ROW}
V2_INFER = "/v2/models/mmoe-synthetic/infer"


@pytest.mark.parametrize("suffix", ["", "/ready"])
def test_a_huge_version_on_v2_is_a_small_404(client: TestClient, suffix: str) -> None:
    version = "9" * 60_000
    response = client.get(f"/v2/models/mmoe-synthetic/versions/{version}{suffix}")
    assert response.status_code == 404
    assert response.json() == {
        "error": f"model 'mmoe-synthetic' has no version '{'9' * 64}... (59936 more characters)'"
        "; a version is a whole number from 1 to 2147483647 with no leading zero, or 'latest' "
        "(available versions: [1])"
    }


@pytest.mark.parametrize(
    ("body", "quoted"),
    [
        ({"inputs": [FEATURES | {"datatype": "x" * 1_000_000}]}, "unknown datatype 'xxx"),
        ({"inputs": [FEATURES], "outputs": [{"name": "o" * 1_000_000}]}, "no output 'ooo"),
        ({"inputs": [FEATURES, FEATURES | {"name": "n" * 1_000_000}]}, "no input 'nnn"),
        ({"inputs": [FEATURES | {"name": "n" * 1_000_000, "shape": "x"}]}, "inputs[0] ('nnn"),
    ],
    ids=["datatype", "output name", "input name", "name of an invalid input"],
)
def test_a_megabyte_name_on_v2_is_quoted_cut_short(
    client: TestClient, body: dict[str, object], quoted: str
) -> None:
    response = client.post(V2_INFER, json=body)
    assert response.status_code == 400
    assert len(response.content) < SMALL_ANSWER
    assert quoted in response.json()["error"]
    assert "... (999936 more characters)'" in response.json()["error"]


def test_many_invalid_inputs_on_v2_are_described_ten_at_most(client: TestClient) -> None:
    inputs = [{"name": f"in{i}", "datatype": "FP32", "shape": "x"} for i in range(20_000)]
    response = client.post(V2_INFER, json={"inputs": inputs})
    assert response.status_code == 400
    described = "; ".join(
        f"inputs[{i}] ('in{i}').shape: Input should be a valid list" for i in range(10)
    )
    assert response.json() == {
        "error": f"invalid inference request: {described}; and 19990 more problems"
    }


def test_outputs_that_overflow_on_v2_are_a_400_never_nulls(client: TestClient) -> None:
    response = client.post(V2_INFER, json={"inputs": [FEATURES | {"data": [3.4e38] * 100}]})
    assert response.status_code == 400  # once: 200 with "data": [null, null]
    assert response.json() == {
        "error": "the model's outputs for instance(s) [0] are not finite numbers (they "
        "overflowed inside the model, most likely from extreme feature values); send values in "
        "the range the model was trained on"
    }


def test_bodies_over_the_budget_on_v2_are_a_503_in_the_protocols_shape(
    client: TestClient,
) -> None:
    bodies = client.app.state.bodies  # type: ignore[attr-defined]
    held, bodies.held = bodies.held, bodies.limits.max_inflight_bytes - 100  # others' uploads
    try:
        response = client.post(V2_INFER, json={"inputs": [FEATURES]})
    finally:
        bodies.held = held
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"].startswith(
        "the server is holding as many request bodies as it may at once; retry shortly"
    )
    assert bodies.held == held  # what the refused request counted is given back
    assert client.post(V2_INFER, json={"inputs": [FEATURES]}).status_code == 200
    assert bodies.held == held


def test_a_compressed_v2_body_counts_its_decompressed_copy_against_the_budget(
    client: TestClient,
) -> None:
    plain = json.dumps({"inputs": [FEATURES]}).encode()
    body = gzip.compress(plain)
    bodies = client.app.state.bodies  # type: ignore[attr-defined]
    held = bodies.held
    bodies.held = bodies.limits.max_inflight_bytes - len(body) - len(plain) // 2  # others'
    try:
        response = client.post(V2_INFER, content=body, headers={"Content-Encoding": "gzip"})
    finally:
        bodies.held = held
    assert response.status_code == 503  # the compressed body fits, its decompressed copy not
    assert response.json()["error"].startswith("the server is holding as many request bodies")
    ok = client.post(V2_INFER, content=body, headers={"Content-Encoding": "gzip"})
    assert ok.status_code == 200
    assert bodies.held == held


@pytest.mark.parametrize("path", ["/v2/models/mmoe-synthetic/", "/v2/health/live/"])
def test_a_trailing_slash_on_v2_is_a_404_never_a_redirect(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"Host": "evil.example.com"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil" not in response.text


@pytest.mark.parametrize(
    "path", ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/mmoe-synthetic",
             "/v2/models/mmoe-synthetic/versions/1", "/v2/models/mmoe-synthetic/ready",
             "/v2/models/mmoe-synthetic/versions/1/ready", "/v2/models/nope"],
)  # fmt: skip
def test_head_on_v2_answers_what_get_answers_without_the_body(
    client: TestClient, path: str
) -> None:
    get, head = client.get(path), client.head(path)
    assert (head.status_code, head.content) == (get.status_code, b"")
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["content-type"] == get.headers["content-type"]
