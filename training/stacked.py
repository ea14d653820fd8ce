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


def _column_blocks(blocks: int, width: int) -> Layout:
    """(R, K, d, W) <-> (R, d, K·W): K matrices side by side, as one matmul's weight."""
    return (
        lambda w: w.permute(0, 2, 1, 3).reshape(w.shape[0], w.shape[2], -1),
        lambda w: w.reshape(w.shape[0], w.shape[1], blocks, width).permute(0, 2, 1, 3),
    )


def _unsqueezed(dim: int) -> Layout:
    return (lambda w: w.unsqueeze(dim), lambda w: w.squeeze(dim))


def _flat_row(width: int) -> Layout:
    """(R, T, U) <-> (R, 1, T·U)."""
    return (lambda b: b.flatten(1).unsqueeze(1), lambda b: b.reshape(b.shape[0], -1, width))


_TRANSPOSED: Layout = (lambda w: w.transpose(1, 2), lambda w: w.transpose(1, 2))
_SAME: Layout = (lambda w: w, lambda w: w)


def _layouts(model: MultiTaskModel) -> dict[str, Layout]:
    """Per parameter name of `model`: to the stacked compute layout, and back to the module's."""
    num_tasks, _, tower_units = model.towers.hidden_weight.shape
    if _towers_share_input(model):  # one matmul for every tower
        towers = {
            "towers.hidden_weight": _column_blocks(num_tasks, tower_units),  # -> (R, I, T·U)
            "towers.hidden_bias": _flat_row(tower_units),  # (R, T, U) -> (R, 1, T·U)
            "towers.output_weight": _unsqueezed(1),  # (R, T, U) -> (R, 1, T, U)
            "towers.output_bias": _unsqueezed(1),  # (R, T) -> (R, 1, T)
        }
    else:
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
        "experts.weight": _column_blocks(num_experts, units),  # (R, E, d, H) -> (R, d, E·H)
        "experts.bias": _flat_row(units),  # (R, E, H) -> (R, 1, E·H)
        "gates.weight": _column_blocks(num_gates, num_experts),  # (R, G, d, E) -> (R, d, G·E)
        **towers,
    }


def _towers_share_input(model: MultiTaskModel) -> bool:
    """Shared-Bottom's towers all read the bottom; OMoE's all read the one gate's mix."""
    return isinstance(model, SharedBottom) or model.gates.weight.shape[0] == 1


def _softmax(logits: Tensor) -> Tensor:
    """Softmax over the last axis; on a short last axis (a gate's E experts) several times faster
    than `torch.softmax`, forward and backward, on CPU."""
    exponentials = (logits - logits.amax(dim=-1, keepdim=True)).exp()
    return exponentials / exponentials.sum(dim=-1, keepdim=True)


class _GateMix(torch.autograd.Function):
    """(R, B, G, E) gates @ (R, B, E, H) experts -> (R, B, G, H), with a backward written for it.

    The products are R·B tiny matrices; a batched matmul over them is slowest in the backward's
    experts gradient, whose inner size is G (1 or 2). Here that gradient is G broadcast
    multiply-adds instead: about half the time of the whole mix, forward and backward, on CPU.
    """

    @staticmethod
    def forward(ctx, gates: Tensor, experts: Tensor) -> Tensor:
        ctx.save_for_backward(gates, experts)
        return torch.matmul(gates, experts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        gates, experts = ctx.saved_tensors
        grad_gates = torch.matmul(grad, experts.transpose(-1, -2))
        grad_experts = gates[:, :, 0, :, None] * grad[:, :, 0, None, :]
        for gate in range(1, gates.shape[2]):
            grad_experts.addcmul_(gates[:, :, gate, :, None], grad[:, :, gate, None, :])
        return grad_gates, grad_experts


def mix_experts(gates: Tensor, experts: Tensor) -> Tensor:
    """Each gate's weighted sum of the experts: (R, B, G, E), (R, B, E, H) -> (R, B, G, H)."""
    return _GateMix.apply(gates, experts)


class StackedModel:
    """R replicas of one architecture; `parameters` are leaf tensors an optimizer can own."""

    def __init__(self, models: Sequence[MultiTaskModel]) -> None:
        stacked, buffers = stack_module_state(list(models))
        first = models[0]
        self._layouts = _layouts(first)
        self._shared_bottom = isinstance(first, SharedBottom)
        self._towers_share_input = _towers_share_input(first)
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
        if self._shared_bottom:
            bottom = torch.baddbmm(p["bottom.0.bias"], normalized, p["bottom.0.weight"])
            return self._towers(torch.relu(bottom).unsqueeze(2))  # (R, B, 1, U_bottom)
        hidden = torch.baddbmm(p["experts.bias"], normalized, p["experts.weight"])
        experts = torch.relu(hidden).view(replicas, batch, self.num_experts, -1)  # (R, B, E, H)
        logits = torch.bmm(normalized, p["gates.weight"])  # (R, B, G·E)
        gates = _softmax(logits.view(replicas, batch, self.num_gates, -1))  # (R, B, G, E)
        return self._towers(mix_experts(gates, experts))  # (R, B, G, H)

    def _towers(self, inputs: Tensor) -> Tensor:
        """(R, B, G, I) tower inputs, one per task or one for all (G = 1) -> (R, B, T) outputs."""
        p = self.parameters
        replicas, batch, _, _ = inputs.shape
        if self._towers_share_input:
            hidden = torch.baddbmm(
                p["towers.hidden_bias"], inputs.squeeze(2), p["towers.hidden_weight"]
            )  # (R, B, T·U)
            hidden = torch.relu(hidden).view(replicas, batch, self.num_tasks, -1)  # (R, B, T, U)
            return (hidden * p["towers.output_weight"]).sum(dim=-1) + p["towers.output_bias"]
        task_inputs = inputs.transpose(1, 2)  # (R, T, B, I)
        hidden = torch.matmul(task_inputs, p["towers.hidden_weight"])  # (R, T, B, U)
        hidden = torch.relu(hidden + p["towers.hidden_bias"])
        outputs = torch.matmul(hidden, p["towers.output_weight"]).squeeze(-1)  # (R, T, B)
        return (outputs + p["towers.output_bias"]).transpose(1, 2)  # (R, B, T)
