"""Numbers from the runs: per cell (model, p, lr, c, m) the mean, spread and quantiles of test loss.

A few diverging runs dominate a mean, so every summary carries the median and quantiles too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def run_loss(record: dict) -> float:
    """One run's test loss: the mean of its two tasks' MSE."""
    return 0.5 * (record["test_loss_task_1"] + record["test_loss_task_2"])


def select(records: Sequence[dict], seeds: int | None = None, **where: float | str) -> list[dict]:
    """Records matching every `field=value`, with seed < `seeds` when given."""
    return [
        r
        for r in records
        if all(r[key] == value for key, value in where.items())
        and (seeds is None or r["seed"] < seeds)
    ]


def describe(values: Sequence[float]) -> dict[str, float]:
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
