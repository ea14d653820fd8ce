"""Run every (setting, p, seed) of a protocol for all three models, many replicas at a time.

A job is one model on up to `replicas_per_job` (p, seed) pairs of one setting: their data sets are
generated with `training.synthetic.generate` (cheap next to training) and the model trains all of
them as one batched replica model. Every model sees the same pairs, hence the same data.
Jobs run in worker processes of one torch thread each: on a small shared machine, two processes of
one thread are faster and far steadier than one process of two threads.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from service.contract import Architecture
from training import synthetic
from training.config import ModelConfig
from training.experiments.protocol import (
    MODELS,
    Protocol,
    RunKey,
    Setting,
    data_config,
    train_config,
)
from training.replicas import ReplicaSplits, build_replicas, evaluate_replicas, train_replicas

TASK_TYPES = ("regression", "regression")


@dataclass(frozen=True)
class Job:
    protocol: Protocol
    model: Architecture
    setting: Setting
    keys: tuple[RunKey, ...]


def plan_jobs(protocol: Protocol, keys: Sequence[RunKey], workers: int = 1) -> list[Job]:
    """Jobs grouped by setting and split over the workers; slow (small lr) and big jobs first."""
    jobs = []
    keys = sorted(keys)
    for setting, group in itertools.groupby(keys, key=lambda key: key.setting):
        members = list(group)
        size = min(protocol.replicas_per_job, -(-len(members) // max(workers, 1)))
        for start in range(0, len(members), size):
            chunk = tuple(members[start : start + size])
            jobs += [Job(protocol, model, setting, chunk) for model in MODELS]
    return sorted(jobs, key=lambda job: (job.setting.learning_rate, -len(job.keys)))


def _stack(datasets: Sequence[synthetic.SyntheticDataset], split: str) -> ReplicaSplits:
    parts = [getattr(dataset, split) for dataset in datasets]
    return ReplicaSplits.from_numpy([p.features for p in parts], [p.labels for p in parts])


def run_job(job: Job, threads: int = 1) -> list[dict]:
    """Train the job's model on the job's data sets; one record per (p, seed)."""
    torch.set_num_threads(threads)
    datasets = [synthetic.generate(data_config(job.protocol, key)) for key in job.keys]
    splits = {name: _stack(datasets, name) for name in ("train", "validation", "test")}
    seeds = [key.seed for key in job.keys]
    config = train_config(job.protocol, job.setting)
    records = []
    model_config = ModelConfig(architecture=job.model)
    replicas = build_replicas(model_config, 2, seeds, splits["train"].features)
    result = train_replicas(
        replicas, seeds, splits["train"], splits["validation"], TASK_TYPES, config, False
    )
    test_losses = evaluate_replicas(replicas, result, splits["test"], TASK_TYPES)  # (R, T)
    for r, key in enumerate(job.keys):
        records.append(
            {
                "model": job.model,
                "p": key.correlation,
                "lr": job.setting.learning_rate,
                "c": job.setting.scale,
                "m": job.setting.num_sinusoids,
                "seed": key.seed,
                "test_loss_task_1": round(float(test_losses[r, 0]), 6),
                "test_loss_task_2": round(float(test_losses[r, 1]), 6),
                "best_epoch": int(result.best_epoch[r]),
                "epochs_run": int(result.epochs_run[r]),
                "best_validation_loss": round(float(result.best_validation_loss[r]), 6),
            }
        )
    return records


def _results(jobs: list[Job], workers: int) -> Iterator[list[dict]]:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def run_keys(
    protocol: Protocol, keys: Sequence[RunKey], workers: int = 2, desc: str = "runs"
) -> list[dict]:
    """Every model on every key, as records sorted by (c, m, lr, model, p, seed)."""
    jobs = plan_jobs(protocol, keys, workers)
    total = len(keys) * len(MODELS)
    records: list[dict] = []
    with tqdm(total=total, desc=desc, unit="run", disable=total == 0) as bar:
        for job_records in _results(jobs, workers):
            records.extend(job_records)
            bar.update(len(job_records))
    order = {model: index for index, model in enumerate(MODELS)}
    records.sort(key=lambda r: (r["c"], r["m"], r["lr"], order[r["model"]], r["p"], r["seed"]))
    return records
