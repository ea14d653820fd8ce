"""The /predict body, from bytes to one float32 array, without pydantic on every number.

The body is parsed once with orjson; the instances go straight into one numpy array. The fast
path does three C-level passes (numpy conversion, one set of value types, one finiteness check);
only when one of them fails does `_diagnose` walk the instances in Python to say exactly which
instance and which feature is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, Literal

import numpy as np
import orjson

from service.contract import MAX_FEATURE_MAGNITUDE, MAX_VERSION
from service.describe import json_kind, name_range
from service.echo import first_items
from service.errors import (
    EmptyInstancesError,
    FeatureOutOfRangeError,
    InvalidInstanceError,
    InvalidJsonError,
    InvalidRequestError,
    MissingFeaturesError,
    NonFiniteFeatureError,
    NonNumericFeatureError,
    TooManyInstancesError,
    UnknownFeaturesError,
    WrongFeatureCountError,
)

REQUEST_FIELDS = ("instances", "return_gates", "model", "version")
NUMBER_TYPES = frozenset({float, int})
FLOAT32_MAX = float(np.finfo(np.float32).max)
NON_FINITE_TOKEN = re.compile(rb"\b(?:NaN|Infinity)\b")
INSTANCE_SHAPE_HELP = "an array of {dim} numbers or an object of named features"


@dataclass(frozen=True)
class PredictionRequest:
    """The decoded envelope of a /predict body; `instances` are still JSON values."""

    instances: list[Any]
    return_gates: bool = True
    model: str | None = None
    version: int | Literal["latest"] | None = None


def decode_request(body: bytes, max_instances: int) -> PredictionRequest:
    """Parse the JSON body and check every field but the feature values."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if "infinity" in str(error) or NON_FINITE_TOKEN.search(body):
            raise NonFiniteFeatureError(
                "the body holds NaN, Infinity or a number too large for a float; feature values "
                "must be finite numbers (and NaN/Infinity are not valid JSON)",
                {"json_error": str(error)},
            ) from None
        raise InvalidJsonError(
            f"the body is not valid JSON: {error}; send a JSON object such as "
            '{"instances": [[...features...]]} with Content-Type: application/json',
            {"json_error": str(error)},
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"the body is {json_kind(data)}; send a JSON object with an 'instances' array"
        )
    unknown = sorted(set(data) - set(REQUEST_FIELDS))
    if unknown:
        raise InvalidRequestError(
            f"unknown fields {first_items(unknown)}{_more(unknown)}; a /predict body has the "
            f"fields {list(REQUEST_FIELDS)}",
            {"unknown": first_items(unknown), "allowed": list(REQUEST_FIELDS)},
        )
    if "instances" not in data:
        raise InvalidRequestError("the body has no 'instances'; send {\"instances\": [...]}")
    instances = data["instances"]
    if not isinstance(instances, list):
        raise InvalidRequestError(
            f"'instances' is {json_kind(instances)}; it must be an array of instances"
        )
    if not instances:
        raise EmptyInstancesError("'instances' is empty; send at least one instance")
    if len(instances) > max_instances:
        raise TooManyInstancesError(
            f"{len(instances)} instances in one request, the limit is {max_instances}; split "
            "the request into smaller ones (the server's limit is MMOE_MAX_INSTANCES)",
            {"instances": len(instances), "max_instances": max_instances},
        )
    return_gates = data.get("return_gates", True)
    if not isinstance(return_gates, bool):
        raise InvalidRequestError(
            f"'return_gates' is {json_kind(return_gates)}; it must be true or false"
        )
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequestError(f"'model' is {json_kind(model)}; it must be a model name")
    version = data.get("version")
    if version not in (None, "latest") and (
        type(version) is not int or not 1 <= version <= MAX_VERSION
    ):
        raise InvalidRequestError(
            f"'version' is {json_kind(version)}; it must be a whole number from 1 to "
            f'{MAX_VERSION}, or "latest" (leave it out for the default version)'
        )
    return PredictionRequest(instances, return_gates, model, version)


def instances_to_array(
    instances: list[Any], input_dim: int, feature_names: list[str] | None
) -> np.ndarray:
    """Instances (arrays of numbers, or objects of named features) -> float32 [n, input_dim]."""
    rows: list[Any] = instances
    if isinstance(instances[0], dict) and feature_names is not None:
        pick = itemgetter(*feature_names)
        try:
            if any(len(instance) != input_dim for instance in instances):
                raise KeyError
            rows = [pick(instance) for instance in instances]
            if input_dim == 1:
                rows = [[value] for value in rows]
        except (KeyError, TypeError):
            _diagnose(instances, input_dim, feature_names)
            raise
    try:
        array = np.array(rows, dtype=np.float64)
    except (ValueError, TypeError):
        _diagnose(instances, input_dim, feature_names)
        raise
    if (
        array.ndim != 2
        or array.shape[1] != input_dim
        or not set(map(type, chain.from_iterable(rows))) <= NUMBER_TYPES
        or not within_magnitude(array)
    ):
        _diagnose(instances, input_dim, feature_names)
    return array.astype(np.float32)


def within_magnitude(values: np.ndarray) -> bool:
    """Every value finite and at most MAX_FEATURE_MAGNITUDE in magnitude (NaN is not)."""
    return bool((np.abs(values) <= MAX_FEATURE_MAGNITUDE).all())


def _diagnose(instances: list[Any], input_dim: int, feature_names: list[str] | None) -> None:
    """Raise the precise error for the first bad instance (the fast path found one)."""
    for index, instance in enumerate(instances):
        if isinstance(instance, dict):
            values = _named_values(index, instance, input_dim, feature_names)
        elif isinstance(instance, list):
            if len(instance) != input_dim:
                raise WrongFeatureCountError(
                    f"instance {index} has {len(instance)} features; the model expects {input_dim}",
                    {"instance": index, "expected": input_dim, "received": len(instance)},
                )
            values = instance
        else:
            raise InvalidInstanceError(
                f"instance {index} is {json_kind(instance)}; each instance must be "
                + INSTANCE_SHAPE_HELP.format(dim=input_dim),
                {"instance": index},
            )
        for position, value in enumerate(values):
            _check_value(index, position, value, feature_names)
    raise InvalidInstanceError(  # every instance is fine alone: they mix the two forms
        "the instances mix arrays and objects; send every instance as "
        + INSTANCE_SHAPE_HELP.format(dim=input_dim).replace(" or ", ", or every one as ")
    )


def _named_values(
    index: int, instance: dict[str, Any], input_dim: int, feature_names: list[str] | None
) -> list[Any]:
    if feature_names is None:
        raise InvalidInstanceError(
            f"instance {index} is an object, but this model's card names no features; send "
            f"each instance as an array of {input_dim} numbers",
            {"instance": index},
        )
    known = frozenset(feature_names)
    unknown = [name for name in instance if name not in known]
    if unknown:
        raise unknown_features(index, unknown, feature_names)
    missing = [name for name in feature_names if name not in instance]
    if missing:
        raise MissingFeaturesError(
            f"instance {index} lacks {len(missing)} of the model's {input_dim} features: "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}",
            {"instance": index, "missing": missing},
        )
    return [instance[name] for name in feature_names]


def _check_value(index: int, position: int, value: Any, feature_names: list[str] | None) -> None:
    feature = position if feature_names is None else f"{position} ({feature_names[position]})"
    details: dict[str, Any] = {"instance": index, "feature": position}
    if feature_names is not None:
        details["feature_name"] = feature_names[position]
    if type(value) not in NUMBER_TYPES:
        raise NonNumericFeatureError(
            f"instance {index}, feature {feature} is {json_kind(value)}; features must be numbers",
            details,
        )
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise NonFiniteFeatureError(
            f"instance {index}, feature {feature} is {value!r}, outside the float32 range; "
            "features must be finite numbers",
            details,
        )
    if abs(value) > MAX_FEATURE_MAGNITUDE:
        raise out_of_range(f"instance {index}, feature {feature} is {value!r}", details)


def out_of_range(where: str, details: dict[str, Any]) -> FeatureOutOfRangeError:
    return FeatureOutOfRangeError(
        f"{where}, beyond the largest magnitude a feature may have ({MAX_FEATURE_MAGNITUDE:g}); "
        "send values in the units the model was trained on",
        details,
    )


def unknown_features(index: int, unknown: list[str], names: list[str]) -> UnknownFeaturesError:
    """The error for an instance naming features the model does not have: it quotes at most
    `MAX_ECHOED_ITEMS` of them back, each cut short, and counts them all."""
    return UnknownFeaturesError(
        f"instance {index} has unknown features {first_items(unknown)}"
        f"{_more(unknown)}; the model's features are {name_range(names)}",
        {"instance": index, "unknown": first_items(unknown), "unknown_count": len(unknown)},
    )


def _more(items: list[str]) -> str:
    shown_count = len(first_items(items))
    return f" and {len(items) - shown_count} more" if len(items) > shown_count else ""
