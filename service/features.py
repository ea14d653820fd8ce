"""Named raw features of a table model -> its graph's input feeds, with the card's vocabularies.

A table model (its card has `categorical` inputs, or says the graph imputes missing values) takes
each instance as an object naming every feature once: numbers for numeric features, strings for
categorical ones, null for a missing value of either. Strings become codes through the card's
vocabularies; a value the vocabulary does not hold is sent as the out-of-vocabulary code, not
refused. Positional arrays remain for models without categorical features.

Like `payload`, the fast path is a few passes over plain lists and one numpy conversion per
input; only when a check fails does `_diagnose` walk the instances to say which instance and which
feature is wrong, and why.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.contract import (
    INPUT_CATEGORICAL,
    INPUT_FEATURES,
    MAX_FEATURE_MAGNITUDE,
    MISSING_CODE,
    OOV_CODE,
)
from service.describe import json_kind, name_range
from service.errors import (
    InvalidCategoryError,
    InvalidInstanceError,
    MissingFeaturesError,
    NonFiniteFeatureError,
    NonNumericFeatureError,
    WrongFeatureCountError,
)
from service.model_card import ModelCard
from service.payload import FLOAT32_MAX, out_of_range, unknown_features

NUMERIC_TYPES = frozenset({int, float, type(None)})
CATEGORY_TYPES = frozenset({str, type(None)})


class FeatureEncoder:
    """The card's feature schema, ready to encode instances: `encode(instances) -> feeds`."""

    def __init__(self, card: ModelCard) -> None:
        self.numeric = list(card.input.feature_names or [])
        self.categorical = card.categorical.feature_names if card.categorical else []
        self.codes: list[dict[str, int]] = []
        if card.categorical is not None:
            first = card.categorical.first_code
            self.codes = [
                {value: first + i for i, value in enumerate(feature.vocabulary)}
                for feature in card.categorical.features
            ]
        self.names = [*self.numeric, *self.categorical]
        self.known = frozenset(self.names)

    @staticmethod
    def applies_to(card: ModelCard) -> bool:
        """Table models: categorical inputs, or a graph that imputes missing numbers."""
        return card.categorical is not None or card.input.accepts_missing

    def encode(self, instances: list[Any]) -> dict[str, np.ndarray]:
        """Instances -> {"features": float32 [n, d] (NaN: missing), "categorical": int64 [n, C]}."""
        try:
            if not all(type(i) is dict and len(i) == len(self.names) for i in instances):
                if self.categorical or not all(type(i) is list for i in instances):
                    raise KeyError
                return {INPUT_FEATURES: self._numbers(instances, positional=True)}
            numbers = [[instance[name] for name in self.numeric] for instance in instances]
            feeds = {INPUT_FEATURES: self._numbers(numbers, positional=False)}
            if self.categorical:
                feeds[INPUT_CATEGORICAL] = self._categories(instances)
            return feeds
        except (KeyError, TypeError, ValueError, OverflowError):
            self._diagnose(instances)
            raise

    def _numbers(self, rows: list[Any], positional: bool) -> np.ndarray:
        if positional and any(len(row) != len(self.numeric) for row in rows):
            raise KeyError
        types = {type(value) for row in rows for value in row}
        if not types <= NUMERIC_TYPES:
            raise TypeError
        array = np.array(rows, dtype=np.float64).reshape(len(rows), len(self.numeric))
        if (np.abs(array) > MAX_FEATURE_MAGNITUDE).any():  # (NaN here is a null: missing)
            raise ValueError
        return array.astype(np.float32)

    def _categories(self, instances: list[Any]) -> np.ndarray:
        columns = []
        for name, codes in zip(self.categorical, self.codes, strict=True):
            values = [instance[name] for instance in instances]
            if not {type(value) for value in values} <= CATEGORY_TYPES:
                values = [_as_category(value) for value in values]
            columns.append(
                [MISSING_CODE if value is None else codes.get(value, OOV_CODE) for value in values]
            )
        return np.array(columns, dtype=np.int64).T.reshape(len(instances), len(self.categorical))

    def _diagnose(self, instances: list[Any]) -> None:
        """Raise the precise error for the first bad instance (the fast path found one)."""
        for index, instance in enumerate(instances):
            if type(instance) is list and not self.categorical:
                if len(instance) != len(self.numeric):
                    raise WrongFeatureCountError(
                        f"instance {index} has {len(instance)} features; the model expects "
                        f"{len(self.numeric)}",
                        {
                            "instance": index,
                            "expected": len(self.numeric),
                            "received": len(instance),
                        },
                    )
                values = dict(zip(self.numeric, instance, strict=True))
            elif type(instance) is dict:
                values = self._named(index, instance)
            else:
                raise InvalidInstanceError(
                    f"instance {index} is {json_kind(instance)}; each instance must be an object "
                    f"of the model's named features {name_range(self.names)}"
                    + ("" if self.categorical else f", or an array of {len(self.numeric)} numbers"),
                    {"instance": index},
                )
            for position, name in enumerate(self.names):
                self._check(index, position, name, values[name])
        raise InvalidInstanceError(  # every instance is fine alone: they mix the two forms
            "the instances mix arrays and objects; send every instance as an object of named "
            f"features, or every one as an array of {len(self.numeric)} numbers"
        )

    def _named(self, index: int, instance: dict[str, Any]) -> dict[str, Any]:
        unknown = [name for name in instance if name not in self.known]
        if unknown:
            raise unknown_features(index, unknown, self.names)
        missing = [name for name in self.names if name not in instance]
        if missing:
            raise MissingFeaturesError(
                f"instance {index} lacks {len(missing)} of the model's {len(self.names)} "
                f"features: {missing[:10]}{' ...' if len(missing) > 10 else ''}; send null for "
                "a value that is missing",
                {"instance": index, "missing": missing},
            )
        return instance

    def _check(self, index: int, position: int, name: str, value: Any) -> None:
        details = {"instance": index, "feature": position, "feature_name": name}
        where = f"instance {index}, feature {name!r} is {json_kind(value)}"
        if name in self.categorical:
            if not _is_category(value):
                raise InvalidCategoryError(
                    f"{where}; it is a categorical feature: send a string (a value not seen in "
                    "training is out of vocabulary, not an error), or null when it is missing",
                    details,
                )
            return
        if value is not None and type(value) not in (int, float):
            raise NonNumericFeatureError(
                f"{where}; it is a numeric feature: send a number, or null when it is missing",
                details,
            )
        if value is not None and (not math.isfinite(value) or abs(value) > FLOAT32_MAX):
            raise NonFiniteFeatureError(
                f"instance {index}, feature {name!r} is {value!r}, outside the float32 range; "
                "features must be finite numbers",
                details,
            )
        if value is not None and abs(value) > MAX_FEATURE_MAGNITUDE:
            raise out_of_range(f"instance {index}, feature {name!r} is {value!r}", details)


# Whole numbers that name categories: those a float64 holds exactly, so that 13 and 13.0 are one
# category, and no number is rounded into another.
MAX_CATEGORY_NUMBER = 2**53
CATEGORY_NUMBERS = range(-MAX_CATEGORY_NUMBER, MAX_CATEGORY_NUMBER + 1)


def _is_category(value: Any) -> bool:
    try:
        _as_category(value)
    except TypeError:
        return False
    return True


def _as_category(value: Any) -> str | None:
    """A whole number names a category by its digits (JSON 13, or 13.0, is the category "13")."""
    if value is None or type(value) is str:
        return value
    if type(value) is float and value.is_integer() and abs(value) <= MAX_CATEGORY_NUMBER:
        value = int(value)
    if type(value) is int and value in CATEGORY_NUMBERS:
        return str(value)
    raise TypeError
