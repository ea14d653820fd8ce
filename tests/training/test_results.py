"""The committed results hold together: each README is what its files generate, and every number
the top-level README's "Reproducing the paper" section quotes is what the committed data say."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from training.experiments import files
from training.experiments.findings import findings
from training.experiments.protocol import Protocol
from training.experiments.report import chosen_rates, write_readme
from training.experiments.summary import UNCONVERGED_AIM, select, unconverged

ROOT = Path(__file__).parents[2]
RESULTS = ROOT / "docs" / "results"
INTERVAL = re.compile(r"([+−-]\d+\.\d{4}) \[([+−-]\d+\.\d{4}), ([+−-]\d+\.\d{4})\]")


def _protocol(folder: Path) -> Protocol:
    timing = json.loads((folder / "timing.json").read_text())
    return Protocol.model_validate(timing["protocol_config"])


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return files.read_records(RESULTS / "runs.csv")


@pytest.mark.parametrize("folder", [RESULTS, RESULTS / "quick"], ids=["full", "quick"])
def test_each_results_readme_is_what_its_files_generate(folder: Path) -> None:
    protocol = _protocol(folder)
    readme = write_readme(
        files.read_records(folder / "runs.csv"),
        files.read_records(folder / "label_correlation.csv"),
        protocol,
        json.loads((folder / "timing.json").read_text()),
        "../DISCUSSION.md" if folder.name == "quick" else "DISCUSSION.md",
    )
    assert (folder / "README.md").read_text() == readme


def test_the_committed_results_are_the_full_protocol_and_the_quick_one() -> None:
    assert _protocol(RESULTS).name == "full"
    assert _protocol(RESULTS / "quick").name == "quick"


def test_every_interval_the_readme_quotes_is_a_finding_of_the_committed_runs(records) -> None:
    protocol = _protocol(RESULTS)
    section = _section("Reproducing the paper")
    computed = {
        (setting.name, finding.interval().replace("-", "−")): finding
        for setting in protocol.settings
        for finding in findings(records, protocol, setting.name)
    }
    quoted = INTERVAL.findall(section)
    assert len(quoted) >= 4
    for line in section.splitlines():
        for match in INTERVAL.finditer(line):
            text = match.group(0).replace("-", "−")
            setting = "fresh" if "fresh" in line else "main"
            assert (setting, text) in computed, f"{text} ({setting}) is not a finding: {line}"
            assert computed[setting, text].verdict in line, line


def test_the_readme_quotes_the_chosen_learning_rates_the_shares_and_the_counts(records) -> None:
    protocol = _protocol(RESULTS)
    section = _section("Reproducing the paper")
    chosen = chosen_rates(records, protocol)["main"]
    for (model, p), rate in chosen.items():
        label = {"shared_bottom": "Shared-Bottom", "omoe": "OMoE", "mmoe": "MMoE"}[model]
        assert f"{label} {rate:g}" in section.split("learning rates")[1].split("\n\n")[0] or (
            p != 0.5
        ), f"{label} at p = 0.5"
    study = [r for r in records if r["study"] == "study"]
    assert f"{len(study):,} study runs" in section
    main_share = {r["linear_unexplained_share"] for r in study if r["setting"] == "main"}
    assert len(main_share) == 1
    assert f"{main_share.pop():.1%}" in section
    section = " ".join(section.split())  # sentences are wrapped anywhere
    misses = []
    for setting in protocol.settings:
        runs = [r for r in study if r["setting"] == setting.name]
        late = len(unconverged(runs, setting.epoch_cap))
        assert f"{late} of the {len(runs):,} study runs in the {setting.name} setting" in section
        worst = max(
            len(unconverged([r for r in runs if (r["model"], r["p"]) == cell], setting.epoch_cap))
            / len([r for r in runs if (r["model"], r["p"]) == cell])
            for cell in {(r["model"], r["p"]) for r in runs}
        )
        assert f"{worst:.0%} of its worst cell's" in section, setting.name
        misses.append(worst > UNCONVERGED_AIM)
    assert ("Both settings miss the protocol's aim of at most 1 %" in section) == all(misses)
    assert ("both settings meet the protocol's aim of at most 1 %" in section) == (not any(misses))
    for setting in protocol.settings:
        late_models = {
            r["model"] for r in unconverged(select(study, setting=setting.name), setting.epoch_cap)
        }
        sentence = section.split(f"study runs in the {setting.name} setting")[1].split(",")[1]
        assert ("(all Shared-Bottom)" in sentence) == (late_models == {"shared_bottom"}), sentence


def test_the_readme_quotes_the_measured_time_and_load(records) -> None:
    timing = json.loads((RESULTS / "timing.json").read_text())
    section = _section("Reproducing the paper")
    assert f"{timing['total_seconds'] / 60:.0f} min" in section
    load = timing["load_average"]
    assert f"load average {load['min']:.1f}-{load['max']:.1f}" in section
