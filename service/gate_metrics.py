"""Gate utilisation: how much weight each task's gate gives each expert, over the real traffic.

Per batch the runner hands over its `gates` output [rows, G, E], which is kept aside (one list
append: a numpy call per batch costs more, at 5-20 µs in a busy server, than everything else the
metrics do). Every 256 batches, and at each scrape, the batches kept aside are concatenated and
summed over their rows, once per model version, into a float64 [G, E] accumulator: no Python
loop over rows, tasks or experts. At scrape time the accumulators become, labelled `model`,
`version`, `task` (and `expert`):

- `mmoe_gate_weight_sum_total` and `mmoe_gate_rows_total` (counters): the summed weights and
  the rows they came from, so that `rate(sum) / rate(rows)` is the mean gate over any window;
- `mmoe_gate_weight_mean` (gauge): the mean weight per expert since the version was loaded;
- `mmoe_gate_normalised_entropy` (gauge): the entropy of that mean gate over log(E): 1 when the
  task spreads its weight evenly over the experts, 0 when one expert takes it all;
- `mmoe_gate_experts_below_threshold` (gauge): experts whose mean weight is below
  `mmoe_gate_collapse_threshold`: experts the task has stopped using.

OMoE's one shared gate is reported under each task, as /predict reports it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

ModelKey = tuple[str, int]
FOLD_EVERY_BATCHES = 256  # batches kept aside before their gates are summed (and at each scrape)


class GatedModel(Protocol):
    name: str
    version: int
    task_names: list[str]


class _Accumulator:
    __slots__ = ("rows", "sums", "tasks")

    def __init__(self, tasks: Sequence[str], gates: int, experts: int) -> None:
        self.tasks = list(tasks)
        self.sums = np.zeros((gates, experts), dtype=np.float64)
        self.rows = 0


def mean_gate_statistics(mean: np.ndarray, threshold: float) -> tuple[float, int]:
    """(normalised entropy, experts below `threshold`) of one mean gate [E]."""
    experts = len(mean)
    if experts < 2:
        return 1.0, int((mean < threshold).sum())
    positive = mean[mean > 0]
    entropy = float(-(positive * np.log(positive)).sum()) / math.log(experts)
    return min(max(entropy, 0.0), 1.0), int((mean < threshold).sum())


class GateUtilisation:
    """A prometheus-client collector of gate weights, fed one batch at a time."""

    def __init__(self, collapse_threshold: float) -> None:
        self.collapse_threshold = collapse_threshold
        self._lock = threading.Lock()
        self._by_model: dict[ModelKey, _Accumulator] = {}
        self._pending: list[tuple[str, int, list[str], np.ndarray]] = []

    def observe(self, model: GatedModel, gates: np.ndarray) -> None:
        """Take one batch's gate weights, float [rows, G, E]: kept aside until the next fold."""
        if gates.ndim != 3 or not gates.shape[0]:
            return
        pending = self._pending
        pending.append((model.name, model.version, model.task_names, gates))
        if len(pending) >= FOLD_EVERY_BATCHES:
            self.fold()

    def fold(self) -> None:
        """Add the batches kept aside to the sums: one concatenate and one sum per version."""
        with self._lock:
            taken = len(self._pending)
            if not taken:
                return
            batches = self._pending[:taken]
            del self._pending[:taken]  # (a batch appended meanwhile stays for the next fold)
            by_version: dict[ModelKey, tuple[list[str], list[np.ndarray]]] = {}
            for name, version, tasks, gates in batches:
                by_version.setdefault((name, version), (tasks, []))[1].append(gates)
            for key, (tasks, arrays) in by_version.items():
                stacked = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
                sums = stacked.sum(axis=0, dtype=np.float64)  # [G, E]
                accumulator = self._by_model.get(key)
                if accumulator is None or accumulator.sums.shape != sums.shape:
                    accumulator = _Accumulator(tasks, *sums.shape)
                    self._by_model[key] = accumulator
                accumulator.sums += sums
                accumulator.rows += len(stacked)

    def forget(self, keys: Iterable[ModelKey]) -> None:
        """Drop the series of versions no longer served (or served from new files)."""
        self.fold()
        with self._lock:
            for key in keys:
                self._by_model.pop(key, None)

    def snapshot(self) -> dict[ModelKey, tuple[list[str], np.ndarray, int]]:
        """Per version: (task names, summed weights [G, E], rows)."""
        self.fold()
        with self._lock:
            return {
                key: (acc.tasks, acc.sums.copy(), acc.rows) for key, acc in self._by_model.items()
            }

    def describe(self) -> Iterator[Metric]:
        yield from _Families()

    def collect(self) -> Iterator[Metric]:
        families = _Families()
        weight_sum, rows, mean = families.weight_sum, families.rows, families.mean
        entropy, below, threshold = families.entropy, families.below, families.threshold
        threshold.add_metric([], self.collapse_threshold)
        for (name, version), (tasks, sums, row_count) in sorted(self.snapshot().items()):
            for task_index, task in enumerate(tasks):
                gate = sums[task_index if len(sums) > 1 else 0]
                labels = [name, str(version), task]
                rows.add_metric(labels, row_count)
                task_mean = gate / row_count if row_count else np.zeros_like(gate)
                for expert, (total, average) in enumerate(zip(gate, task_mean, strict=True)):
                    expert_labels = [*labels, str(expert)]
                    weight_sum.add_metric(expert_labels, float(total))
                    mean.add_metric(expert_labels, float(average))
                if row_count:
                    spread, collapsed = mean_gate_statistics(task_mean, self.collapse_threshold)
                    entropy.add_metric(labels, spread)
                    below.add_metric(labels, collapsed)
        yield from families


class _Families:
    """The metric families of one scrape, empty until filled."""

    def __init__(self) -> None:
        task_labels = ["model", "version", "task"]
        expert_labels = [*task_labels, "expert"]
        self.weight_sum = CounterMetricFamily(
            "mmoe_gate_weight_sum",
            "Gate weight given to each expert, summed over every row served",
            labels=expert_labels,
        )
        self.rows = CounterMetricFamily(
            "mmoe_gate_rows", "Rows whose gate weights were counted", labels=task_labels
        )
        self.mean = GaugeMetricFamily(
            "mmoe_gate_weight_mean",
            "Mean gate weight of each expert since the version was loaded",
            labels=expert_labels,
        )
        self.entropy = GaugeMetricFamily(
            "mmoe_gate_normalised_entropy",
            "Entropy of the mean gate over log(experts): 1 even use, 0 one expert",
            labels=task_labels,
        )
        self.below = GaugeMetricFamily(
            "mmoe_gate_experts_below_threshold",
            "Experts whose mean gate weight is below mmoe_gate_collapse_threshold",
            labels=task_labels,
        )
        self.threshold = GaugeMetricFamily(
            "mmoe_gate_collapse_threshold",
            "Mean gate weight below which an expert counts as collapsed",
        )

    def __iter__(self) -> Iterator[Metric]:
        yield from (self.weight_sum, self.rows, self.mean, self.entropy, self.below)
        yield self.threshold
