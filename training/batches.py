"""Rows as tensors, and the order they are trained in: one global batch after another.

A global batch is `batch_size` rows; under DDP each process trains its `Shard` of every global
batch (a contiguous slice), so the processes' gradients, averaged, are the one-process gradient of
the same global batch. Every process draws the same order from the same seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class TensorSplit:
    """Rows: the model's inputs, batch axis first, and their labels."""

    inputs: tuple[Tensor, ...]  # (features (n, d) float32[, categorical (n, C) int64])
    labels: Tensor  # (n, T) float32

    @classmethod
    def from_numpy(cls, features: np.ndarray, labels: np.ndarray) -> TensorSplit:
        return cls((torch.from_numpy(features).float(),), torch.from_numpy(labels).float())

    @classmethod
    def from_arrays(cls, inputs: Sequence[np.ndarray], labels: np.ndarray) -> TensorSplit:
        return cls(tuple(torch.from_numpy(array) for array in inputs), torch.from_numpy(labels))

    @property
    def features(self) -> Tensor:
        return self.inputs[0]

    @property
    def num_rows(self) -> int:
        return self.labels.shape[0]

    def rows(self, index: Tensor | slice) -> TensorSplit:
        return TensorSplit(tuple(tensor[index] for tensor in self.inputs), self.labels[index])

    def to(self, device: torch.device) -> TensorSplit:
        if device.type == "cpu":
            return self
        return TensorSplit(tuple(t.to(device) for t in self.inputs), self.labels.to(device))


@dataclass(frozen=True)
class Shard:
    """This process's place among `world_size` data-parallel processes."""

    rank: int = 0
    world_size: int = 1

    def slice(self, global_rows: int) -> slice:
        """Its contiguous part of a global batch of `global_rows` rows."""
        return slice(
            self.rank * global_rows // self.world_size,
            (self.rank + 1) * global_rows // self.world_size,
        )


class BatchSource(Protocol):
    def epoch(self) -> Iterator[tuple[TensorSplit, int]]:
        """One epoch: (this process's rows of a global batch, the global batch's row count)."""
        ...


class InMemoryBatches:
    """A fresh permutation of all rows each epoch, drawn from a generator seeded once."""

    def __init__(self, split: TensorSplit, batch_size: int, seed: int, shard: Shard) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shard = shard
        self.generator = torch.Generator().manual_seed(seed)

    def epoch(self) -> Iterator[tuple[TensorSplit, int]]:
        order = torch.randperm(self.split.num_rows, generator=self.generator)
        for batch in order.split(self.batch_size):
            yield self.split.rows(batch[self.shard.slice(batch.numel())]), batch.numel()


EvaluationRows = Iterable[TensorSplit] | TensorSplit  # a split whole, or chunk by chunk


def chunks(rows: EvaluationRows) -> Iterable[TensorSplit]:
    return (rows,) if isinstance(rows, TensorSplit) else rows
