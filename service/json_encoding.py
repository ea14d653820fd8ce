"""JSON bytes from Python values and numpy arrays, by orjson. Imports nothing from the project,
so the middleware and the error handlers can use it without loading the model runtime."""

from __future__ import annotations

from typing import Any, Final

import orjson

JSON_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY


def encode(content: Any) -> bytes:
    return orjson.dumps(content, option=JSON_OPTIONS)
