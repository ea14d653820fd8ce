"""Gate utilisation, the math: sums and rows per batch, the mean gate, its normalised entropy, and
the experts below the collapse threshold; OMoE's one gate under every task."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.gate_metrics import FOLD_EVERY_BATCHES, GateUtilisation, mean_gate_statistics


@dataclass
class FakeModel:
    name: str = "m"
    version: int = 1
    task_names: list[str] = field(default_factory=lambda: ["a", "b"])


def scraped(collector: GateUtilisation) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def test_sums_rows_and_means_over_batches_equal_the_rows_seen() -> None:
    collector = GateUtilisation(collapse_threshold=0.01)
    model = FakeModel()
    rng = np.random.default_rng(0)
    batches = [softmax(rng.normal(size=(n, 2, 4))) for n in (1, 5, 256)]
    for gates in batches:
        collector.observe(model, gates)
    every_row = np.concatenate(batches).astype(np.float64)  # (262, 2, 4)
    samples = scraped(collector)
    for t, task in enumerate(["a", "b"]):
        labels = (("model", "m"), ("task", task), ("version", "1"))
        assert samples[("mmoe_gate_rows_total", labels)] == 262
        for e in range(4):
            expert = tuple(sorted((*labels, ("expert", str(e)))))
            total = every_row[:, t, e].sum()
            assert samples[("mmoe_gate_weight_sum_total", expert)] == pytest.approx(total, rel=1e-6)
            mean = samples[("mmoe_gate_weight_mean", expert)]
            assert mean == pytest.approx(total / 262, rel=1e-6)


def test_omoe_reports_its_one_gate_under_every_task() -> None:
    collector = GateUtilisation(collapse_threshold=0.01)
    collector.observe(FakeModel(task_names=["a", "b", "c"]), softmax(np.ones((3, 1, 2))))
    samples = scraped(collector)
    for task in ["a", "b", "c"]:
        labels = (("expert", "0"), ("model", "m"), ("task", task), ("version", "1"))
        assert samples[("mmoe_gate_weight_mean", labels)] == 0.5


def test_entropy_is_one_for_even_use_and_zero_for_one_expert() -> None:
    assert mean_gate_statistics(np.full(8, 1 / 8), 0.01) == (pytest.approx(1.0), 0)
    assert mean_gate_statistics(np.eye(8)[3], 0.01) == (0.0, 7)
    entropy, below = mean_gate_statistics(np.array([0.5, 0.495, 0.005]), 0.01)
    expected = -(0.5 * np.log(0.5) + 0.495 * np.log(0.495) + 0.005 * np.log(0.005)) / np.log(3)
    assert (entropy, below) == (pytest.approx(expected), 1)


def test_a_collapsed_expert_shows_in_the_scrape() -> None:
    collector = GateUtilisation(collapse_threshold=0.05)
    gates = np.tile(np.array([0.6, 0.38, 0.02], dtype=np.float32), (10, 2, 1))
    collector.observe(FakeModel(), gates)
    samples = scraped(collector)
    labels = (("model", "m"), ("task", "a"), ("version", "1"))
    assert samples[("mmoe_gate_experts_below_threshold", labels)] == 1
    assert samples[("mmoe_gate_collapse_threshold", ())] == 0.05


def test_forgotten_versions_have_no_series_and_a_new_shape_starts_over() -> None:
    collector = GateUtilisation(collapse_threshold=0.01)
    collector.observe(FakeModel(version=1), softmax(np.zeros((4, 2, 3))))
    collector.observe(FakeModel(version=2), softmax(np.zeros((4, 2, 3))))
    collector.forget([("m", 1)])
    assert {key[1] for key in collector.snapshot()} == {2}
    collector.observe(FakeModel(version=2), softmax(np.zeros((2, 2, 5))))  # files replaced
    [(_tasks, sums, rows)] = collector.snapshot().values()
    assert (sums.shape, rows) == ((2, 5), 2)


def test_batches_kept_aside_are_summed_every_fold_and_at_the_scrape() -> None:
    collector = GateUtilisation(collapse_threshold=0.01)
    batch = softmax(np.random.default_rng(5).normal(size=(3, 2, 4)))
    for _ in range(FOLD_EVERY_BATCHES + 2):
        collector.observe(FakeModel(), batch)
    assert len(collector._pending) == 2  # folded once on the way; two wait for the scrape
    [(_tasks, sums, rows)] = collector.snapshot().values()
    assert rows == 3 * (FOLD_EVERY_BATCHES + 2)
    expected = batch.astype(np.float64).sum(axis=0) * (FOLD_EVERY_BATCHES + 2)
    np.testing.assert_allclose(sums, expected, rtol=1e-12)
    assert collector._pending == []
