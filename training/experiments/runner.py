"""Train a protocol's runs, many replicas at a time, in worker processes.

A batch is up to `replicas_per_job` runs of one job (setting, study, model, learning rate): their
data sets are generated with `training.synthetic.generate` (cheap next to training) and the model
trains all of them as one batched replica model. Every model sees the same (p, seed) pairs, hence
the same data. Batches run in worker processes of one torch thread each: on a small shared
machine, two processes of one thread are faster and far steadier than one process of two threads.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from training import synthetic
from training.config import ModelConfig
from training.experiments.protocol import (
    MODELS,
    Job,
    Protocol,
    Run,
    data_config,
    min_epochs,
    train_config,
)
from training.replicas import ReplicaSplits, build_replicas, evaluate_replicas, train_replicas

if TYPE_CHECKING:
    from training.experiments.partial import PartialStore

TASK_TYPES = ("regression", "regression")
CURVE_FIELDS = ("setting", "model", "p", "lr", "seed", "step", "split", "loss")


@dataclass(frozen=True)
class Batch:
    protocol: Protocol
    job: Job
    runs: tuple[Run, ...]


@dataclass
class Outcome:
    """What some runs produced: one record per run, the study runs' learning curves, and what
    training them cost (wall and CPU seconds of the worker that trained them)."""

    records: list[dict] = field(default_factory=list)
    curves: list[tuple] = field(default_factory=list)  # rows of CURVE_FIELDS
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def extend(self, other: Outcome) -> None:
        self.records += other.records
        self.curves += other.curves
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds


def plan_batches(protocol: Protocol, runs: Sequence[Run], workers: int = 1) -> list[Batch]:
    """Runs grouped by job and split so that every worker has work; the costliest batches first."""
    batches = []
    for job, group in itertools.groupby(sorted(runs), key=lambda run: run.job):
        members = list(group)
        size = min(protocol.replicas_per_job, -(-len(members) // max(workers, 1)))
        for start in range(0, len(members), size):
            batches.append(Batch(protocol, job, tuple(members[start : start + size])))

    def cost(batch: Batch) -> float:
        early_stopping = 1.0 if batch.job.study == "study" else 0.5  # about half the epochs
        return len(batch.runs) * protocol.setting(batch.job.setting).epochs * early_stopping

    return sorted(batches, key=cost, reverse=True)


def _stack(datasets: Sequence[synthetic.SyntheticDataset], split: str) -> ReplicaSplits:
    parts = [getattr(dataset, split) for dataset in datasets]
    return ReplicaSplits.from_numpy([p.features for p in parts], [p.labels for p in parts])


def run_batch(batch: Batch, threads: int = 1) -> Outcome:
    """Train the batch's model on the batch's data sets; one record per run. Study runs also
    record their training and test loss after every epoch of their fixed budget."""
    started, cpu_started = time.perf_counter(), time.process_time()
    torch.set_num_threads(threads)
    protocol, job = batch.protocol, batch.job
    setting = protocol.setting(job.setting)
    datasets = [synthetic.generate(data_config(protocol, setting, run)) for run in batch.runs]
    splits = {name: _stack(datasets, name) for name in ("train", "validation", "test")}
    seeds = [run.seed for run in batch.runs]
    replicas = build_replicas(
        ModelConfig(architecture=job.model), 2, seeds, splits["train"].features
    )
    keep_curves = job.study == "study"
    result = train_replicas(
        replicas,
        seeds,
        splits["train"],
        splits["validation"],
        TASK_TYPES,
        train_config(protocol, job),
        show_progress=False,
        test_split=splits["test"] if keep_curves else None,
        min_epochs=min_epochs(protocol, job),
    )
    test_losses = evaluate_replicas(replicas, result, splits["test"], TASK_TYPES)  # (R, T)
    outcome = Outcome()
    for r, (run, dataset) in enumerate(zip(batch.runs, datasets, strict=True)):
        description = dataset.description()
        labels = dataset.train.labels
        outcome.records.append(
            {
                "setting": job.setting,
                "study": job.study,
                "model": job.model,
                "p": run.correlation,
                "lr": job.learning_rate,
                "c": setting.scale,
                "m": setting.num_sinusoids,
                "sinusoid_seed": description["sinusoid_seed"],
                "seed": run.seed,
                "linear_unexplained_share": description["linear_unexplained_share"],
                "label_correlation": round(float(np.corrcoef(labels[:, 0], labels[:, 1])[0, 1]), 4),
                "test_loss_task_1": round(float(test_losses[r, 0]), 6),
                "test_loss_task_2": round(float(test_losses[r, 1]), 6),
                "best_epoch": int(result.best_epoch[r]),
                "epochs_run": int(result.epochs_run[r]),
                "best_validation_loss": round(float(result.best_validation_loss[r]), 6),
            }
        )
        if keep_curves and result.test_loss is not None:
            key = (job.setting, job.model, run.correlation, job.learning_rate, run.seed)
            for split, history in (("train", result.train_loss), ("test", result.test_loss)):
                for epoch in range(setting.epochs):  # the fixed budget every run completes
                    step = (epoch + 1) * protocol.steps_per_epoch
                    loss = float(history[r, epoch]) / len(TASK_TYPES)  # mean of the tasks
                    outcome.curves.append((*key, step, split, float(f"{loss:.5g}")))
    outcome.seconds = round(time.perf_counter() - started, 3)
    outcome.cpu_seconds = round(time.process_time() - cpu_started, 3)
    return outcome


def _outcomes(batches: list[Batch], workers: int) -> Iterator[tuple[Batch, Outcome]]:
    if workers <= 1 or len(batches) <= 1:
        for batch in batches:
            yield batch, run_batch(batch)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_batch, batch): batch for batch in batches}
        for future in as_completed(futures):
            yield futures[future], future.result()


def record_order(record: dict) -> tuple:
    """Records sort by setting, study, model (in MODELS order), p, lr, seed."""
    return (
        record["setting"],
        record["study"],
        MODELS.index(record["model"]),
        record["p"],
        record["lr"],
        record["seed"],
    )


def run_all(
    protocol: Protocol,
    runs: Sequence[Run],
    workers: int = 2,
    desc: str = "runs",
    store: PartialStore | None = None,
    on_batch: Callable[[], None] | None = None,
) -> Outcome:
    """Every run, as records sorted by `record_order` and curves sorted by run and step.

    With a `store`, each batch is saved the moment it finishes, batches already there are loaded
    instead of trained, and the outcome is built from the saved batches alone; `on_batch` is
    called after every batch trained.
    """
    batches = plan_batches(protocol, runs, workers)
    done = [batch for batch in batches if store is not None and store.has(batch)]
    if done:
        tqdm.write(f"resuming {desc}: {len(done)} of {len(batches)} batches done")
    todo = [batch for batch in batches if batch not in done]
    outcome = Outcome()
    finished = sum(len(batch.runs) for batch in done)
    with tqdm(total=len(runs), initial=finished, desc=desc, unit="run", disable=not runs) as bar:
        for batch, batch_outcome in _outcomes(todo, workers):
            if store is not None:
                store.save(batch, batch_outcome)
            else:
                outcome.extend(batch_outcome)
            if on_batch is not None:
                on_batch()
            bar.update(len(batch_outcome.records))
    if store is not None:
        for batch in batches:
            outcome.extend(store.load(batch))
    outcome.records.sort(key=record_order)
    outcome.curves.sort(key=lambda row: (*row[:5], row[6] == "test", row[5]))
    return outcome
