"""The stacked forward computes what each replica's own module computes."""

from __future__ import annotations

import pytest
import torch

from training.config import ModelConfig
from training.replicas import build_replicas
from training.stacked import StackedModel, mix_experts


def _replicas(architecture: str, count: int = 3) -> tuple[list, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    features = 2.0 * torch.randn(count, 50, 12, generator=generator) + 0.5  # (R, n, d)
    models = build_replicas(ModelConfig(architecture=architecture), 3, range(count), features)
    return models, features


@pytest.mark.parametrize("architecture", ["mmoe", "omoe", "shared_bottom"])
def test_stacked_outputs_equal_each_modules_outputs(architecture: str) -> None:
    models, features = _replicas(architecture)
    outputs = StackedModel(models)(features)  # (R, n, T)
    assert outputs.shape == (3, 50, 3)
    for replica, model in enumerate(models):
        expected, _ = model(features[replica])
        torch.testing.assert_close(outputs[replica], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("architecture", ["mmoe", "omoe", "shared_bottom"])
def test_module_layout_round_trips(architecture: str) -> None:
    models, _ = _replicas(architecture)
    stacked = StackedModel(models)
    parameters = stacked.module_parameters()
    for replica, model in enumerate(models):
        for name, value in model.named_parameters():
            assert torch.equal(parameters[name][replica], value.detach()), name
        for name, value in model.named_buffers():
            assert torch.equal(stacked.module_buffers()[name][replica], value), name
    reloaded = StackedModel(models)
    reloaded.load_module_state(parameters, stacked.module_buffers())
    for name, value in stacked.parameters.items():
        assert torch.equal(reloaded.parameters[name], value.detach()), name


def test_gradients_reach_every_parameter_of_its_own_replica_only() -> None:
    models, features = _replicas("mmoe")
    stacked = StackedModel(models)
    stacked(features)[1].sum().backward()  # replica 1's outputs only
    for name, value in stacked.parameters.items():
        assert value.grad is not None, name
        assert value.grad[1].abs().sum() > 0, name
        assert torch.count_nonzero(value.grad[0]) == 0 and torch.count_nonzero(value.grad[2]) == 0


@pytest.mark.parametrize("architecture", ["mmoe", "omoe", "shared_bottom"])
def test_stacked_gradients_equal_each_modules_gradients(architecture: str) -> None:
    models, features = _replicas(architecture)
    stacked = StackedModel(models)
    (stacked(features) ** 2).sum().backward()
    gradients = stacked.module_parameters({k: v.grad for k, v in stacked.parameters.items()})
    for replica, model in enumerate(models):
        outputs, _ = model(features[replica])
        (outputs**2).sum().backward()
        for name, value in model.named_parameters():
            torch.testing.assert_close(
                gradients[name][replica], value.grad, rtol=1e-4, atol=1e-5, msg=name
            )


@pytest.mark.parametrize("gates", [1, 2, 3])
def test_the_gate_mix_backward_is_the_matmuls(gates: int) -> None:
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(2, 5, gates, 4, dtype=torch.double, generator=generator)
    experts = torch.randn(2, 5, 4, 3, dtype=torch.double, generator=generator)
    assert torch.autograd.gradcheck(
        mix_experts, (weights.requires_grad_(), experts.requires_grad_())
    )
