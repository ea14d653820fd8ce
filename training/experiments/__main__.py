"""`python -m training.experiments`: reproduce the paper's synthetic-data experiments.

Writes to --out (default: out/experiments/<protocol>, which git ignores): runs.csv (every run),
curves.csv.gz (every study run's loss after every epoch of its fixed budget),
label_correlation.csv, timing.json, the PNG figures and README.md. `--full` is the paper's
protocol; `--quick` the same figures from fewer, smaller runs. The committed results in
docs/results are regenerated only by pointing --out there. Every finished batch of runs is kept in
<out>/partial/ until the end, so an interrupted run resumes: the same command again trains only
what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from training.experiments import files, plots
from training.experiments.label_correlation import label_correlation_table
from training.experiments.partial import PartialMismatchError, PartialStore
from training.experiments.protocol import (
    FULL,
    QUICK,
    DataSetting,
    Protocol,
    pilot_runs,
    study_runs,
)
from training.experiments.report import chosen_rates, write_readme
from training.experiments.runner import record_order, run_all

DISCUSSION = Path(__file__).resolve().parents[2] / "docs" / "results" / "DISCUSSION.md"
DEFAULT_OUT = Path("out") / "experiments"  # ignored by git; + the protocol's name
LOAD_SAMPLE_SECONDS = 15


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.experiments",
        description=(
            "Train Shared-Bottom, OMoE and MMoE on the synthetic data of Ma et al. (KDD 2018): "
            "a learning-rate pilot per model and p, then every model at every task correlation "
            "p for a fixed budget (then on to convergence), in two data settings, many runs at "
            "a time as batched replica models. Writes every run, every learning curve, the "
            "figures and a README with the verdicts and their bootstrap intervals. An "
            "interrupted run resumes: run the same command again (finished batches wait in "
            "OUT/partial/ until the end)."
        ),
        epilog=(
            "Examples:\n"
            "  python -m training.experiments --quick                  # -> out/experiments/quick\n"
            "  python -m training.experiments --full --out docs/results  # the committed results\n"
            "  python -m training.experiments --quick --set main.epochs=5 --out /tmp/x\n"
            "  python -m training.experiments --replot --full --out docs/results"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help=f"few, small runs ({QUICK.train_size} training rows, {QUICK.main.repeats} runs per "
        f"cell, {QUICK.main.epochs}-epoch budgets): minutes (the default)",
    )
    size.add_argument(
        "--full",
        action="store_true",
        help=f"the paper's protocol: {FULL.main.repeats} runs per model and p "
        f"({FULL.fresh.repeats} in the fresh setting), {FULL.train_size} training rows, "
        f"{FULL.main.epochs}-epoch budgets: about 90 min on 2 cores",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: out/experiments/full or out/experiments/quick)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="worker processes, one torch thread each (default: %(default)s)",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="train nothing: redraw the figures and README.md from the files already in --out",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="override one protocol field, e.g. main.repeats=50 or correlations=[1.0,0.5] "
        f"(fields: {', '.join(Protocol.model_fields)}; main and fresh have "
        f"{', '.join(DataSetting.model_fields)})",
    )
    return parser


def resolve_protocol(base: Protocol, overrides: Sequence[str]) -> Protocol:
    """`base` with FIELD=JSON overrides; a setting's field is dotted, e.g. main.repeats=50."""
    values = base.model_dump()
    for item in overrides:
        field, separator, raw = item.partition("=")
        head, _, tail = field.partition(".")
        target = values.get(head) if tail else values
        name = tail or head
        if not separator or head not in Protocol.model_fields or not isinstance(target, dict):
            raise SystemExit(f"--set {item!r}: expected FIELD=JSON with a protocol field")
        if name not in target:
            raise SystemExit(f"--set {item!r}: {head} has no field {name!r}")
        try:
            target[name] = json.loads(raw)
        except json.JSONDecodeError:
            target[name] = raw
    try:
        return Protocol.model_validate(values)
    except ValidationError as error:
        raise SystemExit(f"invalid protocol: {error}") from None


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


@contextmanager
def load_samples(every: float = LOAD_SAMPLE_SECONDS) -> Iterator[list[float]]:
    """The 1-minute load average, sampled every `every` seconds while the block runs."""
    samples = [os.getloadavg()[0]]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(every):
            samples.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        done.set()
        sampler.join()
        samples.append(os.getloadavg()[0])


def draw(
    out: Path,
    records: list[dict],
    curves: list[dict],
    label_table: list[dict],
    protocol: Protocol,
) -> None:
    """Figures and README.md from the runs, the curves, the label table and timing.json."""
    timing = json.loads((out / "timing.json").read_text())
    arrays = plots.curve_arrays(curves)
    main, fresh = protocol.main.name, protocol.fresh.name
    plots.loss_over_steps(arrays, protocol, main, out / "loss_over_steps.png")
    plots.loss_over_steps(arrays, protocol, fresh, out / "fresh_loss_over_steps.png")
    plots.shared_bottom_over_steps(arrays, protocol, out / "shared_bottom_over_steps.png")
    plots.performance_vs_correlation(records, protocol, out / "performance_vs_correlation.png")
    plots.trainability(records, protocol, main, out / "trainability.png")
    plots.trainability(records, protocol, fresh, out / "fresh_trainability.png")
    plots.trainability_ecdf(records, protocol, out / "trainability_ecdf.png")
    plots.learning_rates(
        records, protocol, chosen_rates(records, protocol), out / "learning_rates.png"
    )
    plots.label_correlation(label_table, out / "label_correlation.png")
    discussion = os.path.relpath(DISCUSSION, out.resolve())
    (out / "README.md").write_text(write_readme(records, label_table, protocol, timing, discussion))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    protocol = resolve_protocol(FULL if args.full else QUICK, args.set)
    out = args.out or DEFAULT_OUT / protocol.name
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        recorded = json.loads((out / "timing.json").read_text())["protocol_config"]
        protocol = Protocol.model_validate(recorded)  # the protocol the files came from
        records = files.read_records(out / "runs.csv")
        curves = files.read_curves(out / "curves.csv.gz")
        label_table = files.read_records(out / "label_correlation.csv")
        draw(out, records, curves, label_table, protocol)
        print(f"redrew the figures and README.md in {out} from {len(records)} runs")
        return 0
    torch.set_num_threads(1)
    try:
        store = PartialStore(out, protocol, args.workers)
    except PartialMismatchError as error:
        raise SystemExit(f"error: {error}") from None

    with load_samples() as loads:
        started = time.perf_counter()
        pilots_ended: list[float] = []

        def progress() -> None:
            """This session's time so far, kept after every batch in case it is interrupted."""
            elapsed = time.perf_counter() - started
            pilot = pilots_ended[0] if pilots_ended else elapsed
            store.update_session(
                pilot_seconds=pilot,
                study_seconds=elapsed - pilot,
                total_seconds=elapsed,
                loads=list(loads),
            )

        pilots = [run for setting in protocol.settings for run in pilot_runs(protocol, setting)]
        outcome = run_all(protocol, pilots, args.workers, "learning-rate pilots", store, progress)
        pilots_ended.append(time.perf_counter() - started)
        files.write_records(sorted(outcome.records, key=record_order), out / "runs.csv")
        chosen = chosen_rates(outcome.records, protocol)
        studies = [
            run
            for setting in protocol.settings
            for run in study_runs(protocol, setting, chosen[setting.name])
        ]
        outcome.extend(
            run_all(protocol, studies, args.workers, "studies and sweep", store, progress)
        )
        records = sorted(outcome.records, key=record_order)
        files.write_records(records, out / "runs.csv")  # kept if what follows fails
        files.write_curves(outcome.curves, out / "curves.csv.gz")
        label_table = label_correlation_table(
            protocol.sweep_correlations,
            protocol.label_correlation_sinusoids,
            protocol.label_correlation_scales,
            protocol.label_correlation_rows,
            protocol.label_correlation_draws,
        )
    progress()  # the label table's time and the last load sample too
    sessions = store.sessions
    all_loads = [load for session in sessions for load in session.get("loads", [])]
    own = resource.getrusage(resource.RUSAGE_SELF)
    total_seconds = sum(session.get("total_seconds", 0.0) for session in sessions)
    timing = {
        "protocol": protocol.name,
        "total_runs": len(outcome.records),
        "pilot_seconds": round(sum(s.get("pilot_seconds", 0.0) for s in sessions), 1),
        "study_seconds": round(sum(s.get("study_seconds", 0.0) for s in sessions), 1),
        "total_seconds": round(total_seconds, 1),
        "cpu_seconds": round(outcome.cpu_seconds + own.ru_utime + own.ru_stime, 1),
        "sessions": len(sessions),
        "workers": args.workers,
        "threads_per_worker": 1,
        "machine": machine(),
        "cpus": os.cpu_count(),
        "load_sample_seconds": LOAD_SAMPLE_SECONDS,
        "load_average": {
            "min": round(min(all_loads), 2),
            "median": round(float(np.median(all_loads)), 2),
            "max": round(max(all_loads), 2),
            "samples": len(all_loads),
        },
        "torch": torch.__version__,
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "protocol_config": protocol.model_dump(),
    }
    files.write_records(label_table, out / "label_correlation.csv")
    (out / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    draw(out, records, files.read_curves(out / "curves.csv.gz"), label_table, protocol)
    store.remove()  # everything is in the final files now
    print(
        f"wrote {len(records)} runs, curves, figures and README.md to {out} in "
        f"{total_seconds:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
