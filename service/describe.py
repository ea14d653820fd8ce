"""How request values and feature names read inside error messages: short, bounded, exact."""

from __future__ import annotations

from typing import Any

import orjson


def json_kind(value: Any) -> str:
    """How a JSON value reads in a message: `a string ("abc")`, `null`, `an array`, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({orjson.dumps(shown).decode()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, list):
        return "an array"
    return "an object"


def name_range(names: list[str]) -> str:
    return f"{names}" if len(names) <= 6 else f"[{names[0]!r}, {names[1]!r}, ..., {names[-1]!r}]"
