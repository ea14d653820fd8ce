"""The /predict request body's JSON Schema for the models being served, exact in both directions:
every body it allows is answered (no 422), every body it refuses is refused.

One branch per model (`oneOf`, told apart by `model`): the default model's branch may leave
`model` out, the others name it. A branch fixes the model's versions, the instance forms it takes
(arrays of d numbers, objects of its named features), each feature's type and range, and the
instance limit. `service.schemas.PredictRequest` remains the generic form, for the schema of an
app whose models are still loading.
"""

from __future__ import annotations

from typing import Any

from service.contract import MAX_FEATURE_MAGNITUDE
from service.features import MAX_CATEGORY_NUMBER
from service.model import ServedModel
from service.repository import ModelRepository

NUMBER = {"type": "number", "minimum": -MAX_FEATURE_MAGNITUDE, "maximum": MAX_FEATURE_MAGNITUDE}
NULL = {"type": "null"}
# A categorical value: a string, or a whole number (read as its digits), or null when missing.
CATEGORY = {
    "anyOf": [
        {"type": "string"},
        {"type": "integer", "minimum": -MAX_CATEGORY_NUMBER, "maximum": MAX_CATEGORY_NUMBER},
        NULL,
    ]
}


def predict_request_schema(repository: ModelRepository, max_instances: int) -> dict[str, Any]:
    branches = [
        _model_branch(repository, name, max_instances, name == repository.default_name)
        for name in repository.names()
    ]
    return {
        "title": "PredictRequest",
        "description": "One branch per served model: `model` chooses it (left out or null: the "
        "default model). Every instance of one request takes the same form.",
        "oneOf": branches,
    }


def _model_branch(
    repository: ModelRepository, name: str, max_instances: int, is_default: bool
) -> dict[str, Any]:
    model = repository.get(name, "latest")
    model_name: dict[str, Any] = {"const": name}
    versions: list[Any] = [*repository.versions(name), "latest", None]
    forms = [_bounded(form, max_instances) for form in _instance_forms(model)]
    branch: dict[str, Any] = {
        "title": name,
        "type": "object",
        "properties": {
            "instances": forms[0] if len(forms) == 1 else {"anyOf": forms},
            "return_gates": {"type": "boolean"},
            "model": {"anyOf": [model_name, NULL]} if is_default else model_name,
            "version": {"enum": versions},
        },
        "required": ["instances"] if is_default else ["instances", "model"],
        "additionalProperties": False,
    }
    return branch


def _bounded(instance: dict[str, Any], max_instances: int) -> dict[str, Any]:
    return {"type": "array", "items": instance, "minItems": 1, "maxItems": max_instances}


def _instance_forms(model: ServedModel) -> list[dict[str, Any]]:
    """The instance forms `model` takes: an object of its named features (when its card names
    them), and an array of d numbers (unless it has categorical features)."""
    card = model.card
    number = {"anyOf": [NUMBER, NULL]} if card.input.accepts_missing else NUMBER
    forms = []
    names = card.input.feature_names
    if names is not None:
        properties = dict.fromkeys(names, number)
        if card.categorical is not None:
            properties |= dict.fromkeys(card.categorical.feature_names, CATEGORY)
        forms.append(
            {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            }
        )
    if card.categorical is None:
        dim = card.input.dim
        forms.append({"type": "array", "items": number, "minItems": dim, "maxItems": dim})
    return forms
