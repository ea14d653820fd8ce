"""Shared-Bottom, OMoE and MMoE (Ma et al., KDD 2018) in pure PyTorch: no I/O, no training.

    MMoE:   y_k = h^k( Σ_i g^k(x)_i · f_i(x) ),  g^k(x) = softmax(W_gk x)    one gate per task
    OMoE:   y_k = h^k( Σ_i g(x)_i   · f_i(x) ),  g(x)   = softmax(W_g x)     one gate for all
    Shared-Bottom:  y_k = h^k( f(x) )                                          one shared MLP

The three share their parts: an input layer in front (a FeatureNormalizer for numeric features, or
a table's TabularInputs with embeddings), an ExpertPool of E experts evaluated as one batched
einsum, SoftmaxGates, and TaskTowers, also batched over tasks. Every forward takes the graph's
inputs and returns `(outputs, gate_weights)`: raw outputs (B, T) (logits for binary tasks) and gate
weights (B, G, E), or None for Shared-Bottom.

Shapes: B batch, d input features (D once encoded), E experts, H expert units, G gates, T tasks,
U tower units.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from service.contract import INPUT_FEATURES
from training.config import ModelConfig


def _uniform_fan_in(tensor: Tensor, fan_in: int) -> None:
    """nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(tensor, -bound, bound)


class InputLayer(nn.Module):
    """The graph's raw inputs -> (B, D) encoded rows, D = `output_dim`."""

    output_dim: int

    @property
    def input_widths(self) -> list[tuple[str, int]]:
        """The graph inputs it takes, in order: name and width (the axis after the batch)."""
        raise NotImplementedError


class FeatureNormalizer(InputLayer):
    """Standardises raw features with statistics fitted on training data; exported in the graph."""

    mean: Tensor
    std: Tensor

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("std", torch.ones(input_dim))
        self.output_dim = input_dim

    @property
    def input_widths(self) -> list[tuple[str, int]]:
        return [(INPUT_FEATURES, self.output_dim)]

    @torch.no_grad()
    def fit(self, features: Tensor) -> None:
        self.mean.copy_(features.mean(dim=0))
        self.std.copy_(features.std(dim=0).clamp_min(1e-6))

    def forward(self, features: Tensor) -> Tensor:
        return (features - self.mean) / self.std


class ExpertPool(nn.Module):
    """E one-hidden-layer ReLU experts f_i, all computed in one einsum."""

    def __init__(self, input_dim: int, num_experts: int, expert_units: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_experts, input_dim, expert_units))
        self.bias = nn.Parameter(torch.empty(num_experts, expert_units))
        _uniform_fan_in(self.weight, input_dim)
        _uniform_fan_in(self.bias, input_dim)

    def forward(self, features: Tensor) -> Tensor:
        hidden = torch.einsum("bd,edh->beh", features, self.weight)  # (B, E, H)
        return torch.relu(hidden + self.bias)


class SoftmaxGates(nn.Module):
    """G gates g(x) = softmax(W x) over E experts (no bias, as in the paper)."""

    def __init__(self, input_dim: int, num_gates: int, num_experts: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_gates, input_dim, num_experts))
        _uniform_fan_in(self.weight, input_dim)

    def forward(self, features: Tensor) -> Tensor:
        logits = torch.einsum("bd,gde->bge", features, self.weight)  # (B, G, E)
        return torch.softmax(logits, dim=-1)


class TaskTowers(nn.Module):
    """T towers h^k: in → U ReLU units → 1 output, batched over tasks."""

    def __init__(self, num_tasks: int, input_units: int, tower_units: int) -> None:
        super().__init__()
        self.hidden_weight = nn.Parameter(torch.empty(num_tasks, input_units, tower_units))
        self.hidden_bias = nn.Parameter(torch.empty(num_tasks, tower_units))
        self.output_weight = nn.Parameter(torch.empty(num_tasks, tower_units))
        self.output_bias = nn.Parameter(torch.empty(num_tasks))
        _uniform_fan_in(self.hidden_weight, input_units)
        _uniform_fan_in(self.hidden_bias, input_units)
        _uniform_fan_in(self.output_weight, tower_units)
        _uniform_fan_in(self.output_bias, tower_units)

    def forward(self, task_inputs: Tensor) -> Tensor:
        hidden = torch.einsum("bti,tiu->btu", task_inputs, self.hidden_weight)  # (B, T, U)
        hidden = torch.relu(hidden + self.hidden_bias)
        return torch.einsum("btu,tu->bt", hidden, self.output_weight) + self.output_bias  # (B, T)


Inputs = int | InputLayer  # d raw numeric features, or an input layer


def _input_layer(inputs: Inputs) -> InputLayer:
    return FeatureNormalizer(inputs) if isinstance(inputs, int) else inputs


class SharedBottom(nn.Module):
    """One shared hidden layer, then one tower per task."""

    def __init__(self, inputs: Inputs, num_tasks: int, bottom_units: int, tower_units: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.inputs = _input_layer(inputs)
        input_dim = self.inputs.output_dim
        self.bottom = nn.Sequential(nn.Linear(input_dim, bottom_units), nn.ReLU())
        self.towers = TaskTowers(num_tasks, bottom_units, tower_units)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, None]:
        shared = self.bottom(self.inputs(*inputs))  # (B, U_bottom)
        task_inputs = shared.unsqueeze(1).expand(-1, self.num_tasks, -1)  # (B, T, U_bottom)
        return self.towers(task_inputs), None


class MixtureOfExperts(nn.Module):
    """Experts mixed by `num_gates` softmax gates: one per task (MMoE) or one shared (OMoE)."""

    def __init__(
        self,
        inputs: Inputs,
        num_tasks: int,
        num_gates: int,
        num_experts: int,
        expert_units: int,
        tower_units: int,
    ) -> None:
        super().__init__()
        if num_gates not in (1, num_tasks):
            raise ValueError(f"num_gates must be 1 or num_tasks ({num_tasks}), got {num_gates}")
        self.num_tasks = num_tasks
        self.inputs = _input_layer(inputs)
        input_dim = self.inputs.output_dim
        self.experts = ExpertPool(input_dim, num_experts, expert_units)
        self.gates = SoftmaxGates(input_dim, num_gates, num_experts)
        self.towers = TaskTowers(num_tasks, expert_units, tower_units)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        encoded = self.inputs(*inputs)  # (B, D)
        expert_outputs = self.experts(encoded)  # (B, E, H)
        gate_weights = self.gates(encoded)  # (B, G, E)
        mixed = torch.einsum("bge,beh->bgh", gate_weights, expert_outputs)  # (B, G, H)
        task_inputs = mixed.expand(-1, self.num_tasks, -1)  # (B, T, H); no-op for MMoE
        return self.towers(task_inputs), gate_weights


class MMoE(MixtureOfExperts):
    def __init__(
        self, inputs: Inputs, num_tasks: int, num_experts: int, expert_units: int, tower_units: int
    ) -> None:
        super().__init__(inputs, num_tasks, num_tasks, num_experts, expert_units, tower_units)


class OMoE(MixtureOfExperts):
    def __init__(
        self, inputs: Inputs, num_tasks: int, num_experts: int, expert_units: int, tower_units: int
    ) -> None:
        super().__init__(inputs, num_tasks, 1, num_experts, expert_units, tower_units)


MultiTaskModel = SharedBottom | MixtureOfExperts


def build_model(config: ModelConfig, inputs: Inputs, num_tasks: int) -> MultiTaskModel:
    """The configured architecture over `inputs`: d numeric features, or an input layer."""
    if config.architecture == "shared_bottom":
        return SharedBottom(inputs, num_tasks, config.bottom_units, config.tower_units)
    model_class = MMoE if config.architecture == "mmoe" else OMoE
    return model_class(
        inputs, num_tasks, config.num_experts, config.expert_units, config.tower_units
    )


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def shared_capacity(model: MultiTaskModel) -> int:
    """Parameters in the shared part and the towers, the gates excluded (the paper's comparison)."""
    shared = model.bottom if isinstance(model, SharedBottom) else model.experts
    return count_parameters(shared) + count_parameters(model.towers)
