"""Mini-batch Adam training with per-task losses and early stopping on validation loss.

Deterministic for a seed: the caller seeds initialisation (`seed_everything`), the trainer owns a
generator for batch order, and torch runs deterministic kernels.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional
from tqdm.auto import tqdm

from training.config import ModelConfig, TrainConfig
from training.models import MultiTaskModel, build_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSplit:
    features: Tensor  # (n, d) float32
    labels: Tensor  # (n, T) float32

    @classmethod
    def from_numpy(cls, features: np.ndarray, labels: np.ndarray) -> TensorSplit:
        return cls(torch.from_numpy(features).float(), torch.from_numpy(labels).float())


@dataclass
class TrainingResult:
    best_epoch: int
    best_validation_loss: float
    stopped_early: bool
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def initial_model(
    config: ModelConfig, train_features: Tensor, num_tasks: int, seed: int
) -> MultiTaskModel:
    """The model a run starts from: initialised from `seed` alone, normaliser fitted on its rows."""
    seed_everything(seed)
    model = build_model(config, train_features.shape[1], num_tasks)
    model.normalizer.fit(train_features)
    return model


def per_task_losses(outputs: Tensor, labels: Tensor, task_types: Sequence[str]) -> Tensor:
    """(T,) mean loss of each task: MSE for regression, BCE-with-logits for binary."""
    binary = torch.tensor([kind == "binary" for kind in task_types], device=outputs.device)
    squared = functional.mse_loss(outputs, labels, reduction="none")  # (B, T)
    cross_entropy = functional.binary_cross_entropy_with_logits(outputs, labels, reduction="none")
    return torch.where(binary, cross_entropy, squared).mean(dim=0)


@torch.no_grad()
def evaluate(model: nn.Module, split: TensorSplit, task_types: Sequence[str]) -> Tensor:
    model.eval()
    outputs, _ = model(split.features)
    return per_task_losses(outputs, split.labels, task_types)


def train(
    model: nn.Module,
    train_split: TensorSplit,
    validation_split: TensorSplit,
    task_types: Sequence[str],
    config: TrainConfig,
    show_progress: bool = True,
) -> TrainingResult:
    """Train `model` in place; on return it holds the weights of its best validation epoch."""
    loss_weights = torch.tensor(config.loss_weights or [1.0] * len(task_types))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    batch_order = torch.Generator().manual_seed(config.seed)
    num_rows = train_split.features.shape[0]

    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    history: list[dict] = []
    epochs = tqdm(
        range(1, config.epochs + 1), desc="train", unit="epoch", disable=not show_progress
    )
    for epoch in epochs:
        model.train()
        epoch_loss, seen = 0.0, 0
        for batch in torch.randperm(num_rows, generator=batch_order).split(config.batch_size):
            outputs, _ = model(train_split.features[batch])
            task_losses = per_task_losses(outputs, train_split.labels[batch], task_types)
            loss = (loss_weights * task_losses).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item() * batch.numel()
            seen += batch.numel()

        validation_task_losses = evaluate(model, validation_split, task_types)
        validation_loss = float((loss_weights * validation_task_losses).sum())
        record = {
            "epoch": epoch,
            "train_loss": epoch_loss / seen,
            "validation_loss": validation_loss,
            "validation_task_losses": validation_task_losses.tolist(),
        }
        history.append(record)
        logger.info(
            "epoch %d train_loss=%.5f validation_loss=%.5f",
            epoch,
            record["train_loss"],
            validation_loss,
        )
        epochs.set_postfix(train=f"{record['train_loss']:.4f}", val=f"{validation_loss:.4f}")

        if validation_loss < best_loss - config.min_delta:
            best_loss, best_epoch = validation_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            logger.info("early stop at epoch %d; best epoch %d", epoch, best_epoch)
            break

    model.load_state_dict(best_state)
    model.eval()
    return TrainingResult(best_epoch, best_loss, len(history) < config.epochs, history)
