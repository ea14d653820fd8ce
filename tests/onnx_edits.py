"""Real ONNX files that misbehave on purpose: the bundled model with nodes appended after its
`predictions`, its card's sha256 following the file (the embedded card is unchanged)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
from onnx import helper


def _append_after_predictions(
    version_dir: Path, nodes: list[onnx.NodeProto], constants: dict[str, list[float] | list[int]]
) -> None:
    path = version_dir / "model.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    [producer] = [node for node in graph.node if "predictions" in node.output]
    producer.output[list(producer.output).index("predictions")] = "predictions_raw"
    for name, values in constants.items():
        kind = onnx.TensorProto.INT64 if isinstance(values[0], int) else onnx.TensorProto.FLOAT
        graph.initializer.append(helper.make_tensor(name, kind, [len(values)], values))
    graph.node.extend(nodes)
    onnx.save(model, str(path))
    card = json.loads((version_dir / "model.json").read_text())
    card["onnx"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (version_dir / "model.json").write_text(json.dumps(card))


def fail_on_batches_of_two_or_more(version_dir: Path) -> None:
    """onnxruntime fails on any batch of more than one row (a Reshape to one row, its shape
    computed at run time so that shape inference keeps the batch axis); the warm-up's single
    row passes."""
    _append_after_predictions(
        version_dir,
        [
            helper.make_node("Shape", ["predictions_raw"], ["shape"]),
            helper.make_node("Mul", ["shape", "keep_columns"], ["columns"]),
            helper.make_node("Add", ["columns", "one_row"], ["one_row_shape"]),
            helper.make_node("Reshape", ["predictions_raw", "one_row_shape"], ["one"]),
            helper.make_node("Reshape", ["one", "shape"], ["predictions"]),
        ],
        {"keep_columns": [0, 1], "one_row": [1, 0]},
    )


def amplify_predictions(version_dir: Path, factor: float = 1e30) -> None:
    """Predictions times `factor`: finite for inputs near the training data, an overflow to
    infinity for large (yet allowed) feature values."""
    _append_after_predictions(
        version_dir,
        [helper.make_node("Mul", ["predictions_raw", "factor"], ["predictions"])],
        {"factor": [factor]},
    )
