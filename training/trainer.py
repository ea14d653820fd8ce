"""Mini-batch Adam training with per-task losses, per-epoch metrics and early stopping.

Deterministic for a seed: the caller seeds initialisation (`seed_everything`), the batch source
owns a generator for batch order, and torch runs deterministic kernels. Under DDP (torchrun) each
process trains its shard of every global batch; its loss is scaled so that DDP's gradient average
equals the one-process gradient of the whole global batch. Every process evaluates the whole
validation split, so all take the same early-stopping decision without talking.
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

from training.batches import (
    BatchSource,
    EvaluationRows,
    InMemoryBatches,
    Shard,
    TensorSplit,
    chunks,
)
from training.config import STOPPING_METRICS, ConfigError, ModelConfig, TrainConfig
from training.metrics import task_metrics
from training.models import FeatureNormalizer, MultiTaskModel, build_model

logger = logging.getLogger(__name__)

ONE_PROCESS = Shard()

__all__ = ["Shard", "TensorSplit", "TrainingResult", "evaluate", "initial_model", "train"]


@dataclass
class TrainingResult:
    best_epoch: int
    best_validation_loss: float
    stopped_early: bool
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Evaluation:
    task_losses: Tensor  # (T,) mean loss per task
    predictions: np.ndarray  # (n, T): values, or probabilities for binary tasks
    labels: np.ndarray  # (n, T)

    def metrics(self, names: Sequence[str], types: Sequence[str]) -> dict[str, dict]:
        return {
            name: task_metrics(kind, self.labels[:, k], self.predictions[:, k])
            for k, (name, kind) in enumerate(zip(names, types, strict=True))
        }


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
    normalizer = FeatureNormalizer(train_features.shape[1])
    normalizer.fit(train_features)
    return build_model(config, normalizer, num_tasks)


def per_task_losses(
    outputs: Tensor, labels: Tensor, task_types: Sequence[str], rows: float | None = None
) -> Tensor:
    """(T,) loss of each task: MSE for regression, BCE-with-logits for binary.

    The mean over the batch, or with `rows` the sum divided by `rows` (a shard's share of a
    global batch)."""
    binary = torch.tensor([kind == "binary" for kind in task_types], device=outputs.device)
    squared = functional.mse_loss(outputs, labels, reduction="none")  # (B, T)
    cross_entropy = functional.binary_cross_entropy_with_logits(outputs, labels, reduction="none")
    losses = torch.where(binary, cross_entropy, squared)
    return losses.mean(dim=0) if rows is None else losses.sum(dim=0) / rows


@torch.no_grad()
def evaluate(model: nn.Module, split: TensorSplit, task_types: Sequence[str]) -> Tensor:
    model.eval()
    outputs, _ = model(*split.inputs)
    return per_task_losses(outputs, split.labels, task_types)


@torch.no_grad()
def evaluate_rows(
    model: nn.Module, rows: EvaluationRows, task_types: Sequence[str], device: torch.device
) -> Evaluation:
    """Losses and predictions over a split given whole (exactly `evaluate`) or in chunks."""
    model.eval()
    binary = torch.tensor([kind == "binary" for kind in task_types], device=device)
    whole = isinstance(rows, TensorSplit)
    losses, predictions, labels, count = [], [], [], 0
    for part in chunks(rows):
        part = part.to(device)
        outputs, _ = model(*part.inputs)
        losses.append(per_task_losses(outputs, part.labels, task_types, None if whole else 1.0))
        predictions.append(torch.where(binary, torch.sigmoid(outputs), outputs).cpu().numpy())
        labels.append(part.labels.cpu().numpy())
        count += part.num_rows
    if count == 0:
        raise ValueError("there are no rows to evaluate")
    task_losses = losses[0] if whole else torch.stack(losses).sum(dim=0) / count
    return Evaluation(task_losses.cpu(), np.concatenate(predictions), np.concatenate(labels))


def train(
    model: nn.Module,
    train_rows: TensorSplit | BatchSource,
    validation_rows: EvaluationRows,
    task_types: Sequence[str],
    config: TrainConfig,
    show_progress: bool = True,
    task_names: Sequence[str] | None = None,
    test_rows: EvaluationRows | None = None,
    shard: Shard = ONE_PROCESS,
) -> TrainingResult:
    """Train `model` in place; on return it holds the weights of its best validation epoch."""
    names = list(task_names or [f"task_{k + 1}" for k in range(len(task_types))])
    device = torch.device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())  # torchrun: LOCAL_RANK's GPU
    model.to(device)
    batches = (
        InMemoryBatches(train_rows, config.batch_size, config.seed, shard)
        if isinstance(train_rows, TensorSplit)
        else train_rows
    )
    loss_weights = torch.tensor(config.loss_weights or [1.0] * len(task_types), device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    trained = _data_parallel(model, device) if shard.world_size > 1 else model

    best_score, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    best_loss = float("inf")
    history: list[dict] = []
    epochs = tqdm(
        range(1, config.epochs + 1),
        desc="train",
        unit="epoch",
        disable=not show_progress or shard.rank != 0,
    )
    for epoch in epochs:
        trained.train()
        epoch_loss, seen = 0.0, 0
        for batch, global_rows in batches.epoch():
            batch = batch.to(device)
            outputs, _ = trained(*batch.inputs)
            share = None if shard.world_size == 1 else global_rows / shard.world_size
            task_losses = per_task_losses(outputs, batch.labels, task_types, share)
            loss = (loss_weights * task_losses).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item() * (batch.num_rows if share is None else share)
            seen += batch.num_rows
        train_loss = _all_ranks_mean(epoch_loss, seen, shard)

        validation = evaluate_rows(model, validation_rows, task_types, device)
        validation_loss = float((loss_weights.cpu() * validation.task_losses).sum())
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "validation_loss": validation_loss,
            "validation_task_losses": validation.task_losses.tolist(),
            "validation": validation.metrics(names, task_types),
        }
        if test_rows is not None:
            test = evaluate_rows(model, test_rows, task_types, device)
            record["test"] = test.metrics(names, task_types)
        history.append(record)
        _log_epoch(record, names)
        epochs.set_postfix(train=f"{train_loss:.4f}", val=f"{validation_loss:.4f}")

        score = _score(config.early_stopping_metric, record, names, task_types)
        if score < best_score - config.min_delta:
            best_score, best_loss, best_epoch = score, validation_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            logger.info("early stop at epoch %d; best epoch %d", epoch, best_epoch)
            break

    model.load_state_dict(best_state)
    model.eval()
    return TrainingResult(best_epoch, best_loss, len(history) < config.epochs, history)


def _score(metric: str, record: dict, names: Sequence[str], types: Sequence[str]) -> float:
    """The early-stopping value of one epoch, lower is better."""
    if metric == "loss":
        return float(record["validation_loss"])
    metrics = record["validation"]
    if metric == "auc":
        values = [
            metrics[n]["auc"] for n, kind in zip(names, types, strict=True) if kind == "binary"
        ]
    else:
        task, _, name = metric.rpartition(".")
        values = [metrics[task][name]]
    if any(value is None for value in values):
        raise ConfigError(
            f"train.early_stopping_metric {metric!r}: the validation rows of a binary task hold "
            "one class only, so its AUC is undefined; stop on the loss instead"
        )
    value = float(np.mean(values))
    return -value if STOPPING_METRICS[metric.rpartition(".")[2]] == "max" else value


def _log_epoch(record: dict, names: Sequence[str]) -> None:
    def short(split: str) -> str:
        return "; ".join(
            f"{name} "
            + " ".join(f"{k}={v:.4f}" for k, v in record[split][name].items() if v is not None)
            for name in names
        )

    logger.info(
        "epoch %d train_loss=%.5f validation_loss=%.5f | validation: %s%s",
        record["epoch"],
        record["train_loss"],
        record["validation_loss"],
        short("validation"),
        f" | test: {short('test')}" if "test" in record else "",
    )


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    # buffers hold the training statistics, equal on every process: no need to sync them per step
    return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def _all_ranks_mean(total: float, count: int, shard: Shard) -> float:
    if shard.world_size == 1:
        return total / count
    import torch.distributed as dist

    sums = torch.tensor([total, float(count)], dtype=torch.float64)
    dist.all_reduce(sums)
    return float(sums[0] / sums[1])
