"""A table's rows as tensors: in memory, or read again block by block on every pass.

Streamed training rows go through a shuffle buffer: blocks are collected until it holds
`shuffle_buffer_rows` rows, which are permuted and cut into global batches; the rows short of a
full batch start the next buffer. Memory is bounded by the buffer and one block, not the file.
Every process reads the same blocks and draws the same permutations, then trains its shard of
each global batch (see `training.batches`).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import torch

from training.batches import Shard, TensorSplit
from training.tabular.dataset import EncodedRows, FittedTable, scan


def as_tensors(rows: EncodedRows) -> TensorSplit:
    inputs = [rows.numeric]
    if rows.categorical.shape[1]:
        inputs.append(rows.categorical)
    return TensorSplit.from_arrays(inputs, rows.labels)


class StreamedRows:
    """One split's rows, a block at a time; each iteration reads the files again."""

    def __init__(self, fitted: FittedTable, split: int) -> None:
        self.fitted = fitted
        self.split = split

    def __iter__(self) -> Iterator[TensorSplit]:
        return (as_tensors(rows) for rows in scan(self.fitted, self.split))


class StreamedBatches:
    """Shuffled global batches of the training rows, read block by block."""

    def __init__(
        self,
        fitted: FittedTable,
        split: int,
        batch_size: int,
        buffer_rows: int,
        seed: int,
        shard: Shard,
    ) -> None:
        self.fitted = fitted
        self.split = split
        self.batch_size = batch_size
        self.buffer_rows = max(buffer_rows, batch_size)
        self.shard = shard
        self.generator = torch.Generator().manual_seed(seed)

    def epoch(self) -> Iterator[tuple[TensorSplit, int]]:
        pending: list[EncodedRows] = []
        pending_rows = 0
        for rows in scan(self.fitted, self.split):
            pending.append(rows)
            pending_rows += rows.num_rows
            if pending_rows >= self.buffer_rows:
                remainder = yield from self._batches(EncodedRows.concatenate(pending), final=False)
                pending, pending_rows = [remainder], remainder.num_rows
        if pending_rows:
            yield from self._batches(EncodedRows.concatenate(pending), final=True)

    def _batches(
        self, buffer: EncodedRows, final: bool
    ) -> Generator[tuple[TensorSplit, int], None, EncodedRows]:
        """Yield the buffer's shuffled full batches (and, when final, the last short one);
        return the rows left over."""
        tensors = as_tensors(buffer)
        order = torch.randperm(buffer.num_rows, generator=self.generator)
        usable = order.numel() if final else order.numel() // self.batch_size * self.batch_size
        for batch in order[:usable].split(self.batch_size):
            yield tensors.rows(batch[self.shard.slice(batch.numel())]), batch.numel()
        left = order[usable:].numpy()
        return EncodedRows(buffer.numeric[left], buffer.categorical[left], buffer.labels[left])
