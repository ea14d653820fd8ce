"""The artifact contract between training (the writer) and the service (the reader).

One place for names, literals, axes, file layout and the version rule, so that the exporter, the
export validator, the trainer's publisher and the service cannot drift apart. It imports nothing
from the project (an import-linter contract keeps it so): anything may depend on it.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

Architecture = Literal["mmoe", "omoe", "shared_bottom"]
TaskType = Literal["regression", "binary"]
ARCHITECTURES: Final[tuple[Architecture, ...]] = get_args(Architecture)

INPUT_FEATURES: Final = "features"  # float32 [batch, d], raw feature values (NaN: missing)
INPUT_CATEGORICAL: Final = "categorical"  # int64 [batch, C], category codes; tables only

# Category codes: each categorical feature's vocabulary (in its card) starts at FIRST_CATEGORY_CODE;
# a value not in it (unseen, or too rare in training) is OOV_CODE, a missing value MISSING_CODE.
OOV_CODE: Final = 0
MISSING_CODE: Final = 1
FIRST_CATEGORY_CODE: Final = 2
OUTPUT_PREDICTIONS: Final = "predictions"  # float32 [batch, T]: values or probabilities
OUTPUT_GATES: Final = "gates"  # float32 [batch, G, E]; G = T (MMoE), 1 (OMoE); absent otherwise
BATCH_AXIS: Final = "batch"

# The largest magnitude a served feature value may have. Far beyond any value a model is trained
# on, and far enough below float32's limit (3.4e38) that the bundled models' outputs stay finite
# for any input within it (a model's outputs that still overflow are refused, never answered).
MAX_FEATURE_MAGNITUDE: Final = 1e12

# 18 is the lowest opset the torch dynamo exporter emits; both onnxruntime's CPU and CUDA
# providers implement every operator this model uses at that opset.
ONNX_OPSET: Final = 18

MODEL_FILE: Final = "model.onnx"
CARD_FILE: Final = "model.json"
CARD_METADATA_KEY: Final = "model_card"  # ONNX metadata_props key holding the card as JSON
# models/<name>/promoted.json: {"version": N, ...}, the version served when a request names none.
# Without it, the highest version is. Versions above it are candidates, served only by number.
PROMOTED_FILE: Final = "promoted.json"

# Model names become directory names and URL path segments.
MODEL_NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

# A version is a positive integer written the one way: ASCII digits, no sign, no leading zero.
# It is a directory name, a path segment and a JSON number, so it is bounded to fit all three.
MAX_VERSION: Final = 2**31 - 1
_VERSION_TEXT: Final = re.compile(r"[1-9][0-9]{0,9}")
VERSION_RULE: Final = f"a version is a whole number from 1 to {MAX_VERSION} with no leading zero"


def parse_version(text: str) -> int:
    """'1', '2', ... -> the version; ValueError (saying the rule) for '0', '01', '+1', '²', ..."""
    if _VERSION_TEXT.fullmatch(text) is None or int(text) > MAX_VERSION:
        raise ValueError(VERSION_RULE)
    return int(text)


def is_version(text: str) -> bool:
    """Whether `text` names a version under `parse_version`'s rule."""
    try:
        parse_version(text)
    except ValueError:
        return False
    return True


def gate_count(architecture: Architecture, num_tasks: int) -> int:
    """How many gates (rows of the `gates` output) an architecture exports: 0 means no output."""
    if architecture == "mmoe":
        return num_tasks
    if architecture == "omoe":
        return 1
    if architecture == "shared_bottom":
        return 0
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
