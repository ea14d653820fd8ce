"""What every config section shares: strict models, and the error a wrong config raises."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

MAX_SEED = 2**32 - 1  # numpy and torch seeds are 32-bit


class ConfigError(ValueError):
    """A configuration the user gave is wrong; the message says which field and why."""


class StrictConfig(BaseModel):
    """Unknown keys, NaN and infinities, and true/false where a number belongs are errors."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if bool not in (annotation, *typing.get_args(annotation)):
                raise ValueError(f"expected a value of type {_type_name(annotation)}, not {value}")
        return value


def _type_name(annotation: Any) -> str:
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    if arguments and typing.get_origin(annotation) is not list:
        return " or ".join(_type_name(a) for a in arguments)
    return getattr(annotation, "__name__", str(annotation))
