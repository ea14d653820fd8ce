"""/metrics of a real server after known traffic, parsed with prometheus_client's parser: request
counts, instances, batches and the gate utilisation equal what the responses returned."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import LATENCY_BUCKETS
from tests.e2e.conftest import ServerProcess, serving_bundled
from tests.support import REPO_ROOT, bundled_version_dir, copy_bundled

NAME = "mmoe-synthetic"
TASKS = ["task_1", "task_2"]
EXPERTS = 8
THRESHOLD = 0.05

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own: its counters hold exactly this module's traffic."""
    settings = {"MMOE_GATE_COLLAPSE_THRESHOLD": str(THRESHOLD)}
    with serving_bundled(tmp_path_factory.mktemp("metrics"), settings) as process:
        yield process


def scrape(url: str) -> Samples:
    text = httpx.get(f"{url}/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_counts_and_gate_means_equal_what_the_responses_returned(
    metrics_server: ServerProcess,
) -> None:
    url = metrics_server.url
    rng = np.random.default_rng(7)
    with_gates = [rng.normal(size=(1 + i % 4, 100)).astype(np.float32) for i in range(12)]
    without_gates = [rng.normal(size=(2, 100)).astype(np.float32) for _ in range(3)]
    gate_sums = np.zeros((len(TASKS), EXPERTS))
    with httpx.Client(base_url=url) as client:
        for rows in with_gates:
            body = client.post("/predict", json={"instances": rows.tolist()}).json()
            for k, task in enumerate(TASKS):
                answered = np.array(body["tasks"][task]["gate_weights"], dtype=np.float32)
                gate_sums[k] += answered.sum(axis=0, dtype=np.float64)
        for rows in without_gates:
            response = client.post(
                "/predict", json={"instances": rows.tolist(), "return_gates": False}
            )
            assert response.json()["tasks"]["task_1"]["gate_weights"] is None
        for _ in range(2):
            assert client.post("/predict", json={"instances": [[1.0] * 3]}).status_code == 422
        assert client.post("/predict", json={"instances": [[1.0]], "model": "x"}).status_code == 404
        for _ in range(2):
            assert client.get("/models").status_code == 200
    # The gates of the rows asked without gates are counted too: computed by onnxruntime here.
    reference = onnxruntime.InferenceSession(
        str(bundled_version_dir() / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    for rows in without_gates:
        [gates] = reference.run(["gates"], {"features": rows})
        gate_sums += gates.sum(axis=0, dtype=np.float64)
    total_rows = sum(len(rows) for rows in with_gates + without_gates)
    samples = scrape(url)

    def requests(method: str, route: str, status: str) -> float:
        labels = {"method": method, "route": route, "status": status}
        count = value(samples, "mmoe_http_request_duration_seconds_count", **labels)
        assert value(samples, "mmoe_http_requests_total", **labels) == count
        return count

    assert requests("POST", "/predict", "200") == 15
    assert requests("POST", "/predict", "422") == 2
    assert requests("POST", "/predict", "404") == 1
    assert requests("GET", "/models", "200") == 2
    assert value(samples, "mmoe_request_instances_count", model=NAME) == 15
    assert value(samples, "mmoe_request_instances_sum", model=NAME) == total_rows
    version = {"model": NAME, "version": "1"}
    calls = value(samples, "mmoe_batch_rows_count", **version)
    assert 1 <= calls <= 15
    assert value(samples, "mmoe_inference_duration_seconds_count", **version) == calls
    assert value(samples, "mmoe_inference_duration_seconds_sum", **version) > 0
    assert value(samples, "mmoe_batch_rows_sum", **version) == total_rows
    assert value(samples, "mmoe_batch_requests_sum", **version) == 15
    assert value(samples, "mmoe_queue_depth") == 0
    assert value(samples, "mmoe_model_info", provider="cpu", role="default", **version) == 1
    assert value(samples, "mmoe_model_loads_total", model=NAME, outcome="loaded") == 1
    assert value(samples, "mmoe_gate_collapse_threshold") == THRESHOLD
    for k, task in enumerate(TASKS):
        task_labels = {**version, "task": task}
        assert value(samples, "mmoe_gate_rows_total", **task_labels) == total_rows
        counted = [
            value(samples, "mmoe_gate_weight_sum_total", **task_labels, expert=str(e))
            for e in range(EXPERTS)
        ]
        means = [
            value(samples, "mmoe_gate_weight_mean", **task_labels, expert=str(e))
            for e in range(EXPERTS)
        ]
        # float32 precision: the server sums each batch in float32 (BLAS), batches in float64
        np.testing.assert_allclose(counted, gate_sums[k], rtol=1e-6)
        expected_mean = gate_sums[k] / total_rows
        np.testing.assert_allclose(means, expected_mean, rtol=1e-6)
        entropy = -sum(p * math.log(p) for p in expected_mean) / math.log(EXPERTS)
        assert value(samples, "mmoe_gate_normalised_entropy", **task_labels) == pytest.approx(
            entropy, rel=1e-6
        )
        below = sum(1 for p in expected_mean if p < THRESHOLD)
        assert value(samples, "mmoe_gate_experts_below_threshold", **task_labels) == below


def test_openmetrics_when_the_scraper_asks_for_it(metrics_server: ServerProcess) -> None:
    response = httpx.get(
        f"{metrics_server.url}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    names = {family.name for family in openmetrics_families(response.text)}
    assert {"mmoe_http_requests", "mmoe_gate_weight_sum", "mmoe_gate_weight_mean"} <= names
    plain = httpx.get(f"{metrics_server.url}/metrics")
    assert plain.headers["content-type"].startswith("text/plain")


def test_the_metrics_route_is_gone_when_metrics_are_off(tmp_path: Path) -> None:
    server = ServerProcess(
        {
            "MMOE_MODEL_REPOSITORY": str(copy_bundled(tmp_path / "models")),
            "MMOE_PROVIDER": "cpu",
            "MMOE_METRICS": "false",
        },
        tmp_path / "server.log",
    )
    try:
        server.wait_ready()
        assert httpx.post(f"{server.url}/predict", json={"instances": [[0.5] * 100]}).is_success
        assert httpx.get(f"{server.url}/metrics").status_code == 404
    finally:
        server.stop()


def test_every_metric_the_prometheus_rules_use_is_exposed(metrics_server: ServerProcess) -> None:
    httpx.post(f"{metrics_server.url}/predict", json={"instances": [[0.5] * 100]})
    text = httpx.get(f"{metrics_server.url}/metrics").text
    families = list(text_string_to_metric_families(text))
    exposed = {family.name for family in families} | {
        sample.name for family in families for sample in family.samples
    }  # a family may have no sample yet (no version has failed)
    rules = (REPO_ROOT / "docker" / "prometheus" / "rules.yml").read_text()
    used = set(re.findall(r"\b(mmoe_[a-z_]+)", rules))
    assert used >= {"mmoe_gate_weight_sum_total", "mmoe_gate_rows_total",
                    "mmoe_http_request_duration_seconds_bucket"}  # fmt: skip
    assert used - exposed == set()
    for bucket in re.findall(r'le="([0-9.]+)"', rules):
        assert float(bucket) in LATENCY_BUCKETS  # a bound the histogram really has
