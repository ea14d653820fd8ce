"""R replicas of one architecture as stacked tensors, with a forward pass written for the stack.

`training.models` is the reference: one model, readable, exported to ONNX. Here the same math runs
for R replicas at once over parameters stacked along a leading replica axis and stored in the
layouts batched matmuls want: every expert of a replica is one column block of a (d, E·H) matrix,
so the experts are one `baddbmm` (matmul and bias in one call), the gates another. That is the
same arithmetic as a `vmap` of the module (tests check the outputs agree with the module's,
replica by replica) without the permutes, copies and separate bias additions that a `vmap` of the
module's einsums produces; `benchmarks/replica_forward.py` measures the difference.

Shapes: R replicas, B batch, d input features, E experts, H expert units, G gates, T tasks,
U tower units, I tower input units (H, or the Shared-Bottom width).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.func import stack_module_state

from training.models import MixtureOfExperts, MultiTaskModel, SharedBottom

Layout = tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]


def _experts(num_experts: int, units: int) -> Layout:
    """(R, E, d, H) <-> (R, d, E·H)."""
    return (
        lambda w: w.permute(0, 2, 1, 3).reshape(w.shape[0], w.shape[2], -1),
        lambda w: w.reshape(w.shape[0], w.shape[1], num_experts, units).permute(0, 2, 1, 3),
    )


def _gates(num_gates: int, num_experts: int) -> Layout:
    """(R, G, d, E) <-> (R, d, G·E)."""
    return (
        lambda w: w.permute(0, 2, 1, 3).reshape(w.shape[0], w.shape[2], -1),
        lambda w: w.reshape(w.shape[0], w.shape[1], num_gates, num_experts).permute(0, 2, 1, 3),
    )


def _expert_bias(units: int) -> Layout:
    """(R, E, H) <-> (R, 1, E·H)."""
    return (lambda b: b.flatten(1).unsqueeze(1), lambda b: b.reshape(b.shape[0], -1, units))


def _unsqueezed(dim: int) -> Layout:
    return (lambda w: w.unsqueeze(dim), lambda w: w.squeeze(dim))


_TRANSPOSED: Layout = (lambda w: w.transpose(1, 2), lambda w: w.transpose(1, 2))
_SAME: Layout = (lambda w: w, lambda w: w)


def _layouts(model: MultiTaskModel) -> dict[str, Layout]:
    """Per parameter name of `model`: to the stacked compute layout, and back to the module's."""
    towers = {
        "towers.hidden_weight": _SAME,  # (R, T, I, U)
        "towers.hidden_bias": _unsqueezed(2),  # (R, T, U) -> (R, T, 1, U)
        "towers.output_weight": _unsqueezed(3),  # (R, T, U) -> (R, T, U, 1)
        "towers.output_bias": _unsqueezed(2),  # (R, T) -> (R, T, 1)
    }
    if isinstance(model, SharedBottom):
        return {
            "bottom.0.weight": _TRANSPOSED,  # (R, U_bottom, d) -> (R, d, U_bottom)
            "bottom.0.bias": _unsqueezed(1),  # (R, U_bottom) -> (R, 1, U_bottom)
            **towers,
        }
    num_experts, _, units = model.experts.weight.shape
    num_gates = model.gates.weight.shape[0]
    return {
        "experts.weight": _experts(num_experts, units),
        "experts.bias": _expert_bias(units),
        "gates.weight": _gates(num_gates, num_experts),
        **towers,
    }


class StackedModel:
    """R replicas of one architecture; `parameters` are leaf tensors an optimizer can own."""

    def __init__(self, models: Sequence[MultiTaskModel]) -> None:
        stacked, buffers = stack_module_state(list(models))
        first = models[0]
        self._layouts = _layouts(first)
        self._shared_bottom = isinstance(first, SharedBottom)
        self.num_tasks = first.num_tasks
        self.num_experts = self.num_gates = 0
        if isinstance(first, MixtureOfExperts):
            self.num_experts = first.experts.weight.shape[0]
            self.num_gates = first.gates.weight.shape[0]
        self.parameters = {
            name: self._layouts[name][0](value.detach()).contiguous().requires_grad_()
            for name, value in stacked.items()
        }
        self.buffers = {name: value.unsqueeze(1) for name, value in buffers.items()}  # (R, 1, d)

    def module_parameters(self, parameters: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """`parameters` (default: the current ones) in the module's own layout: name -> (R, ...)."""
        parameters = self.parameters if parameters is None else parameters
        return {
            name: self._layouts[name][1](value.detach()).contiguous()
            for name, value in parameters.items()
        }

    def module_buffers(self) -> dict[str, Tensor]:
        return {name: value.squeeze(1).clone() for name, value in self.buffers.items()}

    def load_module_state(self, parameters: dict[str, Tensor], buffers: dict[str, Tensor]) -> None:
        """Take stacked parameters and buffers in the module's layout, e.g. a `ReplicaResult`'s."""
        self.parameters = {
            name: self._layouts[name][0](value).contiguous() for name, value in parameters.items()
        }
        self.buffers = {name: value.unsqueeze(1) for name, value in buffers.items()}

    def keep(self, kept: Tensor) -> dict[Tensor, Tensor]:
        """Drop the replicas not in `kept` (indices); returns old parameter -> new parameter."""
        renamed = {}
        for name, value in self.parameters.items():
            self.parameters[name] = value.detach()[kept].requires_grad_()
            renamed[value] = self.parameters[name]
        self.buffers = {name: value[kept] for name, value in self.buffers.items()}
        return renamed

    def __call__(self, features: Tensor) -> Tensor:
        """(R, B, d) raw features -> (R, B, T) raw outputs."""
        p = self.parameters
        normalized = (features - self.buffers["inputs.mean"]) / self.buffers["inputs.std"]
        replicas, batch, _ = normalized.shape
        tasks = self.num_tasks
        if self._shared_bottom:
            shared = torch.relu(torch.baddbmm(p["bottom.0.bias"], normalized, p["bottom.0.weight"]))
            task_inputs = shared.unsqueeze(1).expand(-1, tasks, -1, -1)  # (R, T, B, U_bottom)
        else:
            hidden = torch.baddbmm(p["experts.bias"], normalized, p["experts.weight"])
            experts = torch.relu(hidden).view(replicas, batch, self.num_experts, -1)  # (R,B,E,H)
            logits = torch.bmm(normalized, p["gates.weight"])  # (R, B, G·E)
            gates = torch.softmax(logits.view(replicas, batch, self.num_gates, -1), dim=-1)
            mixed = torch.matmul(gates, experts)  # (R, B, G, H)
            task_inputs = mixed.transpose(1, 2).expand(-1, tasks, -1, -1)  # (R, T, B, H)
        hidden_towers = torch.matmul(task_inputs, p["towers.hidden_weight"])  # (R, T, B, U)
        hidden_towers = torch.relu(hidden_towers + p["towers.hidden_bias"])
        outputs = torch.matmul(hidden_towers, p["towers.output_weight"]).squeeze(-1)  # (R, T, B)
        return (outputs + p["towers.output_bias"]).transpose(1, 2)  # (R, B, T)
