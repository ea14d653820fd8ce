"""The protocol's routes in process, over every model kind (MMoE, OMoE, Shared-Bottom): v2 answers
/predict's numbers, errors take the protocol's shape (and only on /v2), and the OpenAPI examples
are the bodies the service really answers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from service.app import create_app, load_repository
from service.features import FeatureEncoder
from service.inference import BatchReport, InferenceRunner, RunnerOptions
from service.model import ServedModel
from service.model_card import ModelCard
from service.oip.types import ProtocolErrorResponse
from service.repository import NOT_LOADED_HINT
from service.settings import Settings
from tests.service.conftest import REQUEST_ID, TINY_MODELS, settings_for

MODELS = ["mmoe-synthetic", "mmoe-adult", *TINY_MODELS]


DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def binary_infer(
    client: TestClient, model: str, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": DATATYPES[array.dtype],
                    "parameters": {"binary_data_size": array.nbytes},
                }
                for name, array in inputs.items()
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    response = client.post(
        f"/v2/models/{model}/infer",
        content=header + b"".join(array.tobytes() for array in inputs.values()),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    described = orjson.loads(response.content[:length])
    arrays, offset = {}, length
    for output in described["outputs"]:
        size = output["parameters"]["binary_data_size"]
        array = np.frombuffer(response.content[offset : offset + size], dtype=np.float32)
        arrays[output["name"]] = array.reshape(output["shape"])
        offset += size
    assert offset == len(response.content)
    return arrays


def instances_and_feeds(
    client: TestClient, model: str, rows: int
) -> tuple[list[Any], dict[str, np.ndarray]]:
    """/predict instances for `model` and the same rows as the graph's input tensors (for a
    table model: named features, category strings -> codes by the card's vocabularies, an
    unknown category, a missing number and a missing category among them)."""
    card = ModelCard.model_validate(client.get(f"/models/{model}/versions/latest").json()["card"])
    rng = np.random.default_rng(5)
    features = rng.normal(size=(rows, card.input.dim)).astype(np.float32)
    if card.categorical is None:
        return features.tolist(), {"features": features}
    instances: list[Any] = []
    for row in features.tolist():
        instance: dict[str, Any] = dict(zip(card.input.feature_names or [], row, strict=True))
        for feature in card.categorical.features:
            instance[feature.name] = str(rng.choice(feature.vocabulary))
        instances.append(instance)
    instances[0]["age"] = None  # missing: the graph imputes it
    first = card.categorical.features[0].name
    instances[1][first] = "never seen in training"
    instances[2][first] = None
    return instances, FeatureEncoder(card).encode(instances)


@pytest.mark.parametrize("model", MODELS)
def test_v2_and_predict_agree_for_every_model(trained_client: TestClient, model: str) -> None:
    instances, feeds = instances_and_feeds(trained_client, model, 7)
    answered = binary_infer(trained_client, model, feeds)
    predicted = trained_client.post("/predict", json={"instances": instances, "model": model})
    assert predicted.status_code == 200, predicted.text
    tasks = list(predicted.json()["tasks"].values())
    predictions = np.array([task["predictions"] for task in tasks], dtype=np.float32).T
    assert answered["predictions"].tobytes() == predictions.tobytes()
    if model == "shared-bottom-tiny":
        assert list(answered) == ["predictions"]
        assert all(task["gate_weights"] is None for task in tasks)
    else:
        gates = answered["gates"]
        for k, task in enumerate(tasks):
            shared = 0 if gates.shape[1] == 1 else k  # OMoE: one gate for every task
            expected = np.array(task["gate_weights"], dtype=np.float32)
            assert gates[:, shared, :].tobytes() == expected.tobytes()


def test_a_table_models_metadata_lists_both_inputs(trained_client: TestClient) -> None:
    metadata = trained_client.get("/v2/models/mmoe-adult").json()
    assert metadata["inputs"] == [
        {"name": "features", "datatype": "FP32", "shape": [-1, 6]},
        {"name": "categorical", "datatype": "INT64", "shape": [-1, 7]},
    ]


def test_model_metadata_follows_each_graph(trained_client: TestClient) -> None:
    outputs = {
        model: trained_client.get(f"/v2/models/{model}/versions/latest").json()["outputs"]
        for model in MODELS
    }
    assert outputs["shared-bottom-tiny"] == [
        {"name": "predictions", "datatype": "FP32", "shape": [-1, 2]}
    ]
    assert outputs["omoe-tiny"][1] == {"name": "gates", "datatype": "FP32", "shape": [-1, 1, 8]}


def test_errors_on_v2_take_the_protocols_shape_and_only_there(trained_client: TestClient) -> None:
    v2 = trained_client.get("/v2/models/nope")
    assert v2.status_code == 404
    assert v2.json() == {
        "error": "no model named 'nope'; available models: ['mmoe-adult', 'mmoe-synthetic', "
        f"'omoe-tiny', 'shared-bottom-tiny']{NOT_LOADED_HINT}"
    }
    assert v2.headers["x-request-id"] == REQUEST_ID
    own = trained_client.get("/models/nope")
    assert own.json()["error"]["code"] == "model_not_found"
    wrong_method = trained_client.post("/v2/models/mmoe-synthetic/ready")
    assert wrong_method.json() == {
        "error": "POST is not allowed on /v2/models/mmoe-synthetic/ready; allowed: GET, HEAD"
    }
    assert wrong_method.headers["allow"] == "GET, HEAD"  # sorted: Starlette's is in set order
    too_large = trained_client.post("/v2/models/mmoe-synthetic/infer", content=b" " * 65537)
    assert (too_large.status_code, too_large.json()) == (
        413,
        {
            "error": "the request body (65537 bytes) is larger than the limit of 65536 bytes; "
            "send fewer instances per request (the server's limit is MMOE_MAX_BODY_BYTES)"
        },
    )
    bad_version = trained_client.get("/v2/models/mmoe-synthetic/versions/01")
    assert bad_version.status_code == 404
    assert bad_version.json()["error"].startswith(
        "model 'mmoe-synthetic' has no version '01'; a version is a whole number"
    )


class ExplodingRunner:
    async def run(self, model: ServedModel, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        raise RuntimeError("boom")


def examples_of(schema: dict[str, Any], path: str, status: str) -> dict[str, Any]:
    operation = schema["paths"][path]
    operation = operation.get("post") or operation["get"]
    content = operation["responses"][status]["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/ProtocolErrorResponse"}
    return {name: example["value"] for name, example in content["examples"].items()}


def test_every_v2_error_example_is_a_body_the_service_answers(bundled_copy: Path) -> None:
    settings = Settings(model_repository=bundled_copy, provider="cpu", intra_op_threads=1)
    repository = load_repository(settings)
    client = TestClient(create_app(settings, repository))
    schema = client.get("/openapi.json").json()
    infer = "/v2/models/{name}/infer"
    row = {"name": "features", "shape": [1, 100], "datatype": "FP32"}
    header = orjson.dumps({"inputs": [{**row, "parameters": {"binary_data_size": 400}}]})

    def post(body: bytes | dict[str, Any], header_length: int | None = None) -> Any:
        headers = (
            {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
        )
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return client.post("/v2/models/mmoe-synthetic/infer", content=content, headers=headers)

    answers = {
        "binary_tensor_shorter_than_its_shape": post(header + b"\0" * 396, len(header)),
        "wrong_shape": post({"inputs": [{**row, "shape": [1, 99], "data": [0.5] * 99}]}),
        "missing_input": post({"inputs": [{**row, "name": "x", "data": [0.5] * 100}]}),
        "unknown_datatype": post({"inputs": [{**row, "datatype": "FLOAT32", "data": [0.5]}]}),
    }
    examples = examples_of(schema, infer, "400")
    assert set(examples) == set(answers)
    for name, response in answers.items():
        assert (response.status_code, response.json()) == (400, examples[name]), name

    too_many = post({"inputs": [{**row, "shape": [1025, 100], "data": [0.5] * 102500}]})
    assert too_many.json() == examples_of(schema, infer, "413")["too_many_rows"]
    not_found = examples_of(schema, "/v2/models/{name}/versions/{version}/infer", "404")
    assert client.post("/v2/models/mmoe-synthetic-v2/infer").json() == not_found["unknown_model"]
    assert (
        client.post("/v2/models/mmoe-synthetic/versions/7/infer").json()
        == not_found["unknown_version"]
    )
    starting = TestClient(create_app(settings))  # no start-up: not ready
    ready_503 = examples_of(schema, "/v2/health/ready", "503")
    assert starting.get("/v2/health/ready").status_code == 503
    assert starting.get("/v2/health/ready").json() == ready_503["models_still_loading"]

    full = InferenceRunner(RunnerOptions(max_queued=0))  # refuses every request: 0 may wait
    with TestClient(create_app(settings, repository, full)) as at_capacity:
        refused = at_capacity.post(
            "/v2/models/mmoe-synthetic/infer", json={"inputs": [{**row, "data": [0.5] * 100}]}
        )
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
    capacity = examples_of(schema, infer, "503")["at_capacity"]["error"]
    assert refused.json() == {"error": capacity.replace("256 requests", "0 requests")}

    exploding = TestClient(
        create_app(settings, repository, ExplodingRunner()),
        headers={"X-Request-ID": "5f0c2a8e9d3b4c71a2e6f0b9c8d7e6a5"},
        raise_server_exceptions=False,
    )
    failed = exploding.post(
        "/v2/models/mmoe-synthetic/infer", json={"inputs": [{**row, "data": [0.5] * 100}]}
    )
    assert failed.status_code == 500
    assert failed.json() == examples_of(schema, infer, "500")["unexpected_failure"]
    for examples in (examples_of(schema, infer, status) for status in ("400", "404", "413")):
        for example in examples.values():
            ProtocolErrorResponse.model_validate(example)


def test_v2_and_predict_requests_share_the_micro_batching_runner(bundled_copy: Path) -> None:
    """A /predict request and a /v2 request for the same model, sent together, run as one
    onnxruntime call: the protocol's route goes through the service's one inference runner."""
    settings = Settings(model_repository=bundled_copy, provider="cpu", intra_op_threads=1)
    reports: list[BatchReport] = []
    runner = InferenceRunner(RunnerOptions(max_batch_delay_s=0.5), observer=reports.append)
    app = create_app(settings, load_repository(settings), runner)
    features = np.random.default_rng(8).normal(size=(3, 100)).astype(np.float32)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": [3, 100],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": features.nbytes},
                }
            ]
        }
    )

    async def scenario() -> list[httpx.Response]:
        await runner.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = await asyncio.gather(
                client.post("/predict", json={"instances": features.tolist()}),
                client.post(
                    "/v2/models/mmoe-synthetic/infer",
                    content=header + features.tobytes(),
                    headers={"Inference-Header-Content-Length": str(len(header))},
                ),
            )
        await runner.aclose()
        return list(answers)

    predicted, inferred = asyncio.run(scenario())
    assert (predicted.status_code, inferred.status_code) == (200, 200)
    assert [(report.requests, report.rows, report.error) for report in reports] == [(2, 6, None)]
    by_predict = predicted.json()["tasks"]["task_1"]["predictions"]
    by_v2 = inferred.json()["outputs"][0]
    assert by_v2["name"] == "predictions"
    # the same rows at another place in one call: equal to float32 rounding, not bit for bit
    np.testing.assert_allclose(by_v2["data"][::2], by_predict, rtol=1e-6)


def test_the_api_key_refusal_on_v2_is_in_the_protocols_shape(bundled_copy: Path) -> None:
    key = "test-key-0123456789abcdef"
    settings = settings_for(bundled_copy, api_key=key, inference_needs_key=True)
    with TestClient(create_app(settings, load_repository(settings))) as client:
        schema = client.get("/openapi.json").json()
        examples = examples_of(schema, "/v2/models/{name}/infer", "401")
        body = {"inputs": [{"name": "features", "shape": [1, 100], "datatype": "FP32",
                            "data": [0.5] * 100}]}  # fmt: skip
        missing = client.post("/v2/models/mmoe-synthetic/infer", json=body)
        assert (missing.status_code, missing.json()) == (401, examples["no_API_key"])
        assert missing.headers["www-authenticate"] == 'Bearer realm="mmoe-service"'
        wrong = client.get("/v2/models/mmoe-synthetic", headers={"X-API-Key": "nope"})
        assert (wrong.status_code, wrong.json()) == (401, examples["wrong_API_key"])
        assert client.get("/v2/health/ready").status_code == 200  # probes stay open
        answered = client.post(
            "/v2/models/mmoe-synthetic/infer", json=body, headers={"X-API-Key": key}
        )
        assert answered.status_code == 200
