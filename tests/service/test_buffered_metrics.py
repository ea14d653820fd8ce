"""A buffered histogram exposes exactly what prometheus-client's own Histogram exposes for the
same observations, whether they were binned at the scrape or on the way (every FOLD_EVERY)."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.buffered_metrics import FOLD_EVERY, BufferedHistogram
from service.metrics import LATENCY_BUCKETS, ROW_BUCKETS

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@pytest.mark.parametrize(
    ("buckets", "values"),
    [
        (LATENCY_BUCKETS, np.random.default_rng(0).lognormal(-7, 1.5, 10_000)),
        (ROW_BUCKETS, np.random.default_rng(1).integers(1, 5000, 3000).astype(float)),
        (ROW_BUCKETS, np.array([1.0, 2.0, 2.0, 4.0, 4096.0, 4097.0])),  # on the bounds, above all
    ],
)
def test_the_exposition_equals_prometheus_clients_histogram(
    buckets: tuple[float, ...], values: np.ndarray
) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h", "doc", ["route"], buckets=buckets, registry=theirs)
    buffered = BufferedHistogram("h", "doc", ["route"], buckets)
    ours.register(buffered)
    for index, value in enumerate(values.tolist()):
        route = "/a" if index % 3 else "/b"
        reference.labels(route).observe(value)
        buffered.labels(route).observe(value)
    expected, found = samples(theirs), samples(ours)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, rel=1e-12), key


def test_observations_are_binned_on_the_way_and_none_is_lost() -> None:
    histogram = BufferedHistogram("h", "doc", [], (1.0,), total_name="t")
    buffer = histogram.labels()
    for _ in range(FOLD_EVERY + 5):
        buffer.observe(0.5)
    assert (buffer.count, len(buffer.values)) == (FOLD_EVERY, 5)  # folded once, 5 waiting
    registry = CollectorRegistry()
    registry.register(histogram)
    found = samples(registry)
    assert found[("h_count", ())] == FOLD_EVERY + 5
    assert found[("t_total", ())] == FOLD_EVERY + 5
    assert found[("h_bucket", (("le", "1.0"),))] == FOLD_EVERY + 5
    assert found[("h_sum", ())] == pytest.approx(0.5 * (FOLD_EVERY + 5))


def test_a_wrong_number_of_labels_is_refused() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        BufferedHistogram("h", "doc", ["a", "b"], (1.0,)).labels("x")
