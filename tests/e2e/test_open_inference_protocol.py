"""Acceptance of the Open Inference Protocol (KServe v2) with the ecosystem's own clients, against a
real uvicorn process: NVIDIA's `tritonclient.http` and KServe's `InferenceRESTClient`. Their
numbers must be /predict's and those of onnxruntime called directly, bit for bit, whether the
tensors travel as JSON or as binary data."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import onnxruntime
import orjson
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from tritonclient.utils import InferenceServerException

from service.repository import NOT_LOADED_HINT
from tests.support import REPO_ROOT, bundled_version_dir

MODEL = "mmoe-synthetic"
D = 100


@pytest.fixture(scope="module")
def reference() -> onnxruntime.InferenceSession:
    model = str(bundled_version_dir() / "model.onnx")
    return onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])


@pytest.fixture
def client(server: Any) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield connection
    connection.close()


def rows(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.5, (count, D)).astype(np.float32)


def triton_input(features: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("features", list(features.shape), "FP32")
    tensor.set_data_from_numpy(features, binary_data=binary)
    return tensor


def predict(server: Any, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """/predict's answer as the model's two tensors: predictions [n, T], gates [n, T, E]."""
    body = httpx.post(f"{server.url}/predict", json={"instances": features.tolist()}).json()
    tasks = body["tasks"].values()
    predictions = np.array([task["predictions"] for task in tasks], dtype=np.float32).T
    gates = np.array([task["gate_weights"] for task in tasks], dtype=np.float32)
    return predictions, gates.transpose(1, 0, 2)


def test_server_and_model_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready(MODEL, "2")
    assert not client.is_model_ready("no-such-model")


def test_metadata_lists_every_tensor_of_the_graph(client: triton.InferenceServerClient) -> None:
    server = client.get_server_metadata()
    assert server["name"] == "mmoe-service" and server["extensions"] == ["binary_tensor_data"]
    assert client.get_model_metadata(MODEL) == {
        "name": MODEL,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, D]}],
        "outputs": [
            {"name": "predictions", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "gates", "datatype": "FP32", "shape": [-1, 2, 8]},
        ],
    }
    assert client.get_model_metadata(MODEL, "1") == client.get_model_metadata(MODEL)


@pytest.mark.parametrize("binary_inputs", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_outputs", [True, False], ids=["binary-out", "json-out"])
def test_infer_equals_predict_and_onnxruntime_bit_for_bit(
    server: Any,
    client: triton.InferenceServerClient,
    reference: onnxruntime.InferenceSession,
    binary_inputs: bool,
    binary_outputs: bool,
) -> None:
    features = rows(3, 17)
    outputs = [
        triton.InferRequestedOutput(name, binary_data=binary_outputs)
        for name in ("predictions", "gates")
    ]
    result = client.infer(MODEL, [triton_input(features, binary_inputs)], outputs=outputs)
    answered = {name: result.as_numpy(name) for name in ("predictions", "gates")}
    names = ["predictions", "gates"]
    direct = dict(zip(names, reference.run(None, {"features": features}), strict=True))
    from_predict = dict(zip(names, predict(server, features), strict=True))
    for name, array in answered.items():
        assert array.dtype == np.float32 and array.shape == direct[name].shape
        assert array.tobytes() == direct[name].tobytes(), name
        assert array.tobytes() == from_predict[name].tobytes(), name
        has_binary = "parameters" in result.get_output(name)
        assert has_binary is binary_outputs


def test_without_requested_outputs_every_output_comes_back_as_binary(
    client: triton.InferenceServerClient, reference: onnxruntime.InferenceSession
) -> None:
    features = rows(4, 5)
    result = client.infer(MODEL, [triton_input(features, True)], model_version="1")
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == "1"
    assert [output["name"] for output in response["outputs"]] == ["predictions", "gates"]
    assert all("binary_data_size" in output["parameters"] for output in response["outputs"])
    _, gates = reference.run(None, {"features": features})
    assert result.as_numpy("gates").tobytes() == gates.tobytes()


def test_only_the_requested_outputs_are_returned_with_id_and_parameters(
    client: triton.InferenceServerClient,
) -> None:
    result = client.infer(
        MODEL,
        [triton_input(rows(5, 2), True)],
        outputs=[triton.InferRequestedOutput("predictions")],
        request_id="req-7",
        parameters={"tenant": "blue", "sample": 3},
    )
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["parameters"] == {"tenant": "blue", "sample": 3}
    assert [output["name"] for output in response["outputs"]] == ["predictions"]
    assert result.as_numpy("gates") is None


def test_compressed_requests_are_answered(
    client: triton.InferenceServerClient, reference: onnxruntime.InferenceSession
) -> None:
    features = rows(6, 9)
    for algorithm in ("gzip", "deflate"):
        result = client.infer(
            MODEL, [triton_input(features, True)], request_compression_algorithm=algorithm
        )
        predictions, _ = reference.run(None, {"features": features})
        assert result.as_numpy("predictions").tobytes() == predictions.tobytes()


@pytest.mark.parametrize(
    ("features", "model", "status", "message"),
    [
        (
            rows(1, 2)[:, :99],
            MODEL,
            "400",
            "input 'features' has shape [2, 99], but model 'mmoe-synthetic' version 1 takes "
            "shape [-1, 100] (-1: any number of rows)",
        ),
        (
            rows(1, 65),
            MODEL,
            "413",
            "65 rows in one request, the limit is 64; split the request into smaller ones (the "
            "server's limit is MMOE_MAX_INSTANCES)",
        ),
        (
            rows(1, 1),
            "mmoe-synthetic-v2",
            "404",
            "no model named 'mmoe-synthetic-v2'; available models: ['mmoe-adult', "
            f"'mmoe-synthetic']{NOT_LOADED_HINT}",
        ),
    ],
)
def test_errors_reach_the_client_in_the_protocols_shape(
    client: triton.InferenceServerClient,
    features: np.ndarray,
    model: str,
    status: str,
    message: str,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer(model, [triton_input(features, True)])
    assert raised.value.status() == status
    assert raised.value.message() == message


def raw_infer(server: Any, body: bytes, header_length: int | None) -> httpx.Response:
    headers = (
        {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    )
    return httpx.post(f"{server.url}/v2/models/{MODEL}/infer", content=body, headers=headers)


def binary_request(tensor: dict[str, Any], data: bytes) -> tuple[bytes, int]:
    header = orjson.dumps({"inputs": [tensor]})
    return header + data, len(header)


FEATURES_1 = {
    "name": "features",
    "shape": [1, D],
    "datatype": "FP32",
    "parameters": {"binary_data_size": 4 * D},
}


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (
            *binary_request(FEATURES_1, rows(0, 1).tobytes()[:-4]),
            "input 'features': binary_data_size is 400 bytes, but only 396 bytes of binary data "
            "are left in the body; the body is shorter than its tensors",
        ),
        (
            binary_request(FEATURES_1, rows(0, 1).tobytes())[0],
            10_000,
            "Inference-Header-Content-Length is 10000, but the body has only "
            f"{binary_request(FEATURES_1, rows(0, 1).tobytes())[1] + 400} bytes; it must give "
            "the length of the JSON object that starts the body, the binary tensor data "
            "following it",
        ),
        (
            *binary_request({**FEATURES_1, "datatype": "FLOAT32"}, rows(0, 1).tobytes()),
            "input 'features' has the unknown datatype 'FLOAT32'; the protocol's datatypes are "
            "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, "
            "BYTES",
        ),
        (
            *binary_request({**FEATURES_1, "name": "feature"}, rows(0, 1).tobytes()),
            "missing input 'features': model 'mmoe-synthetic' version 1 takes features (FP32 "
            "[-1, 100])",
        ),
        (
            orjson.dumps(
                {
                    "inputs": [
                        {"name": "features", "shape": [1, D], "datatype": "FP32", "data": [0] * D},
                        {"name": "categorical", "shape": [1, 1], "datatype": "INT64", "data": [3]},
                    ]
                }
            ),
            None,
            "model 'mmoe-synthetic' version 1 has no input 'categorical'; its inputs are "
            "features (FP32 [-1, 100])",
        ),
        (
            orjson.dumps({"inputs": [], "id": "x"}),
            None,
            "invalid inference request: inputs: List should have at least 1 item after "
            "validation, not 0",
        ),
    ],
    ids=[
        "tensor-too-short",
        "header-beyond-body",
        "unknown-datatype",
        "missing-input",
        "unknown-input",
        "no-inputs",
    ],
)
def test_malformed_binary_requests_get_a_400_naming_the_problem(
    server: Any, body: bytes, header_length: int | None, message: str
) -> None:
    response = raw_infer(server, body, header_length)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": message}


def test_no_request_crashes_the_worker(server: Any) -> None:
    """Garbage of every kind, then a good request: the same process answers it."""
    bodies: list[tuple[bytes, int | None]] = [
        (b"", None),
        (b"\xff\xfe\x00", None),
        (b"{}", 0),
        (b"{}", 2),
        (b'{"inputs": [{"name": "features", "shape": [1e30], "datatype": "FP32"}]}', None),
        (orjson.dumps({"inputs": [{**FEATURES_1, "shape": [2**62, D]}]}), None),
        (orjson.dumps({"inputs": [{**FEATURES_1, "parameters": {"binary_data_size": -4}}]}), None),
        (
            orjson.dumps(
                {"inputs": [{"name": "features", "shape": [0, D], "datatype": "FP32", "data": []}]}
            ),
            None,
        ),
        (
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "shape": [1, D],
                            "datatype": "BOOL",
                            "data": [True] * D,
                        }
                    ]
                }
            ),
            None,
        ),
        (orjson.dumps({"inputs": "features"}), None),
    ]
    for body, header_length in bodies:
        response = raw_infer(server, body, header_length)
        assert response.status_code == 400, (body[:80], response.text)
        assert set(response.json()) == {"error"}
    assert server.process.poll() is None
    features = rows(9, 1)
    good = raw_infer(server, *binary_request(FEATURES_1, features.tobytes()))
    assert good.status_code == 200


def test_kserve_rest_client_speaks_to_the_service(
    server: Any, reference: onnxruntime.InferenceSession
) -> None:
    features = rows(11, 6)
    predictions, gates = reference.run(None, {"features": features})

    async def session() -> list[Any]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            answers: list[Any] = [
                await client.is_server_live(server.url),
                await client.is_server_ready(server.url),
                await client.is_model_ready(server.url, MODEL),
            ]
            for binary in (True, False):
                tensor = InferInput("features", list(features.shape), "FP32")
                tensor.set_data_from_numpy(features, binary_data=binary)
                request = InferRequest(
                    model_name=MODEL,
                    infer_inputs=[tensor],
                    request_id=f"kserve-{binary}",
                    parameters={"binary_data_output": binary},
                )
                answers.append(await client.infer(server.url, request, model_name=MODEL))
            return answers
        finally:
            await client.close()

    live, ready, model_ready, *responses = asyncio.run(session())
    assert (live, ready, model_ready) == (True, True, True)
    for response in responses:
        outputs = {output.name: output.as_numpy() for output in response.outputs}
        assert outputs["predictions"].tobytes() == predictions.tobytes()
        assert outputs["gates"].tobytes() == gates.tobytes()
    assert [response.id for response in responses] == ["kserve-True", "kserve-False"]


def test_the_openapi_document_describes_the_protocol(server: Any) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    infer = schema["paths"]["/v2/models/{name}/infer"]["post"]
    body = infer["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/InferenceRequest"}
    assert "application/octet-stream" in body
    request_schema = schema["components"]["schemas"]["InferenceRequest"]
    assert request_schema["examples"][0]["inputs"][0]["name"] == "features"
    assert set(infer["responses"]) == {"200", "400", "401", "404", "413", "500", "503"}


def test_the_documented_example_request_is_answered(server: Any) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    example = schema["components"]["schemas"]["InferenceRequest"]["examples"][0]
    response = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json=example)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "42"
    assert [output["name"] for output in body["outputs"]] == ["predictions", "gates"]


def api_doc_section() -> str:
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    start = text.index("## Open Inference Protocol (KServe v2)")
    return text[start : text.index("\n## ", start + 1)]


def test_the_api_docs_python_example_runs(server: Any) -> None:
    code = api_doc_section().split("```python\n")[1].split("```")[0]
    code = code.replace('"127.0.0.1:8000"', repr(server.url.removeprefix("http://")))
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)
    assert namespace["result"].as_numpy("predictions").shape == (32, 2)
    assert namespace["result"].as_numpy("gates").shape == (32, 2, 8)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_api_docs_curl_example_answers_as_shown(server: Any) -> None:
    block = api_doc_section().split("```bash\n")[1].split("```")[0]
    script = "\n".join(line for line in block.splitlines() if not line.startswith("#"))
    script = script.replace("localhost:8000", server.url)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    body = orjson.loads(result.stdout)
    assert body["model_name"] == MODEL and body["model_version"] == "1"
    assert [(o["name"], o["datatype"], o["shape"]) for o in body["outputs"]] == [
        ("predictions", "FP32", [1, 2])
    ]


def test_a_table_model_takes_its_categorical_codes_as_a_second_tensor(
    client: triton.InferenceServerClient,
) -> None:
    metadata = client.get_model_metadata("mmoe-adult")
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("features", "FP32", [-1, 6]),
        ("categorical", "INT64", [-1, 7]),
    ]
    rng = np.random.default_rng(12)
    features = rng.normal(40.0, 10.0, (9, 6)).astype(np.float32)
    features[0, 0] = np.nan  # a missing number: the graph imputes it
    codes = rng.integers(0, 7, (9, 7)).astype(np.int64)  # 0: unknown, 1: missing, 2...: values
    numbers = triton_input(features, True)
    categories = triton.InferInput("categorical", [9, 7], "INT64")
    categories.set_data_from_numpy(codes, binary_data=False)
    result = client.infer("mmoe-adult", [numbers, categories])
    graph = str(bundled_version_dir("mmoe-adult") / "model.onnx")
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    predictions, gates = session.run(None, {"features": features, "categorical": codes})
    assert result.as_numpy("predictions").tobytes() == predictions.tobytes()
    assert result.as_numpy("gates").tobytes() == gates.tobytes()
