import pytest
import torch

from training.config import ModelConfig
from training.models import MMoE, OMoE, SharedBottom, build_model, count_parameters, shared_capacity

D, T = 100, 2


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_every_gate_row_sums_to_one():
    for model in (MMoE(D, T, 8, 16, 8), OMoE(D, T, 8, 16, 8)):
        _, gate_weights = model(torch.randn(32, D) * 5)
        torch.testing.assert_close(gate_weights.sum(-1), torch.ones(gate_weights.shape[:2]))
        assert (gate_weights >= 0).all()


def test_output_shapes():
    features = torch.randn(5, D)
    outputs, gates = MMoE(D, 3, 8, 16, 8)(features)
    assert outputs.shape == (5, 3) and gates.shape == (5, 3, 8)
    outputs, gates = OMoE(D, 3, 8, 16, 8)(features)
    assert outputs.shape == (5, 3) and gates.shape == (5, 1, 8)
    outputs, gates = SharedBottom(D, 3, 113, 8)(features)
    assert outputs.shape == (5, 3) and gates is None


def test_omoe_equals_mmoe_whose_gates_are_tied():
    omoe = OMoE(D, T, 8, 16, 8)
    mmoe = MMoE(D, T, 8, 16, 8)
    state = omoe.state_dict()
    state["gates.weight"] = state["gates.weight"].expand(T, -1, -1).clone()
    mmoe.load_state_dict(state)
    features = torch.randn(64, D)
    omoe_outputs, omoe_gates = omoe(features)
    mmoe_outputs, mmoe_gates = mmoe(features)
    torch.testing.assert_close(mmoe_outputs, omoe_outputs)
    torch.testing.assert_close(mmoe_gates, omoe_gates.expand(-1, T, -1))


def test_mmoe_mixes_each_experts_output_with_its_tasks_gate():
    model = MMoE(D, T, 4, 16, 8)
    features = torch.randn(3, D)
    _, gate_weights = model(features)
    normalized = model.inputs(features)
    experts = [
        torch.relu(normalized @ model.experts.weight[i] + model.experts.bias[i]) for i in range(4)
    ]
    for task in range(T):
        mixed = sum(gate_weights[:, task, i : i + 1] * experts[i] for i in range(4))
        tower_input = mixed.unsqueeze(1).expand(-1, T, -1)
        expected = model.towers(tower_input)[:, task]
        outputs, _ = model(features)
        torch.testing.assert_close(outputs[:, task], expected)


def test_shared_bottom_and_mmoe_have_about_the_same_capacity():
    config = ModelConfig()
    shared_bottom = build_model(config.model_copy(update={"architecture": "shared_bottom"}), D, T)
    mmoe = build_model(config, D, T)
    ratio = shared_capacity(shared_bottom) / shared_capacity(mmoe)
    assert ratio == pytest.approx(1.0, abs=0.03)
    gate_parameters = count_parameters(mmoe.gates)
    assert gate_parameters == T * D * 8 == 1600


def test_normalizer_standardises_with_training_statistics():
    model = MMoE(D, T, 8, 16, 8)
    features = torch.randn(1000, D) * 3 + 7
    model.inputs.fit(features)
    normalized = model.inputs(features)
    torch.testing.assert_close(normalized.mean(0), torch.zeros(D), atol=1e-4, rtol=0)
    torch.testing.assert_close(normalized.std(0), torch.ones(D), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("architecture", "gate_shape", "parameters"),
    [
        # experts 8·(100·16 + 16) + gates 2·100·8 + towers 2·(16·8 + 8 + 8 + 1)
        ("mmoe", (4, 2, 8), 12_928 + 1_600 + 290),
        # the same with one gate: 1·100·8
        ("omoe", (4, 1, 8), 12_928 + 800 + 290),
        # bottom 100·113 + 113, towers 2·(113·8 + 8 + 8 + 1), no gates
        ("shared_bottom", None, 11_413 + 1_842),
    ],
)
def test_build_model_builds_the_paper_default_of_each_architecture(
    architecture, gate_shape, parameters
):
    model = build_model(ModelConfig(architecture=architecture), D, T)
    outputs, gates = model(torch.randn(4, D))
    assert outputs.shape == (4, T)
    assert (None if gates is None else tuple(gates.shape)) == gate_shape
    assert count_parameters(model) == parameters
