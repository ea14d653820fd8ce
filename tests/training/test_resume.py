"""An interrupted protocol resumes from its finished batches and writes the same files as one
uninterrupted run; partial files of another protocol are refused, not mixed in."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from training.experiments import runner
from training.experiments.__main__ import main
from training.experiments.partial import batch_key
from training.experiments.runner import Batch, Outcome

TINY = [
    "main.repeats=2",
    "main.epochs=2",
    "fresh.repeats=2",
    "fresh.epochs=2",
    "pilot_repeats=1",
    "sweep_correlations=[0.0,1.0]",
    "sweep_repeats=1",
    "train_size=32",
    "validation_size=16",
    "test_size=16",
    "batch_size=16",
    "label_correlation_sinusoids=[1]",
    "label_correlation_scales=[1.0]",
    "label_correlation_rows=100",
    "label_correlation_draws=2",
]
SAME_BYTES = ("runs.csv", "curves.csv.gz", "label_correlation.csv")


def arguments(out: Path, *extra: str) -> list[str]:
    args = ["--quick", "--workers", "1", "--out", str(out)]
    for item in [*TINY, *extra]:
        args += ["--set", item]
    return args


def run(args: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return main(args)
    finally:
        torch.set_num_threads(threads)


def interrupted(out: Path, *extra: str, study_batches: int = 1) -> None:
    """Run until `study_batches` study batches have finished, then fail as a kill would."""
    train = runner.run_batch
    finished: list[Batch] = []

    def run_then_fail(batch: Batch, threads: int = 1) -> Outcome:
        if batch.job.study != "pilot" and len(finished) == study_batches:
            raise KeyboardInterrupt
        outcome = train(batch, threads)
        if batch.job.study != "pilot":
            finished.append(batch)
        return outcome

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "run_batch", run_then_fail)
        with pytest.raises(KeyboardInterrupt):
            run(arguments(out, *extra))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    assert run(arguments(out)) == 0
    return out


def test_a_resumed_run_writes_the_bytes_of_an_uninterrupted_one(
    uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    interrupted(tmp_path)
    partial = tmp_path / "partial"
    saved = sorted(path.name for path in partial.glob("*.json.gz"))
    assert [name for name in saved if "-study-" in name or "-sweep-" in name] != []
    sessions = json.loads((partial / "sessions.json").read_text())
    assert len(sessions) == 1 and sessions[0]["total_seconds"] > 0
    capsys.readouterr()

    trained: list[Batch] = []
    train = runner.run_batch

    def counted(batch: Batch, threads: int = 1) -> Outcome:
        trained.append(batch)
        return train(batch, threads)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "run_batch", counted)
        assert run(arguments(tmp_path)) == 0

    assert trained and not {batch_key(batch) + ".json.gz" for batch in trained} & set(saved)
    printed = capsys.readouterr()
    assert "resuming learning-rate pilots: " in printed.out + printed.err
    for name in SAME_BYTES:
        assert (tmp_path / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    readme = (tmp_path / "README.md").read_text()
    before_time = readme.split("## Time")[0]
    assert before_time == (uninterrupted / "README.md").read_text().split("## Time")[0]
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing["sessions"] == 2
    assert " min over 2 sessions (interrupted and resumed) (pilots " in readme
    assert timing["total_seconds"] >= sessions[0]["total_seconds"]
    assert not partial.exists()


def test_a_finished_batch_file_holds_its_records_and_curves(tmp_path: Path) -> None:
    interrupted(tmp_path)
    study = [p for p in (tmp_path / "partial").glob("*.json.gz") if "-study-" in p.name]
    assert len(study) == 1
    content = json.loads(gzip.decompress(study[0].read_bytes()))
    seeds = {record["seed"] for record in content["records"]}
    assert {row[4] for row in content["curves"]} == seeds
    assert content["cpu_seconds"] > 0 and content["seconds"] > 0


def test_partial_files_of_another_protocol_are_refused(tmp_path: Path) -> None:
    interrupted(tmp_path)
    with pytest.raises(SystemExit) as refused:
        run(arguments(tmp_path, "main.epochs=3"))
    message = str(refused.value)
    assert message.startswith(f"error: {tmp_path / 'partial'} holds the finished batches")
    assert "protocol.main.epochs: 3 (partial files: 2)" in message
    assert "delete that folder to start over" in message


def test_partial_files_of_another_worker_count_are_refused(tmp_path: Path) -> None:
    interrupted(tmp_path)
    args = arguments(tmp_path)
    args[args.index("--workers") + 1] = "2"
    with pytest.raises(SystemExit, match=r"workers: 2 \(partial files: 1\)"):
        run(args)
