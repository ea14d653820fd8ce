"""The artifact contract between training (the writer) and the service (the reader).

One place for names, axes and file layout so that the exporter, the export validator and the
service cannot drift apart. Pure Python: the service imports it without torch.
"""

from __future__ import annotations

import re
from typing import Final

INPUT_FEATURES: Final = "features"  # float32 [batch, d], raw feature values
OUTPUT_PREDICTIONS: Final = "predictions"  # float32 [batch, T]: values or probabilities
OUTPUT_GATES: Final = "gates"  # float32 [batch, G, E]; G = T (MMoE), 1 (OMoE); absent otherwise
BATCH_AXIS: Final = "batch"

# 18 is the lowest opset the torch dynamo exporter emits; both onnxruntime's CPU and CUDA
# providers implement every operator this model uses at that opset.
ONNX_OPSET: Final = 18

MODEL_FILE: Final = "model.onnx"
CARD_FILE: Final = "model.json"
CARD_METADATA_KEY: Final = "model_card"  # ONNX metadata_props key holding the card as JSON

ARCHITECTURES: Final = ("mmoe", "omoe", "shared_bottom")
TASK_TYPES: Final = ("regression", "binary")

# Model names become directory names and URL path segments.
MODEL_NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def gate_count(architecture: str, num_tasks: int) -> int:
    """How many gates (rows of the `gates` output) an architecture exports: 0 means no output."""
    if architecture == "mmoe":
        return num_tasks
    if architecture == "omoe":
        return 1
    if architecture == "shared_bottom":
        return 0
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
