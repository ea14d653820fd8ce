"""Histograms for the hot path: an observation is one list append; binning happens in bulk.

prometheus-client's `Histogram.observe` takes a lock and walks the bucket bounds in Python for
every value (1.5-2 µs each, five times per small /predict). Here an observation is appended to
its label set's buffer, and the buffer is binned with numpy (`searchsorted` + `bincount`) when it
holds `FOLD_EVERY` values or when Prometheus scrapes, whichever comes first. The exposition is
prometheus-client's own (`HistogramMetricFamily`), so the series are exactly those of a
`Histogram`: `_bucket{le=...}`, `_count`, `_sum`; `total_name` adds a counter with the same
count (`mmoe_http_requests_total` beside the request-duration histogram).

Observations come from the event loop thread; a scrape may come from another thread, so folding
takes a lock and removes only the values it binned (list slicing is atomic under the GIL).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

FOLD_EVERY = 4096  # values buffered per label set before they are binned


class HistogramBuffer:
    """One label set: `observe` appends; the counts live in numpy arrays."""

    __slots__ = ("_bounds", "_lock", "count", "counts", "sum", "values")

    def __init__(self, bounds: np.ndarray) -> None:
        self._bounds = bounds
        self._lock = threading.Lock()
        self.values: list[float] = []
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)  # the last: above every bound
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        values = self.values
        values.append(value)
        if len(values) >= FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        with self._lock:
            taken = len(self.values)
            if not taken:
                return
            batch = np.array(self.values[:taken], dtype=np.float64)
            del self.values[:taken]
            # bucket i counts values <= bounds[i] (Prometheus' `le`): the first bound >= value
            slots = np.searchsorted(self._bounds, batch, side="left")
            self.counts += np.bincount(slots, minlength=len(self.counts))
            self.count += taken
            self.sum += float(batch.sum())


class BufferedHistogram:
    """A labelled histogram collector; `labels(...)` gives the buffer to call `observe` on."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        total_name: str | None = None,
        total_documentation: str = "",
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = np.array(sorted(buckets), dtype=np.float64)
        # the `le` labels, written as prometheus-client writes them (1.0 -> "1.0", 1e-05 ...)
        self.le = [str(floatToGoString(bound)) for bound in self.bounds]  # type: ignore[no-untyped-call]
        self.total_name = total_name
        self.total_documentation = total_documentation
        self._buffers: dict[tuple[str, ...], HistogramBuffer] = {}
        self._lock = threading.Lock()

    def labels(self, *values: str) -> HistogramBuffer:
        buffer = self._buffers.get(values)
        if buffer is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            with self._lock:
                buffer = self._buffers.setdefault(values, HistogramBuffer(self.bounds))
        return buffer

    def remove(self, *values: str) -> None:
        with self._lock:
            self._buffers.pop(values, None)

    def describe(self) -> Iterator[Metric]:
        histogram, total = self._families()
        yield histogram
        if total is not None:
            yield total

    def collect(self) -> Iterator[Metric]:
        histogram, total = self._families()
        with self._lock:
            buffers = list(self._buffers.items())
        for labels, buffer in sorted(buffers):
            buffer.fold()
            cumulative = np.cumsum(buffer.counts)
            buckets = [
                (le, float(count)) for le, count in zip(self.le, cumulative[:-1], strict=True)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            histogram.add_metric(list(labels), buckets, buffer.sum)
            if total is not None:
                total.add_metric(list(labels), buffer.count)
        yield histogram
        if total is not None:
            yield total

    def _families(self) -> tuple[HistogramMetricFamily, CounterMetricFamily | None]:
        histogram = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        total = None
        if self.total_name is not None:
            total = CounterMetricFamily(
                self.total_name, self.total_documentation, labels=self.labelnames
            )
        return histogram, total
