"""`python -m training.experiments.longer_budget`: retrain one cell's unconverged study runs longer.

A study run is unconverged when its best validation epoch is the last of its budget. This retrains
exactly those runs of one cell (same seeds, hence the same data, initialisation and batch order)
with a larger budget, and optionally another learning rate, and prints where their best epoch
lands and how much lower their best validation loss gets: the evidence for how large a budget the
cell would need. With `--all-runs` it retrains every run of the cell instead and counts, for each
budget up to the larger one, how many runs would have ended unconverged: a run converged at the
study's budget can still find a better epoch later. It reads the results folder's runs.csv and
timing.json and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.experiments import files
from training.experiments.protocol import MODELS, Job, Protocol, Run
from training.experiments.runner import Batch, run_batch, train_batch
from training.experiments.summary import select, unconverged


@dataclass(frozen=True)
class Retrained:
    seed: int
    best_epoch: int
    best_validation_loss: float
    longer_best_epoch: int
    longer_best_validation_loss: float

    @property
    def change(self) -> float:
        return self.longer_best_validation_loss / self.best_validation_loss - 1.0


def _longer_batch(
    runs: Sequence[dict], protocol: Protocol, epochs: int, learning_rate: float | None
) -> Batch:
    """The study `runs` of one cell (same seeds) as a batch trained for `epochs`, at their own
    learning rate or `learning_rate`."""
    first = runs[0]
    setting = first["setting"]
    longer = protocol.setting(setting).model_copy(update={"epochs": epochs})
    protocol = protocol.model_copy(update={setting: longer})
    rate = first["lr"] if learning_rate is None else learning_rate
    job = Job(setting, "study", first["model"], rate)
    return Batch(protocol, job, tuple(Run(job, first["p"], r["seed"]) for r in runs))


def retrain_unconverged(
    records: Sequence[dict],
    protocol: Protocol,
    setting: str,
    model: str,
    p: float,
    epochs: int,
    learning_rate: float | None = None,
) -> list[Retrained]:
    """The cell's unconverged study runs, retrained for `epochs` (at `learning_rate` if given)."""
    budget = protocol.setting(setting).epochs
    late = unconverged(select(records, setting=setting, study="study", model=model, p=p), budget)
    if not late:
        return []
    outcome = run_batch(_longer_batch(late, protocol, epochs, learning_rate))
    return [
        Retrained(
            before["seed"],
            before["best_epoch"],
            before["best_validation_loss"],
            after["best_epoch"],
            after["best_validation_loss"],
        )
        for before, after in zip(late, outcome.records, strict=True)
    ]


def unconverged_by_budget(
    records: Sequence[dict],
    protocol: Protocol,
    setting: str,
    model: str,
    p: float,
    epochs: int,
    budgets: Sequence[int],
    learning_rate: float | None = None,
) -> dict[int, tuple[int, int]]:
    """Every study run of the cell retrained for `epochs`: budget -> (unconverged, runs), where a
    run is unconverged at budget E when its best validation epoch among the first E is E."""
    runs = select(records, setting=setting, study="study", model=model, p=p)
    batch = _longer_batch(runs, protocol, epochs, learning_rate)
    history = train_batch(batch).result.validation_loss  # (R, epochs)
    return {
        budget: (int((history[:, :budget].argmin(axis=1) + 1 == budget).sum()), len(runs))
        for budget in budgets
    }


def report(retrained: Sequence[Retrained], budget: int, epochs: int) -> str:
    lines = [
        f"| seed | best epoch of {budget} | best validation loss | best epoch of {epochs} | "
        "best validation loss | change |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in retrained:
        lines.append(
            f"| {run.seed} | {run.best_epoch} | {run.best_validation_loss:.4f} | "
            f"{run.longer_best_epoch} | {run.longer_best_validation_loss:.4f} | "
            f"{run.change:+.1%} |"
        )
    best = np.array([run.longer_best_epoch for run in retrained])
    change = np.array([run.change for run in retrained])
    lines += [
        "",
        f"{len(retrained)} runs: best epoch of {epochs} median {np.median(best):.0f} "
        f"(range {best.min()}-{best.max()}); {int((best == epochs).sum())} still at the cap; "
        f"validation loss change median {np.median(change):+.1%} "
        f"(range {change.min():+.1%} to {change.max():+.1%}).",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.experiments.longer_budget",
        description=(
            "Retrain the unconverged study runs of one cell (setting, model, p) of a results "
            "folder with a larger epoch budget, on the same seeds, and print where their best "
            "validation epoch lands. Writes nothing."
        ),
        epilog=(
            "Example:\n"
            "  python -m training.experiments.longer_budget docs/results --setting fresh "
            "--model shared_bottom --p 1 --epochs 400\n"
            "  python -m training.experiments.longer_budget docs/results --setting fresh "
            "--model omoe --p 0.9 --epochs 800 --all-runs"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results", type=Path, help="a folder with runs.csv and timing.json")
    parser.add_argument("--setting", default="fresh", help="main or fresh (default: fresh)")
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--p", type=float, required=True, help="the task correlation of the cell")
    parser.add_argument("--epochs", type=int, required=True, help="the larger budget")
    parser.add_argument(
        "--learning-rate", type=float, help="train at this rate instead of the cell's chosen one"
    )
    parser.add_argument(
        "--all-runs",
        action="store_true",
        help="retrain every run of the cell and count the unconverged ones at each budget from "
        "the study's up to --epochs, in steps of 50 epochs (minutes to an hour: a whole cell)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        timing = json.loads((args.results / "timing.json").read_text())
        records = files.read_records(args.results / "runs.csv")
    except FileNotFoundError as error:
        parser.error(f"{error.filename} is missing: is {args.results} a results folder?")
    protocol = Protocol.model_validate(timing["protocol_config"])
    if args.setting not in {setting.name for setting in protocol.settings}:
        parser.error(f"--setting {args.setting!r}: the protocol's settings are main and fresh")
    if not select(records, setting=args.setting, study="study", model=args.model, p=args.p):
        studied = ", ".join(f"{p:g}" for p in protocol.correlations)
        parser.error(f"--p {args.p:g}: the study ran at p = {studied}")
    budget = protocol.setting(args.setting).epochs
    if args.epochs <= budget:
        parser.error(f"--epochs {args.epochs} is not larger than the study's budget, {budget}")
    if args.all_runs:
        budgets = sorted({budget, *range(budget + 50, args.epochs, 50), args.epochs})
        counts = unconverged_by_budget(
            records,
            protocol,
            args.setting,
            args.model,
            args.p,
            args.epochs,
            budgets,
            args.learning_rate,
        )
        for epochs, (late, runs) in counts.items():
            print(f"budget {epochs} epochs: {late} of {runs} runs unconverged ({late / runs:.0%})")
        return 0
    retrained = retrain_unconverged(
        records, protocol, args.setting, args.model, args.p, args.epochs, args.learning_rate
    )
    if not retrained:
        print(f"no unconverged study run in {args.setting}, {args.model}, p = {args.p:g}")
        return 0
    print(report(retrained, budget, args.epochs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
