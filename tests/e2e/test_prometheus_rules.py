"""docker/prometheus/rules.yml (the expert-collapse and latency-SLO alerts of docs/operations.md)
is valid PromQL that fires when it should: `promtool check rules`, then `promtool test rules`
against the synthetic series of rules_test.yml. promtool is Debian's `prometheus` package
(`make test` installs it when it runs as root, as in CI); without it these tests skip, except
under CI=true, where they fail. tests/e2e/test_metrics.py checks that every metric the rules
use is one the service exposes."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support import REPO_ROOT

RULES_DIR = REPO_ROOT / "docker" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed: apt-get install prometheus (make test does, as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *arguments], cwd=RULES_DIR, capture_output=True, text=True, timeout=120
    )


def test_the_rules_are_valid_promql() -> None:
    checked = run("check", "rules", "rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 11 rules found" in checked.stdout


def test_the_alerts_fire_on_collapsed_gates_and_a_burnt_budget_and_not_otherwise() -> None:
    tested = run("test", "rules", "rules_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
