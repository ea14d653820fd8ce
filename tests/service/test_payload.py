"""Instances become one float32 array; the edge cases the bundled model cannot show."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidInstanceError, NonNumericFeatureError
from service.payload import decode_request, instances_to_array


def test_arrays_become_one_float32_array() -> None:
    features = instances_to_array([[1, 2.5, -3], [0, 1e-3, 7]], 3, None)
    assert features.dtype == np.float32
    assert features.flags.c_contiguous
    np.testing.assert_array_equal(
        features, np.array([[1, 2.5, -3], [0, 1e-3, 7]], dtype=np.float32)
    )


def test_named_features_follow_the_cards_order() -> None:
    features = instances_to_array([{"b": 2.0, "a": 1.0}], 2, ["a", "b"])
    np.testing.assert_array_equal(features, np.array([[1.0, 2.0]], dtype=np.float32))


def test_one_named_feature() -> None:
    features = instances_to_array([{"only": 4.0}, {"only": 5}], 1, ["only"])
    np.testing.assert_array_equal(features, np.array([[4.0], [5.0]], dtype=np.float32))


def test_a_boolean_among_numbers_is_not_a_number() -> None:
    with pytest.raises(NonNumericFeatureError) as raised:
        instances_to_array([[1.0, 2.0], [True, 2.0]], 2, None)
    assert raised.value.message == "instance 1, feature 0 is true; features must be numbers"
    assert raised.value.details == {"instance": 1, "feature": 0}


def test_objects_need_a_card_that_names_features() -> None:
    with pytest.raises(InvalidInstanceError) as raised:
        instances_to_array([{"a": 1.0, "b": 2.0}], 2, None)
    assert raised.value.message == (
        "instance 0 is an object, but this model's card names no features; send each instance "
        "as an array of 2 numbers"
    )


def test_the_envelope_defaults() -> None:
    request = decode_request(b'{"instances": [[1.0]]}', max_instances=1)
    assert (request.instances, request.return_gates, request.model, request.version) == (
        [[1.0]],
        True,
        None,
        None,
    )
