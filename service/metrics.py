"""Prometheus metrics of one service instance, with prometheus-client, in a registry of its own.

Counted on the request path (one call per request: method, route, status, duration; instances
per /predict request), per onnxruntime call (`observe_batch`: inference time, rows and requests
per call, and the gate weights, see `service.gate_metrics`), on every model load and repository
reload, and read at scrape time (queue depth, the model versions and providers in use, failed
and unloading versions). Label children are made once per label set and kept, so counting is a
few dictionary look-ups and list appends, binned in bulk (`service.buffered_metrics`).
`docs/operations.md` explains each metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from service.buffered_metrics import BufferedHistogram, HistogramBuffer
from service.gate_metrics import GatedModel, GateUtilisation, ModelKey

# Seconds: from a fast /predict (~0.3 ms) to a slow reload or a large batch.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class ServedVersion(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def provider(self) -> str: ...


class RepositoryView(Protocol):
    """What the scrape-time collector reads: the repository in use and the reload status."""

    def versions_in_use(self) -> Iterable[tuple[ServedVersion, str]]:
        """Every served version and its role: default, latest, candidate or older."""
        ...

    def failed_versions(self) -> dict[str, int]:
        """Model -> versions on disk that failed to load and are not served."""
        ...

    def unloading_versions(self) -> int:
        """Versions reloaded away but still answering their last requests."""
        ...


class _RepositoryCollector:
    def __init__(self, view: Callable[[], RepositoryView | None]) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "mmoe_model_info",
            "A model version being served (1), its execution provider and role",
            labels=["model", "version", "provider", "role"],
        )
        failed = GaugeMetricFamily(
            "mmoe_model_versions_failed",
            "Versions on disk that failed to load or verify and are not served",
            labels=["model"],
        )
        unloading = GaugeMetricFamily(
            "mmoe_model_versions_unloading",
            "Versions reloaded away that still answer requests that started before",
        )
        view = self.view()
        if view is not None:
            for model, role in view.versions_in_use():
                info.add_metric([model.name, str(model.version), model.provider, role], 1)
            for name, count in sorted(view.failed_versions().items()):
                failed.add_metric([name], count)
            unloading.add_metric([], view.unloading_versions())
        yield from (info, failed, unloading)


class ServiceMetrics:
    """Every metric of the service; `render` is the body of GET /metrics."""

    def __init__(self, collapse_threshold: float) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        # The histograms on the request path buffer their observations (service.buffered_metrics)
        self.request_seconds = self._histogram(
            "mmoe_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response",
            ["method", "route", "status"],
            LATENCY_BUCKETS,
            total_name="mmoe_http_requests",
            total_documentation="HTTP requests answered, by method, route template and status",
        )
        self.instances = self._histogram(
            "mmoe_request_instances",
            "Instances (rows) per prediction request",
            ["model"],
            ROW_BUCKETS,
        )
        self.inference_seconds = self._histogram(
            "mmoe_inference_duration_seconds",
            "Time of one onnxruntime call (a micro-batch), without queueing",
            ["model", "version"],
            LATENCY_BUCKETS,
        )
        self.batch_rows = self._histogram(
            "mmoe_batch_rows", "Rows per onnxruntime call", ["model", "version"], ROW_BUCKETS
        )
        self.batch_requests = self._histogram(
            "mmoe_batch_requests",
            "Requests merged into one onnxruntime call",
            ["model", "version"],
            ROW_BUCKETS,
        )
        self.inference_errors = Counter(
            "mmoe_inference_errors",
            "onnxruntime calls that failed (each fails every request of its batch)",
            ["model", "version"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "mmoe_queue_depth", "Requests waiting for an inference slot", registry=registry
        )
        self.model_loads = Counter(
            "mmoe_model_loads",
            "Model versions loaded and verified (at start-up and by reloads), by outcome",
            ["model", "outcome"],
            registry=registry,
        )
        self.reloads = Counter(
            "mmoe_repository_reloads",
            "Reloads of the model repository, by trigger (poll, admin) and outcome",
            ["trigger", "outcome"],
            registry=registry,
        )
        self.last_reload = Gauge(
            "mmoe_repository_last_reload_timestamp_seconds",
            "When the served set of model versions last changed (Unix time)",
            registry=registry,
        )
        self.gates = GateUtilisation(collapse_threshold)
        registry.register(self.gates)
        self._repository_view: Callable[[], RepositoryView | None] = lambda: None
        registry.register(_RepositoryCollector(lambda: self._repository_view()))
        self._request_buffers: dict[tuple[str, str, int], HistogramBuffer] = {}
        self._batch_buffers: dict[ModelKey, tuple[HistogramBuffer, ...]] = {}
        self._instance_buffers: dict[str, HistogramBuffer] = {}

    def _histogram(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        buckets: tuple[float, ...],
        total_name: str | None = None,
        total_documentation: str = "",
    ) -> BufferedHistogram:
        histogram = BufferedHistogram(
            name, documentation, labelnames, buckets, total_name, total_documentation
        )
        self.registry.register(histogram)
        return histogram

    def watch_repository(self, view: Callable[[], RepositoryView | None]) -> None:
        self._repository_view = view

    def watch_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        buffer = self._request_buffers.get(key)
        if buffer is None:
            buffer = self.request_seconds.labels(method, route, str(status))
            self._request_buffers[key] = buffer
        buffer.observe(seconds)

    def observe_instances(self, model: str, count: int) -> None:
        buffer = self._instance_buffers.get(model)
        if buffer is None:
            buffer = self._instance_buffers[model] = self.instances.labels(model)
        buffer.observe(count)

    def observe_batch(
        self,
        model: GatedModel,
        requests: int,
        rows: int,
        seconds: float,
        gates: np.ndarray | None,
        failed: bool = False,
    ) -> None:
        """One onnxruntime call: its time, size and (when it succeeded) its gate weights."""
        key = (model.name, model.version)
        buffers = self._batch_buffers.get(key)
        if buffers is None:
            labels = (model.name, str(model.version))
            buffers = (
                self.inference_seconds.labels(*labels),
                self.batch_rows.labels(*labels),
                self.batch_requests.labels(*labels),
            )
            self._batch_buffers[key] = buffers
        buffers[0].observe(seconds)
        buffers[1].observe(rows)
        buffers[2].observe(requests)
        if failed:
            self.inference_errors.labels(*map(str, key)).inc()
        elif gates is not None:
            self.gates.observe(model, gates)

    def model_loaded(self, model: str, ok: bool) -> None:
        self.model_loads.labels(model, "loaded" if ok else "failed").inc()

    def started(self, models: Iterable[ServedVersion]) -> None:
        """The versions loaded at start-up."""
        for model in models:
            self.model_loaded(model.name, ok=True)
        self.last_reload.set_to_current_time()

    def reloaded(self, trigger: str, outcome: str, changed_at: float | None) -> None:
        self.reloads.labels(trigger, outcome).inc()
        if changed_at is not None:
            self.last_reload.set(changed_at)

    def forget_versions(self, keys: Iterable[ModelKey]) -> None:
        """Versions no longer served (or served from new files): their gate series end."""
        keys = list(keys)
        self.gates.forget(keys)
        for key in keys:
            if self._batch_buffers.pop(key, None) is not None:
                labels = (key[0], str(key[1]))
                for metric in (self.inference_seconds, self.batch_rows, self.batch_requests):
                    metric.remove(*labels)

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition in the format the scraper accepts: (body, content type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
