"""The serving benchmark's record: machine, versions, ratios, targets; as JSON and as markdown."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine import cpu_model, package_version

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic", "onnxruntime",
    "numpy", "orjson", "torch",
]  # fmt: skip
# The servers in table order; "before" (--baseline-commit) and variants (--variant) are optional.
FIRST, LAST = ["floor", "naive", "before"], ["service"]


def server_order(results: dict[str, Any]) -> list[str]:
    variants = [name for name in results if name not in FIRST + LAST]
    return [name for name in FIRST + variants + LAST if name in results]


def _command_output(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    except OSError:
        return "unknown"
    return (completed.stdout or completed.stderr).strip().splitlines()[0]


def environment(
    args: argparse.Namespace, load_before: tuple[float, float, float], seconds: float
) -> dict[str, Any]:
    return {
        "benchmark": "serve",
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "quick": args.quick,
        "seconds_per_point": args.seconds,
        "wall_seconds": round(seconds, 1),
        "git_commit": _command_output(["git", "rev-parse", "--short", "HEAD"]),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "server_cpus": args.server_cpus,
            "client_cpus": args.client_cpus,
            "niceness": getattr(args, "nice", 0),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "software": {
            "python": platform.python_version(),
            **{package: package_version(package) for package in PACKAGES},
            "wrk": _command_output(["wrk", "--version"])
            .split(" Copyright")[0]
            .removeprefix("wrk "),
        },
        "service_settings": {
            "MMOE_PROVIDER": args.provider,
            **dict(e.split("=", 1) for e in args.env),
        },
    }


def _point(results: dict[str, Any], server: str, workload: str) -> dict[str, Any] | None:
    for point in results.get(server, {}).get("points", []):
        if point["workload"] == workload:
            return dict(point)
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def comparisons(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per workload: each server's figures and the ratios to the floor and to the naive service."""
    servers = server_order(results)
    workloads = [p["workload"] for server in servers for p in results[server]["points"]]
    rows = []
    for workload in dict.fromkeys(workloads):
        points = {server: _point(results, server, workload) for server in FIRST + servers}
        rate = {s: (p["requests_per_s"] if p else None) for s, p in points.items()}
        rows.append(
            {
                "workload": workload,
                "requests_per_s": rate,
                "rows_per_s": {s: (p["rows_per_s"] if p else None) for s, p in points.items()},
                "p50_ms": {s: (p["p50_ms"] if p else None) for s, p in points.items()},
                "p99_ms": {s: (p["p99_ms"] if p else None) for s, p in points.items()},
                "rss_mb": {s: (p["rss_mb"] if p else None) for s, p in points.items()},
                "cpu_us_per_request": {
                    s: (p["server_cpu_us_per_request"] if p else None) for s, p in points.items()
                },
                "service_to_floor": _ratio(rate["service"], rate["floor"]),
                "naive_to_floor": _ratio(rate["naive"], rate["floor"]),
                "service_to_naive": _ratio(rate["service"], rate["naive"]),
                "service_to_before": _ratio(rate["service"], rate["before"]),
            }
        )
    return rows


def targets(
    rows: list[dict[str, Any]],
    soak: dict[str, Any] | None,
    protocol: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured figure and whether it is met."""
    by_name = {row["workload"]: row for row in rows}
    found = []

    def add(name: str, measured: float | None, goal: float, at_most: bool = False) -> None:
        if measured is not None:
            met = measured <= goal if at_most else measured >= goal
            found.append({"target": name, "measured": measured, "goal": goal, "met": met})

    for workload in ("1 instance, concurrency 1", "1 instance, concurrency 32"):
        row = by_name.get(workload)
        if row:
            add(f"{workload}: service req/s >= 0.40 x floor", row["service_to_floor"], 0.40)
    for workload in ("256 instances, concurrency 1", "256 instances, concurrency 8"):
        row = by_name.get(workload)
        if row:
            add(f"{workload}: service rows/s >= 8 x naive", row["service_to_naive"], 8.0)
            if row["service_to_before"] is not None:
                goal = "service rows/s >= 1.4 x the service before"
                add(f"{workload}: {goal}", row["service_to_before"], 1.4)
    row = by_name.get("1 instance, concurrency 32")
    if row and row["p99_ms"]["service"] is not None and row["p99_ms"]["floor"]:
        ratio = round(row["p99_ms"]["service"] / row["p99_ms"]["floor"], 2)
        add("1 instance, concurrency 32: service p99 <= 3 x floor p99", ratio, 3.0, at_most=True)
    if soak:
        growth = soak["rss_growth_percent"]
        add(f"service RSS growth over a {soak['seconds']:g} s run < 10 %", growth, 10.0, True)
    for point in (protocol or {}).get("points", []):
        if point["form"] == "binary" and point["instances"] == 1024:
            goal = "rows/s >= 0.5 x onnxruntime in-process on the same batches"
            add(f"{point['workload']}: {goal}", point["to_onnxruntime"], 0.5)
    return found


def _cell(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def markdown(meta: dict[str, Any], results: dict[str, Any], rows: list[dict[str, Any]],
             goals: list[dict[str, Any]], soak: dict[str, Any] | None) -> str:  # fmt: skip
    machine, software = meta["machine"], meta["software"]
    load = machine["load_average_before"]
    quick = " (--quick: a smoke run, not a measurement)" if meta["quick"] else ""
    warm = "" if meta["quick"] else " after a warm-up"
    lines = [
        "# Serving throughput: the service against the HTTP floor and a naive service",
        "",
        f"{meta['date']}, commit {meta['git_commit']}{quick}; {machine['cpu']}, "
        f"{machine['cores']} cores; server pinned to CPU {machine['server_cpus']}, wrk (1 thread) "
        f"to CPU {machine['client_cpus']}, both at niceness {machine['niceness']}; "
        f"{meta['seconds_per_point']:g} s per point{warm}; load "
        f"average before {load[0]} / {load[1]} / {load[2]}, after "
        f"{machine['load_average_after'][0]} (a shared machine).",
        "",
        "Software: " + ", ".join(f"{name} {version}" for name, version in software.items()) + ".",
        f"Service settings: {meta['service_settings']} (everything else at its default).",
        "",
    ]
    present = [s for s in server_order(results) if any(row["requests_per_s"][s] for row in rows)]
    before = "before" in present
    header = ["workload", *(f"{server} req/s" for server in present)]
    header += ["service / floor", "naive / floor", "service / naive"]
    header += ["service / before"] if before else []
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        rate = row["requests_per_s"]
        ratios = ["service_to_floor", "naive_to_floor", "service_to_naive"]
        ratios += ["service_to_before"] if before else []
        cells = [_cell(rate[server]) for server in present]
        cells += [_cell(row[ratio], 2) for ratio in ratios]
        lines.append(f"| {row['workload']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| workload | server | req/s | rows/s | p50 ms | p99 ms | server CPU µs/request | RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for server in present:
            if row["requests_per_s"][server] is None:
                continue
            cpu = row["cpu_us_per_request"][server]
            lines.append(
                f"| {row['workload']} | {server} | {_cell(row['requests_per_s'][server])} | "
                f"{_cell(row['rows_per_s'][server])} | {_cell(row['p50_ms'][server], 2)} | "
                f"{_cell(row['p99_ms'][server], 2)} | {_cell(cpu)} | "
                f"{_cell(row['rss_mb'][server])} |"
            )
    if soak:
        lines += [
            "",
            f"Soak: {soak['requests']:,} requests (1 instance, concurrency 32) in "
            f"{soak['seconds']:g} s; service RSS {soak['rss_before_mb']} MB before, "
            f"{soak['rss_after_mb']} MB after ({soak['rss_growth_percent']:+.2f} %).",
        ]
    protocol = results.get("service", {}).get("protocol")
    if protocol:
        lines += protocol_markdown(protocol, machine["server_cpus"])
    if goals:
        lines += ["", "| target | measured | met |", "|---|---:|---|"]
        lines += [
            f"| {goal['target']} | {goal['measured']} | {'yes' if goal['met'] else '**no**'} |"
            for goal in goals
        ]
    lines += ["", "Reproduce: `make bench-serve` (`python benchmarks/serve.py`).", ""]
    return "\n".join(lines)


def protocol_markdown(protocol: dict[str, Any], server_cpus: str | None) -> list[str]:
    """The Open Inference Protocol's table: each /v2 point against in-process onnxruntime, and
    binary against JSON at each size and concurrency."""
    points = protocol["points"]
    threads = points[0]["onnxruntime_in_process"]["threads"]
    lines = [
        "",
        "## Open Inference Protocol: JSON and binary tensors",
        "",
        "The service's `/v2/models/mmoe-synthetic/infer`, every output returned in the request's "
        "form. Baseline: onnxruntime on the same batch in a process of its own, its session made "
        f"as the service makes it ({threads} intra-op thread(s)), pinned to the server's CPU "
        f"{server_cpus} at the server's niceness, measured just before each point. "
        '"x onnxruntime" compares rows/s (the target); "CPU share" is onnxruntime\'s CPU '
        "time per call over the server's CPU time per request: the part of the server's work "
        "that is the model's, which the machine's load moves less.",
        "",
        "| workload | req/s | rows/s | onnxruntime rows/s | x onnxruntime | CPU share | p50 ms "
        "| p99 ms | server CPU µs/request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for point in points:
        baseline = point["onnxruntime_in_process"]
        lines.append(
            f"| {point['workload']} | {_cell(point['requests_per_s'])} | "
            f"{_cell(point['rows_per_s'])} | {_cell(baseline['rows_per_s'])} | "
            f"{_cell(point['to_onnxruntime'], 2)} | {_cell(point['cpu_to_onnxruntime'], 2)} | "
            f"{_cell(point['p50_ms'], 2)} | {_cell(point['p99_ms'], 2)} | "
            f"{_cell(point['server_cpu_us_per_request'])} |"
        )
    by_key = {(p["instances"], p["concurrency"], p["form"]): p for p in points}
    lines += ["", "| rows | concurrency | binary / JSON rows/s |", "|---:|---:|---:|"]
    for rows, concurrency, form in by_key:
        if form == "binary" and (rows, concurrency, "json") in by_key:
            ratio = _ratio(
                by_key[rows, concurrency, "binary"]["rows_per_s"],
                by_key[rows, concurrency, "json"]["rows_per_s"],
            )
            lines.append(f"| {rows} | {concurrency} | {_cell(ratio, 2)} |")
    return lines


def write_results(out: Path, meta: dict[str, Any], results: dict[str, Any]) -> tuple[Path, Path]:
    rows = comparisons(results)
    soak = results.get("service", {}).get("soak")
    goals = targets(rows, soak, results.get("service", {}).get("protocol"))
    out.mkdir(parents=True, exist_ok=True)
    record = {**meta, "results": results, "comparisons": rows, "targets": goals}
    json_path, markdown_path = out / "serve.json", out / "serve.md"
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    markdown_path.write_text(markdown(meta, results, rows, goals, soak))
    return json_path, markdown_path
