"""A decoded inference request checked against a model's real graph signature: which inputs it
takes (all of them, by name, each with its datatype and its per-row dims) and which outputs it
gives. The signature is read from the onnxruntime session, so a model with more inputs (a tabular
model's `categorical`) is checked and described like any other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.echo import shown
from service.errors import InvalidInferenceRequestError, TooManyInstancesError
from service.model import ServedModel
from service.oip import datatypes
from service.oip.codec import DecodedRequest, InputTensor
from service.runtime import TensorSignature


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output in the protocol's terms: -1 for a variable dimension."""

    name: str
    datatype: str
    shape: list[int]

    @classmethod
    def of(cls, node: TensorSignature) -> TensorSpec:
        dims = [dim if isinstance(dim, int) else -1 for dim in node.shape]
        return cls(node.name, datatypes.of_onnx(node.type).name, dims)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}

    def __str__(self) -> str:
        return f"{self.name} ({self.datatype} {self.shape})"


def inputs_of(model: ServedModel) -> list[TensorSpec]:
    return [TensorSpec.of(node) for node in model.session.inputs]


def outputs_of(model: ServedModel) -> list[TensorSpec]:
    return [TensorSpec.of(node) for node in model.session.outputs]


def model_label(model: ServedModel) -> str:
    return f"model {model.name!r} version {model.version}"


def check_inputs(
    model: ServedModel, tensors: list[InputTensor], max_rows: int
) -> dict[str, np.ndarray]:
    """The request's tensors as the model's feeds: every input present, no other, each of the
    model's datatype and per-row dims, all with the same number of rows (1 to `max_rows`)."""
    expected = {spec.name: spec for spec in inputs_of(model)}
    given = {tensor.name: tensor for tensor in tensors}
    listed = ", ".join(str(spec) for spec in expected.values())
    for name in expected:
        if name not in given:
            raise InvalidInferenceRequestError(
                f"missing input {shown(name)!r}: {model_label(model)} takes {listed}"
            )
    for name in given:
        if name not in expected:
            raise InvalidInferenceRequestError(
                f"{model_label(model)} has no input {shown(name)!r}; its inputs are {listed}"
            )
    rows: dict[str, int] = {}
    for name, spec in expected.items():
        tensor = given[name]
        if tensor.datatype.name != spec.datatype:
            raise InvalidInferenceRequestError(
                f"input {shown(name)!r} is {tensor.datatype.name}, but {model_label(model)} takes "
                f"{spec.datatype} for it"
            )
        shape = list(tensor.array.shape)
        fits = len(shape) == len(spec.shape) and all(
            want in (-1, got) for want, got in zip(spec.shape[1:], shape[1:], strict=True)
        )
        if not fits:
            raise InvalidInferenceRequestError(
                f"input {shown(name)!r} has shape {shape}, but {model_label(model)} takes shape "
                f"{spec.shape} (-1: any number of rows)"
            )
        rows[name] = shape[0]
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"{name} {count}" for name, count in rows.items())
        raise InvalidInferenceRequestError(
            f"the inputs must have the same number of rows; they have {counts}"
        )
    count = next(iter(rows.values()))
    if count == 0:
        raise InvalidInferenceRequestError("the inputs have 0 rows; send at least one row")
    if count > max_rows:
        raise TooManyInstancesError(
            f"{count} rows in one request, the limit is {max_rows}; split the request into "
            "smaller ones (the server's limit is MMOE_MAX_INSTANCES)",
            {"instances": count, "max_instances": max_rows},
        )
    return {name: given[name].array for name in expected}


def chosen_outputs(model: ServedModel, request: DecodedRequest) -> list[tuple[str, bool]]:
    """(output name, as binary?) for each output to return, in the response's order."""
    available = [spec.name for spec in outputs_of(model)]
    if request.outputs is None:
        return [(name, request.binary(None)) for name in available]
    for choice in request.outputs:
        if choice.name not in available:
            raise InvalidInferenceRequestError(
                f"{model_label(model)} has no output {shown(choice.name)!r}; its outputs are "
                f"{', '.join(str(spec) for spec in outputs_of(model))}"
            )
    return [(choice.name, request.binary(choice)) for choice in request.outputs]
