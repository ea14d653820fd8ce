"""The batched replica trainer trains each replica exactly as the single-model trainer would."""

from __future__ import annotations

import pytest
import torch

from training import synthetic
from training.config import ModelConfig, SyntheticDataConfig, TrainConfig
from training.replicas import (
    ReplicaResult,
    ReplicaSplits,
    build_replicas,
    evaluate_replicas,
    train_replicas,
)
from training.trainer import TensorSplit, evaluate, initial_model, train

TASKS = ["regression", "regression"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls on a busy 2-core machine run far faster and steadier on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TRAIN = TrainConfig(epochs=6, patience=2, batch_size=64)


def _data(seed: int, correlation: float = 0.5) -> synthetic.SyntheticDataset:
    config = SyntheticDataConfig(
        correlation=correlation, train_size=300, validation_size=100, test_size=100, seed=seed
    )
    return synthetic.generate(config)


def _splits(datasets: list[synthetic.SyntheticDataset], name: str) -> ReplicaSplits:
    parts = [getattr(d, name) for d in datasets]
    return ReplicaSplits.from_numpy([p.features for p in parts], [p.labels for p in parts])


def _train_replicas(architecture: str, seeds: list[int], datasets: list) -> tuple:
    model_config = ModelConfig(architecture=architecture)
    train_split = _splits(datasets, "train")
    models = build_replicas(model_config, 2, seeds, train_split.features)
    result = train_replicas(
        models, seeds, train_split, _splits(datasets, "validation"), TASKS, TRAIN, False
    )
    return models, result


@pytest.mark.parametrize("architecture", ["mmoe", "omoe", "shared_bottom"])
def test_one_replica_matches_the_single_trainer(architecture: str) -> None:
    seed = 7
    data = _data(seed)
    model_config = ModelConfig(architecture=architecture)
    model = initial_model(model_config, torch.from_numpy(data.train.features), 2, seed)
    single = train(
        model,
        TensorSplit.from_numpy(data.train.features, data.train.labels),
        TensorSplit.from_numpy(data.validation.features, data.validation.labels),
        TASKS,
        TRAIN.model_copy(update={"seed": seed}),
        show_progress=False,
    )

    models, result = _train_replicas(architecture, [seed], [data])

    assert result.best_epoch[0] == single.best_epoch
    assert result.epochs_run[0] == len(single.history)
    validation = [record["validation_loss"] for record in single.history]
    torch.testing.assert_close(
        torch.from_numpy(result.validation_loss[0, : len(validation)]).double(),
        torch.tensor(validation, dtype=torch.float64),
        rtol=1e-4,
        atol=1e-6,
    )
    replica_state = result.state_dict(0)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(replica_state[name], value, rtol=1e-4, atol=1e-5)
    test_split = _splits([data], "test")
    single_test = evaluate(
        model, TensorSplit.from_numpy(data.test.features, data.test.labels), TASKS
    )
    replica_test = evaluate_replicas(models, result, test_split, TASKS)[0]
    torch.testing.assert_close(torch.from_numpy(replica_test), single_test, rtol=1e-4, atol=1e-6)


def test_replicas_are_independent() -> None:
    """Each replica's result depends on its own seed only, not on who it is batched with."""
    seeds = [1, 2, 3]
    datasets = [_data(seed) for seed in seeds]
    _, together = _train_replicas("mmoe", seeds, datasets)
    _, alone = _train_replicas("mmoe", [2], [datasets[1]])

    train_split = _splits(datasets, "train")
    assert not torch.equal(train_split.features[0], train_split.features[1])
    first, second = together.state_dict(0), together.state_dict(1)
    assert not torch.allclose(first["experts.weight"], second["experts.weight"])
    assert len(set(together.best_validation_loss.tolist())) == len(seeds)
    for name, value in alone.state_dict(0).items():
        torch.testing.assert_close(together.state_dict(1)[name], value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        torch.from_numpy(together.validation_loss[1]),
        torch.from_numpy(alone.validation_loss[0]),
        rtol=1e-4,
        atol=1e-6,
        equal_nan=True,
    )


def test_early_stopped_replicas_keep_their_best_weights() -> None:
    """A replica dropped from the batch early still reports its best epoch's weights and loss."""
    seeds = [4, 5]
    datasets = [_data(seed) for seed in seeds]
    config = TRAIN.model_copy(update={"epochs": 30, "patience": 1, "learning_rate": 0.05})
    train_split = _splits(datasets, "train")
    models = build_replicas(ModelConfig(), 2, seeds, train_split.features)
    result = train_replicas(
        models, seeds, train_split, _splits(datasets, "validation"), TASKS, config, False
    )
    for r in range(len(seeds)):
        history = result.validation_loss[r, : result.epochs_run[r]]
        assert result.best_epoch[r] == int(history.argmin()) + 1
        assert result.best_validation_loss[r] == pytest.approx(float(history.min()))
    validation = evaluate_replicas(models, result, _splits(datasets, "validation"), TASKS)
    assert validation.sum(axis=1) == pytest.approx(result.best_validation_loss, rel=1e-4)


def test_no_replica_stops_before_min_epochs_and_each_stops_after_its_patience() -> None:
    """With `min_epochs`, the first epochs are a fixed budget; past it early stopping applies,
    and a replica's history is the one it would have had with no early stopping at all."""
    seeds = [4, 5, 6]
    datasets = [_data(seed) for seed in seeds]
    config = TRAIN.model_copy(update={"epochs": 30, "patience": 2, "learning_rate": 0.05})
    train_split = _splits(datasets, "train")
    validation = _splits(datasets, "validation")

    def train(min_epochs: int, patience: int) -> ReplicaResult:
        models = build_replicas(ModelConfig(), 2, seeds, train_split.features)
        run_config = config.model_copy(update={"patience": patience})
        return train_replicas(
            models, seeds, train_split, validation, TASKS, run_config, False, min_epochs=min_epochs
        )

    budgeted, unstopped = train(min_epochs=12, patience=2), train(min_epochs=0, patience=30)
    assert (budgeted.epochs_run >= 12).all() and (unstopped.epochs_run == 30).all()
    assert (budgeted.epochs_run < 30).any()  # early stopping did act past the budget
    for r, epochs_run in enumerate(budgeted.epochs_run):
        assert epochs_run == 30 or epochs_run - budgeted.best_epoch[r] >= 2
        torch.testing.assert_close(
            torch.from_numpy(budgeted.validation_loss[r, :epochs_run]),
            torch.from_numpy(unstopped.validation_loss[r, :epochs_run]),
            rtol=1e-4,
            atol=1e-6,
        )
