"""The protocol's JSON objects as pydantic models: requests are validated with them (tensor values
excepted: `data` passes through untouched, to become one numpy array in `service.oip.codec`), and
the OpenAPI schema documents every route with them.

Field names, optionality and meaning follow the Open Inference Protocol's REST specification and
Triton's binary tensor data extension (the `binary_data_size`, `binary_data` and
`binary_data_output` parameters). Unknown fields in a request are ignored, as other servers do.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

Parameters = dict[str, Any]
Dimension = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]  # int64, as Triton reads shapes
MAX_RANK = 32  # dimensions of one tensor: bounds the work a shape can ask for

TENSOR_DATA_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {},
    "description": "the tensor's values in row-major order, flat or nested (numbers for "
    "numeric datatypes, true/false for BOOL)",
}


# Any: pydantic types json_schema_extra as JSON values, which a list of floats is not to mypy
INFER_EXAMPLE: Any = {
    "id": "42",
    "inputs": [
        {"name": "features", "shape": [2, 100], "datatype": "FP32", "data": [0.5] * 200},
    ],
    "outputs": [{"name": "predictions"}, {"name": "gates"}],
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RequestInput(_Request):
    name: StrictStr = Field(description="the model input this tensor feeds", examples=["features"])
    shape: list[Dimension] = Field(
        max_length=MAX_RANK, description="the tensor's shape, batch axis first"
    )
    datatype: StrictStr = Field(description="the element type: FP32, INT64, ...")
    parameters: Parameters | None = Field(
        None,
        description="`binary_data_size`: the tensor is sent as that many bytes of binary data "
        "after the JSON object, instead of `data`",
    )
    data: Any = Field(None, json_schema_extra=TENSOR_DATA_SCHEMA)


class RequestOutput(_Request):
    name: StrictStr = Field(description="a model output to return", examples=["predictions"])
    parameters: Parameters | None = Field(
        None, description="`binary_data`: true returns this output as binary data"
    )


class InferenceRequest(_Request):
    """POST /v2/models/{name}[/versions/{version}]/infer. With binary tensor data, the body is
    this object followed by the tensors' bytes, and the header `Inference-Header-Content-Length`
    gives the length of the object."""

    model_config = ConfigDict(json_schema_extra={"examples": [INFER_EXAMPLE]})

    id: StrictStr | None = Field(None, description="returned unchanged in the response")
    parameters: Parameters | None = Field(
        None,
        description="returned in the response's `parameters`; `binary_data_output`: true "
        "returns every output as binary data unless its own `binary_data` says otherwise",
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(
        None, description="the outputs to return, in this order (default: all of them)"
    )


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(
        None, description="`binary_data_size` when the output is sent as binary data"
    )
    data: list[Any] | None = Field(
        None, description="the values in row-major order; absent for a binary output"
    )


class InferenceResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_name": "mmoe-synthetic",
                    "model_version": "1",
                    "id": "42",
                    "outputs": [
                        {
                            "name": "predictions",
                            "shape": [2, 2],
                            "datatype": "FP32",
                            "data": [0.4123, -0.0871, 0.3920, -0.1012],
                        }
                    ],
                }
            ]
        }
    )

    model_name: str
    model_version: str
    id: str | None = Field(None, description="the request's id, when it had one")
    parameters: Parameters | None = Field(None, description="the request's parameters")
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    name: str
    datatype: str = Field(examples=["FP32"])
    shape: list[int] = Field(description="-1 marks a variable dimension (the batch axis)")


class ModelMetadata(BaseModel):
    name: str = Field(examples=["mmoe-synthetic"])
    versions: list[str] = Field(description="every version of the model the server holds")
    platform: str = Field(examples=["onnxruntime_onnx"])
    inputs: list[MetadataTensor] = Field(description="every input of the model's graph")
    outputs: list[MetadataTensor] = Field(description="every output of the model's graph")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(examples=[["binary_tensor_data"]])


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ProtocolErrorResponse(BaseModel):
    """The protocol's error object, the body of every 4xx and 5xx answer of a /v2 route."""

    error: str = Field(description="what went wrong and what to do about it")
