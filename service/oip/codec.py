"""An /infer body to numpy arrays, and output arrays to an /infer response body.

A body is a JSON inference request, optionally followed by binary tensor data: then the header
`Inference-Header-Content-Length` gives the length of the JSON part, and each input sent as binary
says its size in its `binary_data_size` parameter; the inputs' bytes follow one another in the
order of the inputs. Binary data becomes an array without a copy (`np.frombuffer`); JSON `data`
becomes one with a single numpy conversion after one pass over the value types.

Every malformed request is an `InvalidInferenceRequestError` whose message names the tensor.
Checks against a model (which inputs, which shapes) are `service.oip.signature`'s.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
from pydantic import ValidationError

from service.describe import json_kind
from service.echo import MAX_ECHOED_ITEMS, shown
from service.errors import InvalidInferenceRequestError, PayloadTooLargeError
from service.json_encoding import encode
from service.oip import datatypes
from service.oip.datatypes import Datatype
from service.oip.types import InferenceRequest, RequestInput, RequestOutput
from service.validation_errors import message_of

HEADER_LENGTH: Final = "Inference-Header-Content-Length"
BINARY_SIZE: Final = "binary_data_size"
BINARY_OUTPUT: Final = "binary_data"
ALL_BINARY_OUTPUTS: Final = "binary_data_output"
CONTENT_ENCODINGS: Final = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
ALLOWED_JSON_TYPES: Final[dict[str, set[type]]] = {
    "BOOL": {bool},
    "int": {int},
    "float": {int, float},
}


@dataclass(frozen=True)
class InputTensor:
    name: str
    datatype: Datatype
    array: np.ndarray  # in the request's shape


@dataclass(frozen=True)
class OutputChoice:
    name: str
    binary: bool | None  # None: as `binary_data_output` says


@dataclass(frozen=True)
class DecodedRequest:
    id: str | None
    parameters: dict[str, Any] | None
    inputs: list[InputTensor]
    outputs: list[OutputChoice] | None  # None: every output of the model
    binary_outputs: bool  # the request's `binary_data_output`

    def binary(self, choice: OutputChoice | None) -> bool:
        return self.binary_outputs if choice is None or choice.binary is None else choice.binary


@dataclass(frozen=True)
class EncodedResponse:
    body: bytes
    header_length: int | None  # the JSON part's length when binary data follows it


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before `Content-Encoding` (gzip or deflate), at most `limit` bytes."""
    if encoding is None or encoding.strip().lower() in ("", "identity"):
        return body
    wbits = CONTENT_ENCODINGS.get(encoding.strip().lower())
    if wbits is None:
        raise InvalidInferenceRequestError(
            f"Content-Encoding {shown(encoding)!r} is not supported; send the body as it is, or "
            "compressed with gzip or deflate"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise InvalidInferenceRequestError(
            f"the body is not valid {encoding.strip().lower()} data ({error})"
        ) from None
    if len(plain) > limit:
        raise PayloadTooLargeError(
            f"the request body is larger than the limit of {limit} bytes once decompressed; send "
            "fewer rows per request (the server's limit is MMOE_MAX_BODY_BYTES)",
            {"max_body_bytes": limit},
        )
    return plain


def decode_request(body: bytes, header_length: str | None) -> DecodedRequest:
    """A request body (and its Inference-Header-Content-Length, if sent) -> arrays and choices."""
    json_length = _json_length(header_length, len(body))
    request = _parse(memoryview(body)[:json_length], header_length is None)
    _unique("input", [tensor.name for tensor in request.inputs])
    binary = _BinarySection(body, json_length, header_length is not None)
    inputs = [_decode_input(tensor, binary) for tensor in request.inputs]
    binary.check_used_up()
    outputs = None
    if request.outputs is not None:
        _unique("output", [output.name for output in request.outputs])
        outputs = [_output_choice(output) for output in request.outputs]
    return DecodedRequest(
        request.id,
        request.parameters,
        inputs,
        outputs,
        _flag(request.parameters, ALL_BINARY_OUTPUTS, "the request"),
    )


def encode_response(
    model_name: str,
    model_version: int,
    request: DecodedRequest,
    outputs: list[tuple[str, np.ndarray, bool]],
) -> EncodedResponse:
    """The response to `request`: each (name, array, as binary?) in order."""
    described = []
    chunks: list[bytes] = []
    for name, array, binary in outputs:
        datatype = datatypes.of_array(array)
        output: dict[str, Any] = {"name": name, "datatype": datatype.name, "shape": array.shape}
        values = np.ascontiguousarray(array, dtype=datatype.dtype)
        if binary:
            output["parameters"] = {BINARY_SIZE: values.nbytes}
            chunks.append(values.tobytes())
        else:
            output["data"] = values.reshape(-1)
        described.append(output)
    response: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request.id is not None:
        response["id"] = request.id
    if request.parameters:
        response["parameters"] = request.parameters
    response["outputs"] = described
    header = encode(response)
    if not chunks:
        return EncodedResponse(header, None)
    return EncodedResponse(b"".join([header, *chunks]), len(header))


def _json_length(header_length: str | None, body_length: int) -> int:
    if header_length is None:
        return body_length
    text = header_length.strip()
    if not text.isdigit() or not text.isascii():
        raise InvalidInferenceRequestError(
            f"{HEADER_LENGTH} must be the length in bytes of the JSON object that starts the "
            f"body, a whole number; it is {header_length!r}"
        )
    length = int(text)
    if length > body_length:
        raise InvalidInferenceRequestError(
            f"{HEADER_LENGTH} is {length}, but the body has only {body_length} bytes; it must "
            "give the length of the JSON object that starts the body, the binary tensor data "
            "following it"
        )
    return length


def _parse(text: memoryview, whole_body: bool) -> InferenceRequest:
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        hint = (
            f"; a body that carries binary tensor data needs the {HEADER_LENGTH} header"
            if whole_body
            else f" (its first {len(text)} bytes, as {HEADER_LENGTH} says)"
        )
        raise InvalidInferenceRequestError(
            f"the inference request is not valid JSON: {error}{hint}"
        ) from None
    if not isinstance(raw, dict):
        raise InvalidInferenceRequestError(
            "the inference request must be a JSON object with 'inputs', e.g. "
            '{"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", '
            '"data": [0.1, 0.2, 0.3]}]}'
        )
    try:
        return InferenceRequest.model_validate(raw)
    except ValidationError as error:
        found = error.errors()
        problems = "; ".join(
            f"{_where(problem['loc'], raw)}: {message_of(problem)}"
            for problem in found[:MAX_ECHOED_ITEMS]
        )
        more = len(found) - MAX_ECHOED_ITEMS
        rest = f"; and {more} more problems" if more > 0 else ""
        raise InvalidInferenceRequestError(f"invalid inference request: {problems}{rest}") from None


def _where(location: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """`inputs[0] ('features').shape[1]`: a problem's place, naming the tensor when it can."""
    parts: list[str] = []
    value: Any = raw
    for part in location:
        if isinstance(part, int):
            parts.append(f"[{part}]")
            value = value[part] if isinstance(value, list) and part < len(value) else None
            if len(parts) == 2 and isinstance(value, dict) and isinstance(value.get("name"), str):
                parts.append(f" ({shown(value['name'])!r})")
        else:
            parts.append(f".{shown(str(part))}" if parts else shown(str(part)))
            value = value.get(part) if isinstance(value, dict) else None
    return "".join(parts)


class _BinarySection:
    """The bytes after the JSON object, handed out input by input, in order."""

    def __init__(self, body: bytes, start: int, declared: bool) -> None:
        self.body = body
        self.offset = start
        self.declared = declared

    def take(self, name: str, size: int, datatype: Datatype, count: int) -> np.ndarray:
        said = shown(name)
        if not self.declared:
            raise InvalidInferenceRequestError(
                f"input {said!r} is sent as binary data ({BINARY_SIZE}), but the request has "
                f"no {HEADER_LENGTH} header to say where the JSON object ends and the binary "
                "data begins"
            )
        left = len(self.body) - self.offset
        if size > left:
            raise InvalidInferenceRequestError(
                f"input {said!r}: {BINARY_SIZE} is {size} bytes, but only {left} bytes of binary "
                "data are left in the body; the body is shorter than its tensors"
            )
        array = np.frombuffer(self.body, datatype.dtype, count, self.offset)
        self.offset += size
        return array

    def check_used_up(self) -> None:
        left = len(self.body) - self.offset
        if left:
            raise InvalidInferenceRequestError(
                f"{left} bytes of binary data follow the last binary input; the inputs' "
                f"{BINARY_SIZE} parameters must account for every byte after the JSON object "
                f"({HEADER_LENGTH} bytes)"
            )


def _decode_input(tensor: RequestInput, binary: _BinarySection) -> InputTensor:
    name = tensor.name
    said = shown(name)  # (a client's name, quoted back bounded)
    datatype = datatypes.BY_NAME.get(tensor.datatype)
    if datatype is None:
        raise InvalidInferenceRequestError(
            f"input {said!r} has the unknown datatype {shown(tensor.datatype)!r}; the protocol's "
            f"datatypes are {datatypes.NAMES}"
        )
    if datatype.dtype is None:
        raise InvalidInferenceRequestError(
            f"input {said!r} is {datatype.name}: this server's models take numeric tensors only"
        )
    count = math.prod(tensor.shape)
    size = (tensor.parameters or {}).get(BINARY_SIZE)
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidInferenceRequestError(
                f"input {said!r}: the {BINARY_SIZE} parameter must be a whole number of bytes, "
                f"not {shown(repr(size))}"
            )
        if tensor.data is not None:
            raise InvalidInferenceRequestError(
                f"input {said!r} has both 'data' and a {BINARY_SIZE} parameter; send its values "
                "one way"
            )
        expected = count * datatype.itemsize
        if size != expected:
            raise InvalidInferenceRequestError(
                f"input {said!r}: {BINARY_SIZE} is {size} bytes, but its shape {tensor.shape} of "
                f"{datatype.name} takes {expected} bytes ({count} values of "
                f"{datatype.itemsize} bytes)"
            )
        array = binary.take(name, size, datatype, count)
    elif tensor.data is None:
        raise InvalidInferenceRequestError(
            f"input {said!r} has no 'data' and no {BINARY_SIZE} parameter; send its values as "
            "JSON 'data' or as binary tensor data"
        )
    else:
        array = _json_values(name, datatype, tensor.data, count)
    return InputTensor(name, datatype, array.reshape(tensor.shape))


def _json_values(name: str, datatype: Datatype, data: Any, count: int) -> np.ndarray:
    """JSON `data` (flat or nested, row-major) -> a flat array of `datatype`."""
    said = shown(name)
    if not isinstance(data, list):
        raise InvalidInferenceRequestError(
            f"input {said!r}: 'data' must be an array of values, not {json_kind(data)}"
        )
    values, kinds = _flatten(data)
    if len(values) != count:
        raise InvalidInferenceRequestError(
            f"input {said!r}: its shape holds {count} values, but 'data' has {len(values)}"
        )
    assert datatype.dtype is not None
    family = datatype.name if datatype.name == "BOOL" else _family(datatype.dtype)
    allowed = ALLOWED_JSON_TYPES[family]
    if not kinds <= allowed:
        index, value = next((i, v) for i, v in enumerate(values) if type(v) not in allowed)
        wanted = {"BOOL": "true or false", "int": "whole numbers", "float": "numbers"}[family]
        raise InvalidInferenceRequestError(
            f"input {said!r}: value {index} is {json_kind(value)}; "
            f"{datatype.name} values are {wanted}"
        )
    if family == "BOOL":
        return np.array(values, dtype=datatype.dtype)
    if family == "int":
        limits = np.iinfo(datatype.dtype)
        if values and not (limits.min <= min(values) and max(values) <= limits.max):
            raise InvalidInferenceRequestError(
                f"input {said!r}: {datatype.name} values lie in {limits.min}..{limits.max}; "
                f"'data' holds values from {min(values)} to {max(values)}"
            )
        return np.array(values, dtype=datatype.dtype)
    with np.errstate(over="ignore"):
        array = np.array(values, dtype=np.float64).astype(datatype.dtype)
    if not np.isfinite(array).all():
        index = int(np.flatnonzero(~np.isfinite(array))[0])
        raise InvalidInferenceRequestError(
            f"input {said!r}: value {index} ({values[index]!r}) is outside the range of "
            f"{datatype.name}"
        )
    return array


def _flatten(data: list[Any]) -> tuple[list[Any], set[type]]:
    """Nested arrays -> their leaves in row-major order, and the leaves' Python types."""
    values = data
    kinds = set(map(type, values))
    while list in kinds:
        flat: list[Any] = []
        for value in values:
            if type(value) is list:
                flat.extend(value)
            else:
                flat.append(value)
        values = flat
        kinds = set(map(type, values))
    return values, kinds


def _family(dtype: np.dtype) -> str:
    return "int" if dtype.kind in "iu" else "float"


def _output_choice(output: RequestOutput) -> OutputChoice:
    parameters = output.parameters or {}
    if "classification" in parameters:
        raise InvalidInferenceRequestError(
            f"output {shown(output.name)!r}: the classification extension is not supported; "
            "request the tensor itself"
        )
    binary = _flag(parameters, BINARY_OUTPUT, f"output {shown(output.name)!r}", None)
    return OutputChoice(output.name, binary)


def _flag(
    parameters: dict[str, Any] | None, key: str, owner: str, default: bool | None = False
) -> Any:
    value = (parameters or {}).get(key, default)
    if value is not default and not isinstance(value, bool):
        raise InvalidInferenceRequestError(
            f"{owner}: the {key} parameter must be true or false, not {json_kind(value)}"
        )
    return value


def _unique(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInferenceRequestError(
                f"{kind} {shown(name)!r} appears twice; send it once"
            )
        seen.add(name)
