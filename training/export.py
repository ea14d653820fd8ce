"""ONNX export per the artifact contract, and the check that every export must pass.

The exported graph takes raw `features` (normalisation and imputation are inside) and, for a table
with categorical columns, their `categorical` codes; it returns `predictions` (probabilities for
binary tasks) and, for mixture models, `gates`. After export, onnxruntime and PyTorch run the same
inputs; any difference in names, shapes or values beyond the stated tolerances raises
`ExportValidationError` naming the output.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import Tensor, nn

from service.contract import (
    BATCH_AXIS,
    CARD_METADATA_KEY,
    INPUT_CATEGORICAL,
    INPUT_FEATURES,
    ONNX_OPSET,
    OUTPUT_GATES,
    OUTPUT_PREDICTIONS,
)
from training.models import MixtureOfExperts, MultiTaskModel, SharedBottom

logger = logging.getLogger(__name__)
# The exporter warns on every run that torchvision's operators are not registered; we use none.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


class ExportValidationError(RuntimeError):
    """The exported graph does not match the PyTorch model it came from."""

    def __init__(self, output: str, problem: str) -> None:
        super().__init__(f"export validation failed for output {output!r}: {problem}")
        self.output = output
        self.problem = problem


class InferenceGraph(nn.Module):
    """What gets exported: the model plus the output activation for binary tasks."""

    binary_tasks: Tensor

    def __init__(self, model: MultiTaskModel, task_types: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.has_gates = not isinstance(model, SharedBottom)
        binary = torch.tensor([kind == "binary" for kind in task_types])
        self.register_buffer("binary_tasks", binary, persistent=False)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        outputs, gate_weights = self.model(*inputs)
        predictions = torch.where(self.binary_tasks, torch.sigmoid(outputs), outputs)
        return (predictions, gate_weights) if self.has_gates else (predictions,)

    @property
    def output_names(self) -> list[str]:
        return [OUTPUT_PREDICTIONS, OUTPUT_GATES] if self.has_gates else [OUTPUT_PREDICTIONS]

    @property
    def input_signature(self) -> list[tuple[str, int]]:
        """The graph's inputs in order: name and width (the axis after the batch)."""
        return self.model.inputs.input_widths

    @torch.no_grad()
    def reference_outputs(self, feeds: Feeds) -> dict[str, np.ndarray]:
        self.eval()
        arrays = as_feeds(feeds)
        outputs = self(*(torch.from_numpy(arrays[name]) for name, _ in self.input_signature))
        return {name: value.numpy() for name, value in zip(self.output_names, outputs, strict=True)}


Feeds = Mapping[str, np.ndarray] | np.ndarray  # input name -> rows; an array alone is `features`


def as_feeds(feeds: Feeds) -> Mapping[str, np.ndarray]:
    return {INPUT_FEATURES: feeds} if isinstance(feeds, np.ndarray) else feeds


def export_onnx(graph: InferenceGraph, path: Path, card_json: str) -> None:
    """Write `graph` to `path` as ONNX with a dynamic batch axis and the card in its metadata."""
    graph.eval()
    example = [
        torch.zeros(2, width, dtype=torch.int64 if name == INPUT_CATEGORICAL else torch.float32)
        for name, width in graph.input_signature
    ]
    batch = torch.export.Dim(BATCH_AXIS)
    dynamic_shapes: Any = (tuple({0: batch} for _ in example),)  # forward(*inputs): one tuple
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation chatter
        program = torch.onnx.export(
            graph,
            tuple(example),
            input_names=[name for name, _ in graph.input_signature],
            output_names=graph.output_names,
            dynamic_shapes=dynamic_shapes,
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,
        )
    if program is None:  # only the legacy exporter returns None, and dynamo=True is not that
        raise RuntimeError("torch.onnx.export returned no ONNX program")
    proto = program.model_proto
    _name_batch_axis(proto)
    onnx.helper.set_model_props(proto, {CARD_METADATA_KEY: card_json})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, str(path))


def _name_batch_axis(proto: onnx.ModelProto) -> None:
    """Every input and output's first axis is called `batch`, whatever the exporter named it."""
    for value in [*proto.graph.input, *proto.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS


def expected_signature(graph: InferenceGraph, num_tasks: int) -> dict[str, list[int | None]]:
    """Output name -> shape with None for the batch axis, as the card records it."""
    signature: dict[str, list[int | None]] = {OUTPUT_PREDICTIONS: [None, num_tasks]}
    if isinstance(graph.model, MixtureOfExperts):
        gates = graph.model.gates.weight
        signature[OUTPUT_GATES] = [None, gates.shape[0], gates.shape[2]]
    return signature


def validate_export(
    path: Path,
    graph: InferenceGraph,
    inputs: Mapping[str, Feeds],
    signature: Mapping[str, list[int | None]],
    rtol: float,
    atol: float,
) -> dict[str, float]:
    """Run onnxruntime and PyTorch on each named batch of feeds; return the worst |difference|."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    declared_inputs = [(node.name, node.shape) for node in session.get_inputs()]
    expected_inputs = [(name, [BATCH_AXIS, width]) for name, width in graph.input_signature]
    if declared_inputs != expected_inputs:
        raise ExportValidationError(
            graph.input_signature[0][0],
            f"graph declares inputs {declared_inputs}, expected {expected_inputs}",
        )
    declared_outputs = {node.name: node.shape for node in session.get_outputs()}
    for name, shape in signature.items():
        expected = [BATCH_AXIS, *shape[1:]]
        if declared_outputs.get(name) != expected:
            raise ExportValidationError(
                name, f"declared shape {declared_outputs.get(name)}, expected {expected}"
            )
    if set(declared_outputs) != set(signature):
        extra = sorted(set(declared_outputs) - set(signature))
        raise ExportValidationError(extra[0], "the graph has an output the contract does not")

    worst = dict.fromkeys(signature, 0.0)
    for input_name, feeds in inputs.items():
        expected_outputs = graph.reference_outputs(feeds)
        actual = session.run(list(signature), dict(as_feeds(feeds)))
        for (name, reference), value in zip(expected_outputs.items(), actual, strict=True):
            if value.shape != reference.shape or value.dtype != np.float32:
                raise ExportValidationError(
                    name,
                    f"on {input_name} inputs returned {value.dtype}{list(value.shape)}, "
                    f"expected float32{list(reference.shape)}",
                )
            difference = float(np.max(np.abs(value - reference), initial=0.0))
            if not np.allclose(value, reference, rtol=rtol, atol=atol):
                raise ExportValidationError(
                    name,
                    f"on {input_name} inputs differs from PyTorch by up to {difference:.3g} "
                    f"(rtol={rtol}, atol={atol})",
                )
            worst[name] = max(worst[name], difference)
    logger.info("export validated: max |onnxruntime - torch| %s", worst)
    return worst
