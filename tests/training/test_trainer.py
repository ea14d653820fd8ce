import pytest
import torch

from training import synthetic
from training.config import ModelConfig, SyntheticDataConfig, TrainConfig
from training.trainer import TensorSplit, initial_model, per_task_losses, train

DATA = SyntheticDataConfig(input_dim=20, train_size=400, validation_size=100, test_size=10)


def splits(config: SyntheticDataConfig = DATA) -> tuple[TensorSplit, TensorSplit]:
    data = synthetic.generate(config)
    return (
        TensorSplit.from_numpy(data.train.features, data.train.labels),
        TensorSplit.from_numpy(data.validation.features, data.validation.labels),
    )


def trained(config: TrainConfig, architecture: str = "mmoe"):
    train_split, validation_split = splits()
    model_config = ModelConfig(architecture=architecture)
    model = initial_model(model_config, train_split.features, DATA.num_tasks, config.seed)
    result = train(
        model, train_split, validation_split, ["regression"] * 2, config, show_progress=False
    )
    return model, result


def test_same_seed_gives_identical_weights_and_history():
    config = TrainConfig(epochs=3, batch_size=64, seed=5)
    first_model, first = trained(config)
    second_model, second = trained(config)
    assert first.history == second.history
    for name, value in first_model.state_dict().items():
        torch.testing.assert_close(value, second_model.state_dict()[name], rtol=0, atol=0)


def test_another_seed_gives_other_weights():
    first_model, _ = trained(TrainConfig(epochs=1, seed=1))
    second_model, _ = trained(TrainConfig(epochs=1, seed=2))
    assert not torch.equal(first_model.experts.weight, second_model.experts.weight)


def test_training_lowers_validation_loss_and_keeps_the_best_epoch():
    _model, result = trained(TrainConfig(epochs=15, batch_size=32, learning_rate=3e-3))
    losses = [record["validation_loss"] for record in result.history]
    assert losses[-1] < losses[0] / 2
    assert result.best_validation_loss == min(losses)
    assert result.history[result.best_epoch - 1]["validation_loss"] == min(losses)


def test_early_stopping_waits_patience_epochs_after_the_best():
    _, result = trained(TrainConfig(epochs=200, patience=2, learning_rate=0.05, batch_size=400))
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2


def test_per_task_losses_use_mse_for_regression_and_bce_for_binary():
    outputs = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    labels = torch.tensor([[1.0, 1.0], [3.0, 0.0]])
    losses = per_task_losses(outputs, labels, ["regression", "binary"])
    expected_mse = ((0.0 - 1.0) ** 2 + (1.0 - 3.0) ** 2) / 2
    expected_bce = (
        torch.nn.functional.softplus(torch.tensor(-2.0))
        + torch.nn.functional.softplus(torch.tensor(-1.0))
    ) / 2
    torch.testing.assert_close(losses, torch.stack([torch.tensor(expected_mse), expected_bce]))


TOWER_PARAMETERS = ("hidden_weight", "hidden_bias", "output_weight", "output_bias")


@pytest.mark.parametrize(("loss_weights", "trained_task"), [([0.0, 1.0], 1), ([1.0, 0.0], 0)])
def test_a_task_with_zero_loss_weight_gets_no_updates(loss_weights, trained_task):
    """A task's tower learns only from its own loss: at weight 0 its gradient is 0, and so is
    Adam's update, while the other tower moves."""
    config = TrainConfig(epochs=2, seed=3, loss_weights=loss_weights)
    model, result = trained(config)
    initial = initial_model(ModelConfig(), splits()[0].features, DATA.num_tasks, config.seed)
    for name in TOWER_PARAMETERS:
        before = getattr(initial.towers, name)[1 - trained_task]
        after = getattr(model.towers, name)[1 - trained_task]
        torch.testing.assert_close(after, before, rtol=0, atol=0)
        assert not torch.equal(
            getattr(model.towers, name)[trained_task],
            getattr(initial.towers, name)[trained_task],
        )
    record = result.history[0]
    assert record["validation_loss"] == record["validation_task_losses"][trained_task]
