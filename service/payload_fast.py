"""The common /predict body, from bytes to one array of numbers without a Python float per value.

`{"instances": [[d numbers], ...], ...}` is the most frequent body and the largest. The plain path
(`service.payload`) has orjson build a Python float per value and numpy read them all back;
here simdjson parses the body in place and hands every number over as one buffer of doubles
(several times faster on a 256-row body). This path only answers bodies it can vouch for:
anything else (named features, a wrong field or value, a string with an escape, a duplicate key)
gives None, and the plain path parses the body again and says exactly what is wrong. Both paths
therefore give the same numbers and the same errors; the tests hold them to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import simdjson

from service.contract import MAX_VERSION
from service.payload import REQUEST_FIELDS, within_magnitude

ALLOWED_FIELDS = frozenset(REQUEST_FIELDS)
BYTE_ORDER_MARK = b"\xef\xbb\xbf"  # simdjson skips it; orjson (the reference) refuses it


@dataclass(frozen=True)
class ArrayBody:
    """A body whose instances are all arrays of numbers of one length."""

    values: np.ndarray  # float64 [n, length], exactly as written
    return_gates: bool
    model: str | None
    version: int | Literal["latest"] | None


def decode_array_body(body: bytes, max_instances: int) -> ArrayBody | None:
    """The body as an `ArrayBody`, or None when the plain path must decide."""
    if b"\\" in body or body.startswith(BYTE_ORDER_MARK):
        return None  # an escape in a string, or a BOM: the plain path's reading is the reference
    parser = simdjson.Parser()
    try:
        document = parser.parse(body)
    except (ValueError, RuntimeError):  # not JSON, or numbers simdjson will not hold
        return None
    if not isinstance(document, simdjson.Object):
        return None
    keys = list(document.keys())
    fields = set(keys)
    if "instances" not in fields or len(fields) != len(keys) or not fields <= ALLOWED_FIELDS:
        return None
    # (looking up a missing key in a simdjson object costs an exception: ask the set first)
    return_gates = document["return_gates"] if "return_gates" in fields else True
    model = document["model"] if "model" in fields else None
    version = document["version"] if "version" in fields else None
    if not isinstance(return_gates, bool) or (model is not None and not isinstance(model, str)):
        return None
    checked_version: int | Literal["latest"] | None
    if version is None or version == "latest":
        checked_version = None if version is None else "latest"
    elif type(version) is int and 1 <= version <= MAX_VERSION:
        checked_version = version
    else:
        return None
    instances = document["instances"]
    if not isinstance(instances, simdjson.Array) or not 0 < len(instances) <= max_instances:
        return None
    rows = len(instances)
    # Every instance an array of one length, and no '[' anywhere else: no nested arrays.
    lengths = {len(row) if isinstance(row, simdjson.Array) else -1 for row in instances}
    if len(lengths) != 1 or -1 in lengths or body.count(b"[") != rows + 1:
        return None
    try:
        flat = instances.as_buffer(of_type="d")  # raises unless every value is a number
    except (TypeError, ValueError, RuntimeError):
        return None
    values = np.frombuffer(flat, dtype=np.float64).reshape(rows, lengths.pop())
    return ArrayBody(values, return_gates, model, checked_version)


def to_float32(values: np.ndarray) -> np.ndarray | None:
    """float64 -> float32, or None when a value is beyond MAX_FEATURE_MAGNITUDE (the plain path
    says which one)."""
    return values.astype(np.float32) if within_magnitude(values) else None
