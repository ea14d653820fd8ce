"""The Open Inference Protocol codec on its own: bodies in, arrays out, and the exact message of
every malformed request, naming the tensor."""

from __future__ import annotations

import gzip
import zlib

import numpy as np
import orjson
import pytest

from service.errors import InvalidInferenceRequestError, PayloadTooLargeError
from service.oip.codec import (
    DecodedRequest,
    decode_request,
    decompress,
    encode_response,
)

FEATURES = np.arange(6, dtype=np.float32).reshape(2, 3) / 7


def binary_body(header: dict, *tensors: bytes) -> tuple[bytes, str]:
    text = orjson.dumps(header)
    return text + b"".join(tensors), str(len(text))


def binary_features(size: int | None = None, name: str = "features") -> dict:
    size = FEATURES.nbytes if size is None else size
    return {
        "name": name,
        "shape": [2, 3],
        "datatype": "FP32",
        "parameters": {"binary_data_size": size},
    }


def json_features(data: object, datatype: str = "FP32", shape: list[int] | None = None) -> bytes:
    tensor = {"name": "features", "shape": shape or [2, 3], "datatype": datatype, "data": data}
    return orjson.dumps({"inputs": [tensor]})


def error_of(body: bytes, header_length: str | None = None) -> str:
    with pytest.raises(InvalidInferenceRequestError) as raised:
        decode_request(body, header_length)
    return raised.value.message


def test_binary_and_json_inputs_decode_to_the_same_array():
    binary = decode_request(*binary_body({"inputs": [binary_features()]}, FEATURES.tobytes()))
    as_json = decode_request(json_features(FEATURES.tolist()), None)
    flat = decode_request(json_features(FEATURES.ravel().tolist()), None)
    for request in (binary, as_json, flat):
        (tensor,) = request.inputs
        assert tensor.name == "features" and tensor.datatype.name == "FP32"
        assert tensor.array.dtype == np.float32 and tensor.array.shape == (2, 3)
        assert tensor.array.tobytes() == FEATURES.tobytes()


def test_the_request_envelope_is_read():
    body, length = binary_body(
        {
            "id": "42",
            "parameters": {"binary_data_output": True, "priority": 3},
            "inputs": [binary_features()],
            "outputs": [{"name": "gates", "parameters": {"binary_data": False}}, {"name": "p"}],
        },
        FEATURES.tobytes(),
    )
    request = decode_request(body, length)
    assert request.id == "42"
    assert request.parameters == {"binary_data_output": True, "priority": 3}
    assert request.outputs is not None
    assert [(choice.name, request.binary(choice)) for choice in request.outputs] == [
        ("gates", False),
        ("p", True),
    ]


def test_outputs_are_json_unless_binary_is_asked_for():
    request = decode_request(json_features(FEATURES.tolist()), None)
    assert request.outputs is None and request.binary(None) is False


def test_a_response_carries_json_and_binary_outputs_in_order():
    request = DecodedRequest("7", {"trace": "x"}, [], None, False)
    gates = np.full((2, 1, 2), 0.5, dtype=np.float32)
    encoded = encode_response(
        "m", 3, request, [("predictions", FEATURES, True), ("gates", gates, False)]
    )
    assert encoded.header_length is not None
    header = orjson.loads(encoded.body[: encoded.header_length])
    assert header == {
        "model_name": "m",
        "model_version": "3",
        "id": "7",
        "parameters": {"trace": "x"},
        "outputs": [
            {
                "name": "predictions",
                "datatype": "FP32",
                "shape": [2, 3],
                "parameters": {"binary_data_size": 24},
            },
            {"name": "gates", "datatype": "FP32", "shape": [2, 1, 2], "data": [0.5] * 4},
        ],
    }
    assert encoded.body[encoded.header_length :] == FEATURES.tobytes()


def test_a_json_only_response_has_no_header_length():
    request = DecodedRequest(None, None, [], None, False)
    encoded = encode_response("m", 1, request, [("predictions", FEATURES, False)])
    assert encoded.header_length is None
    data = orjson.loads(encoded.body)["outputs"][0]["data"]
    assert np.array(data, dtype=np.float32).tobytes() == FEATURES.tobytes()  # bit for bit


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (
            *binary_body({"inputs": [binary_features()]}, FEATURES.tobytes()[:-4]),
            "input 'features': binary_data_size is 24 bytes, but only 20 bytes of binary data "
            "are left in the body; the body is shorter than its tensors",
        ),
        (
            *binary_body({"inputs": [binary_features(20)]}, FEATURES.tobytes()[:-4]),
            "input 'features': binary_data_size is 20 bytes, but its shape [2, 3] of FP32 takes "
            "24 bytes (6 values of 4 bytes)",
        ),
        (
            *binary_body({"inputs": [binary_features()]}, FEATURES.tobytes() + b"\0\0"),
            "2 bytes of binary data follow the last binary input; the inputs' binary_data_size "
            "parameters must account for every byte after the JSON object "
            "(Inference-Header-Content-Length bytes)",
        ),
        (
            b'{"inputs": []}',
            "500",
            "Inference-Header-Content-Length is 500, but the body has only 14 bytes; it must give "
            "the length of the JSON object that starts the body, the binary tensor data "
            "following it",
        ),
        (
            b'{"inputs": []}',
            "-1",
            "Inference-Header-Content-Length must be the length in bytes of the JSON object that "
            "starts the body, a whole number; it is '-1'",
        ),
        (
            orjson.dumps({"inputs": [binary_features()]}),
            None,
            "input 'features' is sent as binary data (binary_data_size), but the request has no "
            "Inference-Header-Content-Length header to say where the JSON object ends and the "
            "binary data begins",
        ),
        (
            json_features([1.0] * 6, datatype="FLOAT32"),
            None,
            "input 'features' has the unknown datatype 'FLOAT32'; the protocol's datatypes are "
            "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, "
            "BYTES",
        ),
        (
            json_features(["a", "b"], datatype="BYTES", shape=[2]),
            None,
            "input 'features' is BYTES: this server's models take numeric tensors only",
        ),
        (
            json_features([1.0] * 5),
            None,
            "input 'features': its shape holds 6 values, but 'data' has 5",
        ),
        (
            json_features([1.0, 2.0, True, 4.0, 5.0, 6.0]),
            None,
            "input 'features': value 2 is true; FP32 values are numbers",
        ),
        (
            json_features([[1.0, 2.0, 3.0], [4.0, "5", 6.0]]),
            None,
            "input 'features': value 4 is a string (\"5\"); FP32 values are numbers",
        ),
        (
            json_features([1.0, 2.0, 3.0, 4.0, 5.0, 1e39]),
            None,
            "input 'features': value 5 (1e+39) is outside the range of FP32",
        ),
        (
            json_features([1, 2, 300, 4, 5, 6], datatype="INT8"),
            None,
            "input 'features': INT8 values lie in -128..127; 'data' holds values from 1 to 300",
        ),
        (
            json_features([1, 2, 3.5, 4, 5, 6], datatype="INT64"),
            None,
            "input 'features': value 2 is a number (3.5); INT64 values are whole numbers",
        ),
        (
            json_features({"x": 1}),
            None,
            "input 'features': 'data' must be an array of values, not an object",
        ),
        (
            orjson.dumps({"inputs": [{"name": "features", "shape": [2, 3], "datatype": "FP32"}]}),
            None,
            "input 'features' has no 'data' and no binary_data_size parameter; send its values "
            "as JSON 'data' or as binary tensor data",
        ),
        (
            orjson.dumps({"inputs": [{**binary_features(), "data": [0.0] * 6}]}),
            None,
            "input 'features' has both 'data' and a binary_data_size parameter; send its values "
            "one way",
        ),
        (
            orjson.dumps({"inputs": [binary_features("24")]}),
            None,
            "input 'features': the binary_data_size parameter must be a whole number of bytes, "
            "not '24'",
        ),
        (
            orjson.dumps({"inputs": [{"name": "features", "shape": [2, "3"], "datatype": "FP32"}]}),
            None,
            "invalid inference request: inputs[0] ('features').shape[1]: Input should be a valid "
            "integer",
        ),
        (
            orjson.dumps({"inputs": [{**binary_features(), "shape": [2**40] * 33}]}),
            None,
            "invalid inference request: inputs[0] ('features').shape: List should have at most "
            "32 items after validation, not 33",
        ),
        (
            orjson.dumps({"inputs": [{"shape": [2, 3], "datatype": "FP32", "data": []}]}),
            None,
            "invalid inference request: inputs[0].name: Field required",
        ),
        (
            orjson.dumps({"inputs": [binary_features(), binary_features()]}),
            None,
            "input 'features' appears twice; send it once",
        ),
        (
            orjson.dumps({"instances": [[1, 2, 3]]}),
            None,
            "invalid inference request: inputs: Field required",
        ),
        (
            b"[1, 2]",
            None,
            "the inference request must be a JSON object with 'inputs', e.g. {\"inputs\": "
            '[{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [0.1, 0.2, '
            "0.3]}]}",
        ),
        (
            json_features([1.0] * 6)[:-1] + b', "parameters": {"binary_data_output": "yes"}}',
            None,
            "the request: the binary_data_output parameter must be true or false, not a string "
            '("yes")',
        ),
        (
            orjson.dumps(
                {
                    "inputs": [{"name": "features", "shape": [1], "datatype": "FP32", "data": [1]}],
                    "outputs": [{"name": "predictions", "parameters": {"classification": 2}}],
                }
            ),
            None,
            "output 'predictions': the classification extension is not supported; request the "
            "tensor itself",
        ),
    ],
)
def test_malformed_requests_are_refused_naming_the_tensor(body, header_length, message):
    assert error_of(body, header_length) == message


def test_json_followed_by_binary_data_without_the_header_says_what_is_missing():
    body, _ = binary_body({"inputs": [binary_features()]}, FEATURES.tobytes())
    assert error_of(body).endswith(
        "; a body that carries binary tensor data needs the Inference-Header-Content-Length header"
    )


@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
def test_compressed_bodies_are_decompressed_within_the_limit(encoding, compress):
    body = json_features([0.5] * 6)
    assert decompress(compress(body), encoding, len(body)) == body
    with pytest.raises(PayloadTooLargeError):
        decompress(compress(body), encoding, len(body) - 1)


def test_an_unknown_content_encoding_is_refused():
    with pytest.raises(InvalidInferenceRequestError, match="Content-Encoding 'br' is not supp"):
        decompress(b"x", "br", 100)
