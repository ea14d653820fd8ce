"""Train R independent runs of one architecture at once, as one batched model.

Each replica r is exactly what `training.trainer.train` would train for seed s_r: the repository's
model is built and initialised after `seed_everything(s_r)`, its normalizer fitted on its own
training rows, and its batch order drawn from a generator seeded with s_r. Then the R models'
parameters are stacked (`torch.func.stack_module_state`) and one `vmap`-ed `functional_call` of
the repository's own module runs all of them: every einsum gains a leading replica axis, so R small
matmuls become one batched matmul, and the Python overhead of a step is paid once for R runs.

Replicas share nothing but the step counter: the loss is the sum of the replicas' losses, so each
replica's gradient is its own, and Adam is elementwise. A replica that early-stops is dropped from
the batch (parameters and Adam state alike), so the rest run at full speed.

Shapes: R replicas, n rows, B batch, d input features, T tasks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from training.config import ModelConfig, TrainConfig
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


@dataclass
class ReplicaResult:
    """Per-replica outcome; arrays are indexed by replica, in the order of the seeds given."""

    best_epoch: np.ndarray  # (R,) int
    best_validation_loss: np.ndarray  # (R,)
    epochs_run: np.ndarray  # (R,) int
    train_loss: np.ndarray  # (R, epochs) NaN after a replica stopped
    validation_loss: np.ndarray  # (R, epochs) NaN after a replica stopped
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
) -> list[nn.Module]:
    """R models initialised exactly as the single trainer's pipeline does for each seed."""
    return [
        initial_model(config, features, num_tasks, seed)
        for seed, features in zip(seeds, train_features, strict=True)
    ]


class ReplicaEnsemble:
    """R stacked copies of one architecture, evaluated by one vmap-ed call of the shared module."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        parameters, buffers = stack_module_state(list(models))
        self.parameters = {
            name: value.detach().requires_grad_() for name, value in parameters.items()
        }
        self.buffers = buffers
        template = copy.deepcopy(models[0]).to("meta")

        def forward_one(params: dict, bufs: dict, features: Tensor) -> Tensor:
            outputs, _ = functional_call(template, (params, bufs), (features,))
            return outputs  # (B, T)

        self._forward = vmap(forward_one)

    def __call__(self, features: Tensor) -> Tensor:
        """(R, B, d) -> (R, B, T) raw outputs."""
        return self._forward(self.parameters, self.buffers, features)

    def keep(self, kept: Tensor) -> dict[Tensor, Tensor]:
        """Drop the replicas not in `kept` (indices); returns old parameter -> new parameter."""
        renamed = {}
        for name, value in self.parameters.items():
            self.parameters[name] = value.detach()[kept].requires_grad_()
            renamed[value] = self.parameters[name]
        self.buffers = {name: value[kept] for name, value in self.buffers.items()}
        return renamed


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
    ensemble: ReplicaEnsemble, features: Tensor, labels: Tensor, task_types: Sequence[str]
) -> Tensor:
    """(R, T) per-task losses of each replica on its own rows, with the trainer's loss function."""
    outputs = ensemble(features)  # (R, B, T)
    return vmap(partial(per_task_losses, task_types=task_types))(outputs, labels)


def train_replicas(
    models: Sequence[nn.Module],
    seeds: Sequence[int],
    train_split: ReplicaSplits,
    validation_split: ReplicaSplits,
    task_types: Sequence[str],
    config: TrainConfig,
    show_progress: bool = True,
    on_epoch: Callable[[int, int], None] | None = None,
) -> ReplicaResult:
    """Train the R `models` (one per seed and per data set) as `training.trainer.train` would.

    `config.seed` is ignored: replica r's batch order comes from `seeds[r]`. `on_epoch(epoch,
    active)` is called after every epoch with the number of replicas still training.
    """
    num_replicas, num_rows, _ = train_split.features.shape
    loss_weights = torch.tensor(config.loss_weights or [1.0] * len(task_types))
    ensemble = ReplicaEnsemble(models)
    optimizer = torch.optim.Adam(list(ensemble.parameters.values()), lr=config.learning_rate)
    batch_orders = [torch.Generator().manual_seed(seed) for seed in seeds]

    active = torch.arange(num_replicas)  # original index of each row of the ensemble
    best_loss = torch.full((num_replicas,), float("inf"))
    best_epoch = torch.zeros(num_replicas, dtype=torch.long)
    epochs_run = torch.zeros(num_replicas, dtype=torch.long)
    train_history = torch.full((num_replicas, config.epochs), float("nan"))
    validation_history = torch.full((num_replicas, config.epochs), float("nan"))
    best_parameters = {name: value.detach().clone() for name, value in ensemble.parameters.items()}
    buffers = {name: value.clone() for name, value in ensemble.buffers.items()}

    epochs = tqdm(
        range(1, config.epochs + 1), desc="replicas", unit="epoch", disable=not show_progress
    )
    for epoch in epochs:
        rows = active.unsqueeze(1)  # (R', 1): index the stacked data in place, no copy
        order = torch.stack([torch.randperm(num_rows, generator=batch_orders[r]) for r in active])
        epoch_loss = torch.zeros(len(active))
        for batch in order.split(config.batch_size, dim=1):  # (R', B)
            features = train_split.features[rows, batch]  # (R', B, d)
            labels = train_split.labels[rows, batch]  # (R', B, T)
            task_losses = replica_losses(ensemble, features, labels, task_types)
            replica_loss = (task_losses * loss_weights).sum(dim=1)  # (R',)
            optimizer.zero_grad(set_to_none=True)
            replica_loss.sum().backward()
            optimizer.step()
            epoch_loss += replica_loss.detach() * batch.shape[1]

        with torch.no_grad():
            validation = replica_losses(
                ensemble,
                validation_split.features[active],
                validation_split.labels[active],
                task_types,
            )  # (R', T)
            validation_loss = (validation * loss_weights).sum(dim=1)  # (R',)
        train_history[active, epoch - 1] = epoch_loss / num_rows
        validation_history[active, epoch - 1] = validation_loss
        epochs_run[active] = epoch

        improved = validation_loss < best_loss[active] - config.min_delta  # (R',)
        best_loss[active] = torch.where(improved, validation_loss, best_loss[active])
        best_epoch[active] = torch.where(improved, epoch, best_epoch[active])
        for name, value in ensemble.parameters.items():
            best_parameters[name][active[improved]] = value.detach()[improved]

        stopped = epoch - best_epoch[active] >= config.patience
        if on_epoch is not None:
            on_epoch(epoch, int((~stopped).sum()))
        epochs.set_postfix(
            active=int((~stopped).sum()), val=f"{float(validation_loss.median()):.4f}"
        )
        if bool(stopped.all()):
            break
        if bool(stopped.any()):
            kept = torch.nonzero(~stopped).squeeze(1)
            renamed = ensemble.keep(kept)
            optimizer = _keep_optimizer_state(optimizer, renamed, kept, config.learning_rate)
            active = active[kept]

    return ReplicaResult(
        best_epoch=best_epoch.numpy(),
        best_validation_loss=best_loss.numpy(),
        epochs_run=epochs_run.numpy(),
        train_loss=train_history.numpy(),
        validation_loss=validation_history.numpy(),
        parameters=best_parameters,
        buffers=buffers,
    )


@torch.no_grad()
def evaluate_replicas(
    models: Sequence[nn.Module],
    result: ReplicaResult,
    split: ReplicaSplits,
    task_types: Sequence[str],
) -> np.ndarray:
    """(R, T) per-task losses of each replica's best weights on its own rows of `split`."""
    ensemble = ReplicaEnsemble(models)
    ensemble.parameters = result.parameters
    ensemble.buffers = result.buffers
    return replica_losses(ensemble, split.features, split.labels, task_types).numpy()
