"""What counting costs: the service with its metrics (the default) against the same service with
MMOE_METRICS=false, measured in the same run.

Both servers run at once, pinned to the same core as in bench-serve (only the one under load is
busy), wrk on another. Each workload of bench-serve is measured in ABBA order (with, without,
without, with) for --rounds rounds, so a drift in the machine's load falls on both alike; the
figures are the medians of each server's runs. With metrics, every request is counted (method,
route, status, duration), every request's instances, and every onnxruntime call's time, rows,
requests and gate weights. After the run /metrics is scraped to show that the counting happened.
Results go to <out>/metrics_overhead.json and .md (default out/benchmarks/, ignored by git).

    python benchmarks/metrics_overhead.py                # 4 s per run, 3 rounds: about 4 minutes
    python benchmarks/metrics_overhead.py --quick        # 1 s per run, 1 round: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from machine import add_out_argument
from prometheus_client.parser import text_string_to_metric_families
from serve import (
    BUNDLED_MODEL,
    WORKLOADS,
    WRK_HELP,
    WRK_SCRIPT,
    Server,
    Workload,
    make_body,
    pinned,
    run_wrk,
)
from serve_report import environment

SERVERS = {"with metrics": "true", "without metrics": "false"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 s per run, 1 round: a smoke run")
    parser.add_argument("--seconds", type=int, default=4, help="seconds per run (4)")
    parser.add_argument("--rounds", type=int, default=3, help="ABBA rounds per workload (3)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per server (1)")
    add_out_argument(parser)
    parser.add_argument("--provider", default="cpu", help="MMOE_PROVIDER of the service (cpu)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of the servers (0)")
    parser.add_argument("--client-cpus", default="1", help="taskset CPU list of wrk (1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--nice", type=int, default=0, help="niceness of servers and wrk (0)")
    # `make bench-serve ARGS=...` hands serve.py's options to this script too: the shared ones
    # apply, serve.py's own (--env, --variant, --servers, ...) are named and left alone.
    args, others = parser.parse_known_args(argv)
    if others:
        print(f"metrics_overhead.py: not used here: {' '.join(others)}", file=sys.stderr)
    if args.quick:
        args.seconds, args.rounds, args.warmup = 1, 1, 0
    if args.no_pin or not shutil.which("taskset"):
        args.server_cpus = args.client_cpus = None
    args.env = []  # what serve_report.environment reads
    return args


def one_run(server: Server, script: Path, workload: Workload, args: argparse.Namespace) -> dict:
    cpu_before = server.cpu()
    raw = run_wrk(
        server.url, script, workload.concurrency, args.seconds, args.client_cpus, args.nice
    )
    cpu = server.cpu() - cpu_before
    errors = sum(raw[key] for key in raw if key.endswith("_errors") or key == "timeouts")
    if errors:
        raise RuntimeError(f"{server.name}: {errors} failed requests at {workload.name}")
    return {
        "requests_per_s": raw["requests"] / (raw["duration_us"] / 1e6),
        "cpu_us_per_request": cpu * 1e6 / max(raw["requests"], 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
    }


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians of the runs, and the least CPU per request (the run least disturbed by others)."""
    medians = {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
    least = round(min(run["cpu_us_per_request"] for run in runs), 3)
    return medians | {"least_cpu_us_per_request": least}


def counted(server: Server) -> dict[str, float]:
    """What /metrics says was counted: requests, onnxruntime calls, gate rows (of one task)."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    totals = {"http_requests": 0.0, "onnxruntime_calls": 0.0, "gate_rows": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mmoe_http_requests_total":
                totals["http_requests"] += sample.value
            elif sample.name == "mmoe_batch_rows_count":
                totals["onnxruntime_calls"] += sample.value
            elif sample.name == "mmoe_gate_rows_total" and sample.labels["task"] == "task_1":
                totals["gate_rows"] += sample.value
    return totals


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        print(WRK_HELP, file=sys.stderr)
        return 2
    base_env = {key: value for key, value in os.environ.items() if not key.startswith("MMOE_")}
    load_before = os.getloadavg()
    started = time.monotonic()
    dim = json.loads((BUNDLED_MODEL / "model.json").read_text())["input"]["dim"]
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as temporary:
        work = Path(temporary)
        shutil.copytree(BUNDLED_MODEL, work / "models" / "mmoe-synthetic" / "1")
        scripts = {}
        for n in sorted({workload.instances for workload in WORKLOADS}):
            (work / f"body-{n}.json").write_bytes(make_body(n, dim))
            scripts[n] = work / f"post-{n}.lua"
            scripts[n].write_text(WRK_SCRIPT.format(body=work / f"body-{n}.json"))
        command = pinned([sys.executable, "-m", "service"], args.server_cpus, args.nice)
        servers: dict[str, Server] = {}
        try:
            for name, metrics in SERVERS.items():
                env = base_env | {
                    "MMOE_PROVIDER": args.provider,
                    "MMOE_LOG_LEVEL": "warning",
                    "MMOE_MODEL_REPOSITORY": str(work / "models"),
                    "MMOE_PORT": "{port}",
                    "MMOE_METRICS": metrics,
                }
                servers[name] = Server(name, command, "/health/ready", env, work / f"{name}.log")
            results = measure_all(servers, scripts, args)
            totals = counted(servers["with metrics"])
        finally:
            for server in servers.values():
                server.stop()
    meta = environment(args, load_before, time.monotonic() - started)
    meta |= {"benchmark": "metrics_overhead", "rounds": args.rounds, "counted": totals}
    write(args.out, meta, results)
    return 0


def measure_all(
    servers: dict[str, Server], scripts: dict[int, Path], args: argparse.Namespace
) -> list[dict[str, Any]]:
    with_metrics, without = servers["with metrics"], servers["without metrics"]
    rows = []
    for workload in WORKLOADS:
        script = scripts[workload.instances]
        if args.warmup:
            for server in (with_metrics, without):
                run_wrk(
                    server.url, script, workload.concurrency, args.warmup, args.client_cpus,
                    args.nice,
                )  # fmt: skip
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for server in (with_metrics, without, without, with_metrics):  # ABBA
                runs[server.name].append(one_run(server, script, workload, args))
        row: dict[str, Any] = {"workload": workload.name}
        for name, measured in runs.items():
            row[name] = summary(measured)
        on, off = row["with metrics"], row["without metrics"]
        row["requests_per_s_ratio"] = round(on["requests_per_s"] / off["requests_per_s"], 3)
        row["cpu_us_per_request_added"] = round(
            on["cpu_us_per_request"] - off["cpu_us_per_request"], 1
        )
        row["least_cpu_us_per_request_added"] = round(
            on["least_cpu_us_per_request"] - off["least_cpu_us_per_request"], 1
        )
        rows.append(row)
        print(
            f"  {workload.name:<30} | with {on['requests_per_s']:>8,.0f} req/s "
            f"{on['cpu_us_per_request']:>6.0f} us/req | without {off['requests_per_s']:>8,.0f} "
            f"req/s {off['cpu_us_per_request']:>6.0f} us/req | ratio "
            f"{row['requests_per_s_ratio']:.3f}",
            flush=True,
        )
    return rows


def write(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = out / "metrics_overhead.json", out / "metrics_overhead.md"
    json_path.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    machine = meta["machine"]
    lines = [
        "# What counting costs: the service with and without metrics",
        "",
        f"{meta['date']}, commit {meta['git_commit']}, {machine['cpu']} ({machine['cores']} "
        f"cores; servers on CPU {machine['server_cpus']}, wrk on {machine['client_cpus']}, "
        f"niceness {machine['niceness']}); "
        f"load average {machine['load_average_before']} before, "
        f"{machine['load_average_after']} after. Python {meta['software']['python']}, "
        f"onnxruntime {meta['software']['onnxruntime']}, uvicorn {meta['software']['uvicorn']}.",
        "",
        f"Medians of {2 * meta['rounds']} runs of {meta['seconds_per_point']} s per server and "
        "workload, measured in ABBA order (with, without, without, with). Requests/s is wrk's; "
        "CPU is the server process's user + system time per request; *least* is the run that "
        "other processes on the machine disturbed least.",
        "",
        "| workload | with: req/s | without: req/s | ratio | with: CPU µs/req | "
        "without: CPU µs/req | added µs/req | added, least | with: p99 ms | without: p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        on, off = row["with metrics"], row["without metrics"]
        lines.append(
            f"| {row['workload']} | {on['requests_per_s']:,.0f} | {off['requests_per_s']:,.0f} | "
            f"{row['requests_per_s_ratio']:.3f} | {on['cpu_us_per_request']:.0f} | "
            f"{off['cpu_us_per_request']:.0f} | {row['cpu_us_per_request_added']:+.1f} | "
            f"{row['least_cpu_us_per_request_added']:+.1f} | "
            f"{on['p99_ms']:.2f} | {off['p99_ms']:.2f} |"
        )
    counts = meta["counted"]
    lines += [
        "",
        f"Counted by the server with metrics during the run: {counts['http_requests']:,.0f} "
        f"requests, {counts['onnxruntime_calls']:,.0f} onnxruntime calls, "
        f"{counts['gate_rows']:,.0f} rows of gate weights per task.",
    ]
    if meta["quick"]:
        lines += ["", "--quick: a smoke run, not a measurement."]
    markdown_path.write_text("\n".join(lines) + "\n")
    print(f"wrote {json_path} and {markdown_path}")


if __name__ == "__main__":
    sys.exit(main())
