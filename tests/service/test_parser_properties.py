"""Property tests of the request parsers (`payload`, `payload_fast`, `features`, and /v2's
`oip.codec`): whatever the bytes, the answer is a parsed request or a 4xx `ServiceError`, never
another exception; what the fast path accepts, the plain path reads to the same values; valid
instances become exactly the arrays and codes they name. Derandomised, with fixed budgets: the
same cases on every run."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.contract import MAX_FEATURE_MAGNITUDE, MISSING_CODE, OOV_CODE
from service.errors import ServiceError
from service.features import FeatureEncoder
from service.model_card import ModelCard
from service.oip.codec import decode_request as decode_request_v2
from service.oip.datatypes import BY_NAME
from service.payload import decode_request, instances_to_array
from service.payload_fast import decode_array_body, to_float32
from tests.support import bundled_version_dir

DIM = 4
NAMES = [f"f{i}" for i in range(DIM)]
MAX_INSTANCES = 8
BUDGET = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,  # no example database: the same cases on every machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=30,
)
in_range = st.floats(min_value=-MAX_FEATURE_MAGNITUDE, max_value=MAX_FEATURE_MAGNITUDE)
valid_rows = st.lists(
    st.lists(in_range | st.integers(-(10**12), 10**12), min_size=DIM, max_size=DIM),
    min_size=1,
    max_size=MAX_INSTANCES,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # (stdlib: whole numbers of any size, as a client may)


def decode_plain(body: bytes) -> tuple[Any, np.ndarray]:
    request = decode_request(body, MAX_INSTANCES)
    return request, instances_to_array(request.instances, DIM, NAMES)


def refused_as_a_client_error(error: ServiceError) -> None:
    assert 400 <= error.status < 500, (error.status, error.code)
    assert error.message and error.code
    if isinstance(error.details, dict) and "instance" in error.details:
        assert isinstance(error.details["instance"], int)


@BUDGET
@given(st.binary(max_size=200) | json_values.map(lambda value: dumps(value)))
def test_any_body_is_parsed_or_refused_with_a_4xx(body: bytes) -> None:
    try:
        decode_plain(body)
    except ServiceError as error:
        refused_as_a_client_error(error)
    fast = decode_array_body(body, MAX_INSTANCES)
    assert fast is None or fast.values.ndim == 2


@settings(BUDGET, max_examples=150)
@given(
    st.fixed_dictionaries(
        {"instances": st.lists(json_values, max_size=MAX_INSTANCES + 2)},
        optional={"model": json_values, "version": json_values, "return_gates": json_values},
    )
)
def test_any_envelope_of_json_values_is_parsed_or_refused_with_a_4xx(body: dict[str, Any]) -> None:
    try:
        decode_plain(dumps(body))
    except ServiceError as error:
        refused_as_a_client_error(error)


@BUDGET
@given(valid_rows, st.booleans(), st.sampled_from([None, "m", "latest"]))
def test_valid_rows_become_exactly_their_float32_values_on_both_paths(
    rows: list[list[float]], return_gates: bool, version: str | None
) -> None:
    envelope: dict[str, Any] = {"instances": rows, "return_gates": return_gates}
    if version == "latest":
        envelope["version"] = version
    body = json.dumps(envelope).encode()
    expected = np.array(rows, dtype=np.float64).astype(np.float32)
    request, plain = decode_plain(body)
    np.testing.assert_array_equal(plain, expected)
    assert request.return_gates is return_gates
    fast = decode_array_body(body, MAX_INSTANCES)
    assert fast is not None  # the common body is the fast path's to read
    features = to_float32(fast.values)
    assert features is not None
    np.testing.assert_array_equal(features, expected)
    assert (fast.return_gates, fast.version) == (return_gates, request.version)


@BUDGET
@given(
    st.lists(
        st.lists(
            in_range | st.floats(allow_nan=False) | st.integers(-(2**65), 2**65) | json_scalars,
            min_size=DIM - 1,
            max_size=DIM + 1,
        ),
        min_size=1,
        max_size=MAX_INSTANCES,
    )
)
def test_what_the_fast_path_accepts_the_plain_path_reads_the_same(rows: list[list[Any]]) -> None:
    body = dumps({"instances": rows})
    fast = decode_array_body(body, MAX_INSTANCES)
    fast_features = None if fast is None else to_float32(fast.values)
    try:
        _, plain = decode_plain(body)
    except ServiceError as error:
        refused_as_a_client_error(error)
        assert fast_features is None or fast_features.shape[1] != DIM
        return
    if fast_features is not None:
        np.testing.assert_array_equal(fast_features, plain)
    assert np.isfinite(plain).all() and (np.abs(plain) <= MAX_FEATURE_MAGNITUDE).all()


@BUDGET
@given(
    st.lists(
        st.dictionaries(st.sampled_from([*NAMES, "extra", ""]), json_scalars),
        min_size=1,
        max_size=MAX_INSTANCES,
    )
)
def test_named_instances_are_read_by_name_or_refused_naming_the_instance(
    instances: list[dict[str, Any]],
) -> None:
    try:
        features = instances_to_array(instances, DIM, NAMES)
    except ServiceError as error:
        refused_as_a_client_error(error)
        return
    expected = [[instance[name] for name in NAMES] for instance in instances]
    np.testing.assert_array_equal(features, np.array(expected, dtype=np.float64).astype(np.float32))


@pytest.fixture(scope="module")
def adult() -> FeatureEncoder:
    card = ModelCard.model_validate_json(
        (bundled_version_dir("mmoe-adult") / "model.json").read_bytes()
    )
    return FeatureEncoder(card)


def adult_instances(encoder: FeatureEncoder) -> st.SearchStrategy[list[dict[str, Any]]]:
    numbers = st.none() | in_range
    categories = [
        st.none() | st.sampled_from(list(codes)) | st.text(max_size=6) | st.integers(-5, 99)
        for codes in encoder.codes
    ]
    row = st.fixed_dictionaries(
        {name: numbers for name in encoder.numeric}
        | dict(zip(encoder.categorical, categories, strict=True))
    )
    return st.lists(row, min_size=1, max_size=MAX_INSTANCES)


@BUDGET
@given(data=st.data())
def test_table_instances_become_the_cards_codes(adult: FeatureEncoder, data: st.DataObject) -> None:
    instances = data.draw(adult_instances(adult))
    feeds = adult.encode(instances)
    for row, instance in enumerate(instances):
        for column, name in enumerate(adult.numeric):
            value, encoded = instance[name], feeds["features"][row, column]
            assert math.isnan(encoded) if value is None else encoded == np.float32(value)
        for column, (name, codes) in enumerate(zip(adult.categorical, adult.codes, strict=True)):
            value = instance[name]
            expected = MISSING_CODE if value is None else codes.get(str(value), OOV_CODE)
            assert feeds["categorical"][row, column] == expected


@BUDGET
@given(data=st.data())
def test_any_table_instance_is_encoded_or_refused_with_a_4xx(
    adult: FeatureEncoder, data: st.DataObject
) -> None:
    instance = data.draw(
        st.dictionaries(st.sampled_from([*adult.names, "extra"]), json_scalars, max_size=16)
        | json_values
    )
    try:
        adult.encode([instance])
    except ServiceError as error:
        refused_as_a_client_error(error)


# The Open Inference Protocol's codec (/v2 infer): JSON tensors, binary tensors after the JSON
# object, and everything in between.

datatypes = st.sampled_from([*BY_NAME, "FLOAT32", ""])
shapes = st.lists(st.integers(-2, 4), max_size=3) | json_values
tensors = st.fixed_dictionaries(
    {"name": st.sampled_from(["features", "categorical", "x"]), "datatype": datatypes},
    optional={
        "shape": shapes,
        "data": st.lists(json_scalars | st.lists(json_scalars, max_size=3), max_size=8)
        | json_values,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": json_scalars})
        | json_values,
    },
)
fitting_tensors = st.integers(1, 4).flatmap(
    lambda count: st.fixed_dictionaries(
        {
            "name": st.sampled_from(["features", "categorical"]),
            "datatype": st.sampled_from(["FP32", "FP64", "INT64", "INT32", "BOOL"]),
            "shape": st.just([1, count]),
            "data": st.lists(st.integers(0, 1) | in_range, min_size=count, max_size=count),
        }
    )
)
inference_requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensors | fitting_tensors, max_size=3) | json_values},
    optional={
        "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=4)}), max_size=2),
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": json_scalars}),
        "id": json_scalars,
    },
)


@BUDGET
@given(
    inference_requests.map(dumps) | st.binary(max_size=200),
    st.binary(max_size=64),
    st.none() | st.integers(-1, 300).map(str) | st.text(max_size=4),
)
def test_any_v2_body_is_decoded_or_refused_with_a_4xx(
    json_part: bytes, binary_part: bytes, header_length: str | None
) -> None:
    body = json_part if header_length is None else json_part + binary_part
    try:
        request = decode_request_v2(body, header_length)
    except ServiceError as error:
        assert 400 <= error.status < 500, (error.status, error.code)
        assert error.message
        return
    for tensor in request.inputs:
        assert tensor.array.dtype == BY_NAME[tensor.datatype.name].dtype
