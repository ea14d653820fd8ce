"""Numbers from the runs: cells, quantiles, paired differences and bootstrap intervals.

A cell is (setting, study, model, p, lr). A few slow runs dominate a mean, so every summary
carries the median and quantiles too, and every comparison between models is paired: the same seed
means the same data, initialisation and batch order (common random numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def run_loss(record: dict) -> float:
    """One run's test loss: the mean of its two tasks' MSE, at its best validation epoch."""
    return 0.5 * (record["test_loss_task_1"] + record["test_loss_task_2"])


def select(records: Sequence[dict], **where: float | str) -> list[dict]:
    """Records matching every `field=value`."""
    return [r for r in records if all(r[key] == value for key, value in where.items())]


def describe(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    stats = {
        "runs": int(array.size),
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
        "max": float(array.max()),
    }
    for q in QUANTILES:
        stats[f"q{round(q * 100):02d}"] = float(np.quantile(array, q))
    return stats


def cell_stats(records: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Statistics of task 1, task 2 and their mean over the given runs of one cell."""
    return {
        "task_1": describe([r["test_loss_task_1"] for r in records]),
        "task_2": describe([r["test_loss_task_2"] for r in records]),
        "mean_of_tasks": describe([run_loss(r) for r in records]),
    }


def losses_by_seed(records: Sequence[dict], **where: float | str) -> dict[int, float]:
    return {r["seed"]: run_loss(r) for r in select(records, **where)}


def paired(columns: dict[str, dict[int, float]]) -> dict[str, np.ndarray]:
    """The columns restricted to the seeds all of them have, in seed order."""
    seeds = sorted(set.intersection(*(set(column) for column in columns.values())))
    return {name: np.array([column[s] for s in seeds]) for name, column in columns.items()}


def bootstrap_interval(
    columns: dict[str, np.ndarray],
    statistic: Callable[[dict[str, np.ndarray]], np.ndarray],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """`statistic` of the paired columns and its 95 % percentile bootstrap interval.

    Seeds are resampled with replacement, the same resample for every column, so the pairing
    survives. `statistic` maps columns of shape (..., n) to values of shape (...).
    """
    size = len(next(iter(columns.values())))
    rows = np.random.default_rng(seed).integers(0, size, (resamples, size))  # (B, n)
    estimate = float(statistic(columns))
    replicates = statistic({name: values[rows] for name, values in columns.items()})  # (B,)
    low, high = np.quantile(replicates, (0.025, 0.975))
    return estimate, float(low), float(high)


def spread(values: np.ndarray) -> np.ndarray:
    """The 10-90 % range along the last axis: how far apart good and bad runs land."""
    low, high = np.quantile(values, (0.1, 0.9), axis=-1)
    return high - low


def choose_learning_rates(
    pilot: Sequence[dict], setting: str, models: Sequence[str], correlations: Sequence[float]
) -> dict[tuple[str, float], float]:
    """Per (model, p): the piloted learning rate with the lowest median best validation loss."""
    chosen = {}
    for model in models:
        for p in correlations:
            runs = select(pilot, setting=setting, study="pilot", model=model, p=p)
            by_rate: dict[float, list[float]] = {}
            for r in runs:
                by_rate.setdefault(r["lr"], []).append(r["best_validation_loss"])
            chosen[model, p] = min(by_rate, key=lambda rate: float(np.median(by_rate[rate])))
    return chosen


UNCONVERGED_AIM = 0.01  # the protocol's aim: at most 1 % of a cell's study runs unconverged


def unconverged(records: Sequence[dict], epochs: int) -> list[dict]:
    """Runs that ended at the epoch cap with their best validation epoch at the cap."""
    return [r for r in records if r["epochs_run"] == epochs and r["best_epoch"] == epochs]
