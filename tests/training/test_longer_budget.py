"""Retraining a cell's unconverged runs longer: the same seeds give the same runs, then more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.experiments import files
from training.experiments.longer_budget import main, retrain_unconverged, unconverged_by_budget
from training.experiments.protocol import Protocol

PROG = "python -m training.experiments.longer_budget"
QUICK_RESULTS = Path(__file__).parents[2] / "docs" / "results" / "quick"


@pytest.fixture(scope="module")
def quick() -> tuple[list[dict], Protocol]:
    timing = json.loads((QUICK_RESULTS / "timing.json").read_text())
    records = files.read_records(QUICK_RESULTS / "runs.csv")
    return records, Protocol.model_validate(timing["protocol_config"])


def test_at_the_same_budget_the_retrained_runs_are_the_committed_ones(quick) -> None:
    records, protocol = quick
    budget = protocol.fresh.epochs
    retrained = retrain_unconverged(records, protocol, "fresh", "omoe", 1.0, budget)
    assert [run.seed for run in retrained] == [
        r["seed"]
        for r in records
        if (r["setting"], r["study"], r["model"], r["p"]) == ("fresh", "study", "omoe", 1.0)
        and r["best_epoch"] == budget
    ]
    assert len(retrained) == 2
    for run in retrained:
        assert run.longer_best_epoch == run.best_epoch == budget
        assert run.longer_best_validation_loss == pytest.approx(run.best_validation_loss, abs=1e-6)


def test_a_longer_budget_keeps_the_first_epochs_and_can_only_lower_the_best_loss(quick) -> None:
    records, protocol = quick
    budget = protocol.fresh.epochs
    retrained = retrain_unconverged(records, protocol, "fresh", "omoe", 1.0, 2 * budget)
    assert len(retrained) == 2
    for run in retrained:
        assert budget <= run.longer_best_epoch <= 2 * budget
        assert run.longer_best_validation_loss <= run.best_validation_loss + 1e-6
    assert any(run.longer_best_epoch > budget for run in retrained)


def test_the_command_refuses_a_budget_that_is_not_larger(quick, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([str(QUICK_RESULTS), "--model", "omoe", "--p", "1", "--epochs", "30"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"{PROG}: error: --epochs 30 is not larger than the study's budget, 30\n"
    )


def test_the_command_says_when_a_cell_has_no_unconverged_run(quick, capsys) -> None:
    cell = ["--setting", "main", "--model", "omoe", "--p", "1"]
    assert main([str(QUICK_RESULTS), *cell, "--epochs", "31"]) == 0
    assert capsys.readouterr().out == "no unconverged study run in main, omoe, p = 1\n"


def test_the_command_names_a_missing_results_file(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path), "--model", "mmoe", "--p", "1", "--epochs", "200"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"{PROG}: error: {tmp_path / 'timing.json'} is missing: is {tmp_path} a results folder?\n"
    )


def test_every_run_retrained_counts_the_committed_unconverged_runs_at_the_study_budget(
    quick,
) -> None:
    records, protocol = quick
    budget = protocol.fresh.epochs
    counts = unconverged_by_budget(records, protocol, "fresh", "omoe", 1.0, 2 * budget, [budget])
    committed = [
        r
        for r in records
        if (r["setting"], r["study"], r["model"], r["p"]) == ("fresh", "study", "omoe", 1.0)
    ]
    assert counts == {budget: (sum(r["best_epoch"] == budget for r in committed), len(committed))}
    assert counts[budget] == (2, 8)


def test_the_command_prints_the_unconverged_count_at_every_budget(quick, capsys) -> None:
    cell = ["--setting", "main", "--model", "omoe", "--p", "1"]
    assert main([str(QUICK_RESULTS), *cell, "--epochs", "31", "--all-runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "budget 30 epochs: 0 of 12 runs unconverged (0%)"
    assert [line.split(":")[0] for line in lines] == ["budget 30 epochs", "budget 31 epochs"]


def test_the_command_names_the_studied_p_values_when_a_cell_does_not_exist(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([str(QUICK_RESULTS), "--model", "mmoe", "--p", "0.7", "--epochs", "60", "--all-runs"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"{PROG}: error: --p 0.7: the study ran at p = 1, 0.9, 0.5\n"
    )
