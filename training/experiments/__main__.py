"""`python -m training.experiments`: reproduce the paper's synthetic-data experiments.

Writes to --out: runs.csv (every run), label_correlation.csv, timing.json, the PNG figures and
README.md (the tables). `--full` is the paper's protocol; `--quick` the same figures from fewer,
smaller runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch
from pydantic import ValidationError

from training.experiments import plots
from training.experiments.label_correlation import label_correlation_table
from training.experiments.protocol import FULL, QUICK, Protocol, extra_keys, main_keys
from training.experiments.report import write_readme
from training.experiments.runner import run_keys

INTEGER_FIELDS = {"m", "seed", "best_epoch", "epochs_run"}
DEFAULT_OUT = Path("out") / "experiments"  # ignored by git
DISCUSSION = Path(__file__).resolve().parents[2] / "docs" / "results" / "DISCUSSION.md"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.experiments",
        description=(
            "Train Shared-Bottom, OMoE and MMoE on the synthetic data of Ma et al. (KDD 2018) "
            "for many task correlations p, seeds, learning rates and (c, m) settings, many runs "
            "at a time as batched replica models, and write plots, every run and a table."
        ),
        epilog=(
            "Examples:\n"
            "  python -m training.experiments --quick                  # -> out/experiments/quick\n"
            "  python -m training.experiments --full --out docs/results  # the committed results\n"
            "  python -m training.experiments --quick --set repeats=3 --set epochs=5 --out /tmp/x"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="few, small runs (2000 training rows, 12 repeats): minutes on a laptop (default)",
    )
    size.add_argument(
        "--full",
        action="store_true",
        help="the paper's protocol: 200 repeats per model and p, 10000 training rows per run",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: out/experiments/full or out/experiments/quick, ignored by "
        "git; the committed results are docs/results and docs/results/quick)",
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
        help="override one protocol field, e.g. repeats=50 or correlations=[1.0,0.5] "
        f"(fields: {', '.join(Protocol.model_fields)})",
    )
    return parser


def resolve_protocol(base: Protocol, overrides: Sequence[str]) -> Protocol:
    values = base.model_dump()
    for item in overrides:
        field, separator, raw = item.partition("=")
        if not separator or field not in Protocol.model_fields:
            raise SystemExit(f"--set {item!r}: expected FIELD=JSON with a protocol field")
        try:
            values[field] = json.loads(raw)
        except json.JSONDecodeError:
            values[field] = raw
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


def write_csv(records: Sequence[dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key != "model":
                row[key] = int(value) if key in INTEGER_FIELDS else float(value)
    return rows


def draw(out: Path, records: list[dict], label_table: list[dict], protocol: Protocol) -> None:
    """Figures and README.md from the runs, the label-correlation table and timing.json."""
    timing = json.loads((out / "timing.json").read_text())
    plots.performance_vs_correlation(records, protocol, out / "performance_vs_correlation.png")
    plots.trainability(records, protocol, out / "trainability.png")
    plots.learning_rates(records, protocol, out / "learning_rates.png")
    plots.label_correlation(label_table, out / "label_correlation.png")
    plots.sensitivity(records, protocol, out / "sensitivity.png")
    discussion = os.path.relpath(DISCUSSION, out.resolve())
    (out / "README.md").write_text(write_readme(records, label_table, protocol, timing, discussion))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    protocol = resolve_protocol(FULL if args.full else QUICK, args.set)
    if args.out is None:
        args.out = DEFAULT_OUT / ("full" if args.full else "quick")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        records = read_csv(args.out / "runs.csv")
        draw(args.out, records, read_csv(args.out / "label_correlation.csv"), protocol)
        print(f"redrew the figures and README.md in {args.out} from {len(records)} runs")
        return 0
    torch.set_num_threads(1)

    started = time.perf_counter()
    records = run_keys(protocol, main_keys(protocol), args.workers, desc="main study")
    main_seconds = time.perf_counter() - started
    write_csv(records, args.out / "runs.csv")  # kept even if a later study fails
    records += run_keys(protocol, extra_keys(protocol), args.workers, desc="other studies")
    label_table = label_correlation_table(
        protocol.sweep_correlations,
        protocol.label_correlation_sinusoids,
        sorted({1.0, protocol.scale}),
        protocol.label_correlation_rows,
        protocol.label_correlation_draws,
    )
    total_seconds = time.perf_counter() - started
    timing = {
        "protocol": protocol.name,
        "main_runs": len(main_keys(protocol)) * 3,
        "total_runs": len(records),
        "main_seconds": round(main_seconds, 1),
        "total_seconds": round(total_seconds, 1),
        "workers": args.workers,
        "threads_per_worker": 1,
        "machine": machine(),
        "load_average_at_end": os.getloadavg(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "protocol_config": protocol.model_dump(),
    }

    write_csv(records, args.out / "runs.csv")
    write_csv(label_table, args.out / "label_correlation.csv")
    (args.out / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    draw(args.out, records, label_table, protocol)
    print(
        f"wrote {len(records)} runs, figures and README.md to {args.out} in {total_seconds:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
