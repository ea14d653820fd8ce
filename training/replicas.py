"""Train R independent runs of one architecture at once, as one batched model.

Each replica r is exactly what `training.trainer.train` would train for seed s_r: the repository's
model is built and initialised after `seed_everything(s_r)`, its normalizer fitted on its own
training rows, and its batch order drawn from a generator seeded with s_r. Then the R models'
parameters are stacked and run as one `training.stacked.StackedModel`: R small matmuls become one
batched matmul, and the Python overhead of a step is paid once for R runs.

Replicas share nothing but the step counter: the loss is the sum of the replicas' losses, so each
replica's gradient is its own, and Adam is elementwise. A replica that early-stops is dropped from
the batch (parameters and Adam state alike), so the rest run at full speed.

Given a test split, every epoch's test loss is recorded too (of the weights at that epoch), so a
run trained for a fixed budget yields its whole learning curve: `min_epochs` is that budget (no
replica stops before it; past it, early stopping applies), and with `patience >= epochs` nothing
stops early at all.

Shapes: R replicas, n rows, B batch, d input features, T tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor
from torch.func import vmap
from tqdm.auto import tqdm

from training.config import ModelConfig, TrainConfig
from training.models import MultiTaskModel
from training.stacked import StackedModel
from training.trainer import initial_model, per_task_losses


@dataclass(frozen=True)
class ReplicaSplits:
    """One split of every replica's data set, stacked."""

    features: Tensor  # (R, n, d) float32
    labels: Tensor  # (R, n, T) float32

    @classmethod
    def from_numpy(
        cls, features: Sequence[np.ndarray], labels: Sequence[np.ndarray]
    ) -> ReplicaSplits:
        return cls(
            torch.from_numpy(np.stack(features)).float(), torch.from_numpy(np.stack(labels)).float()
        )

    def rows(self, replicas: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Replica replicas[i]'s rows indices[i]: (R', B) -> features (R', B, d), labels (R', B, T).

        One `index_select` over the flattened rows: several times faster than advanced indexing.
        """
        num_replicas, num_rows, _ = self.features.shape
        flat = (replicas.unsqueeze(1) * num_rows + indices).reshape(-1)  # (R'·B,)
        features = self.features.view(num_replicas * num_rows, -1).index_select(0, flat)
        labels = self.labels.view(num_replicas * num_rows, -1).index_select(0, flat)
        return features.view(*indices.shape, -1), labels.view(*indices.shape, -1)


@dataclass
class ReplicaResult:
    """Per-replica outcome; arrays are indexed by replica, in the order of the seeds given."""

    best_epoch: np.ndarray  # (R,) int
    best_validation_loss: np.ndarray  # (R,)
    epochs_run: np.ndarray  # (R,) int
    train_loss: np.ndarray  # (R, epochs) NaN after a replica stopped
    validation_loss: np.ndarray  # (R, epochs) NaN after a replica stopped
    test_loss: np.ndarray | None  # (R, epochs) like validation_loss; None without a test split
    parameters: dict[str, Tensor]  # name -> (R, ...) the best-epoch weights
    buffers: dict[str, Tensor]  # name -> (R, ...) normalizer statistics

    def state_dict(self, replica: int) -> dict[str, Tensor]:
        """Replica `replica`'s weights, loadable into the single model of the same architecture."""
        tensors = {**self.parameters, **self.buffers}
        return {name: value[replica].clone() for name, value in tensors.items()}


def build_replicas(
    config: ModelConfig,
    num_tasks: int,
    seeds: Sequence[int],
    train_features: Tensor,
) -> list[MultiTaskModel]:
    """R models initialised exactly as the single trainer's pipeline does for each seed."""
    return [
        initial_model(config, features, num_tasks, seed)
        for seed, features in zip(seeds, train_features, strict=True)
    ]


def _keep_optimizer_state(
    optimizer: torch.optim.Adam, renamed: dict[Tensor, Tensor], kept: Tensor, learning_rate: float
) -> torch.optim.Adam:
    """A fresh Adam over the kept replicas' parameters carrying their moments and step count."""
    fresh = torch.optim.Adam(list(renamed.values()), lr=learning_rate)
    for old, new in renamed.items():
        state = optimizer.state.get(old)
        if state:
            fresh.state[new] = {
                key: value if key == "step" else value[kept] for key, value in state.items()
            }
    return fresh


def replica_losses(
    stacked: StackedModel, features: Tensor, labels: Tensor, task_types: Sequence[str]
) -> Tensor:
    """(R, T) per-task losses of each replica on its own rows, with the trainer's loss function."""
    outputs = stacked(features)  # (R, B, T)
    return vmap(partial(per_task_losses, task_types=task_types))(outputs, labels)


def train_replicas(
    models: Sequence[MultiTaskModel],
    seeds: Sequence[int],
    train_split: ReplicaSplits,
    validation_split: ReplicaSplits,
    task_types: Sequence[str],
    config: TrainConfig,
    show_progress: bool = True,
    on_epoch: Callable[[int, int], None] | None = None,
    test_split: ReplicaSplits | None = None,
    min_epochs: int = 0,
) -> ReplicaResult:
    """Train the R `models` (one per seed and per data set) as `training.trainer.train` would.

    `config.seed` is ignored: replica r's batch order comes from `seeds[r]`. `on_epoch(epoch,
    active)` is called after every epoch with the number of replicas still training. With a
    `test_split`, each epoch's test loss is recorded beside the validation loss.
    """
    num_replicas, num_rows, _ = train_split.features.shape
    loss_weights = torch.tensor(config.loss_weights or [1.0] * len(task_types))
    stacked = StackedModel(models)
    optimizer = torch.optim.Adam(list(stacked.parameters.values()), lr=config.learning_rate)
    batch_orders = [torch.Generator().manual_seed(seed) for seed in seeds]

    active = torch.arange(num_replicas)  # original index of each row of the stacked
    best_loss = torch.full((num_replicas,), float("inf"))
    best_epoch = torch.zeros(num_replicas, dtype=torch.long)
    epochs_run = torch.zeros(num_replicas, dtype=torch.long)
    train_history = torch.full((num_replicas, config.epochs), float("nan"))
    validation_history = torch.full((num_replicas, config.epochs), float("nan"))
    test_history = torch.full((num_replicas, config.epochs), float("nan"))
    best_parameters = {name: value.detach().clone() for name, value in stacked.parameters.items()}
    buffers = stacked.module_buffers()

    def split_loss(split: ReplicaSplits) -> Tensor:
        """(R',) weighted loss of each active replica on its own rows of `split`."""
        with torch.no_grad():
            losses = replica_losses(
                stacked, split.features[active], split.labels[active], task_types
            )  # (R', T)
        return (losses * loss_weights).sum(dim=1)

    epochs = tqdm(
        range(1, config.epochs + 1), desc="replicas", unit="epoch", disable=not show_progress
    )
    for epoch in epochs:
        order = torch.stack([torch.randperm(num_rows, generator=batch_orders[r]) for r in active])
        epoch_loss = torch.zeros(len(active))
        for batch in order.split(config.batch_size, dim=1):  # (R', B)
            features, labels = train_split.rows(active, batch)  # (R', B, d), (R', B, T)
            task_losses = replica_losses(stacked, features, labels, task_types)
            replica_loss = (task_losses * loss_weights).sum(dim=1)  # (R',)
            optimizer.zero_grad(set_to_none=True)
            replica_loss.sum().backward()
            optimizer.step()
            epoch_loss += replica_loss.detach() * batch.shape[1]

        validation_loss = split_loss(validation_split)  # (R',)
        train_history[active, epoch - 1] = epoch_loss / num_rows
        validation_history[active, epoch - 1] = validation_loss
        if test_split is not None:
            test_history[active, epoch - 1] = split_loss(test_split)
        epochs_run[active] = epoch

        improved = validation_loss < best_loss[active] - config.min_delta  # (R',)
        best_loss[active] = torch.where(improved, validation_loss, best_loss[active])
        best_epoch[active] = torch.where(improved, epoch, best_epoch[active])
        for name, value in stacked.parameters.items():
            best_parameters[name][active[improved]] = value.detach()[improved]

        stopped = (epoch - best_epoch[active] >= config.patience) & (epoch >= min_epochs)
        if on_epoch is not None:
            on_epoch(epoch, int((~stopped).sum()))
        epochs.set_postfix(
            active=int((~stopped).sum()), val=f"{float(validation_loss.median()):.4f}"
        )
        if bool(stopped.all()):
            break
        if bool(stopped.any()):
            kept = torch.nonzero(~stopped).squeeze(1)
            renamed = stacked.keep(kept)
            optimizer = _keep_optimizer_state(optimizer, renamed, kept, config.learning_rate)
            active = active[kept]

    return ReplicaResult(
        best_epoch=best_epoch.numpy(),
        best_validation_loss=best_loss.numpy(),
        epochs_run=epochs_run.numpy(),
        train_loss=train_history.numpy(),
        validation_loss=validation_history.numpy(),
        test_loss=None if test_split is None else test_history.numpy(),
        parameters=stacked.module_parameters(best_parameters),
        buffers=buffers,
    )


@torch.no_grad()
def evaluate_replicas(
    models: Sequence[MultiTaskModel],
    result: ReplicaResult,
    split: ReplicaSplits,
    task_types: Sequence[str],
) -> np.ndarray:
    """(R, T) per-task losses of each replica's best weights on its own rows of `split`."""
    stacked = StackedModel(models)
    stacked.load_module_state(result.parameters, result.buffers)
    return replica_losses(stacked, split.features, split.labels, task_types).numpy()
