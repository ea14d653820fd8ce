"""The gate explorer (/ui) in a real browser against a real server that asks for an API key: the
page loads with nothing from elsewhere, takes the key, submits a randomised row, and draws each
task's gate weights as bars equal to what the API answers for the same row; the utilisation
panel draws the means /metrics reports. The run leaves a screenshot in out/screenshots/ (or in
$MMOE_SCREENSHOT_DIR: `make screenshots` writes the one in docs/images/)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ServerProcess, offline_page, serving_bundled
from tests.support import REPO_ROOT

KEY = "gate-explorer-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
TASKS = ["task_1", "task_2"]
EXPERTS = 8
TIMEOUT_MS = 30_000
SCREENSHOT = "gate-explorer.png"
TRAFFIC_ROWS = 256  # rows sent before the page's own, so that utilisation is not one row's gate


def screenshot_directory() -> Path:
    return Path(os.environ.get("MMOE_SCREENSHOT_DIR") or REPO_ROOT / "out" / "screenshots")


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {"MMOE_API_KEY": KEY, "MMOE_INFERENCE_NEEDS_KEY": "true"}
    with serving_bundled(tmp_path_factory.mktemp("ui"), settings) as process:
        yield process


def bars(page: Page, container: str) -> dict[str, list[tuple[float, float]]]:
    """Per task, per expert: (the weight the bar stands for, the bar's drawn share of its track)."""
    drawn: list[dict[str, str | float]] = page.eval_on_selector_all(
        f"{container} .bar-row",
        """rows => rows.map(row => ({
            task: row.dataset.task,
            weight: Number(row.dataset.weight),
            share: row.querySelector('.bar').getBoundingClientRect().width /
                   row.querySelector('.bar-track').getBoundingClientRect().width,
        }))""",
    )
    by_task: dict[str, list[tuple[float, float]]] = {}
    for row in drawn:
        by_task.setdefault(str(row["task"]), []).append((float(row["weight"]), float(row["share"])))
    return by_task


def test_the_page_draws_the_gate_weights_the_api_answers(
    keyed_server: ServerProcess, browser: Browser
) -> None:
    url = keyed_server.url
    traffic = np.random.default_rng(3).normal(size=(TRAFFIC_ROWS, 100)).round(3).tolist()
    assert httpx.post(f"{url}/predict", json={"instances": traffic}, headers=AUTH).is_success
    page, blocked = offline_page(browser, url)
    page.set_viewport_size({"width": 1360, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{url}/ui")
    # Without the key the page says what the server said.
    page.wait_for_function(
        "document.getElementById('status').textContent.includes('needs the API key')",
        timeout=TIMEOUT_MS,
    )
    page.fill("#api-key", KEY)
    page.press("#api-key", "Tab")  # leaving the field commits it (a change event)
    page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT_MS)
    assert page.input_value("#model") == "mmoe-synthetic"
    assert page.input_value("#version") == "1"
    names = page.eval_on_selector_all("#features input", "inputs => inputs.map(i => i.name)")
    assert names == [f"x_{i}" for i in range(1, 101)]

    page.click("#randomise")
    row = [float(value) for value in page.eval_on_selector_all(
        "#features input", "inputs => inputs.map(i => i.value)")]  # fmt: skip
    assert len(set(row)) > 50  # randomised, not the zeros it started with
    page.click("#submit")
    page.wait_for_selector("#result .bar-row", timeout=TIMEOUT_MS)
    drawn = bars(page, "#result")

    # The utilisation panel: the means /metrics reports over the traffic and the page's row.
    page.wait_for_function(
        f"document.getElementById('utilisation-tasks').textContent.includes("
        f"'{TRAFFIC_ROWS + 1} rows')",
        timeout=TIMEOUT_MS,
    )
    metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    means = {
        (sample.labels["task"], int(sample.labels["expert"])): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "mmoe_gate_weight_mean"
    }
    panel = bars(page, "#utilisation-tasks")
    for task in TASKS:
        assert [weight for weight, _ in panel[task]] == [
            means[(task, expert)] for expert in range(EXPERTS)
        ]
        for weight, share in panel[task]:
            assert share == pytest.approx(weight, abs=0.005)

    # The bars of the page's row: the gate weights the API answers for the same row.
    answer = httpx.post(
        f"{url}/predict", json={"instances": [row], "version": 1}, headers=AUTH
    ).json()
    assert list(drawn) == TASKS
    for task in TASKS:
        expected = answer["tasks"][task]["gate_weights"][0]
        assert [weight for weight, _ in drawn[task]] == expected
        for weight, share in drawn[task]:
            assert share == pytest.approx(weight, abs=0.005)
        shown = page.get_attribute(f"#result .task[data-task='{task}'] .prediction", "data-value")
        assert float(shown or "nan") == answer["tasks"][task]["predictions"][0]

    directory = screenshot_directory()
    directory.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(directory / SCREENSHOT), full_page=True)
    assert (directory / SCREENSHOT).stat().st_size > 10_000
    assert blocked == []
    assert problems == []
    page.close()


def test_a_table_model_takes_named_numbers_and_categories(
    keyed_server: ServerProcess, browser: Browser
) -> None:
    url = keyed_server.url
    page, blocked = offline_page(browser, url)
    page.goto(f"{url}/ui")
    page.fill("#api-key", KEY)
    page.press("#api-key", "Tab")
    page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT_MS)
    page.select_option("#model", "mmoe-adult")
    page.wait_for_selector("#features select[name='workclass']", timeout=TIMEOUT_MS)
    card = httpx.get(f"{url}/models/mmoe-adult/versions/1", headers=AUTH).json()["card"]
    vocabularies = {feature["name"]: feature["vocabulary"] for feature in card["categorical"][
        "features"]}  # fmt: skip
    page.click("#randomise")
    controls: list[dict[str, str]] = page.eval_on_selector_all(
        "#features .feature-value",
        "controls => controls.map(c => ({name: c.name, tag: c.tagName, value: c.value}))",
    )
    assert [c["name"] for c in controls] == card["input"]["feature_names"] + list(vocabularies)
    instance: dict[str, float | str] = {}
    for control in controls:
        if control["tag"] == "SELECT":
            assert control["value"] in vocabularies[control["name"]]
            instance[control["name"]] = control["value"]
        else:
            instance[control["name"]] = float(control["value"])
    page.click("#submit")
    page.wait_for_selector("#result .bar-row", timeout=TIMEOUT_MS)
    answer = httpx.post(
        f"{url}/predict",
        json={"instances": [instance], "model": "mmoe-adult", "version": 1},
        headers=AUTH,
    ).json()
    drawn = bars(page, "#result")
    assert list(drawn) == ["income", "never_married"]
    for task, weights in drawn.items():
        assert [weight for weight, _ in weights] == answer["tasks"][task]["gate_weights"][0]
        shown = page.get_attribute(f"#result .task[data-task='{task}'] .prediction", "data-value")
        assert float(shown or "nan") == answer["tasks"][task]["predictions"][0]
    assert blocked == []
    page.close()


def test_the_page_loads_nothing_from_elsewhere(keyed_server: ServerProcess) -> None:
    page = httpx.get(f"{keyed_server.url}/ui")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert "https://" not in page.text and "http://" not in page.text
    script = httpx.get(f"{keyed_server.url}/ui/assets/app.js")
    assert script.status_code == 200
    assert "http://" not in script.text and "https://" not in script.text
